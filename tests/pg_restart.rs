//! PostgreSQL restarts and outages under traffic, on a PostgreSQL server of the test's own: while
//! the database is away tether answers 503 with a CF error, it recovers by itself once the
//! database is back, no binding that got a 201 is lost, no job is left stuck and no binding is
//! left at the broker without a row.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::pg_server::PrivatePostgres;
use common::{Backend, Options, TestApp};
use serde_json::json;

/// What the traffic saw.
#[derive(Default)]
struct Seen {
    created: Vec<String>,
    statuses: Vec<(u16, String)>,
}

#[actix_web::test]
async fn postgres_restart_and_outage_under_traffic() {
    if common::skip_postgres() {
        eprintln!("TETHER_TEST_SKIP_PG is set: skipping");
        return;
    }
    let pg = std::sync::Arc::new(PrivatePostgres::start());
    let mut runner = common::fast_runner(Duration::from_secs(10));
    // Binds at the demo broker take milliseconds: an operation still "in progress" after 3 s
    // with no job behind it was abandoned by a request that lost its database.
    runner.abandoned_after = Duration::from_secs(3);
    runner.sweep_interval = Duration::from_millis(500);
    let app = TestApp::start_with(
        Backend::Postgres,
        Options {
            database_url: Some(pg.url()),
            pool_size: 6,
            runner_config: Some(runner),
            customize: Some(Box::new(|c| c.db_acquire_timeout = Duration::from_secs(1))),
            ..Options::default()
        },
    )
    .await;
    let w = app.world().await;
    let mut apps = Vec::new();
    for i in 0..400 {
        apps.push(app.create_app(&w.space, &format!("a{i}")).await);
    }
    let next = Mutex::new(apps.into_iter());
    let seen = Mutex::new(Seen::default());
    let stop = AtomicBool::new(false);

    let worker = || async {
        while !stop.load(Ordering::SeqCst) {
            let Some(a) = next.lock().unwrap().next() else {
                break;
            };
            let r = app.bind(&a, &w.instance, json!({})).await;
            record(&seen, &r);
            let l = app.get("/v2/service_bindings?results-per-page=5").await;
            record(&seen, &l);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let operator = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let p = pg.clone();
        tokio::task::spawn_blocking(move || p.restart())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        let p = pg.clone();
        tokio::task::spawn_blocking(move || p.stop()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let p = pg.clone();
        tokio::task::spawn_blocking(move || p.start_again())
            .await
            .unwrap();
        let back = Instant::now();
        // Recovery: the first list that works again.
        loop {
            let r = app.get("/v2/service_bindings?results-per-page=1").await;
            if r.status == 200 {
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(20),
                "no recovery: {}",
                r.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let recovered = back.elapsed();
        tokio::time::sleep(Duration::from_millis(800)).await;
        stop.store(true, Ordering::SeqCst);
        recovered
    };
    let (_, _, _, recovered) = tokio::join!(worker(), worker(), worker(), operator);
    eprintln!("recovered {recovered:?} after the database came back");
    assert!(
        recovered < Duration::from_secs(10),
        "took {recovered:?} to recover"
    );

    let seen = seen.into_inner().unwrap();
    let unavailable = seen.statuses.iter().filter(|(s, _)| *s == 503).count();
    assert!(
        unavailable > 0,
        "the outage was never seen: {:?}",
        seen.statuses.len()
    );
    for (status, code) in &seen.statuses {
        match status {
            200 | 201 => {}
            503 => assert_eq!(code, "CF-ServiceUnavailable"),
            other => panic!("unexpected answer during the outage: {other} {code}"),
        }
    }
    assert!(!seen.created.is_empty());

    // Writes work again too (on PostgreSQL they go through the group-commit writers, whose
    // connections died with the server).
    let late = app.create_app(&w.space, "after-the-outage").await;
    app.bind(&late, &w.instance, json!({}))
        .await
        .assert_status(201);

    // Every 201 is still there; nothing is left in progress, no job is stuck, and the broker
    // holds exactly the bindings tether has.
    for guid in &seen.created {
        app.get(&format!("/v2/service_bindings/{guid}"))
            .await
            .assert_status(200);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending = pending_jobs(&app).await;
        let stuck = bindings_in_progress(&app).await;
        let mut broker: Vec<String> = app.broker.binding_ids();
        let mut ours = binding_guids(&app).await;
        broker.sort();
        ours.sort();
        if pending == 0 && stuck == 0 && broker == ours {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {pending} jobs pending, {stuck} bindings in progress, broker {} vs tether {}",
            broker.len(),
            ours.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(app);
}

fn record(seen: &Mutex<Seen>, r: &common::Response) {
    let code = r.body["error_code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut s = seen.lock().unwrap();
    if r.status == 201 {
        s.created
            .push(r.body["metadata"]["guid"].as_str().unwrap().to_string());
    }
    s.statuses.push((r.status.as_u16(), code));
}

async fn pending_jobs(app: &TestApp) -> i64 {
    app.state
        .db
        .read(|conn| Ok(tether::jobs::pending_count(conn)?))
        .await
        .expect("pending jobs")
}

async fn bindings_in_progress(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    use tether::db::schema::service_bindings::dsl as sb;
    app.state
        .db
        .read(|conn| {
            Ok(sb::service_bindings
                .filter(sb::last_operation_state.eq("in progress"))
                .count()
                .get_result(conn)?)
        })
        .await
        .expect("count")
}

async fn binding_guids(app: &TestApp) -> Vec<String> {
    use diesel::prelude::*;
    use tether::db::schema::service_bindings::dsl as sb;
    app.state
        .db
        .read(|conn| Ok(sb::service_bindings.select(sb::guid).load(conn)?))
        .await
        .expect("guids")
}
