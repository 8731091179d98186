//! The role × endpoint matrix: what each org and space role may see and do.

mod common;

use common::{Backend, TestApp};
use reqwest::Method;
use serde_json::json;

/// Every role against every binding endpoint, as CC decides.
async fn role_matrix(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let other_space = t
        .post(
            "/v2/spaces",
            json!({"name": "elsewhere", "organization_guid": w.org}),
        )
        .await
        .body["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let binding = t.bind(&w.app, &w.instance, json!({"name": "b"})).await;
    binding.assert_status(201);
    let binding = binding.body["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();

    const RW: &[&str] = &["cloud_controller.read", "cloud_controller.write"];
    let rw = RW;
    for (user, org_role, space_role) in [
        ("developer", "users", Some(("developers", w.space.clone()))),
        ("manager", "users", Some(("managers", w.space.clone()))),
        ("auditor", "users", Some(("auditors", w.space.clone()))),
        (
            "developer-readonly-token",
            "users",
            Some(("developers", w.space.clone())),
        ),
        ("org-manager", "managers", None),
        ("org-auditor", "auditors", None),
        ("org-user", "users", None),
        (
            "other-developer",
            "users",
            Some(("developers", other_space.clone())),
        ),
    ] {
        let mut paths = vec![format!("/v2/organizations/{}/{org_role}/{user}", w.org)];
        if let Some((role, space)) = space_role {
            paths.push(format!("/v2/spaces/{space}/{role}/{user}"));
        }
        for path in paths {
            let r = t.put(&path, json!({})).await;
            assert_eq!(r.status.as_u16(), 201, "{path}: {}", r.text);
        }
    }

    struct Expect {
        who: &'static str,
        scopes: &'static [&'static str],
        sees: bool,
        secrets: bool,
        writes: bool,
    }
    let admin_scopes: &'static [&'static str] = &["cloud_controller.admin"];
    let matrix = [
        Expect {
            who: "admin",
            scopes: admin_scopes,
            sees: true,
            secrets: true,
            writes: true,
        },
        Expect {
            who: "read-only-admin",
            scopes: &["cloud_controller.admin_read_only"],
            sees: true,
            secrets: true,
            writes: false,
        },
        Expect {
            who: "global-auditor",
            scopes: &["cloud_controller.global_auditor"],
            sees: true,
            secrets: false,
            writes: false,
        },
        Expect {
            who: "developer",
            scopes: RW,
            sees: true,
            secrets: true,
            writes: true,
        },
        Expect {
            who: "developer-readonly-token",
            scopes: &["cloud_controller.read"],
            sees: true,
            secrets: true,
            writes: false,
        },
        Expect {
            who: "manager",
            scopes: RW,
            sees: true,
            secrets: false,
            writes: false,
        },
        Expect {
            who: "auditor",
            scopes: RW,
            sees: true,
            secrets: false,
            writes: false,
        },
        Expect {
            who: "org-manager",
            scopes: RW,
            sees: true,
            secrets: false,
            writes: false,
        },
        Expect {
            who: "org-auditor",
            scopes: RW,
            sees: false,
            secrets: false,
            writes: false,
        },
        Expect {
            who: "org-user",
            scopes: RW,
            sees: false,
            secrets: false,
            writes: false,
        },
        Expect {
            who: "other-developer",
            scopes: RW,
            sees: false,
            secrets: false,
            writes: false,
        },
        Expect {
            who: "stranger",
            scopes: RW,
            sees: false,
            secrets: false,
            writes: false,
        },
    ];
    for e in matrix {
        let token = t.token_for(e.who, e.scopes);
        let who = e.who;
        // list
        let list = t
            .as_user(&token, Method::GET, "/v2/service_bindings", None)
            .await;
        list.assert_status(200);
        assert_eq!(
            list.body["total_results"],
            if e.sees { 1 } else { 0 },
            "{who} list"
        );
        // nested list under the app
        let nested = t
            .as_user(
                &token,
                Method::GET,
                &format!("/v2/apps/{}/service_bindings", w.app),
                None,
            )
            .await;
        assert_eq!(
            nested.status.as_u16(),
            if e.sees { 200 } else { 403 },
            "{who} nested: {}",
            nested.text
        );
        // get, and what of the credentials it sees
        let got = t
            .as_user(
                &token,
                Method::GET,
                &format!("/v2/service_bindings/{binding}"),
                None,
            )
            .await;
        if e.sees {
            got.assert_status(200);
            let creds = &got.body["entity"]["credentials"];
            if e.secrets {
                assert!(
                    creds["password"].is_string(),
                    "{who} should see credentials: {creds}"
                );
            } else {
                assert_eq!(
                    creds,
                    &json!({"redacted_message": "[PRIVATE DATA HIDDEN]"}),
                    "{who} creds"
                );
            }
            let listed = &list.body["resources"][0]["entity"]["credentials"];
            assert_eq!(listed, creds, "{who}: list and get redact alike");
        } else {
            got.assert_error(403, "CF-NotAuthorized");
        }
        // parameters
        let params = t
            .as_user(
                &token,
                Method::GET,
                &format!("/v2/service_bindings/{binding}/parameters"),
                None,
            )
            .await;
        assert_eq!(
            params.status.as_u16(),
            if e.sees { 200 } else { 403 },
            "{who} parameters"
        );
        // create (a fresh app each time) and delete
        let app = t
            .create_app(&w.space, &format!("app-{}", common::short()))
            .await;
        let created = t
            .as_user(
                &token,
                Method::POST,
                "/v2/service_bindings",
                Some(json!({"app_guid": app, "service_instance_guid": w.instance})),
            )
            .await;
        if e.writes {
            created.assert_status(201);
            let g = created.body["metadata"]["guid"].as_str().unwrap();
            t.as_user(
                &token,
                Method::DELETE,
                &format!("/v2/service_bindings/{g}"),
                None,
            )
            .await
            .assert_status(204);
        } else {
            created.assert_error(403, "CF-NotAuthorized");
            let deleted = t
                .as_user(
                    &token,
                    Method::DELETE,
                    &format!("/v2/service_bindings/{binding}"),
                    None,
                )
                .await;
            deleted.assert_error(403, "CF-NotAuthorized");
        }
    }
    // The original binding survived every refused delete.
    t.get(&format!("/v2/service_bindings/{binding}"))
        .await
        .assert_status(200);
    assert_eq!(t.count("service_bindings").await, 1);

    // Only admins and managers may assign roles.
    let dev = t.token_for("developer", rw);
    t.as_user(
        &dev,
        Method::PUT,
        &format!("/v2/spaces/{}/developers/stranger", w.space),
        Some(json!({})),
    )
    .await
    .assert_error(403, "CF-NotAuthorized");
    // A space role needs org membership first.
    t.put(
        &format!("/v2/spaces/{}/developers/not-in-org", w.space),
        json!({}),
    )
    .await
    .assert_error(400, "CF-InvalidRelation");
    // Leaving the org drops space roles.
    t.delete(&format!("/v2/organizations/{}/users/developer", w.org))
        .await
        .assert_status(204);
    let list = t
        .as_user(&dev, Method::GET, "/v2/service_bindings", None)
        .await;
    assert_eq!(list.body["total_results"], 0);
}

backend_tests!(role_matrix);
