//! Issue 13, item 3: `cf set-org-role`, `cf set-space-role` and `cf unset-space-role` read a
//! feature flag, look the user up in the (built-in) UAA and call CC's role endpoints, by user
//! name or by user id; and what tether does not serve still answers with a CF error body.

mod common;

use common::{Backend, TestApp, World};
use reqwest::Method;
use serde_json::json;

/// Users of the built-in issuer: an admin and a developer-to-be; returns the admin's token.
async fn uaa_users(t: &TestApp) -> String {
    t.state
        .db
        .write(|conn| {
            tether::service::uaa::create_user(
                conn,
                "root",
                "root-password",
                &["cloud_controller.admin".into()],
            )?;
            tether::service::uaa::create_user(conn, "dev@example.com", "dev-password", &[])?;
            Ok(())
        })
        .await
        .unwrap();
    let login = t.login("root", "root-password").await;
    login.assert_status(200);
    login.body["access_token"].as_str().unwrap().to_string()
}

async fn feature_flags_as_cc(backend: Backend) {
    let t = TestApp::start(backend).await;
    for name in ["set_roles_by_username", "unset_roles_by_username"] {
        let r = t.get(&format!("/v2/config/feature_flags/{name}")).await;
        r.assert_status(200);
        assert_eq!(
            r.body,
            json!({"name": name, "enabled": true, "error_message": null,
                   "url": format!("/v2/config/feature_flags/{name}")})
        );
    }
    let r = t.get("/v2/config/feature_flags/user_org_creation").await;
    assert_eq!(r.body["enabled"], false);
    let r = t.get("/v2/config/feature_flags/no_such_flag").await;
    r.assert_error(404, "CF-FeatureFlagNotFound");
    assert_eq!(r.body["code"], 330000);
    assert_eq!(
        r.body["description"],
        "The feature flag could not be found: no_such_flag"
    );
    let anon = t
        .request(
            Method::GET,
            "/v2/config/feature_flags/set_roles_by_username",
            None,
            None,
        )
        .await;
    anon.assert_cc_error(401, 10002, "CF-NotAuthenticated", "Authentication error");
    // The list has CC's flags, each in the same shape.
    let all = t.get("/v2/config/feature_flags").await;
    let names: Vec<&str> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"hide_marketplace_from_unauthenticated_users"));
    assert!(names.contains(&"route_sharing"));
}

async fn uaa_user_lookup(backend: Backend) {
    let t = TestApp::start(backend).await;
    let root = uaa_users(&t).await;
    // Exactly what the cf CLI sends (operator `Eq`, `+` for spaces).
    let path = "/Users?attributes=id,userName&filter=userName+Eq+%22DEV%40example.com%22";
    let r = t.as_user(&root, Method::GET, path, None).await;
    r.assert_status(200);
    assert_eq!(r.body["totalResults"], 1, "{}", r.text);
    let user = &r.body["resources"][0];
    assert_eq!(user["userName"], "dev@example.com");
    assert_eq!(
        user.as_object().unwrap().len(),
        2,
        "only id and userName: {user}"
    );
    assert!(user["id"].as_str().is_some_and(|id| !id.is_empty()));
    let none = t
        .as_user(
            &root,
            Method::GET,
            "/Users?filter=userName+eq+%22nobody%22",
            None,
        )
        .await;
    assert_eq!(none.body["resources"], json!([]));
    // UAA's errors: no token, a token without scim.read, a filter it does not parse.
    let r = t.request(Method::GET, path, None, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "unauthorized");
    let dev = t.login("dev@example.com", "dev-password").await;
    let dev = dev.body["access_token"].as_str().unwrap().to_string();
    let r = t.as_user(&dev, Method::GET, path, None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["error"], "insufficient_scope");
    let r = t
        .as_user(
            &root,
            Method::GET,
            "/Users?filter=userName+co+%22d%22",
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_filter");
}

/// The CLI's org and space lookups: it lowercases the typed names.
async fn find_org_and_space(t: &TestApp, org_name: &str, space_name: &str) -> (String, String) {
    let q = format!(
        "/v2/organizations?q=name%3A{}&inline-relations-depth=1",
        org_name.to_lowercase()
    );
    let orgs = t.get(&q).await;
    orgs.assert_status(200);
    assert_eq!(orgs.body["total_results"], 1, "{q}: {}", orgs.text);
    let org = orgs.body["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let q = format!(
        "/v2/organizations/{org}/spaces?q=name%3A{}&inline-relations-depth=1",
        space_name.to_lowercase()
    );
    let spaces = t.get(&q).await;
    assert_eq!(spaces.body["total_results"], 1, "{q}: {}", spaces.text);
    let space = spaces.body["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    (org, space)
}

async fn mixed_case_world(t: &TestApp) -> World {
    let mut w = t.org_space_app().await;
    let org = t.post("/v2/organizations", json!({"name": "MyOrg"})).await;
    w.org = org.body["metadata"]["guid"].as_str().unwrap().to_string();
    let space = t
        .post(
            "/v2/spaces",
            json!({"name": "Dev", "organization_guid": w.org}),
        )
        .await;
    w.space = space.body["metadata"]["guid"].as_str().unwrap().to_string();
    w
}

fn holders(r: &common::Response) -> Vec<String> {
    r.body["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.text))
        .iter()
        .map(|u| u["metadata"]["guid"].as_str().unwrap().to_string())
        .collect()
}

/// §7, flag enabled: `cf set-org-role`, `cf set-space-role`, `cf unset-space-role` by name.
async fn replay_roles_by_username(backend: Backend) {
    let t = TestApp::start(backend).await;
    let root = uaa_users(&t).await;
    let w = mixed_case_world(&t).await;
    let flag = t
        .as_user(
            &root,
            Method::GET,
            "/v2/config/feature_flags/set_roles_by_username",
            None,
        )
        .await;
    assert_eq!(flag.body["enabled"], true);
    let (org, space) = find_org_and_space(&t, "MyOrg", "Dev").await;
    assert_eq!(
        (org.as_str(), space.as_str()),
        (w.org.as_str(), w.space.as_str())
    );
    let body = br#"{"username": "dev@example.com"}"#;
    let t = &t;
    let put =
        |path: String| async move { t.raw(Method::PUT, &path, "application/json", body).await };
    // set-org-role dev@example.com MyOrg OrgAuditor: the role, then membership.
    put(format!("/v2/organizations/{org}/auditors"))
        .await
        .assert_status(201);
    put(format!("/v2/organizations/{org}/users"))
        .await
        .assert_status(201);
    // set-space-role dev@example.com MyOrg Dev SpaceDeveloper: membership, then the role.
    put(format!("/v2/organizations/{org}/users"))
        .await
        .assert_status(201);
    let r = put(format!("/v2/spaces/{space}/developers")).await;
    r.assert_status(201);
    assert_eq!(r.body["metadata"]["guid"], space.as_str());
    let devs = t.get(&format!("/v2/spaces/{space}/developers")).await;
    let dev_id = holders(&devs).pop().expect("a developer");
    let users = t
        .as_user(
            &root,
            Method::GET,
            "/Users?filter=userName+eq+%22dev%40example.com%22",
            None,
        )
        .await;
    assert_eq!(users.body["resources"][0]["id"], dev_id.as_str());
    // unset-space-role dev@example.com MyOrg Dev SpaceDeveloper: DELETE with the body.
    let r = t
        .raw(
            Method::DELETE,
            &format!("/v2/spaces/{space}/developers"),
            "application/json",
            body,
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["metadata"]["guid"], space.as_str());
    assert!(holders(&t.get(&format!("/v2/spaces/{space}/developers")).await).is_empty());
    // An org role removed by name answers 204.
    let r = t
        .raw(
            Method::DELETE,
            &format!("/v2/organizations/{org}/auditors"),
            "application/json",
            body,
        )
        .await;
    r.assert_status(204);
    // A name the UAA does not know.
    let r = t
        .raw(
            Method::PUT,
            &format!("/v2/spaces/{space}/developers"),
            "application/json",
            br#"{"username": "nobody"}"#,
        )
        .await;
    r.assert_error(404, "CF-UserNotFound");
    assert_eq!(r.body["code"], 20003);
    assert_eq!(r.body["description"], "The user could not be found: nobody");
}

/// §7, flag off or unread: the UAA lookup, then the by-id routes.
async fn replay_roles_by_id(backend: Backend) {
    let t = TestApp::start(backend).await;
    let root = uaa_users(&t).await;
    let w = mixed_case_world(&t).await;
    let users = t
        .as_user(
            &root,
            Method::GET,
            "/Users?attributes=id,userName&filter=userName+Eq+%22dev%40example.com%22",
            None,
        )
        .await;
    let uid = users.body["resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (org, space) = find_org_and_space(&t, "MyOrg", "Dev").await;
    // The space role before org membership: CC's InvalidRelation, naming the user (the CLI
    // prints "cannot set space role because user is not part of the org").
    let r = t
        .raw(
            Method::PUT,
            &format!("/v2/spaces/{space}/managers/{uid}"),
            "application/json",
            b"",
        )
        .await;
    r.assert_error(400, "CF-InvalidRelation");
    assert_eq!(r.body["code"], 1002);
    assert_eq!(r.body["description"], uid.as_str());
    for path in [
        format!("/v2/organizations/{org}/users/{uid}"),
        format!("/v2/spaces/{space}/managers/{uid}"),
    ] {
        t.raw(Method::PUT, &path, "application/json", b"")
            .await
            .assert_status(201);
    }
    assert_eq!(
        holders(&t.get(&format!("/v2/spaces/{space}/managers")).await),
        std::slice::from_ref(&uid)
    );
    let r = t
        .raw(
            Method::DELETE,
            &format!("/v2/spaces/{space}/managers/{uid}?async=true"),
            "application/json",
            b"",
        )
        .await;
    r.assert_status(204);
    assert!(holders(&t.get(&format!("/v2/spaces/{space}/managers")).await).is_empty());
    assert_eq!(w.org, org);
}

/// No app runtime: what `cf push`, `cf app`, `cf logs` and routes ask for is refused with a CF
/// error body (never an empty one).
async fn out_of_scope_answers_cf_errors(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    for (method, path) in [
        (Method::GET, "/v2/routes".to_string()),
        (Method::GET, format!("/v2/apps/{}/routes", w.app)),
        (Method::GET, format!("/v2/apps/{}/stats", w.app)),
        (Method::PUT, format!("/v2/apps/{}/bits", w.app)),
        (Method::GET, "/v2/shared_domains".to_string()),
        (Method::GET, "/v2/stacks".to_string()),
        (Method::POST, "/v2/routes".to_string()),
    ] {
        let r = t
            .request(method.clone(), &path, Some(&t.admin_token), None)
            .await;
        assert!(
            !r.text.is_empty(),
            "{method} {path}: empty body ({})",
            r.status
        );
        assert!(r.status.is_client_error(), "{method} {path}: {}", r.status);
        assert!(
            r.body["error_code"]
                .as_str()
                .is_some_and(|c| c.starts_with("CF-")),
            "{method} {path}: {}",
            r.text
        );
        assert!(
            r.body["code"].is_u64() && r.body["description"].is_string(),
            "{}",
            r.text
        );
    }
}

backend_tests!(
    feature_flags_as_cc,
    uaa_user_lookup,
    replay_roles_by_username,
    replay_roles_by_id,
    out_of_scope_answers_cf_errors
);
