//! What the cf CLI and the client libraries read besides bindings —
//! VCAP_SERVICES, service keys, inline relations, space summary, feature flags, v3 for login.

mod common;

use common::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn vcap_services_matches_cc(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let managed = t
        .bind(&w.app, &w.instance, json!({"name": "prod-db"}))
        .await;
    managed.assert_status(201);
    let upsi = t
        .post(
            "/v2/user_provided_service_instances",
            json!({"name": "logs", "space_guid": w.space, "credentials": {"url": "https://x"}, "tags": ["t1"], "syslog_drain_url": "syslog://d"}),
        )
        .await;
    let upsi = upsi.body["metadata"]["guid"].as_str().unwrap().to_string();
    t.bind(&w.app, &upsi, json!({})).await.assert_status(201);

    let env = t.get(&format!("/v2/apps/{}/env", w.app)).await;
    env.assert_status(200);
    for k in [
        "staging_env_json",
        "running_env_json",
        "environment_json",
        "system_env_json",
        "application_env_json",
    ] {
        assert!(env.body.get(k).is_some(), "missing {k}: {}", env.text);
    }
    let vcap = &env.body["system_env_json"]["VCAP_SERVICES"];
    let db = &vcap["demo-db"][0];
    let keys: Vec<&str> = db.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec![
            "label",
            "provider",
            "plan",
            "name",
            "tags",
            "instance_guid",
            "instance_name",
            "binding_guid",
            "binding_name",
            "credentials",
            "syslog_drain_url",
            "volume_mounts"
        ]
    );
    assert_eq!(db["label"], "demo-db");
    assert_eq!(db["plan"], "small");
    assert_eq!(db["name"], "prod-db");
    assert_eq!(db["instance_name"], "my-db");
    assert_eq!(db["binding_name"], "prod-db");
    assert_eq!(db["tags"], json!(["demo", "database"]));
    assert_eq!(db["credentials"]["password"], "secret");
    let ups = &vcap["user-provided"][0];
    assert_eq!(ups["label"], "user-provided");
    assert!(ups.get("plan").is_none());
    assert_eq!(ups["name"], "logs", "no binding name: the instance name");
    assert_eq!(ups["binding_name"], Value::Null);
    assert_eq!(ups["credentials"], json!({"url": "https://x"}));
    assert_eq!(ups["syslog_drain_url"], "syslog://d");
    assert_eq!(ups["tags"], json!(["t1"]));
    let vcap_app = &env.body["application_env_json"]["VCAP_APPLICATION"];
    assert_eq!(vcap_app["application_name"], "my-app");
    assert_eq!(vcap_app["space_id"], w.space);

    // Only developers (and admins) read an app's environment.
    let auditor = t.token_for("auditor-u", &["cloud_controller.read"]);
    t.put(
        &format!("/v2/organizations/{}/users/auditor-u", w.org),
        json!({}),
    )
    .await;
    t.put(
        &format!("/v2/spaces/{}/auditors/auditor-u", w.space),
        json!({}),
    )
    .await;
    t.as_user(
        &auditor,
        Method::GET,
        &format!("/v2/apps/{}/env", w.app),
        None,
    )
    .await
    .assert_error(403, "CF-NotAuthorized");
    t.get("/v2/apps/00000000-0000-0000-0000-000000000000/env")
        .await
        .assert_error(404, "CF-AppNotFound");
}

async fn service_keys_lifecycle(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    t.broker.clear_requests();
    let k = t
        .post(
            "/v2/service_keys",
            json!({"service_instance_guid": w.instance, "name": "k1", "parameters": {"p": 1}}),
        )
        .await;
    k.assert_status(201);
    let guid = k.body["metadata"]["guid"].as_str().unwrap().to_string();
    assert_eq!(k.body["entity"]["name"], "k1");
    assert_eq!(k.body["entity"]["credentials"]["password"], "secret");
    let put = &t
        .broker
        .requests_to("PUT", &format!("/service_bindings/{guid}"))[0];
    let body = put.body.as_ref().unwrap();
    assert!(body.get("app_guid").is_none(), "a key binds no app: {body}");
    assert_eq!(body["parameters"], json!({"p": 1}));
    t.post(
        "/v2/service_keys",
        json!({"service_instance_guid": w.instance, "name": "k1"}),
    )
    .await
    .assert_error(400, "CF-ServiceKeyNameTaken");
    let list = t
        .get(&format!(
            "/v2/service_instances/{}/service_keys",
            w.instance
        ))
        .await;
    assert_eq!(list.body["total_results"], 1);
    let list = t.get("/v2/service_keys?q=name:k1").await;
    assert_eq!(list.body["total_results"], 1);
    t.get(&format!("/v2/service_keys/{guid}"))
        .await
        .assert_status(200);
    // Keys of user-provided instances are not a thing.
    let upsi = t
        .post(
            "/v2/user_provided_service_instances",
            json!({"name": "u", "space_guid": w.space}),
        )
        .await;
    let upsi = upsi.body["metadata"]["guid"].as_str().unwrap().to_string();
    t.post(
        "/v2/service_keys",
        json!({"service_instance_guid": upsi, "name": "k"}),
    )
    .await
    .assert_error(400, "CF-ServiceKeyNotSupported");
    // An instance with keys cannot be deleted.
    t.delete(&format!("/v2/service_instances/{}", w.instance))
        .await
        .assert_error(400, "CF-AssociationNotEmpty");
    t.delete(&format!("/v2/service_keys/{guid}"))
        .await
        .assert_status(204);
    assert!(!t
        .broker
        .requests_to("DELETE", &format!("/service_bindings/{guid}"))
        .is_empty());
    t.get(&format!("/v2/service_keys/{guid}"))
        .await
        .assert_error(404, "CF-ServiceKeyNotFound");
    t.delete(&format!("/v2/service_instances/{}", w.instance))
        .await
        .assert_status(204);
}

async fn inline_relations(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let b = t.bind(&w.app, &w.instance, json!({})).await;
    let guid = b.body["metadata"]["guid"].as_str().unwrap().to_string();

    let plain = t.get(&format!("/v2/service_bindings/{guid}")).await;
    assert!(plain.body["entity"].get("app").is_none());
    let one = t
        .get(&format!(
            "/v2/service_bindings/{guid}?inline-relations-depth=1"
        ))
        .await;
    one.assert_status(200);
    assert_eq!(one.body["entity"]["app"]["metadata"]["guid"], w.app);
    assert_eq!(
        one.body["entity"]["service_instance"]["metadata"]["guid"],
        w.instance
    );
    assert!(one.body["entity"]["app"]["entity"].get("space").is_none());
    let two = t.get("/v2/service_bindings?inline-relations-depth=2").await;
    let r = &two.body["resources"][0]["entity"];
    assert_eq!(r["app"]["entity"]["space"]["metadata"]["guid"], w.space);
    assert_eq!(
        r["service_instance"]["entity"]["service_plan"]["metadata"]["guid"],
        w.plan_small
    );
    assert!(two.body["next_url"].is_null());

    // The cf CLI's `cf env` lookup.
    let apps = t
        .get(&format!(
            "/v2/spaces/{}/apps?q=name:my-app&inline-relations-depth=1",
            w.space
        ))
        .await;
    apps.assert_status(200);
    assert_eq!(
        apps.body["resources"][0]["entity"]["space"]["metadata"]["guid"],
        w.space
    );
    assert_eq!(
        apps.body["resources"][0]["entity"]["service_bindings"][0]["metadata"]["guid"],
        guid
    );
    let si = t
        .get(&format!(
            "/v2/service_instances/{}?inline-relations-depth=1",
            w.instance
        ))
        .await;
    assert_eq!(
        si.body["entity"]["service_bindings"][0]["metadata"]["guid"],
        guid
    );
    t.get(&format!(
        "/v2/service_bindings/{guid}?inline-relations-depth=3"
    ))
    .await
    .assert_error(400, "CF-BadQueryParameter");
}

async fn cli_lookups(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    // cf target
    let orgs = t
        .get("/v2/organizations?order-by=name&q=name%3Amissing")
        .await;
    assert_eq!(orgs.body["total_results"], 0);
    let org_name =
        t.get(&format!("/v2/organizations/{}", w.org)).await.body["entity"]["name"].clone();
    let orgs = t
        .get(&format!(
            "/v2/organizations?order-by=name&q=name%3A{}",
            org_name.as_str().unwrap()
        ))
        .await;
    assert_eq!(orgs.body["resources"][0]["metadata"]["guid"], w.org);
    let spaces = t
        .get(&format!(
            "/v2/spaces?order-by=name&q=name%3Adev&q=organization_guid%3A{}",
            w.org
        ))
        .await;
    assert_eq!(spaces.body["resources"][0]["metadata"]["guid"], w.space);
    // cf bind-service lookups
    let apps = t
        .get(&format!(
            "/v2/apps?q=name%3Amy-app&q=space_guid%3A{}",
            w.space
        ))
        .await;
    assert_eq!(apps.body["resources"][0]["metadata"]["guid"], w.app);
    let upsi = t
        .post(
            "/v2/user_provided_service_instances",
            json!({"name": "ups", "space_guid": w.space}),
        )
        .await;
    upsi.assert_status(201);
    let sis = t
        .get(&format!(
            "/v2/spaces/{}/service_instances?q=name%3Amy-db&return_user_provided_service_instances=true",
            w.space
        ))
        .await;
    assert_eq!(sis.body["resources"][0]["metadata"]["guid"], w.instance);
    assert_eq!(
        sis.body["resources"][0]["entity"]["type"],
        "managed_service_instance"
    );
    let both = t
        .get(&format!("/v2/spaces/{}/service_instances?return_user_provided_service_instances=true&results-per-page=1", w.space))
        .await;
    assert_eq!(both.body["total_results"], 2);
    assert!(both.body["next_url"]
        .as_str()
        .unwrap()
        .contains("return_user_provided_service_instances=true"));
    let managed_only = t
        .get(&format!("/v2/spaces/{}/service_instances", w.space))
        .await;
    assert_eq!(managed_only.body["total_results"], 1);
    // cf services / cf service
    t.bind(&w.app, &w.instance, json!({}))
        .await
        .assert_status(201);
    let summary = t.get(&format!("/v2/spaces/{}/summary", w.space)).await;
    summary.assert_status(200);
    assert_eq!(summary.body["apps"][0]["service_names"], json!(["my-db"]));
    let svc = summary.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "my-db")
        .unwrap()
        .clone();
    assert_eq!(svc["bound_app_count"], 1);
    assert_eq!(svc["service_plan"]["service"]["label"], "demo-db");
    let ups = summary.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ups")
        .unwrap()
        .clone();
    assert!(ups.get("service_plan").is_none());
    let flags = t.get("/v2/config/feature_flags").await;
    flags.assert_status(200);
    assert!(flags
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "service_instance_sharing"));
    let shared = t
        .get(&format!("/v2/service_instances/{}/shared_to", w.instance))
        .await;
    shared.assert_status(200);
    assert_eq!(shared.body["total_results"], 0);
    let services = t.get("/v2/services").await;
    let demo = services.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["entity"]["label"] == "demo-db")
        .unwrap()
        .clone();
    assert!(
        demo["entity"]["extra"].is_string(),
        "extra is a JSON string, as the cf CLI decodes it"
    );
    assert!(!demo["entity"]["service_broker_name"]
        .as_str()
        .unwrap()
        .is_empty());
    // cf login's v3 calls
    let v3 = t.request(Method::GET, "/v3", None, None).await;
    assert!(v3.body["links"]["organizations"]["href"]
        .as_str()
        .unwrap()
        .ends_with("/v3/organizations"));
    let orgs3 = t
        .get(&format!(
            "/v3/organizations?names={}",
            org_name.as_str().unwrap()
        ))
        .await;
    assert_eq!(orgs3.body["resources"][0]["guid"], w.org);
    assert!(orgs3.body["pagination"]["next"].is_null());
    let spaces3 = t
        .get(&format!(
            "/v3/spaces?names=dev&organization_guids={}",
            w.org
        ))
        .await;
    assert_eq!(spaces3.body["resources"][0]["guid"], w.space);
    let root = t.request(Method::GET, "/", None, None).await;
    assert!(root.body["links"]["cloud_controller_v3"]["href"].is_string());
    assert!(root.body["links"]["uaa"]["href"].is_string());
}

backend_tests!(
    vcap_services_matches_cc,
    service_keys_lifecycle,
    inline_relations,
    cli_lookups
);
