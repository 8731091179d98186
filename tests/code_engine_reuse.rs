//! Issue 13, Code Engine seed 000 ("existing secret"): app B binds with the credential that was
//! generated for app A's binding, under the rules of a service key (same instance, each app
//! once, the broker's credential kept while a binding uses it).

mod common;

use common::{Backend, Response, TestApp};
use serde_json::json;

fn guid(r: &Response) -> String {
    r.body["metadata"]["guid"]
        .as_str()
        .expect("guid")
        .to_string()
}

async fn bind_with_another_bindings_credential(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let a = t.bind(&w.app, &w.instance, json!({"role": "Writer"})).await;
    a.assert_status(201);
    let app_b = t.create_app(&w.space, "app-b").await;
    let app_c = t.create_app(&w.space, "app-c").await;

    // Offered to B: A's credential (another app's binding).
    let offered = t.get(&format!("/v2/apps/{app_b}/unused_credentials")).await;
    let listed = offered.body["resources"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{}", offered.text);
    assert_eq!(listed[0]["type"], "service_binding");
    assert_eq!(listed[0]["guid"], guid(&a));
    assert_eq!(listed[0]["role"], "Writer");

    t.broker.clear_requests();
    let b = t
        .bind(
            &app_b,
            &w.instance,
            json!({"credential_binding_guid": guid(&a)}),
        )
        .await;
    b.assert_status(201);
    assert!(t.broker.requests().is_empty(), "no broker call");
    assert_eq!(
        b.body["entity"]["credentials"],
        a.body["entity"]["credentials"]
    );
    assert_eq!(b.body["entity"]["credential_binding_guid"], guid(&a));
    assert_eq!(b.body["entity"]["role"], "Writer");
    let env = t.get(&format!("/v2/apps/{app_b}/env")).await;
    assert_eq!(
        env.body["system_env_json"]["VCAP_SERVICES"]["demo-db"][0]["credentials"],
        a.body["entity"]["credentials"]
    );
    // B no longer is offered it; the same app cannot use it twice.
    let offered = t.get(&format!("/v2/apps/{app_b}/unused_credentials")).await;
    assert_eq!(offered.body["resources"], json!([]), "{}", offered.text);
    let again = t
        .bind(
            &app_b,
            &w.instance,
            json!({"credential_binding_guid": guid(&a)}),
        )
        .await;
    again.assert_cc_error(
        400,
        90003,
        "CF-ServiceBindingAppServiceTaken",
        "The app is already bound to the service.",
    );

    // C reuses B's: the credential is still A's broker binding.
    let c = t
        .bind(
            &app_c,
            &w.instance,
            json!({"credential_binding_guid": guid(&b)}),
        )
        .await;
    c.assert_status(201);
    assert_eq!(c.body["entity"]["credential_binding_guid"], guid(&a));

    // A unbinds: the broker's binding stays (B and C use it).
    t.broker.clear_requests();
    t.delete(&format!("/v2/service_bindings/{}", guid(&a)))
        .await
        .assert_status(204);
    t.delete(&format!("/v2/service_bindings/{}", guid(&b)))
        .await
        .assert_status(204);
    assert!(t
        .broker
        .requests_to("DELETE", "service_bindings")
        .is_empty());
    assert!(t.broker.has_binding(&guid(&a)));
    t.get(&format!("/v2/service_bindings/{}", guid(&c)))
        .await
        .assert_status(200);
    // The last user unbinds: now the broker's binding goes.
    t.delete(&format!("/v2/service_bindings/{}", guid(&c)))
        .await
        .assert_status(204);
    let deletes = t.broker.requests_to("DELETE", "service_bindings");
    assert_eq!(deletes.len(), 1);
    assert!(deletes[0].path.ends_with(&guid(&a)), "{}", deletes[0].path);
    assert!(!t.broker.has_binding(&guid(&a)));
}

async fn reuse_rules(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let a = t.bind(&w.app, &w.instance, json!({})).await;
    a.assert_status(201);
    let other = t.create_app(&w.space, "other").await;
    let db2 = t.create_instance(&w.space, &w.plan_small, "db2").await;
    let before = t.count("service_bindings").await;

    let r = t
        .bind(&other, &db2, json!({"credential_binding_guid": guid(&a)}))
        .await;
    r.assert_cc_error(
        400,
        90001,
        "CF-ServiceBindingInvalid",
        "The service binding is invalid: The binding's credential belongs to another service \
         instance; a credential can only be used with its own instance.",
    );
    let r = t
        .bind(
            &other,
            &w.instance,
            json!({"credential_binding_guid": "no-such-binding"}),
        )
        .await;
    r.assert_cc_error(
        404,
        90004,
        "CF-ServiceBindingNotFound",
        "The service binding could not be found: no-such-binding",
    );
    let r = t
        .bind(
            &other,
            &w.instance,
            json!({"credential_binding_guid": guid(&a), "role": "Reader"}),
        )
        .await;
    r.assert_cc_error(
        400,
        90001,
        "CF-ServiceBindingInvalid",
        "The service binding is invalid: A reused credential keeps its role; give a role only \
         for new credentials.",
    );
    let r = t
        .bind(
            &other,
            &w.instance,
            json!({"credential_binding_guid": guid(&a), "service_key_name": "k"}),
        )
        .await;
    r.assert_cc_error(
        400,
        1001,
        "CF-MessageParseError",
        "Request invalid due to parse error: Field: credential_binding_guid, Error: give a \
         service key or a binding's credential, not both",
    );
    assert_eq!(t.count("service_bindings").await, before);
    // The owner alone: its unbind goes to the broker as usual.
    t.broker.clear_requests();
    t.delete(&format!("/v2/service_bindings/{}", guid(&a)))
        .await
        .assert_status(204);
    assert_eq!(t.broker.requests_to("DELETE", &guid(&a)).len(), 1);
}

backend_tests!(bind_with_another_bindings_credential, reuse_rules);
