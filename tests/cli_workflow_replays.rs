//! Issue 13: the cf CLI's request sequences of `cf-cli-service-workflow.md` that the other
//! `cli_workflow_*` files do not replay: `cf marketplace` logged out (§1.3) and who sees which
//! offerings, `cf delete-service` against an asynchronous broker (§4), `cf set-org-role` by user
//! id and the 10003 the CLI ignores (§7.3); plus `tether bindings --unused-credentials` (Code
//! Engine's "existing secret" list).

mod common;

use common::osb::async_reply;
use common::{Backend, Response, TestApp, World};
use reqwest::Method;
use serde_json::{json, Value};

fn guid(r: &Response) -> String {
    r.body["metadata"]["guid"]
        .as_str()
        .unwrap_or_else(|| panic!("no guid: {} {}", r.status, r.text))
        .to_string()
}

/// One entity field of every resource of a list, in order.
fn column(r: &Response, field: &str) -> Vec<String> {
    r.body["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {} {}", r.status, r.text))
        .iter()
        .map(|res| {
            res["entity"][field]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

// --- the marketplace: who sees which offerings ---------------------------------------------------

/// The demo catalog plus a private plan of `demo-db` and a third service, `demo-cache`.
fn catalog_with_extras() -> Value {
    let mut catalog = tether::demo_broker::demo_catalog();
    let services = catalog["services"].as_array_mut().unwrap();
    services[0]["plans"].as_array_mut().unwrap().push(json!(
        {"id": "demo-db-private", "name": "private", "description": "For one org", "free": false}
    ));
    services.push(json!({
        "id": "demo-cache-id", "name": "demo-cache", "description": "A pretend cache",
        "bindable": true,
        "plans": [{"id": "demo-cache-basic", "name": "cache-basic", "description": "Basic cache"}]
    }));
    catalog
}

/// The same catalog after the broker dropped the `async` plan and the `demo-queue` service.
fn catalog_after_retirement() -> Value {
    let mut catalog = catalog_with_extras();
    let services = catalog["services"].as_array_mut().unwrap();
    services.retain(|s| s["name"] != "demo-queue");
    services[0]["plans"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["name"] != "async");
    catalog
}

/// Offerings in every state the marketplace tells apart. Public and active: `demo-db`'s
/// `small`, `demo-cache`'s `cache-basic`. Not public: `demo-db`'s `private`. Public but
/// inactive (gone from the catalog while an instance still uses it): `demo-db`'s `async`, and
/// `demo-queue` with its plan `basic`. Returns the world and the guids of `demo-db`,
/// `demo-queue` and `demo-cache`.
async fn marketplace_world(t: &TestApp) -> (World, [String; 3]) {
    t.broker.set_catalog(catalog_with_extras());
    let w = t.world().await;
    for plan in [&w.plan_small, &w.plan_async, &w.plan_unbindable] {
        make_public(t, plan).await;
    }
    make_public(t, &t.plan_guid("demo-cache-basic").await).await;
    t.create_instance(&w.space, &w.plan_async, "old-async")
        .await;
    t.create_instance(&w.space, &w.plan_unbindable, "old-queue")
        .await;
    t.broker.set_catalog(catalog_after_retirement());
    t.put(&format!("/v2/service_brokers/{}", w.broker), json!({}))
        .await
        .assert_status(200);
    let services = t.get("/v2/services").await;
    services.assert_status(200);
    assert_eq!(
        column(&services, "label"),
        ["demo-db", "demo-queue", "demo-cache"],
        "the admin sees every service"
    );
    let guids: Vec<String> = services.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["guid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(services.body["resources"][1]["entity"]["active"], false);
    (w, [guids[0].clone(), guids[1].clone(), guids[2].clone()])
}

async fn make_public(t: &TestApp, plan: &str) {
    t.put(
        &format!("/v2/service_plans/{plan}"),
        json!({"public": true}),
    )
    .await
    .assert_status(201);
}

/// A GET as the cf CLI sends it when nobody is logged in: no Authorization header at all.
async fn anonymous(t: &TestApp, path: &str) -> Response {
    t.request(Method::GET, path, None, None).await
}

/// §1.3: `cf marketplace` and `cf marketplace -s demo-db` without a login: the global lists,
/// without a token. CC serves them (`allow_unauthenticated_access only: :enumerate`) as long as
/// `hide_marketplace_from_unauthenticated_users` is off, showing the public active plans and
/// their services only.
async fn replay_marketplace_logged_out(backend: Backend) {
    let t = TestApp::start(backend).await;
    let (w, [db, queue, cache]) = marketplace_world(&t).await;
    let flag = t
        .get("/v2/config/feature_flags/hide_marketplace_from_unauthenticated_users")
        .await;
    assert_eq!(flag.body["enabled"], false, "{}", flag.text);

    // `cf marketplace`: the services, then each one's plans, in list order.
    let services = anonymous(&t, "/v2/services").await;
    services.assert_status(200);
    assert_eq!(column(&services, "label"), ["demo-db", "demo-cache"]);
    assert_eq!(services.body["total_results"], 2);
    // What the CLI reads of a service (§1.5); `extra` is a string holding a JSON object.
    let first = &services.body["resources"][0];
    assert_eq!(first["metadata"]["guid"], db.as_str());
    let entity = &first["entity"];
    assert_eq!(
        entity["description"],
        "A pretend database for trying tether out"
    );
    assert!(entity["service_broker_name"]
        .as_str()
        .is_some_and(|n| n.starts_with("broker-")));
    assert!(entity.get("documentation_url").is_some(), "{entity}");
    let extra: Value = serde_json::from_str(entity["extra"].as_str().expect("extra")).unwrap();
    assert_eq!(extra, json!({"displayName": "Demo DB"}));
    assert!(services.body["resources"][1]["entity"]["extra"].is_null());
    let mut plan_names = Vec::new();
    for svc in [&db, &cache] {
        let plans = anonymous(&t, &format!("/v2/service_plans?q=service_guid%3A{svc}")).await;
        plans.assert_status(200);
        for plan in plans.body["resources"].as_array().unwrap() {
            let e = &plan["entity"];
            assert_eq!(e["service_guid"], svc.as_str());
            assert_eq!(e["public"], true);
            assert_eq!(e["active"], true);
            assert!(e["free"].is_boolean() && e["description"].is_string());
            assert!(e["maintenance_info"].is_object(), "{e}");
            assert!(plan["metadata"]["guid"].is_string());
        }
        plan_names.push(column(&plans, "name"));
    }
    // Neither the inactive `async` nor the non-public `private` plan.
    assert_eq!(plan_names, [vec!["small"], vec!["cache-basic"]]);

    // `cf marketplace -s demo-db`, and a service that is no longer offered.
    let one = anonymous(&t, "/v2/services?q=label%3Ademo-db").await;
    assert_eq!(column(&one, "label"), ["demo-db"]);
    let retired = anonymous(&t, "/v2/services?q=label%3Ademo-queue").await;
    retired.assert_status(200);
    assert_eq!(retired.body["total_results"], 0, "{}", retired.text);
    let plans = anonymous(&t, &format!("/v2/service_plans?q=service_guid%3A{queue}")).await;
    assert_eq!(plans.body["total_results"], 0, "{}", plans.text);
    let all = anonymous(&t, "/v2/service_plans").await;
    assert_eq!(column(&all, "name"), ["small", "cache-basic"]);

    // No inline relations for them, not even in the page links.
    let p1 = anonymous(
        &t,
        "/v2/services?inline-relations-depth=1&results-per-page=1",
    )
    .await;
    p1.assert_status(200);
    assert_eq!(
        p1.body["next_url"],
        "/v2/services?order-direction=asc&page=2&results-per-page=1"
    );
    assert!(p1.body["resources"][0]["entity"]
        .get("service_plans")
        .is_none());
    // CC reads only the first `q` of an anonymous plan list, and only a `service_guid` there;
    // the others stay in the page links.
    let q = format!("/v2/service_plans?q=service_guid%3A{db}&q=active%3Afalse&results-per-page=1");
    let r = anonymous(&t, &q).await;
    assert_eq!(column(&r, "name"), ["small"]);
    assert_eq!(r.body["total_results"], 1);
    let r = anonymous(
        &t,
        &format!("/v2/service_plans?q=active%3Afalse&q=service_guid%3A{db}&inline-relations-depth=1&results-per-page=1"),
    )
    .await;
    assert_eq!(column(&r, "name"), ["small"]);
    assert_eq!(r.body["total_results"], 2);
    assert_eq!(
        r.body["next_url"],
        format!("/v2/service_plans?order-direction=asc&page=2&q=active:false&q=service_guid:{db}&results-per-page=1")
    );

    // Only the two lists are open: one service, a space's services, a plan need a token.
    for path in [
        format!("/v2/services/{db}"),
        format!("/v2/services/{db}/service_plans"),
        format!("/v2/spaces/{}/services", w.space),
        format!("/v2/service_plans/{}", w.plan_small),
    ] {
        let r = anonymous(&t, &path).await;
        r.assert_cc_error(401, 10002, "CF-NotAuthenticated", "Authentication error");
    }
    // A token that is there but does not verify is refused, as CC refuses it.
    for path in [
        "/v2/services".to_string(),
        format!("/v2/service_plans?q=service_guid%3A{db}"),
    ] {
        let r = t.request(Method::GET, &path, Some("not-a-jwt"), None).await;
        r.assert_cc_error(401, 1000, "CF-InvalidAuthToken", "Invalid Auth Token");
        let forged = t
            .request(Method::GET, &path, Some(&forged_token(&t)), None)
            .await;
        forged.assert_cc_error(401, 1000, "CF-InvalidAuthToken", "Invalid Auth Token");
    }
}

/// A well-formed token signed with another key.
fn forged_token(t: &TestApp) -> String {
    let genuine = t.token_for("someone", &["cloud_controller.read"]);
    let (head_and_claims, _signature) = genuine.rsplit_once('.').unwrap();
    format!("{head_and_claims}.c2lnbmVkLWVsc2V3aGVyZQ")
}

/// §1.1 and §1.2 for members: an inactive service or plan (gone from its broker's catalog,
/// still used by an instance) is not in a space's marketplace nor in the lists of anyone who
/// does not read everything; a plan that is not public shows only where it is made visible.
async fn inactive_offerings_are_hidden(backend: Backend) {
    let t = TestApp::start(backend).await;
    let (w, [db, queue, _cache]) = marketplace_world(&t).await;
    let private = t.plan_guid("demo-db-private").await;
    t.post(
        "/v2/service_plan_visibilities",
        json!({"service_plan_guid": private, "organization_guid": w.org}),
    )
    .await
    .assert_status(201);
    let dev = t.space_developer(&w, "dev-m").await;
    let as_dev = |path: String| {
        let (t, dev) = (&t, dev.clone());
        async move {
            let r = t.as_user(&dev, Method::GET, &path, None).await;
            r.assert_status(200);
            r
        }
    };
    // The space's marketplace (`cf marketplace` logged in): not `demo-queue`, whose only plan
    // is public but inactive.
    let space_services = as_dev(format!("/v2/spaces/{}/services", w.space)).await;
    assert_eq!(column(&space_services, "label"), ["demo-db", "demo-cache"]);
    let r = as_dev(format!(
        "/v2/spaces/{}/services?q=label%3Ademo-queue",
        w.space
    ))
    .await;
    assert_eq!(r.body["total_results"], 0, "{}", r.text);
    // The admin's view of the space is the space's, not the admin's: the same.
    let r = t.get(&format!("/v2/spaces/{}/services", w.space)).await;
    assert_eq!(column(&r, "label"), ["demo-db", "demo-cache"]);
    // The plans `cf marketplace` then lists: `private` (visible to the org), not `async`.
    let plans = as_dev(format!("/v2/service_plans?q=service_guid%3A{db}")).await;
    assert_eq!(column(&plans, "name"), ["small", "private"]);
    let plans = as_dev(format!("/v2/services/{db}/service_plans")).await;
    assert_eq!(column(&plans, "name"), ["small", "private"]);
    let plans = as_dev(format!("/v2/service_plans?q=service_guid%3A{queue}")).await;
    assert_eq!(plans.body["total_results"], 0, "{}", plans.text);
    let all = as_dev("/v2/service_plans".into()).await;
    assert_eq!(column(&all, "name"), ["small", "private", "cache-basic"]);
    let services = as_dev("/v2/services".into()).await;
    assert_eq!(column(&services, "label"), ["demo-db", "demo-cache"]);
    // Someone without a role anywhere sees the public active plans only.
    let stranger = t.token_for("stranger", &["cloud_controller.read"]);
    let r = t
        .as_user(&stranger, Method::GET, "/v2/service_plans", None)
        .await;
    assert_eq!(column(&r, "name"), ["small", "cache-basic"]);
    let r = t
        .as_user(
            &stranger,
            Method::GET,
            &format!("/v2/service_plans?q=service_guid%3A{db}&q=active%3Atrue"),
            None,
        )
        .await;
    assert_eq!(column(&r, "name"), ["small"]);
    // Those who read everything see every plan, inactive ones too (as CC's admins do).
    let r = t
        .get(&format!("/v2/service_plans?q=service_guid%3A{db}"))
        .await;
    assert_eq!(column(&r, "name"), ["small", "async", "private"]);
    assert_eq!(r.body["resources"][1]["entity"]["active"], false);
    let auditor = t.token_for("auditor", &["cloud_controller.global_auditor"]);
    let r = t.as_user(&auditor, Method::GET, "/v2/services", None).await;
    assert_eq!(column(&r, "label"), ["demo-db", "demo-queue", "demo-cache"]);
    // A token that may write but not read is refused with CC's scope error.
    let writer = t.token_for("writer", &["cloud_controller.write"]);
    for path in ["/v2/services", "/v2/service_plans"] {
        let r = t.as_user(&writer, Method::GET, path, None).await;
        r.assert_cc_error(
            403,
            10007,
            "CF-InsufficientScope",
            "Your token lacks the necessary scopes to access this resource.",
        );
    }
}

// --- cf delete-service against an asynchronous broker ------------------------------------------

/// §4: `cf delete-service my-db -f` when the broker deprovisions asynchronously. The DELETE
/// answers 202 with the instance (not a job: the CLI sends `accepts_incomplete=true`), the
/// CLI's second lookup shows "Delete in progress", and the job queue polls the broker until the
/// instance is gone.
async fn replay_delete_service_async_broker(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let lookup = format!(
        "/v2/spaces/{}/service_instances?return_user_provided_service_instances=true&q=name%3Amy-db&inline-relations-depth=1",
        w.space
    );
    t.broker.script(
        "deprovision",
        [async_reply(Some("op-delete"), 1_000_000, "succeeded")],
    );
    // The lookup (§3): the instance, its plan inlined, no bindings or keys in the way.
    let found = t.get(&lookup).await;
    found.assert_status(200);
    let first = &found.body["resources"][0];
    let si = first["metadata"]["guid"].as_str().unwrap().to_string();
    assert_eq!(si, w.instance);
    assert_eq!(first["entity"]["service_bindings"], json!([]));
    assert_eq!(first["entity"]["service_keys"], json!([]));
    let svc = first["entity"]["service_plan"]["entity"]["service_guid"]
        .as_str()
        .unwrap_or_else(|| panic!("no inlined plan: {}", found.text))
        .to_string();
    let service = t.get(&format!("/v2/services/{svc}")).await;
    service.assert_status(200);
    assert!(service.body["entity"]["extra"].is_string());

    let path = format!("/v2/service_instances/{si}");
    let d = t
        .delete(&format!("{path}?accepts_incomplete=true&async=true"))
        .await;
    d.assert_status(202);
    assert_eq!(d.header("location"), Some(path.as_str()));
    assert_eq!(d.body["metadata"]["guid"], si.as_str());
    assert_eq!(d.body["metadata"]["url"], path.as_str());
    assert_eq!(d.body["entity"]["name"], "my-db");
    let op = &d.body["entity"]["last_operation"];
    assert_eq!(
        (op["type"].as_str(), op["state"].as_str()),
        (Some("delete"), Some("in progress")),
        "{}",
        d.text
    );
    let deprovisions = t
        .broker
        .requests_to("DELETE", &format!("/v2/service_instances/{si}"));
    assert_eq!(deprovisions.len(), 1);
    assert_eq!(
        deprovisions[0].query_param("accepts_incomplete").as_deref(),
        Some("true")
    );

    // The CLI's second lookup: "Delete in progress. Use 'cf services' or 'cf service my-db'…",
    // then `GET /v2/services/<svc>` as the instance still has its plan.
    let again = t.get(&lookup).await;
    let op = &again.body["resources"][0]["entity"]["last_operation"];
    assert_eq!(
        (op["type"].as_str(), op["state"].as_str()),
        (Some("delete"), Some("in progress")),
        "{}",
        again.text
    );
    t.get(&format!("/v2/services/{svc}"))
        .await
        .assert_status(200);
    // Meanwhile another delete is refused as CC refuses it.
    let r = t
        .delete(&format!("{path}?accepts_incomplete=true&async=true"))
        .await;
    r.assert_cc_error(
        409,
        60016,
        "CF-AsyncServiceInstanceOperationInProgress",
        "An operation for service instance my-db is in progress.",
    );

    // The job queue polls the broker's last_operation; the instance stays while it works.
    t.step_jobs().await;
    t.step_jobs().await;
    let polls = t
        .broker
        .requests_to("GET", &format!("/v2/service_instances/{si}/last_operation"));
    assert_eq!(polls.len(), 2);
    assert!(polls
        .iter()
        .all(|p| p.query_param("operation").as_deref() == Some("op-delete")));
    t.get(&path).await.assert_status(200);
    // The broker finishes: the instance is gone, and a later lookup finds nothing.
    assert!(t.broker.set_remaining_polls(&si, 0));
    let gone = t.drive_until(&path, |r| r.status.as_u16() == 404).await;
    gone.assert_cc_error(
        404,
        60004,
        "CF-ServiceInstanceNotFound",
        &format!("The service instance could not be found: {si}"),
    );
    t.settle_jobs().await;
    assert!(!t.broker.has_instance(&si));
    let after = t.get(&lookup).await;
    assert_eq!(after.body["resources"], json!([]), "{}", after.text);
    assert_eq!(t.count("service_instances").await, 0);
}

// --- roles: set-org-role by user id, and the 10003 set-space-role ignores ----------------------

/// Users of the built-in issuer: an admin, the user to be given roles, and a space manager who
/// is no org manager. Returns the admin's token.
async fn uaa_users(t: &TestApp) -> String {
    t.state
        .db
        .write(|conn| {
            let admin = ["cloud_controller.admin".to_string()];
            tether::service::uaa::create_user(conn, "root", "root-password", &admin)?;
            tether::service::uaa::create_user(conn, "dev@example.com", "dev-password", &[])?;
            tether::service::uaa::create_user(conn, "sm@example.com", "sm-password", &[])?;
            Ok(())
        })
        .await
        .unwrap();
    login(t, "root", "root-password").await
}

async fn login(t: &TestApp, user: &str, password: &str) -> String {
    let r = t.login(user, password).await;
    r.assert_status(200);
    r.body["access_token"].as_str().unwrap().to_string()
}

/// The UAA lookup of the by-id path (§7.2), with the caller's own token.
async fn uaa_id(t: &TestApp, token: &str, username: &str) -> String {
    let path = format!(
        "/Users?attributes=id,userName&filter=userName+Eq+%22{}%22",
        username.replace('@', "%40")
    );
    let r = t.as_user(token, Method::GET, &path, None).await;
    r.assert_status(200);
    assert_eq!(r.body["totalResults"], 1, "{}", r.text);
    r.body["resources"][0]["id"].as_str().unwrap().to_string()
}

/// A request of the CLI's legacy path: `Content-Type: application/json` always, `body` as is.
async fn legacy(t: &TestApp, token: &str, method: Method, path: &str, body: &str) -> Response {
    let resp = t
        .client
        .request(method, format!("{}{path}", t.base))
        .header("Authorization", format!("bearer {token}"))
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    Response::read(resp).await
}

fn holders(r: &Response) -> Vec<String> {
    r.body["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.text))
        .iter()
        .map(|u| u["metadata"]["guid"].as_str().unwrap().to_string())
        .collect()
}

/// An org `MyOrg` with a space `Dev` (the CLI lowercases both names when it looks them up).
async fn my_org(t: &TestApp) -> (String, String) {
    let org = t.post("/v2/organizations", json!({"name": "MyOrg"})).await;
    org.assert_status(201);
    let org = guid(&org);
    let space = t
        .post(
            "/v2/spaces",
            json!({"name": "Dev", "organization_guid": org}),
        )
        .await;
    space.assert_status(201);
    (org, guid(&space))
}

/// The org and space lookups of §7.1 (3, 4) as `token`'s holder.
async fn find_org_and_space(t: &TestApp, token: &str) -> (String, String) {
    let orgs = t
        .as_user(
            token,
            Method::GET,
            "/v2/organizations?q=name%3Amyorg&inline-relations-depth=1",
            None,
        )
        .await;
    assert_eq!(orgs.body["total_results"], 1, "{}", orgs.text);
    let org = orgs.body["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let spaces = t
        .as_user(
            token,
            Method::GET,
            &format!("/v2/organizations/{org}/spaces?q=name%3Adev&inline-relations-depth=1"),
            None,
        )
        .await;
    assert_eq!(spaces.body["total_results"], 1, "{}", spaces.text);
    let space = spaces.body["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    (org, space)
}

/// §7.1 and §7.3, by user id (what the CLI does when the flag is off or unreadable):
/// `cf set-org-role dev@example.com MyOrg OrgManager` (then BillingManager and OrgAuditor):
/// the flag, the UAA lookup, the org lookup, the role PUT, then the membership PUT. CC answers
/// each PUT with 201 and the org.
async fn replay_set_org_role_by_id(backend: Backend) {
    let t = TestApp::start(backend).await;
    let root = uaa_users(&t).await;
    let (org_guid, _) = my_org(&t).await;
    let flag = legacy(
        &t,
        &root,
        Method::GET,
        "/v2/config/feature_flags/set_roles_by_username",
        "",
    )
    .await;
    flag.assert_status(200);
    assert_eq!(flag.body["name"], "set_roles_by_username");
    let uid = uaa_id(&t, &root, "dev@example.com").await;
    let (org, _space) = find_org_and_space(&t, &root).await;
    assert_eq!(org, org_guid);
    for role in ["managers", "billing_managers", "auditors"] {
        for path in [
            format!("/v2/organizations/{org}/{role}/{uid}"),
            format!("/v2/organizations/{org}/users/{uid}"),
        ] {
            let r = legacy(&t, &root, Method::PUT, &path, "").await;
            r.assert_status(201);
            assert_eq!(r.body["metadata"]["guid"], org.as_str(), "{path}");
            assert_eq!(
                r.body["metadata"]["url"],
                format!("/v2/organizations/{org}")
            );
            assert_eq!(r.body["entity"]["name"], "MyOrg");
            assert_eq!(r.body["entity"]["status"], "active");
        }
        let listed = t.get(&format!("/v2/organizations/{org}/{role}")).await;
        assert_eq!(holders(&listed), std::slice::from_ref(&uid), "{role}");
    }
    let users = t.get(&format!("/v2/organizations/{org}/users")).await;
    assert_eq!(holders(&users), std::slice::from_ref(&uid));
    // Assigning again is no error (the CLI runs the same command twice without complaint).
    legacy(
        &t,
        &root,
        Method::PUT,
        &format!("/v2/organizations/{org}/managers/{uid}"),
        "",
    )
    .await
    .assert_status(201);
    // An org that is not there, the CLI's "Server error, status code: 404, error code: 30003".
    let r = legacy(
        &t,
        &root,
        Method::PUT,
        &format!("/v2/organizations/no-such-org/managers/{uid}"),
        "",
    )
    .await;
    r.assert_cc_error(
        404,
        30003,
        "CF-OrganizationNotFound",
        "The organization could not be found: no-such-org",
    );
}

/// §7.3: a space manager who is no org manager runs
/// `cf set-space-role dev@example.com MyOrg Dev SpaceDeveloper` (flag on: by user name). The
/// membership PUT answers 403 with code 10003, which the CLI ignores; the space PUT then
/// succeeds, as the user already belongs to the org. `cf set-org-role` by the same manager
/// stops at its first PUT.
async fn set_space_role_past_the_10003(backend: Backend) {
    let t = TestApp::start(backend).await;
    let root = uaa_users(&t).await;
    let (org, space) = my_org(&t).await;
    let dev_id = uaa_id(&t, &root, "dev@example.com").await;
    let sm_id = uaa_id(&t, &root, "sm@example.com").await;
    for path in [
        format!("/v2/organizations/{org}/users/{dev_id}"),
        format!("/v2/organizations/{org}/users/{sm_id}"),
        format!("/v2/spaces/{space}/managers/{sm_id}"),
    ] {
        legacy(&t, &root, Method::PUT, &path, "")
            .await
            .assert_status(201);
    }
    let sm = login(&t, "sm@example.com", "sm-password").await;
    let flag = legacy(
        &t,
        &sm,
        Method::GET,
        "/v2/config/feature_flags/set_roles_by_username",
        "",
    )
    .await;
    assert_eq!(flag.body["enabled"], true, "{}", flag.text);
    assert_eq!(
        find_org_and_space(&t, &sm).await,
        (org.clone(), space.clone())
    );
    let body = r#"{"username": "dev@example.com"}"#;
    let not_authorized = |r: &Response| {
        r.assert_cc_error(
            403,
            10003,
            "CF-NotAuthorized",
            "You are not authorized to perform the requested action",
        )
    };
    // set-space-role: membership first (refused, ignored by the CLI), then the space role.
    let r = legacy(
        &t,
        &sm,
        Method::PUT,
        &format!("/v2/organizations/{org}/users"),
        body,
    )
    .await;
    not_authorized(&r);
    let r = legacy(
        &t,
        &sm,
        Method::PUT,
        &format!("/v2/spaces/{space}/developers"),
        body,
    )
    .await;
    r.assert_status(201);
    assert_eq!(r.body["metadata"]["guid"], space.as_str());
    assert_eq!(r.body["entity"]["name"], "Dev");
    let devs = t.get(&format!("/v2/spaces/{space}/developers")).await;
    assert_eq!(holders(&devs), std::slice::from_ref(&dev_id));
    // The same by user id (the by-id path sends no body).
    let r = legacy(
        &t,
        &sm,
        Method::PUT,
        &format!("/v2/organizations/{org}/users/{dev_id}"),
        "",
    )
    .await;
    not_authorized(&r);
    legacy(
        &t,
        &sm,
        Method::PUT,
        &format!("/v2/spaces/{space}/auditors/{dev_id}"),
        "",
    )
    .await
    .assert_status(201);
    // set-org-role: the role PUT comes first and is refused; the CLI stops there.
    for path in [
        format!("/v2/organizations/{org}/auditors"),
        format!("/v2/organizations/{org}/auditors/{dev_id}"),
    ] {
        let body = if path.ends_with("auditors") { body } else { "" };
        let r = legacy(&t, &sm, Method::PUT, &path, body).await;
        not_authorized(&r);
    }
    let auditors = t.get(&format!("/v2/organizations/{org}/auditors")).await;
    assert!(holders(&auditors).is_empty(), "{}", auditors.text);
}

// --- tether bindings --unused-credentials --------------------------------------------------------

/// Code Engine's "existing secret" list from the command line: the credentials of the app's
/// space (or of one instance) that the app does not use yet, with the field to bind with.
async fn cli_lists_unused_credentials(backend: Backend) {
    let (secrets, t) = TestApp::start_with_secrets_file(backend).await;
    let secrets_path = &secrets.path;
    let w = t.world().await;
    let key = t
        .post(
            "/v2/service_keys",
            json!({"service_instance_guid": w.instance, "name": "my-cos-credential", "role": "Reader"}),
        )
        .await;
    key.assert_status(201);
    let key = guid(&key);
    let db2 = t.create_instance(&w.space, &w.plan_small, "db2").await;
    let key2 = t
        .post(
            "/v2/service_keys",
            json!({"service_instance_guid": db2, "name": "db2-key"}),
        )
        .await;
    key2.assert_status(201);
    let key2 = guid(&key2);
    let other = t.create_app(&w.space, "app-b").await;
    let theirs = t
        .bind(
            &other,
            &w.instance,
            json!({"role": "Writer", "name": "b-cos"}),
        )
        .await;
    theirs.assert_status(201);
    let theirs = guid(&theirs);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(args)
            .env("TETHER_DATABASE_URL", t.db_url())
            .env("TETHER_SECRETS_FILE", secrets_path)
            .env("TETHER_LOG", "warn")
            .output()
            .unwrap()
    };
    let stdout = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let row = |text: &str, name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name} in:\n{text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };

    let text = stdout(&run(&[
        "bindings",
        "--app",
        "my-app",
        "--unused-credentials",
    ]));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("Existing credentials that my-app does not use yet:")
    );
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "Name",
            "ID",
            "Service Instance",
            "Type",
            "Role",
            "Bind With"
        ]
    );
    assert_eq!(
        row(&text, "my-cos-credential"),
        [
            "my-cos-credential",
            &key,
            "my-db",
            "service_key",
            "Reader",
            "service_key_guid"
        ]
    );
    assert_eq!(
        row(&text, "db2-key"),
        [
            "db2-key",
            &key2,
            "db2",
            "service_key",
            "Manager",
            "service_key_guid"
        ]
    );
    assert_eq!(
        row(&text, "b-cos"),
        [
            "b-cos",
            &theirs,
            "my-db",
            "service_binding",
            "Writer",
            "credential_binding_guid"
        ]
    );
    assert_eq!(text.lines().count(), 5, "{text}");
    // The list the API gives, in the same order.
    let api = t
        .get(&format!("/v2/apps/{}/unused_credentials", w.app))
        .await;
    let names: Vec<&str> = api.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let printed: Vec<&str> = text
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(printed, names);

    // One instance's; and once the app binds with the key, it is no longer offered.
    let text = stdout(&run(&[
        "bindings",
        "--app",
        "my-app",
        "--unused-credentials",
        "--service-instance",
        "db2",
    ]));
    assert_eq!(
        text,
        format!(
            "Existing credentials of db2 that my-app does not use yet:\n\
             Name     ID{pad}  Service Instance  Type         Role     Bind With\n\
             db2-key  {key2}  db2               service_key  Manager  service_key_guid\n",
            pad = " ".repeat(key2.len() - 2)
        )
    );
    t.bind(&w.app, &w.instance, json!({"service_key_guid": key}))
        .await
        .assert_status(201);
    let text = stdout(&run(&[
        "bindings",
        "--app",
        "my-app",
        "--unused-credentials",
    ]));
    assert!(!text.contains("my-cos-credential"), "{text}");
    assert!(text.contains("b-cos") && text.contains("db2-key"), "{text}");
    // Nothing to offer: said so.
    t.delete(&format!("/v2/service_keys/{key2}"))
        .await
        .assert_status(204);
    let text = stdout(&run(&[
        "bindings",
        "--app",
        "my-app",
        "--unused-credentials",
        "--service-instance",
        "db2",
    ]));
    assert_eq!(
        text,
        "Existing credentials of db2 that my-app does not use yet:\n\
         None: a new binding gets a new credential.\n"
    );
    // An instance that is not in the app's space, and the flag without the list.
    let out = run(&[
        "bindings",
        "--app",
        "my-app",
        "--unused-credentials",
        "--service-instance",
        "nope",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no service instance named nope in the space of my-app"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["bindings", "--app", "my-app", "--service-instance", "db2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--unused-credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The bindings table is unchanged without the flag.
    let text = stdout(&run(&["bindings", "--app", "my-app"]));
    assert!(text.starts_with("Service Bindings of my-app:"), "{text}");
}

backend_tests!(
    replay_marketplace_logged_out,
    inactive_offerings_are_hidden,
    replay_delete_service_async_broker,
    replay_set_org_role_by_id,
    set_space_role_past_the_10003,
    cli_lists_unused_credentials,
);
