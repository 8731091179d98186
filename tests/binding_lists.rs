//! Listing bindings, on SQLite and PostgreSQL: pagination, `q=` filters and orders as CF v2
//! does them, and unfiltered pages across the id blocks whose counts the triggers keep.

mod common;

use common::osb::{async_reply, binding_path, guid_of, has_state};
use common::{Backend, Response, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn list_pagination_and_filters(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let mut apps = vec![w.app.clone()];
    for i in 0..4 {
        apps.push(t.create_app(&w.space, &format!("app-{i}")).await);
    }
    let mut guids = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let r = t
            .bind(app, &w.instance, json!({"name": format!("b{i}")}))
            .await;
        r.assert_status(201);
        guids.push(r.body["metadata"]["guid"].as_str().unwrap().to_string());
    }
    let p1 = t.get("/v2/service_bindings?results-per-page=2").await;
    p1.assert_status(200);
    assert_eq!(p1.body["total_results"], 5);
    assert_eq!(p1.body["total_pages"], 3);
    assert_eq!(p1.body["prev_url"], Value::Null);
    assert_eq!(
        p1.body["next_url"],
        "/v2/service_bindings?order-direction=asc&page=2&results-per-page=2"
    );
    let names: Vec<_> = p1.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["entity"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["b0", "b1"]);
    let p2 = t.get(p1.body["next_url"].as_str().unwrap()).await;
    assert_eq!(p2.body["resources"][0]["entity"]["name"], "b2");
    assert_eq!(
        p2.body["prev_url"],
        "/v2/service_bindings?order-direction=asc&page=1&results-per-page=2"
    );
    let p3 = t
        .get("/v2/service_bindings?results-per-page=2&page=3")
        .await;
    assert_eq!(p3.body["resources"].as_array().unwrap().len(), 1);
    assert_eq!(p3.body["next_url"], Value::Null);
    let beyond = t
        .get("/v2/service_bindings?results-per-page=2&page=9")
        .await;
    beyond.assert_status(200);
    assert_eq!(beyond.body["resources"].as_array().unwrap().len(), 0);

    let desc = t
        .get("/v2/service_bindings?order-direction=desc&results-per-page=1")
        .await;
    assert_eq!(desc.body["resources"][0]["entity"]["name"], "b4");
    assert_eq!(desc.body["total_results"], 5);
    assert_eq!(desc.body["total_pages"], 5);
    // Page 2 takes the other path (block counts, then the page): the same total.
    let desc2 = t
        .get("/v2/service_bindings?order-direction=desc&results-per-page=1&page=2")
        .await;
    assert_eq!(desc2.body["resources"][0]["entity"]["name"], "b3");
    assert_eq!(desc2.body["total_results"], 5);

    let by_app = t
        .get(&format!("/v2/service_bindings?q=app_guid:{}", apps[2]))
        .await;
    assert_eq!(by_app.body["total_results"], 1);
    assert_eq!(by_app.body["resources"][0]["metadata"]["guid"], guids[2]);
    let by_name = t.get("/v2/service_bindings?q=name:b3").await;
    assert_eq!(by_name.body["total_results"], 1);
    let two = t
        .get(&format!(
            "/v2/service_bindings?q=app_guid:{}&q=service_instance_guid:{}",
            apps[1], w.instance
        ))
        .await;
    assert_eq!(two.body["total_results"], 1);
    let joined = t
        .get(&format!(
            "/v2/service_bindings?q=app_guid:{};name:b1",
            apps[1]
        ))
        .await;
    assert_eq!(joined.body["total_results"], 1);
    let in_filter = t
        .get(&format!(
            "/v2/service_bindings?q=app_guid%20IN%20{},{}&results-per-page=1",
            apps[0], apps[4]
        ))
        .await;
    assert_eq!(in_filter.body["total_results"], 2);
    assert_eq!(
        in_filter.body["next_url"],
        format!(
            "/v2/service_bindings?order-direction=asc&page=2&q=app_guid%20IN%20{},{}&results-per-page=1",
            apps[0], apps[4]
        )
    );
    let none = t.get("/v2/service_bindings?q=name:nope").await;
    assert_eq!(none.body["total_results"], 0);
    assert_eq!(none.body["total_pages"], 1);

    // Nested lists.
    let nested = t
        .get(&format!("/v2/apps/{}/service_bindings", apps[3]))
        .await;
    assert_eq!(nested.body["total_results"], 1);
    let nested = t
        .get(&format!(
            "/v2/service_instances/{}/service_bindings?results-per-page=50",
            w.instance
        ))
        .await;
    assert_eq!(nested.body["total_results"], 5);
    t.get("/v2/apps/00000000-0000-0000-0000-000000000000/service_bindings")
        .await
        .assert_error(404, "CF-AppNotFound");

    // Bad parameters.
    let r = t.get("/v2/service_bindings?results-per-page=101").await;
    r.assert_error(400, "CF-BadQueryParameter");
    assert_eq!(
        r.body["description"],
        "The query parameter is invalid: results_per_page must be <= 100"
    );
    t.get("/v2/service_bindings?q=space_guid:x")
        .await
        .assert_error(400, "CF-BadQueryParameter");
    t.get("/v2/service_bindings?page=0")
        .await
        .assert_error(400, "CF-BadQueryParameter");
    t.get("/v2/service_bindings?order-direction=sideways")
        .await
        .assert_error(400, "CF-BadQueryParameter");
    t.get("/v2/service_bindings?inline-relations-depth=3")
        .await
        .assert_error(400, "CF-BadQueryParameter");
}

/// Unfiltered lists find their total and page start from per-block counts kept by triggers
/// (4096 ids per block); pages across block boundaries, after deletes, in both directions, must
/// be exactly those of a plain ORDER BY id with OFFSET.
async fn unfiltered_pages_across_id_blocks(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let first = t.bind(&w.app, &w.instance, json!({"name": "b0"})).await;
    first.assert_status(201);
    let first_guid = first.body["metadata"]["guid"].as_str().unwrap().to_string();
    // Rows at chosen ids, straight into the table (as if many bindings had come and gone), each
    // for its own app: both sides of block boundaries, and blocks far apart.
    let ids: [i64; 8] = [4094, 4095, 4096, 4097, 8191, 8192, 20000, 123457];
    let mut apps = Vec::new();
    for i in 0..ids.len() {
        apps.push(t.create_app(&w.space, &format!("block-app-{i}")).await);
    }
    let rows: Vec<(i64, String)> = ids.iter().copied().zip(apps.iter().cloned()).collect();
    let fg = first_guid.clone();
    t.state
        .db
        .write(move |conn| {
            use diesel::RunQueryDsl;
            for (id, app) in &rows {
                diesel::sql_query(format!(
                    "INSERT INTO service_bindings (id, guid, app_guid, service_instance_guid, name, \
                     credentials, syslog_drain_url, volume_mounts, last_operation_type, \
                     last_operation_state, last_operation_description, broker_operation, \
                     last_operation_created_at, last_operation_updated_at, created_at, updated_at, \
                     role, prefix, service_key_guid, extended) \
                     SELECT {id}, 'guid-{id}', '{app}', service_instance_guid, 'b{id}', credentials, \
                     syslog_drain_url, volume_mounts, last_operation_type, last_operation_state, \
                     last_operation_description, broker_operation, last_operation_created_at, \
                     last_operation_updated_at, created_at, updated_at, role, NULL, \
                     service_key_guid, extended FROM service_bindings WHERE guid = '{fg}'"
                ))
                .execute(conn)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    // Deleting rows (through the API and the broker) keeps the counts exact.
    t.delete("/v2/service_bindings/guid-4096")
        .await
        .assert_status(204);
    t.delete("/v2/service_bindings/guid-8191")
        .await
        .assert_status(204);
    let expected: Vec<String> = std::iter::once(first_guid)
        .chain(
            [4094, 4095, 4097, 8192, 20000, 123457]
                .iter()
                .map(|id| format!("guid-{id}")),
        )
        .collect();

    assert_pages(&t, &expected).await;
    // The job runner's sweep folds the counts' shards (PostgreSQL) into one row per block; the
    // pages stay the same.
    t.sweep().await;
    assert_eq!(shard_rows(&t).await, 0, "shards left after the sweep");
    assert_pages(&t, &expected).await;
}

/// Counter rows outside shard 0.
async fn shard_rows(t: &TestApp) -> i64 {
    t.state
        .db
        .read(|conn| {
            use diesel::prelude::*;
            use tether::db::schema::service_binding_blocks::dsl as blocks;
            Ok(blocks::service_binding_blocks
                .filter(blocks::shard.ne(0))
                .count()
                .get_result::<i64>(conn)?)
        })
        .await
        .unwrap()
}

/// Every unfiltered page, in both directions and several sizes, is exactly `expected` cut.
async fn assert_pages(t: &TestApp, expected: &[String]) {
    for per_page in [1usize, 2, 3, 4, 7, 50] {
        for desc in [false, true] {
            let mut want = expected.to_vec();
            if desc {
                want.reverse();
            }
            let direction = if desc { "desc" } else { "asc" };
            let pages = want.len().div_ceil(per_page);
            let mut seen = Vec::new();
            for page in 1..=pages + 1 {
                let r = t
                    .get(&format!(
                        "/v2/service_bindings?order-direction={direction}&results-per-page={per_page}&page={page}"
                    ))
                    .await;
                r.assert_status(200);
                assert_eq!(r.body["total_results"], want.len(), "per_page {per_page}");
                assert_eq!(r.body["total_pages"], pages, "per_page {per_page}");
                let got: Vec<String> = r.body["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["metadata"]["guid"].as_str().unwrap().to_string())
                    .collect();
                if page > pages {
                    assert!(got.is_empty(), "page {page} past the end: {got:?}");
                }
                seen.extend(got);
            }
            assert_eq!(seen, want, "per_page {per_page}, {direction}");
        }
    }
}

/// The names of a page's bindings, in order.
fn names(page: &Response) -> Vec<String> {
    page.body["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {} {}", page.status, page.text))
        .iter()
        .map(|r| r["entity"]["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// tether's `q=last_operation_state:` (what a dashboard asks: "is anything stuck or failed"):
/// filtered by the database, so a failed binding on a later page of the plain list is found,
/// with the totals and page links of the filtered list, on every binding list and for a caller
/// who sees only some spaces; a state that does not exist is refused as CC refuses a bad
/// filter, not answered with an empty list.
async fn state_filter_finds_bindings_on_any_page(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let slow_db = t.async_instance(&w).await;
    let mut apps = vec![w.app.clone()];
    for i in 1..6 {
        apps.push(t.create_app(&w.space, &format!("app-{i}")).await);
    }
    // Five that succeeded, then one that failed and one still in progress.
    for (i, app) in apps.iter().take(5).enumerate() {
        t.bind(app, &w.instance, json!({"name": format!("ok-{i}")}))
            .await
            .assert_status(201);
    }
    t.broker
        .script("bind", [async_reply(Some("will-fail"), 0, "failed")]);
    let failed = guid_of(
        t.bind_async(&apps[5], &slow_db, json!({"name": "broken"}))
            .await
            .assert_status(202),
    );
    t.drive_until(&binding_path(&failed), has_state("create", "failed"))
        .await;
    t.broker
        .script("bind", [async_reply(Some("slow"), 1_000_000, "succeeded")]);
    let stuck = guid_of(
        t.bind_async(&apps[0], &slow_db, json!({"name": "stuck"}))
            .await
            .assert_status(202),
    );

    // Two per page: the plain list shows the failed one on page 3 only.
    let plain = t.get("/v2/service_bindings?results-per-page=2").await;
    assert_eq!(names(&plain), ["ok-0", "ok-1"]);
    assert_eq!(plain.body["total_results"], 7);

    let failed_only = t
        .get("/v2/service_bindings?q=last_operation_state:failed&results-per-page=2")
        .await;
    failed_only.assert_status(200);
    assert_eq!(names(&failed_only), ["broken"]);
    assert_eq!(failed_only.body["resources"][0]["metadata"]["guid"], failed);
    assert_eq!(failed_only.body["total_results"], 1);
    assert_eq!(failed_only.body["total_pages"], 1);
    assert_eq!(failed_only.body["next_url"], Value::Null);

    // Pages of a filtered list: totals of the filtered rows, links that keep the filter.
    let ok1 = t
        .get("/v2/service_bindings?q=last_operation_state:succeeded&results-per-page=2")
        .await;
    assert_eq!(names(&ok1), ["ok-0", "ok-1"]);
    assert_eq!(ok1.body["total_results"], 5);
    assert_eq!(ok1.body["total_pages"], 3);
    assert_eq!(
        ok1.body["next_url"],
        "/v2/service_bindings?order-direction=asc&page=2&q=last_operation_state:succeeded&results-per-page=2"
    );
    let ok2 = t.get(ok1.body["next_url"].as_str().unwrap()).await;
    assert_eq!(names(&ok2), ["ok-2", "ok-3"]);
    let ok3 = t.get(ok2.body["next_url"].as_str().unwrap()).await;
    assert_eq!(names(&ok3), ["ok-4"]);
    assert_eq!(ok3.body["total_results"], 5);
    assert_eq!(ok3.body["next_url"], Value::Null);
    let back = t.get(ok3.body["prev_url"].as_str().unwrap()).await;
    assert_eq!(names(&back), ["ok-2", "ok-3"]);
    let last_first = t
        .get("/v2/service_bindings?q=last_operation_state:succeeded&results-per-page=2&order-direction=desc")
        .await;
    assert_eq!(names(&last_first), ["ok-4", "ok-3"]);
    assert_eq!(last_first.body["total_results"], 5);

    // `in progress` (a space in the value) and `IN`, and the page link that carries them.
    let in_progress = t
        .get("/v2/service_bindings?q=last_operation_state:in%20progress")
        .await;
    assert_eq!(names(&in_progress), ["stuck"]);
    assert_eq!(in_progress.body["resources"][0]["metadata"]["guid"], stuck);
    let unsettled = t
        .get("/v2/service_bindings?q=last_operation_state%20IN%20in%20progress,failed&results-per-page=1")
        .await;
    assert_eq!(names(&unsettled), ["broken"]);
    assert_eq!(unsettled.body["total_results"], 2);
    assert_eq!(
        unsettled.body["next_url"],
        "/v2/service_bindings?order-direction=asc&page=2&q=last_operation_state%20IN%20in%20progress,failed&results-per-page=1"
    );
    let unsettled2 = t.get(unsettled.body["next_url"].as_str().unwrap()).await;
    assert_eq!(names(&unsettled2), ["stuck"]);

    // With CC's keys, in one `q` or several.
    let mine = t
        .get(&format!(
            "/v2/service_bindings?q=app_guid:{};last_operation_state:in%20progress",
            apps[0]
        ))
        .await;
    assert_eq!(names(&mine), ["stuck"]);
    let none = t
        .get(&format!(
            "/v2/service_bindings?q=app_guid:{}&q=last_operation_state:failed",
            apps[0]
        ))
        .await;
    assert_eq!(none.body["total_results"], 0);
    assert_eq!(none.body["total_pages"], 1);

    // The nested lists.
    let of_app = t
        .get(&format!(
            "/v2/apps/{}/service_bindings?q=last_operation_state:failed",
            apps[5]
        ))
        .await;
    assert_eq!(names(&of_app), ["broken"]);
    let of_instance = t
        .get(&format!(
            "/v2/service_instances/{slow_db}/service_bindings?q=last_operation_state:succeeded"
        ))
        .await;
    assert_eq!(of_instance.body["total_results"], 0);
    let of_instance = t
        .get(&format!(
            "/v2/service_instances/{slow_db}/service_bindings?q=last_operation_state:in%20progress&results-per-page=1"
        ))
        .await;
    assert_eq!(names(&of_instance), ["stuck"]);
    assert_eq!(of_instance.body["total_results"], 1);

    // A space developer (the list limited to the spaces they see) finds the same.
    for path in [
        format!("/v2/organizations/{}/users/dev", w.org),
        format!("/v2/spaces/{}/developers/dev", w.space),
    ] {
        t.put(&path, json!({})).await.assert_status(201);
    }
    let dev = t.token_for("dev", &["cloud_controller.read"]);
    let seen = t
        .as_user(
            &dev,
            Method::GET,
            "/v2/service_bindings?q=last_operation_state:failed&results-per-page=1",
            None,
        )
        .await;
    assert_eq!(names(&seen), ["broken"]);
    assert_eq!(seen.body["total_results"], 1);

    // A row stored without a state is shown as `succeeded`, so the filter counts it there.
    let ok4_guid = ok3.body["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let ok4 = ok4_guid.clone();
    t.state
        .db
        .write(move |conn| {
            use diesel::prelude::*;
            Ok(diesel::sql_query(format!(
                "UPDATE service_bindings SET last_operation_type = NULL, \
                 last_operation_state = NULL WHERE guid = '{ok4}'"
            ))
            .execute(conn)?)
        })
        .await
        .map_err(|e: tether::error::ApiError| e.to_string())
        .expect("clear a state");
    let shown = t.get(&binding_path(&ok4_guid)).await;
    assert_eq!(shown.body["entity"]["last_operation"]["state"], "succeeded");
    let ok = t
        .get("/v2/service_bindings?q=last_operation_state:succeeded&results-per-page=50")
        .await;
    assert_eq!(ok.body["total_results"], 5);
    assert_eq!(names(&ok), ["ok-0", "ok-1", "ok-2", "ok-3", "ok-4"]);

    // What is not a state, or not a state filter, is refused (on nested lists too).
    for query in [
        "q=last_operation_state:stuck",
        "q=last_operation_state:Failed",
        "q=last_operation_state:",
        "q=last_operation_state%20IN%20failed,bogus",
        "q=last_operation_state>=failed",
    ] {
        for list in [
            "/v2/service_bindings".to_string(),
            format!("/v2/apps/{}/service_bindings", apps[5]),
        ] {
            let r = t.get(&format!("{list}?{query}")).await;
            r.assert_error(400, "CF-BadQueryParameter");
            assert_eq!(r.body["code"], 10005, "{list}?{query}");
        }
    }
    let r = t
        .get("/v2/service_bindings?q=last_operation_state:stuck")
        .await;
    assert_eq!(
        r.body["description"],
        "The query parameter is invalid: last_operation_state must be 'in progress', \
         'succeeded' or 'failed' but was 'stuck'"
    );
    // Still refused where CC's keys are the only ones: it is no key of the other lists.
    t.get("/v2/service_instances?q=last_operation_state:failed")
        .await
        .assert_error(400, "CF-BadQueryParameter");
}

backend_tests!(
    list_pagination_and_filters,
    unfiltered_pages_across_id_blocks,
    state_filter_finds_bindings_on_any_page
);
