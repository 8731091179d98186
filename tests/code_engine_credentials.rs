//! Issue 13, "The Code Engine seeds, where tether still differs": generated default binding
//! names, service keys with a role, the credentials an app does not use yet, and
//! `tether registry list|get|update|delete`.

mod common;

use common::{Backend, Response, TestApp};
use serde_json::{json, Value};

fn guid(r: &Response) -> String {
    r.body["metadata"]["guid"]
        .as_str()
        .expect("guid")
        .to_string()
}

/// `<app>-app-ce-service-binding-<5 of [a-z0-9]>`, the seed's pattern.
#[track_caller]
fn assert_default_name(name: &Value, app: &str) {
    let name = name.as_str().unwrap_or_else(|| panic!("no name: {name}"));
    let suffix = name
        .strip_prefix(&format!("{app}-app-ce-service-binding-"))
        .unwrap_or_else(|| panic!("{name}"));
    assert_eq!(suffix.len(), 5, "{name}");
    assert!(
        suffix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{name}"
    );
}

async fn table_row(t: &TestApp, app: &str, binding: &str) -> Value {
    let table = t
        .get(&format!("/v2/apps/{app}/service_binding_table"))
        .await;
    table.assert_status(200);
    table.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["guid"] == binding)
        .cloned()
        .unwrap_or_else(|| panic!("{binding} not in {}", table.text))
}

async fn default_binding_names(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    // A CF client's bind without a name: CC's envelope (`name: null`) and VCAP_SERVICES.
    let plain = t.bind(&w.app, &w.instance, json!({})).await;
    plain.assert_status(201);
    assert_eq!(plain.body["entity"]["name"], Value::Null, "{}", plain.text);
    let env = t.get(&format!("/v2/apps/{}/env", w.app)).await;
    let entry = &env.body["system_env_json"]["VCAP_SERVICES"]["demo-db"][0];
    assert_eq!(entry["name"], "my-db");
    assert_eq!(entry["binding_name"], Value::Null);
    // Code Engine's views show the generated name, and it finds the binding.
    let row = table_row(&t, &w.app, &guid(&plain)).await;
    assert_default_name(&row["name"], "my-app");
    let by_name = t
        .get(&format!(
            "/v2/apps/{}/service_bindings?q=name:{}",
            w.app,
            row["name"].as_str().unwrap()
        ))
        .await;
    assert_eq!(by_name.body["total_results"], 1, "{}", by_name.text);
    assert_eq!(
        by_name.body["resources"][0]["metadata"]["guid"],
        guid(&plain)
    );

    // A Code Engine client (it used a Code Engine field) sees the name in the envelope.
    let db2 = t.create_instance(&w.space, &w.plan_small, "db2").await;
    let ce = t.bind(&w.app, &db2, json!({"role": "Writer"})).await;
    ce.assert_status(201);
    assert_default_name(&ce.body["entity"]["name"], "my-app");
    assert_ne!(ce.body["entity"]["name"], row["name"], "unique per app");

    // The client's name wins; another app gets its own app name in the pattern.
    let db3 = t.create_instance(&w.space, &w.plan_small, "db3").await;
    let named = t
        .bind(&w.app, &db3, json!({"name": "mine", "role": "Reader"}))
        .await;
    named.assert_status(201);
    assert_eq!(named.body["entity"]["name"], "mine");
    let other = t.create_app(&w.space, "Other App").await;
    let b = t
        .bind(&other, &w.instance, json!({"prefix": "OTHER"}))
        .await;
    b.assert_status(201);
    assert_default_name(&b.body["entity"]["name"], "other-app");

    // List, then unbind by the listed name (the seed's workflow).
    let name = row["name"].as_str().unwrap();
    let found = t
        .get(&format!(
            "/v2/service_bindings?q=name:{name}&q=app_guid:{}",
            w.app
        ))
        .await;
    let listed = found.body["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap();
    t.delete(&format!("/v2/service_bindings/{listed}"))
        .await
        .assert_status(204);
    let unbound = guid(&plain);
    t.get(&format!("/v2/service_bindings/{unbound}"))
        .await
        .assert_cc_error(
            404,
            90004,
            "CF-ServiceBindingNotFound",
            &format!("The service binding could not be found: {unbound}"),
        );
}

async fn service_keys_carry_a_role(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    t.broker.clear_requests();
    let keys = t.count("service_keys").await;
    let r = t
        .post(
            "/v2/service_keys",
            json!({"service_instance_guid": w.instance, "name": "k0", "role": "Bogus"}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    assert_eq!(r.body["code"], 360002);
    assert_eq!(r.body["error_code"], "CF-ServiceKeyInvalid");
    assert_eq!(
        r.body["description"],
        "The service key is invalid: The role 'Bogus' is not offered by service demo-db. Valid roles: Reader, Writer, Manager."
    );
    assert!(t.broker.requests_to("PUT", "service_bindings").is_empty());
    assert_eq!(t.count("service_keys").await, keys);

    let k = t
        .post(
            "/v2/service_keys",
            json!({"service_instance_guid": w.instance, "name": "my-cos-credential", "role": "Writer"}),
        )
        .await;
    k.assert_status(201);
    assert_eq!(k.body["entity"]["role"], "Writer");
    let put = t.broker.requests_to("PUT", &guid(&k)).pop().unwrap();
    assert_eq!(put.body.as_ref().unwrap()["context"]["role"], "Writer");
    let got = t.get(&format!("/v2/service_keys/{}", guid(&k))).await;
    assert_eq!(got.body["entity"]["role"], "Writer");
    // Without a role: the default a binding gets.
    let d = t
        .post(
            "/v2/service_keys",
            json!({"service_instance_guid": w.instance, "name": "k-default"}),
        )
        .await;
    d.assert_status(201);
    assert_eq!(d.body["entity"]["role"], "Manager");

    // A binding that reuses the key shows the key's role in the app's binding table.
    let b = t
        .bind(&w.app, &w.instance, json!({"service_key_guid": guid(&k)}))
        .await;
    b.assert_status(201);
    let row = table_row(&t, &w.app, &guid(&b)).await;
    assert_eq!(row["role_or_credential"], "my-cos-credential");
    assert_eq!(row["role"], "Writer");
}

async fn credentials_an_app_does_not_use(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let mut keys = Vec::new();
    for name in ["k1", "k2"] {
        let k = t
            .post(
                "/v2/service_keys",
                json!({"service_instance_guid": w.instance, "name": name, "role": "Reader"}),
            )
            .await;
        k.assert_status(201);
        keys.push(guid(&k));
    }
    let path = format!("/v2/apps/{}/unused_credentials", w.app);
    let r = t.get(&path).await;
    r.assert_status(200);
    assert_eq!(r.body["resources"].as_array().unwrap().len(), 2);
    t.bind(&w.app, &w.instance, json!({"service_key_guid": keys[0]}))
        .await
        .assert_status(201);
    let r = t.get(&path).await;
    let listed = r.body["resources"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{}", r.text);
    assert_eq!(
        listed[0],
        json!({"guid": keys[1], "name": "k2", "type": "service_key",
               "service_instance_guid": w.instance, "role": "Reader"})
    );
    // Another app uses neither; one instance's list; credentials never shown.
    let other = t.create_app(&w.space, "other").await;
    let r = t
        .get(&format!(
            "/v2/apps/{other}/unused_credentials?service_instance_guid={}",
            w.instance
        ))
        .await;
    assert_eq!(r.body["resources"].as_array().unwrap().len(), 2);
    assert!(!r.text.contains("credentials\""), "{}", r.text);
    let db2 = t.create_instance(&w.space, &w.plan_small, "db2").await;
    let r = t.get(&format!("{path}?service_instance_guid={db2}")).await;
    assert_eq!(r.body["resources"], json!([]));
    t.get("/v2/apps/no-such-app/unused_credentials")
        .await
        .assert_cc_error(
            404,
            100004,
            "CF-AppNotFound",
            "The app could not be found: no-such-app",
        );
    t.get(&format!("{path}?service_instance_guid=no-such-instance"))
        .await
        .assert_cc_error(
            404,
            60004,
            "CF-ServiceInstanceNotFound",
            "The service instance could not be found: no-such-instance",
        );
}

/// `tether registry` as the seed's user runs it.
async fn registry_commands(backend: Backend) {
    let (secrets, t) = TestApp::start_with_secrets_file(backend).await;
    let secrets_path = &secrets.path;
    let w = t.org_space_app().await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("registry")
            .args(args)
            .env("TETHER_DATABASE_URL", t.db_url())
            .env("TETHER_SECRETS_FILE", secrets_path)
            .env("TETHER_LOG", "warn")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(!stdout.contains("SECRET") && !stderr.contains("SECRET"));
        let stderr = format!("{}: {stderr} (stdout: {stdout})", out.status);
        (out.status.success(), stdout, stderr)
    };
    let create = [
        "create",
        "--name",
        "myregistry",
        "--server",
        "us.icr.io",
        "--username",
        "iamapikey",
        "--password",
        "SECRET_1",
    ];
    let (ok, out, err) = run(&create);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "Creating image registry access secret 'myregistry'...\nOK\n"
    );
    let (ok, out, err) = run(&["list"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("Listing image registry access secrets...\nOK\n"),
        "{out}"
    );
    let row = out.lines().find(|l| l.starts_with("myregistry")).unwrap();
    assert!(
        row.contains("us.icr.io") && row.contains("iamapikey"),
        "{row}"
    );
    let (ok, out, err) = run(&["get", "--name", "myregistry"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("Getting image registry access secret 'myregistry'...\nOK\n"));
    assert!(out.contains("Server:    us.icr.io"), "{out}");
    let before = t
        .get(&format!("/v2/spaces/{}/registry_secrets", w.space))
        .await;
    let (ok, out, err) = run(&[
        "update",
        "--name",
        "myregistry",
        "--username",
        "robot",
        "--password",
        "SECRET_2",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "Updating image registry access secret 'myregistry'...\nOK\n"
    );
    let after = t
        .get(&format!("/v2/spaces/{}/registry_secrets", w.space))
        .await;
    let entity = &after.body["resources"][0]["entity"];
    assert_eq!(entity["username"], "robot");
    assert_eq!(entity["server"], "us.icr.io");
    assert!(!after.text.contains("SECRET") && !before.text.contains("SECRET"));
    let (ok, _, err) = run(&["get", "--name", "nothing"]);
    assert!(!ok);
    assert!(
        err.contains("Image registry access secret 'nothing' does not exist."),
        "{err}"
    );
    let (ok, out, err) = run(&["delete", "--name", "myregistry"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "Deleting image registry access secret 'myregistry'...\nOK\n"
    );
    assert_eq!(t.count("registry_secrets").await, 0);
}

backend_tests!(
    default_binding_names,
    service_keys_carry_a_role,
    credentials_an_app_does_not_use,
    registry_commands,
);
