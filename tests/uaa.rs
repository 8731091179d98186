//! The built-in UAA: its grants, tokens and endpoints as CF clients use them.

mod common;

use common::tokens::status_with;
use common::{Backend, TestApp};
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::Value;

async fn builtin_uaa_grants(backend: Backend) {
    let t = TestApp::start(backend).await;
    t.state
        .db
        .write(|conn| {
            tether::service::uaa::create_user(
                conn,
                "alice",
                "alice-password",
                &["cloud_controller.admin".into()],
            )?;
            tether::service::uaa::create_user(conn, "bob", "bob-password", &[])?;
            tether::service::uaa::create_client(
                conn,
                "ops",
                "ops-secret-123",
                &[
                    "cloud_controller.admin".into(),
                    "cloud_controller.read".into(),
                ],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let form = |pairs: &[(&str, &str)]| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish()
    };
    let post = |body: String, basic: Option<&'static str>| {
        let mut req = t
            .client
            .post(format!("{}/oauth/token", t.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(body);
        if let Some(b) = basic {
            req = req.header("Authorization", b);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };

    // Password grant, as the cf CLI sends it (Basic cf:, no scope).
    let (s, tokens) = post(
        form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
        ]),
        Some("Basic Y2Y6"),
    )
    .await;
    assert_eq!(s, 200, "{tokens}");
    for k in [
        "access_token",
        "token_type",
        "refresh_token",
        "expires_in",
        "scope",
        "jti",
    ] {
        assert!(!tokens[k].is_null(), "missing {k}: {tokens}");
    }
    assert_eq!(tokens["token_type"], "bearer");
    assert!(tokens["scope"]
        .as_str()
        .unwrap()
        .contains("cloud_controller.admin"));
    let access = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(status_with(&t, &access).await.0, 200);
    // The claims the cf CLI reads are there.
    let payload: Value = {
        use base64::Engine;
        let p = access.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    for k in [
        "user_id",
        "user_name",
        "origin",
        "client_id",
        "exp",
        "scope",
        "jti",
        "iss",
    ] {
        assert!(!payload[k].is_null(), "claim {k} missing: {payload}");
    }
    assert_eq!(payload["user_name"], "alice");

    // cf-client style: Basic cf: plus client_id in the body; empty scope means the defaults.
    let (s, bob) = post(
        form(&[
            ("grant_type", "password"),
            ("client_id", "cf"),
            ("username", "bob"),
            ("password", "bob-password"),
            ("scope", ""),
        ]),
        Some("Basic Y2Y6"),
    )
    .await;
    assert_eq!(s, 200, "{bob}");
    assert!(!bob["scope"].as_str().unwrap().contains("admin"));

    // Refresh, twice with the same refresh token (clients replay it).
    let refresh = tokens["refresh_token"].as_str().unwrap();
    for _ in 0..2 {
        let (s, again) = post(
            form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]),
            Some("Basic Y2Y6"),
        )
        .await;
        assert_eq!(s, 200, "{again}");
        assert_eq!(
            status_with(&t, again["access_token"].as_str().unwrap())
                .await
                .0,
            200
        );
    }
    // Narrowing on refresh works; widening does not.
    let (s, narrow) = post(
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("scope", "cloud_controller.read"),
        ]),
        Some("Basic Y2Y6"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(narrow["scope"], "cloud_controller.read");
    let bob_refresh = bob["refresh_token"].as_str().unwrap();
    let (s, e) = post(
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", bob_refresh),
            ("scope", "cloud_controller.admin"),
        ]),
        Some("Basic Y2Y6"),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["error"], "invalid_scope");

    // client_credentials: header only, body only (cf CLI), and both (Python client).
    let (s, cc) = post(
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ops"),
            ("client_secret", "ops-secret-123"),
        ]),
        None,
    )
    .await;
    assert_eq!(s, 200, "{cc}");
    assert!(cc.get("refresh_token").is_none());
    assert_eq!(
        status_with(&t, cc["access_token"].as_str().unwrap())
            .await
            .0,
        200
    );
    let (s, _) = post(
        form(&[("grant_type", "client_credentials")]),
        Some("Basic b3BzOm9wcy1zZWNyZXQtMTIz"),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = post(
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ops"),
            ("client_secret", "ops-secret-123"),
            ("scope", ""),
        ]),
        Some("Basic b3BzOm9wcy1zZWNyZXQtMTIz"),
    )
    .await;
    assert_eq!(s, 200);

    // Failures, in UAA's shape.
    let (s, e) = post(
        form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "wrong"),
        ]),
        Some("Basic Y2Y6"),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("unauthorized")));
    assert_eq!(e["error_description"], "Bad credentials");
    let (s, e) = post(
        form(&[
            ("grant_type", "password"),
            ("username", "nobody"),
            ("password", "x"),
        ]),
        Some("Basic Y2Y6"),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("unauthorized")));
    let (s, e) = post(
        form(&[("grant_type", "password"), ("username", "alice")]),
        Some("Basic Y2Y6"),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("unauthorized")));
    let (s, e) = post(
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "garbage"),
        ]),
        Some("Basic Y2Y6"),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_token")));
    let (s, e) = post(
        form(&[("grant_type", "refresh_token"), ("refresh_token", &access)]),
        Some("Basic Y2Y6"),
    )
    .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (401, Some("invalid_token")),
        "an access token is not a refresh token"
    );
    let (s, e) = post(form(&[("grant_type", "implicit")]), Some("Basic Y2Y6")).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (s, e) = post(form(&[]), None).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_request")));
    let (s, e) = post(
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ops"),
            ("client_secret", "wrong"),
        ]),
        None,
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    let (s, _) = post(
        form(&[("grant_type", "client_credentials"), ("client_id", "cf")]),
        None,
    )
    .await;
    assert_eq!(s, 401, "the public client has no client_credentials grant");
    let (s, _) = post(
        form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
            ("client_id", "ops"),
        ]),
        Some("Basic Y2Y6"),
    )
    .await;
    assert_eq!(s, 401, "header and body clients disagree");
    let (s, _) = post("%%%&&&===".into(), Some("Basic !!!")).await;
    assert_eq!(s, 401);
    let (s, _) = post(
        String::from_utf8_lossy(&[0xff, 0xfe, b'=', 0x00]).into_owned(),
        None,
    )
    .await;
    assert!((400..500).contains(&s));

    // Published key verifies our tokens.
    let keys: Value = t
        .client
        .get(format!("{}/token_keys", t.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &keys["keys"][0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["alg"], "ES256");
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap(),
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(&access, &key, &v)
        .expect("token verifies with the published key");
    let single: Value = t
        .client
        .get(format!("{}/token_key", t.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(single["kid"], jwk["kid"]);
    assert!(
        single.get("d").is_none(),
        "private part must never be published"
    );

    // Discovery.
    let info = t.request(Method::GET, "/v2/info", None, None).await;
    info.assert_status(200);
    assert_eq!(info.body["authorization_endpoint"], t.base);
    assert_eq!(info.body["token_endpoint"], t.base);
    assert_eq!(info.body["api_version"], "2.164.0");
    let root = t.request(Method::GET, "/", None, None).await;
    assert_eq!(
        root.body["links"]["cloud_controller_v2"]["href"],
        format!("{}/v2", t.base)
    );
    assert_eq!(root.body["links"]["login"]["href"], t.base);
    let login = t.request(Method::GET, "/login", None, None).await;
    assert_eq!(login.body["prompts"]["username"][0], "text");
}

backend_tests!(builtin_uaa_grants);
