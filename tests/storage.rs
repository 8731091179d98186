//! The storage layer's contract, the same on both backends: a panicking database closure is an
//! internal error (500) that says where it was raised, and a failing write leaves nothing.

mod common;

use common::{Backend, TestApp};
use tether::error::{ApiError, ApiResult};

async fn a_panic_in_a_database_closure_is_the_same_500_on_both_backends(backend: Backend) {
    let app = TestApp::start(backend).await;
    let read: ApiResult<()> = app.state.db.read(|_| panic!("a read bug")).await;
    let write: ApiResult<()> = app.state.db.write(|_| panic!("a write bug")).await;
    for (result, what) in [(read, "a read bug"), (write, "a write bug")] {
        match result {
            Err(e @ ApiError::Internal(_)) => {
                let (status, _, name) = e.details();
                assert_eq!((status, name), (500, "UnknownError"));
                assert!(e.log_text().contains(what), "{}", e.log_text());
            }
            other => panic!("expected an internal error, got {other:?}"),
        }
    }
    // The pool and the writer go on serving.
    app.get("/v2/service_bindings").await.assert_status(200);
    app.post(
        "/v2/organizations",
        serde_json::json!({"name": "still-works"}),
    )
    .await
    .assert_status(201);
}

/// An internal error logs its cause and the place in the code it came from.
async fn internal_errors_say_where_they_were_raised(backend: Backend) {
    let app = TestApp::start(backend).await;
    let result: ApiResult<i64> = app
        .state
        .db
        .read(|conn| {
            use diesel::RunQueryDsl;
            Ok(
                diesel::sql_query("SELECT no_such_column FROM service_bindings").execute(conn)?
                    as i64,
            )
        })
        .await;
    let e = result.unwrap_err();
    assert!(matches!(e, ApiError::Internal(_)));
    let text = e.log_text();
    assert!(text.contains("tests/storage.rs"), "{text}");
    assert!(text.contains("no_such_column"), "{text}");
}

backend_tests!(
    a_panic_in_a_database_closure_is_the_same_500_on_both_backends,
    internal_errors_say_where_they_were_raised,
);
