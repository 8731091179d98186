//! The Code Engine features: role and prefix, binding with an existing credential, unbind all,
//! the binding table, registry access secrets, and credentials encrypted at rest (with key
//! rotation).

mod common;

use common::{Backend, TestApp, BROKER_PASS, BROKER_USER};
use reqwest::Method;
use serde_json::{json, Value};
use tether::demo_broker::{DemoBroker, Reply};

fn guid(r: &common::Response) -> String {
    r.body["metadata"]["guid"]
        .as_str()
        .expect("guid")
        .to_string()
}

async fn role_and_prefix(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    t.broker.clear_requests();

    // A plain CF bind: the default role goes to the broker; the entity stays CC's.
    let plain = t.bind(&w.app, &w.instance, json!({})).await;
    plain.assert_status(201);
    for k in ["role", "prefix", "service_key_guid"] {
        assert!(
            plain.body["entity"].get(k).is_none(),
            "plain bind shows {k}"
        );
    }
    let put = &t.broker.requests_to("PUT", "service_bindings")[0];
    assert_eq!(put.body.as_ref().unwrap()["context"]["role"], "Manager");

    // Explicit role and prefix on a second instance.
    let db2 = t.create_instance(&w.space, &w.plan_small, "db2").await;
    let r = t
        .bind(
            &w.app,
            &db2,
            json!({"role": "Writer", "prefix": "MyPrefix"}),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.body["entity"]["role"], "Writer");
    assert_eq!(r.body["entity"]["prefix"], "MyPrefix");
    assert_eq!(r.body["entity"]["service_key_guid"], Value::Null);
    let put = t.broker.requests_to("PUT", &guid(&r)).pop().unwrap();
    assert_eq!(put.body.as_ref().unwrap()["context"]["role"], "Writer");
    let got = t.get(&format!("/v2/service_bindings/{}", guid(&r))).await;
    assert_eq!(got.body["entity"]["role"], "Writer");

    // Derived prefixes: the service label, then label + instance name for a second instance.
    let db3 = t.create_instance(&w.space, &w.plan_small, "db-three").await;
    let r3 = t.bind(&w.app, &db3, json!({"role": "Reader"})).await;
    r3.assert_status(201);
    assert_eq!(r3.body["entity"]["prefix"], "DEMO_DB_DB_THREE");
    let table = t
        .get(&format!("/v2/apps/{}/service_binding_table", w.app))
        .await;
    table.assert_status(200);
    let rows = table.body["resources"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let first = rows.iter().find(|r| r["guid"] == guid(&plain)).unwrap();
    assert_eq!(first["prefix"], "DEMO_DB");
    assert_eq!(first["role_or_credential"], "Manager");
    assert_eq!(first["service_type"], "demo-db");
    assert_eq!(first["service_instance"], "my-db");

    // Bad roles and prefixes: clear 4xx, nothing stored, no broker call.
    let db4 = t.create_instance(&w.space, &w.plan_small, "db4").await;
    let before = t.count("service_bindings").await;
    let puts = t.broker.requests_to("PUT", "service_bindings").len();
    let r = t.bind(&w.app, &db4, json!({"role": "Owner"})).await;
    r.assert_error(400, "CF-ServiceBindingInvalid");
    assert!(r.body["description"]
        .as_str()
        .unwrap()
        .contains("Valid roles: Reader, Writer, Manager"));
    for bad in ["1ABC", "A-B", "", "A B", &"X".repeat(64)] {
        t.bind(&w.app, &db4, json!({"prefix": bad}))
            .await
            .assert_error(400, "CF-ServiceBindingInvalid");
    }
    let r = t.bind(&w.app, &db4, json!({"prefix": "MyPrefix"})).await;
    r.assert_error(400, "CF-ServiceBindingInvalid");
    assert!(r.body["description"]
        .as_str()
        .unwrap()
        .contains("already used"));
    let r = t.bind(&w.app, &db4, json!({"prefix": "DEMO_DB"})).await;
    r.assert_error(400, "CF-ServiceBindingInvalid");
    t.bind(&w.app, &db4, json!({"role": 5}))
        .await
        .assert_error(400, "CF-MessageParseError");
    assert_eq!(t.count("service_bindings").await, before);
    assert_eq!(t.broker.requests_to("PUT", "service_bindings").len(), puts);

    // Roles apply to managed instances only.
    let upsi = t
        .post(
            "/v2/user_provided_service_instances",
            json!({"name": "ups", "space_guid": w.space}),
        )
        .await;
    t.bind(&w.app, &guid(&upsi), json!({"role": "Reader"}))
        .await
        .assert_error(400, "CF-ServiceBindingInvalid");
    let ups = t.bind(&w.app, &guid(&upsi), json!({"prefix": "UPS"})).await;
    ups.assert_status(201);
    assert_eq!(ups.body["entity"]["role"], Value::Null);

    // Environment: VCAP_SERVICES as CF, plus PREFIX_KEY variables and CE_SERVICES.
    let env = t.get(&format!("/v2/apps/{}/env", w.app)).await;
    env.assert_status(200);
    let ce = &env.body["code_engine_env_json"];
    assert_eq!(ce["DEMO_DB_PASSWORD"], "secret");
    assert_eq!(
        ce["MYPREFIX_USERNAME"],
        json!(null),
        "the prefix is used as given"
    );
    let user = env_user(&env, "MyPrefix");
    assert!(user.starts_with("user-"), "{user}");
    assert_eq!(ce["MyPrefix_USERNAME"], user);
    assert_eq!(ce["CE_SERVICES"]["demo-db"].as_array().unwrap().len(), 3);
    assert!(env.body["system_env_json"]["VCAP_SERVICES"]["demo-db"].is_array());
}

/// The `username` the broker issued for the binding whose prefix is `prefix`.
fn env_user(env: &common::Response, prefix: &str) -> String {
    env.body["code_engine_env_json"]["CE_SERVICES"]["demo-db"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["prefix"] == prefix)
        .map(|e| e["credentials"]["username"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn service_declared_roles(backend: Backend) {
    let t = TestApp::start(backend).await;
    let mut catalog = tether::demo_broker::demo_catalog();
    catalog["services"][0]["id"] = json!("roles-service");
    catalog["services"][0]["name"] = json!("roles-db");
    catalog["services"][0]["metadata"] = json!({"roles": ["Viewer", "Operator"]});
    catalog["services"][0]["plans"][0]["id"] = json!("roles-plan");
    catalog["services"][0]["plans"][1]["id"] = json!("roles-plan-async");
    catalog["services"].as_array_mut().unwrap().truncate(1);
    let broker = DemoBroker::start_with_catalog(0, BROKER_USER, BROKER_PASS, catalog).unwrap();
    let w = t.org_space_app().await;
    t.post(
        "/v2/service_brokers",
        json!({"name": "roles", "broker_url": broker.url, "auth_username": BROKER_USER, "auth_password": BROKER_PASS}),
    )
    .await
    .assert_status(201);
    let plan = t.plan_guid("roles-plan").await;
    let si = t.create_instance(&w.space, &plan, "r1").await;
    let r = t.bind(&w.app, &si, json!({"prefix": "R1"})).await;
    r.assert_status(201);
    assert_eq!(
        r.body["entity"]["role"], "Viewer",
        "no Manager: the first role the service offers"
    );
    let app2 = t.create_app(&w.space, "app2").await;
    t.bind(&app2, &si, json!({"role": "Manager"}))
        .await
        .assert_error(400, "CF-ServiceBindingInvalid");
    t.bind(&app2, &si, json!({"role": "Operator"}))
        .await
        .assert_status(201);
}

async fn existing_credentials(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let key = t
        .post(
            "/v2/service_keys",
            json!({"service_instance_guid": w.instance, "name": "my-cos-credential"}),
        )
        .await;
    key.assert_status(201);
    let key_guid = guid(&key);
    t.broker.clear_requests();

    let r = t
        .bind(&w.app, &w.instance, json!({"service_key_guid": key_guid}))
        .await;
    r.assert_status(201);
    assert_eq!(
        r.body["entity"]["credentials"],
        key.body["entity"]["credentials"]
    );
    assert_eq!(r.body["entity"]["service_key_guid"], key_guid);
    assert_eq!(
        r.body["entity"]["role"],
        Value::Null,
        "a credential brings its own role"
    );
    let seen: Vec<String> = t
        .broker
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(seen.is_empty(), "no new broker credential: {seen:?}");

    // The same credential for another app of the same instance, by name.
    let app2 = t.create_app(&w.space, "app2").await;
    let r2 = t
        .bind(
            &app2,
            &w.instance,
            json!({"service_key_name": "my-cos-credential"}),
        )
        .await;
    r2.assert_status(201);
    // But not twice for the same app.
    let again = t
        .bind(&w.app, &w.instance, json!({"service_key_guid": key_guid}))
        .await;
    again.assert_error(400, "CF-ServiceBindingAppServiceTaken");
    assert!(again.body["description"]
        .as_str()
        .unwrap()
        .contains("already used"));
    // A credential of another instance, or none at all.
    let other = t.create_instance(&w.space, &w.plan_small, "other").await;
    let app3 = t.create_app(&w.space, "app3").await;
    t.bind(&app3, &other, json!({"service_key_guid": key_guid}))
        .await
        .assert_error(400, "CF-ServiceBindingInvalid");
    t.bind(&app3, &w.instance, json!({"service_key_name": "nope"}))
        .await
        .assert_error(404, "CF-ServiceKeyNotFound");
    t.bind(
        &app3,
        &w.instance,
        json!({"service_key_name": "a", "service_key_guid": "b"}),
    )
    .await
    .assert_error(400, "CF-MessageParseError");
    // A credential in use cannot be deleted; unbinding it calls no broker.
    t.delete(&format!("/v2/service_keys/{key_guid}"))
        .await
        .assert_error(400, "CF-AssociationNotEmpty");
    t.broker.clear_requests();
    t.delete(&format!("/v2/service_bindings/{}", guid(&r)))
        .await
        .assert_status(204);
    t.delete(&format!("/v2/service_bindings/{}", guid(&r2)))
        .await
        .assert_status(204);
    assert!(t.broker.requests().is_empty());
    t.delete(&format!("/v2/service_keys/{key_guid}"))
        .await
        .assert_status(204);
}

async fn unbind_all_reports_per_binding(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let db2 = t.create_instance(&w.space, &w.plan_small, "db2").await;
    let upsi = t
        .post(
            "/v2/user_provided_service_instances",
            json!({"name": "ups", "space_guid": w.space}),
        )
        .await;
    let b1 = t.bind(&w.app, &w.instance, json!({})).await;
    let b2 = t.bind(&w.app, &db2, json!({})).await;
    let b3 = t.bind(&w.app, &guid(&upsi), json!({})).await;
    for b in [&b1, &b2, &b3] {
        b.assert_status(201);
    }
    // The broker refuses the second unbind.
    t.broker.script(
        "unbind",
        [
            Reply::Normal,
            Reply::Status(500, r#"{"description":"busy"}"#.into()),
        ],
    );
    let r = t
        .delete(&format!("/v2/apps/{}/service_bindings", w.app))
        .await;
    assert_eq!(r.status.as_u16(), 207, "{}", r.text);
    assert_eq!(r.body["total"], 3);
    assert_eq!(r.body["deleted"], 2);
    assert_eq!(r.body["failed"], 1);
    let failed: Vec<&Value> = r.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["guid"], guid(&b2));
    assert_eq!(
        failed[0]["error"]["error_code"],
        "CF-ServiceBrokerBadResponse"
    );
    // Nothing lost: the refused one stays, with its last operation failed.
    let left = t.get(&format!("/v2/apps/{}/service_bindings", w.app)).await;
    assert_eq!(left.body["total_results"], 1);
    assert_eq!(
        left.body["resources"][0]["entity"]["last_operation"]["state"],
        "failed"
    );
    assert_eq!(
        left.body["resources"][0]["entity"]["last_operation"]["type"],
        "delete"
    );
    // Again: all gone.
    let r = t
        .delete(&format!("/v2/apps/{}/service_bindings", w.app))
        .await;
    r.assert_status(200);
    assert_eq!(r.body["deleted"], 1);
    assert_eq!(t.count("service_bindings").await, 0);
    // Authorization and unknown apps.
    let stranger = t.token_for(
        "stranger",
        &["cloud_controller.read", "cloud_controller.write"],
    );
    t.as_user(
        &stranger,
        Method::DELETE,
        &format!("/v2/apps/{}/service_bindings", w.app),
        None,
    )
    .await
    .assert_error(403, "CF-NotAuthorized");
    t.delete("/v2/apps/00000000-0000-0000-0000-000000000000/service_bindings")
        .await
        .assert_error(404, "CF-AppNotFound");
}

async fn registry_secrets(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.org_space_app().await;
    let path = format!("/v2/spaces/{}/registry_secrets", w.space);
    let r = t
        .post(&path, json!({"name": "myregistry", "server": "us.icr.io", "username": "iamapikey", "password": "API_KEY_123"}))
        .await;
    r.assert_status(201);
    assert!(
        !r.text.contains("API_KEY_123"),
        "password echoed: {}",
        r.text
    );
    assert!(r.body["entity"].get("password").is_none());
    assert_eq!(r.body["entity"]["server"], "us.icr.io");
    let g = guid(&r);

    // Name rules (seed 002).
    let long_ok = format!("a{}", "b".repeat(252));
    for ok in ["a", "a.b-c", "0registry9", long_ok.as_str()] {
        t.post(
            &path,
            json!({"name": ok, "server": "s", "username": "u", "password": "p"}),
        )
        .await
        .assert_status(201);
    }
    let too_long = "a".repeat(254);
    for bad in [
        "",
        "MyRegistry",
        "-abc",
        "abc-",
        ".abc",
        "abc.",
        "a_b",
        "a b",
        "ünï",
        too_long.as_str(),
    ] {
        let r = t
            .post(
                &path,
                json!({"name": bad, "server": "s", "username": "u", "password": "p"}),
            )
            .await;
        r.assert_error(422, "CF-UnprocessableEntity");
    }
    // Unique in the space, but the same name may live in another space.
    let dup = t
        .post(
            &path,
            json!({"name": "myregistry", "server": "s", "username": "u", "password": "p"}),
        )
        .await;
    dup.assert_error(422, "CF-UnprocessableEntity");
    assert!(dup.body["description"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    let other = t
        .post(
            "/v2/spaces",
            json!({"name": "other", "organization_guid": w.org}),
        )
        .await;
    t.post(
        &format!("/v2/spaces/{}/registry_secrets", guid(&other)),
        json!({"name": "myregistry", "server": "s", "username": "u", "password": "p"}),
    )
    .await
    .assert_status(201);
    // Required fields.
    for missing in ["server", "username", "password"] {
        let mut body = json!({"name": "x1", "server": "s", "username": "u", "password": "p"});
        body.as_object_mut().unwrap().remove(missing);
        t.post(&path, body)
            .await
            .assert_error(422, "CF-UnprocessableEntity");
    }
    t.post(
        "/v2/spaces/00000000-0000-0000-0000-000000000000/registry_secrets",
        json!({"name": "x", "server": "s", "username": "u", "password": "p"}),
    )
    .await
    .assert_error(404, "CF-SpaceNotFound");

    let list = t.get(&format!("{path}?q=name:myregistry")).await;
    assert_eq!(list.body["total_results"], 1);
    assert!(!list.text.contains("API_KEY_123"));
    let all = t.get(&path).await;
    assert_eq!(all.body["total_results"], 5);
    let got = t.get(&format!("/v2/registry_secrets/{g}")).await;
    got.assert_status(200);
    assert!(!got.text.contains("API_KEY_123"));
    // Update the password (still write-only), not the name.
    let u = t
        .put(
            &format!("/v2/registry_secrets/{g}"),
            json!({"password": "NEW_KEY"}),
        )
        .await;
    u.assert_status(201);
    assert!(!u.text.contains("NEW_KEY"));
    t.put(
        &format!("/v2/registry_secrets/{g}"),
        json!({"name": "renamed"}),
    )
    .await
    .assert_error(422, "CF-UnprocessableEntity");
    // The password is sealed at rest.
    let stored = t
        .state
        .db
        .read(move |conn| {
            use diesel::prelude::*;
            use tether::db::schema::registry_secrets::dsl as r;
            Ok(r::registry_secrets
                .filter(r::guid.eq(&g))
                .select(r::password)
                .first::<String>(conn)?)
        })
        .await
        .unwrap();
    assert!(
        stored.starts_with("enc:v1:") && !stored.contains("NEW_KEY"),
        "{stored}"
    );
    let g = guid(&r);
    // Readers of the space see it; strangers do not.
    let stranger = t.token_for(
        "stranger",
        &["cloud_controller.read", "cloud_controller.write"],
    );
    t.as_user(
        &stranger,
        Method::GET,
        &format!("/v2/registry_secrets/{g}"),
        None,
    )
    .await
    .assert_error(403, "CF-NotAuthorized");
    t.as_user(
        &stranger,
        Method::DELETE,
        &format!("/v2/registry_secrets/{g}"),
        None,
    )
    .await
    .assert_error(403, "CF-NotAuthorized");
    t.delete(&format!("/v2/registry_secrets/{g}"))
        .await
        .assert_status(204);
    t.get(&format!("/v2/registry_secrets/{g}"))
        .await
        .assert_error(404, "CF-ResourceNotFound");
    // A space with secrets is not empty.
    t.delete(&format!("/v2/spaces/{}", guid(&other)))
        .await
        .assert_error(400, "CF-AssociationNotEmpty");
}

/// Every credential column holds only sealed values, and the API still shows them in clear.
async fn credentials_sealed_at_rest(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let b = t.bind(&w.app, &w.instance, json!({})).await;
    b.assert_status(201);
    let upsi = t
        .post("/v2/user_provided_service_instances", json!({"name": "ups", "space_guid": w.space, "credentials": {"token": "upsi-secret-value"}}))
        .await;
    let app2 = t.create_app(&w.space, "app2").await;
    t.bind(&app2, &guid(&upsi), json!({}))
        .await
        .assert_status(201);
    t.post(
        "/v2/service_keys",
        json!({"service_instance_guid": w.instance, "name": "k"}),
    )
    .await
    .assert_status(201);
    t.post(
        &format!("/v2/spaces/{}/registry_secrets", w.space),
        json!({"name": "reg", "server": "us.icr.io", "username": "iamapikey", "password": "registry-secret-value"}),
    )
    .await
    .assert_status(201);
    for (table, column) in tether::service::rotation::SEALED_COLUMNS {
        let values = raw_values(&t, table, column).await;
        assert!(!values.is_empty(), "{table} has rows");
        for v in values {
            assert!(v.starts_with("enc:v1:"), "{table}.{column} not sealed: {v}");
            for secret in [
                "secret",
                "upsi-secret-value",
                "registry-secret-value",
                common::BROKER_PASS,
            ] {
                assert!(!v.contains(secret), "{table}.{column} leaks {secret}");
            }
        }
    }
    // Clear through the API, and brokers still authenticate.
    let got = t.get(&format!("/v2/service_bindings/{}", guid(&b))).await;
    assert_eq!(got.body["entity"]["credentials"]["password"], "secret");
    let u = t
        .get(&format!(
            "/v2/user_provided_service_instances/{}",
            guid(&upsi)
        ))
        .await;
    assert_eq!(
        u.body["entity"]["credentials"]["token"],
        "upsi-secret-value"
    );
    let env = t.get(&format!("/v2/apps/{app2}/env")).await;
    assert_eq!(
        env.body["system_env_json"]["VCAP_SERVICES"]["user-provided"][0]["credentials"]["token"],
        "upsi-secret-value"
    );
}

async fn raw_values(t: &TestApp, table: &'static str, column: &'static str) -> Vec<String> {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        v: Option<String>,
    }
    t.state
        .db
        .read(move |conn| {
            let rows: Vec<V> =
                diesel::sql_query(format!("SELECT {column} AS v FROM {table}")).load(conn)?;
            Ok(rows.into_iter().filter_map(|r| r.v).collect())
        })
        .await
        .unwrap()
}

/// `tether rotate-key` (a real child process) re-seals everything under a new key while the
/// server runs; the server picks the new key up from the secrets file by itself.
async fn key_rotation(backend: Backend) {
    let (secrets, t) = TestApp::start_with_secrets_file(backend).await;
    let secrets_path = &secrets.path;
    let w = t.world().await;
    let b = t.bind(&w.app, &w.instance, json!({})).await;
    b.assert_status(201);
    let before = raw_values(&t, "service_bindings", "credentials").await;
    let old_label = before[0].split(':').nth(2).unwrap().to_string();
    // SQLite: the same file; PostgreSQL: the same schema.
    let db_url = t.db_url();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["rotate-key", "--prune"])
        .env("TETHER_DATABASE_URL", &db_url)
        .env("TETHER_SECRETS_FILE", secrets_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rotate-key failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("re-sealed 1 values in service_bindings"),
        "{stdout}"
    );
    let after = raw_values(&t, "service_bindings", "credentials").await;
    let new_label = after[0].split(':').nth(2).unwrap().to_string();
    assert_ne!(old_label, new_label);
    let file = tether::config::Secrets::load_or_create(secrets_path).unwrap();
    let ring = file.encryption_keys();
    assert_eq!(ring.current, new_label);
    assert!(
        !ring.keys.contains_key(&old_label),
        "the unused old key was pruned"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(secrets_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "secrets file mode");
    }
    // The running server reads values sealed with a key it did not start with.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let got = t.get(&format!("/v2/service_bindings/{}", guid(&b))).await;
    got.assert_status(200);
    assert_eq!(got.body["entity"]["credentials"]["password"], "secret");
    // And new values get the new key once it reloaded.
    let app2 = t.create_app(&w.space, "app2").await;
    t.bind(&app2, &w.instance, json!({}))
        .await
        .assert_status(201);
    let labels: Vec<String> = raw_values(&t, "service_bindings", "credentials")
        .await
        .iter()
        .map(|v| v.split(':').nth(2).unwrap().to_string())
        .collect();
    assert!(labels.iter().all(|l| l == &new_label), "{labels:?}");
}

/// `tether bindings --app` and `tether registry create`, as a user runs them.
async fn cli_commands(backend: Backend) {
    let (secrets, t) = TestApp::start_with_secrets_file(backend).await;
    let secrets_path = &secrets.path;
    let w = t.world().await;
    t.bind(
        &w.app,
        &w.instance,
        json!({"role": "Writer", "name": "cos"}),
    )
    .await
    .assert_status(201);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(args)
            .env("TETHER_DATABASE_URL", t.db_url())
            .env("TETHER_SECRETS_FILE", secrets_path)
            .env("TETHER_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run(&["bindings", "--app", "my-app"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Role / Credential") && text.contains("Environment Variable Prefix"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("cos"))
        .unwrap_or_else(|| panic!("{text}"));
    for cell in ["my-db", "demo-db", "Writer", "DEMO_DB"] {
        assert!(row.contains(cell), "{cell} missing in {row}");
    }
    let out = run(&[
        "registry",
        "create",
        "--name",
        "myregistry",
        "--server",
        "us.icr.io",
        "--username",
        "iamapikey",
        "--password",
        "CLI_SECRET_1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("CLI_SECRET_1"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("CLI_SECRET_1"));
    let list = t
        .get(&format!("/v2/spaces/{}/registry_secrets", w.space))
        .await;
    assert_eq!(list.body["resources"][0]["entity"]["name"], "myregistry");
    let out = run(&[
        "registry",
        "create",
        "--name",
        "Bad_Name",
        "--server",
        "s",
        "--username",
        "u",
        "--password",
        "p",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid"));
}

backend_tests!(
    role_and_prefix,
    service_declared_roles,
    existing_credentials,
    unbind_all_reports_per_binding,
    registry_secrets,
    credentials_sealed_at_rest,
    key_rotation,
    cli_commands,
);
