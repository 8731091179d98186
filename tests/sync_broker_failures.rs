//! A synchronous bind the broker fails, on SQLite and PostgreSQL: broker errors store nothing
//! and get CC's error codes, timeouts are 504, an unreachable broker 502, and a binding the
//! platform cannot save after the broker bound it is cleaned up at the broker (orphan
//! mitigation). Jobs run in virtual time (`TestApp::manual`).

mod common;

use common::{Backend, TestApp};
use serde_json::json;
use tether::demo_broker::Reply;

async fn broker_errors_store_nothing(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let cases: Vec<(Reply, u16, &str, Option<&str>, bool)> = vec![
        (
            Reply::Status(500, r#"{"description":"disk full"}"#.into()),
            502,
            "CF-ServiceBrokerBadResponse",
            Some("Service broker error: disk full"),
            true,
        ),
        (
            Reply::Status(503, "oops".into()),
            502,
            "CF-ServiceBrokerBadResponse",
            Some("The service broker returned an invalid response. Status Code: 503 Service Unavailable, Body: oops"),
            true,
        ),
        (
            Reply::Status(400, r#"{"description":"bad param"}"#.into()),
            502,
            "CF-ServiceBrokerRequestRejected",
            Some("Service broker error: bad param"),
            false,
        ),
        (
            Reply::Status(409, r#"{"description":"exists with other params"}"#.into()),
            409,
            "CF-ServiceBrokerConflict",
            Some("Service broker error: exists with other params"),
            false,
        ),
        (
            Reply::Status(422, r#"{"error":"RequiresApp","description":"x"}"#.into()),
            400,
            "CF-AppRequired",
            None,
            false,
        ),
        (
            Reply::Status(422, r#"{"error":"ConcurrencyError"}"#.into()),
            422,
            "CF-ConcurrencyError",
            None,
            false,
        ),
        (
            Reply::Status(401, "".into()),
            502,
            "CF-ServiceBrokerApiAuthenticationFailed",
            None,
            false,
        ),
        (
            Reply::Status(201, "not json".into()),
            502,
            "CF-ServiceBrokerResponseMalformed",
            None,
            true,
        ),
        (
            Reply::Status(201, r#"{"credentials":"a string"}"#.into()),
            502,
            "CF-ServiceBrokerResponseMalformed",
            None,
            true,
        ),
        (
            Reply::Status(201, r#"{"credentials":{},"syslog_drain_url":"syslog://x"}"#.into()),
            502,
            "CF-ServiceBrokerInvalidSyslogDrainUrl",
            None,
            true,
        ),
        (
            Reply::Status(408, "".into()),
            504,
            "CF-ServiceBrokerApiTimeout",
            None,
            false,
        ),
    ];
    for (reply, status, code, description, mitigated) in cases {
        t.broker.clear_requests();
        t.broker.script("bind", [reply.clone()]);
        let r = t.bind(&w.app, &w.instance, json!({})).await;
        r.assert_error(status, code);
        assert_eq!(r.body["code"], 10001, "{}", r.text);
        if let Some(d) = description {
            assert_eq!(r.body["description"], d);
        }
        assert_eq!(r.body["http"]["method"], "PUT", "{}", r.text);
        assert_eq!(
            t.count("service_bindings").await,
            0,
            "{reply:?} stored a binding"
        );
        // Orphan mitigation: a DELETE for the same binding id, only where the spec asks.
        let put = t.broker.requests_to("PUT", "service_bindings");
        let binding_path = put[0].path.clone();
        t.settle_jobs().await;
        let dels = t.broker.requests_to("DELETE", &binding_path);
        if mitigated {
            assert!(!dels.is_empty(), "no orphan mitigation for {reply:?}");
            assert_eq!(
                dels[0].query_param("accepts_incomplete").as_deref(),
                Some("true")
            );
            assert!(dels[0]
                .header("x-broker-api-originating-identity")
                .is_none());
        } else {
            assert!(
                dels.is_empty(),
                "unexpected orphan mitigation for {reply:?}"
            );
        }
    }
    // A 422 AsyncRequired without accepts_incomplete.
    t.broker.script(
        "bind",
        [Reply::Status(
            422,
            r#"{"error":"AsyncRequired","description":"async only"}"#.into(),
        )],
    );
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(400, "CF-AsyncRequired");
    // And the next, normal bind works.
    t.bind(&w.app, &w.instance, json!({}))
        .await
        .assert_status(201);
}

async fn broker_timeout_is_504_and_mitigated(backend: Backend) {
    let t = TestApp::manual_with(
        backend,
        common::Options {
            broker_timeout: std::time::Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;
    let w = t.world().await;
    t.broker
        .script("bind", [Reply::Delay(std::time::Duration::from_secs(2))]);
    let started = std::time::Instant::now();
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(504, "CF-HttpClientTimeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(t.count("service_bindings").await, 0);
    let put_path = t.broker.requests_to("PUT", "service_bindings")[0]
        .path
        .clone();
    t.settle_jobs().await;
    assert!(
        !t.broker.requests_to("DELETE", &put_path).is_empty(),
        "no orphan mitigation after timeout"
    );
}

async fn unreachable_broker_is_502(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    // Point the broker at a closed port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let broker_guid = w.broker.clone();
    let url = format!("http://127.0.0.1:{closed}");
    t.state
        .db
        .write(move |conn| {
            use diesel::prelude::*;
            use tether::db::schema::service_brokers::dsl as b;
            diesel::update(b::service_brokers.filter(b::guid.eq(&broker_guid)))
                .set(b::broker_url.eq(&url))
                .execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(502, "CF-ServiceBrokerApiUnreachable");
    assert_eq!(t.count("service_bindings").await, 0);
}

/// The broker bound, but storing the result failed: the binding is unbound at the broker and
/// nothing is kept.
async fn save_failure_triggers_orphan_mitigation(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let backend_kind = t.state.db.backend();
    t.state
        .db
        .write(move |conn| {
            use diesel::connection::SimpleConnection;
            match backend_kind {
                tether::db::Backend::Sqlite => conn.batch_execute(
                    "CREATE TRIGGER fail_save BEFORE UPDATE ON service_bindings \
                     WHEN NEW.last_operation_state = 'succeeded' \
                     BEGIN SELECT RAISE(ABORT, 'simulated storage failure'); END;",
                )?,
                tether::db::Backend::Postgres => conn.batch_execute(
                    "CREATE FUNCTION fail_save() RETURNS trigger AS $$ BEGIN \
                       RAISE EXCEPTION 'simulated storage failure'; END; $$ LANGUAGE plpgsql; \
                     CREATE TRIGGER fail_save BEFORE UPDATE ON service_bindings FOR EACH ROW \
                       WHEN (NEW.last_operation_state = 'succeeded') EXECUTE FUNCTION fail_save();",
                )?,
            }
            Ok(())
        })
        .await
        .unwrap();
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(500, "UnknownError");
    assert_eq!(r.body["description"], "An unknown error occurred.");
    assert!(
        !r.text.contains("simulated"),
        "internal cause leaked: {}",
        r.text
    );
    assert_eq!(t.count("service_bindings").await, 0);
    let put_path = t.broker.requests_to("PUT", "service_bindings")[0]
        .path
        .clone();
    t.settle_jobs().await;
    assert!(
        !t.broker.requests_to("DELETE", &put_path).is_empty(),
        "no orphan mitigation"
    );
    assert!(
        t.broker.binding_ids().is_empty(),
        "broker still holds the binding"
    );
}

backend_tests!(
    broker_errors_store_nothing,
    broker_timeout_is_504_and_mitigated,
    unreachable_broker_is_502,
    save_failure_triggers_orphan_mitigation,
);
