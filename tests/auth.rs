//! Issue 3: token verification (built-in ES256, shared HS256, external RS256 by PEM and JWKS),
//! the forged-token set, the built-in UAA endpoints, and the role × endpoint matrix.

mod common;

use std::sync::{Arc, Mutex};

use common::{Backend, Options, TestApp, JWT_SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("key fixture")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(user: &str, scopes: &[&str]) -> Value {
    json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": user,
        "user_id": user,
        "user_name": user,
        "origin": "uaa",
        "client_id": "cf",
        "scope": scopes,
        "aud": ["cloud_controller", "cf"],
        "iat": now(),
        "exp": now() + 600,
        "iss": "https://uaa.example.com/oauth/token",
    })
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).expect("sign")
}

fn rs256(claims: &Value, kid: Option<&str>) -> String {
    sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(fixture("external-uaa-rs256.key").as_bytes()).unwrap(),
        kid,
        claims,
    )
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn status_with(t: &TestApp, token: &str) -> (u16, Value) {
    let r = t
        .request(Method::GET, "/v2/service_bindings", Some(token), None)
        .await;
    (r.status.as_u16(), r.body)
}

async fn external_rs256_pem_and_forged_tokens(backend: Backend) {
    let pem = fixture("external-uaa-rs256.pub");
    let t = TestApp::start_with(
        backend,
        Options {
            customize: Some(Box::new(move |c| {
                c.uaa_public_key_pems = vec![pem];
                c.uaa_issuer = Some("https://uaa.example.com/oauth/token".into());
            })),
            ..Default::default()
        },
    )
    .await;
    let good = claims("ext-admin", &["cloud_controller.admin"]);
    assert_eq!(
        status_with(&t, &rs256(&good, None)).await.0,
        200,
        "external RS256 token"
    );
    // Our own issuer's tokens and HS256 tokens with the shared key work too.
    assert_eq!(status_with(&t, &t.admin_token).await.0, 200);
    let hs = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(JWT_SECRET),
        None,
        &good,
    );
    assert_eq!(
        status_with(&t, &hs).await.0,
        200,
        "HS256 with the configured key"
    );

    let mut forged: Vec<(&str, String)> = Vec::new();
    // alg: none, unsigned.
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(good.to_string().as_bytes());
    forged.push(("alg none", format!("{header}.{payload}.")));
    forged.push(("alg none, no dot", format!("{header}.{payload}")));
    // Algorithm confusion: HS256 keyed with the RSA public key.
    let public_pem = fixture("external-uaa-rs256.pub");
    forged.push((
        "HS256 with the public key as secret",
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(public_pem.as_bytes()),
            None,
            &good,
        ),
    ));
    // Wrong keys.
    forged.push((
        "RS256 by another key",
        sign(
            Algorithm::RS256,
            &EncodingKey::from_rsa_pem(fixture("other-rs256.key").as_bytes()).unwrap(),
            None,
            &good,
        ),
    ));
    forged.push((
        "HS256 with another secret",
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"not-the-key"),
            None,
            &good,
        ),
    ));
    // Time.
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    forged.push(("expired", rs256(&expired, None)));
    let mut future = good.clone();
    future["nbf"] = json!(now() + 3600);
    forged.push(("not yet valid", rs256(&future, None)));
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    forged.push(("no exp", rs256(&no_exp, None)));
    // Not for CC, nobody, wrong issuer.
    let mut other_aud = good.clone();
    other_aud["aud"] = json!(["uaa"]);
    other_aud["scope"] = json!(["uaa.user"]);
    forged.push(("aud without cloud_controller", rs256(&other_aud, None)));
    let mut nobody = good.clone();
    for k in ["user_id", "user_name", "client_id", "sub"] {
        nobody.as_object_mut().unwrap().remove(k);
    }
    forged.push(("no user, no client", rs256(&nobody, None)));
    let mut bad_iss = good.clone();
    bad_iss["iss"] = json!("https://evil.example.com/oauth/token");
    forged.push(("wrong issuer", rs256(&bad_iss, None)));
    // Tampered payload.
    let valid = rs256(&good, None);
    let parts: Vec<&str> = valid.split('.').collect();
    let mut elevated = good.clone();
    elevated["user_id"] = json!("someone-else");
    forged.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            b64(elevated.to_string().as_bytes()),
            parts[2]
        ),
    ));
    // Malformed.
    forged.push(("two segments", "abc.def".into()));
    forged.push(("garbage", "!!!.@@@.###".into()));
    forged.push(("empty parts", "..".into()));
    forged.push(("huge", "a".repeat(20_000)));
    // A refresh token is not an access token.
    let refresh = t
        .state
        .issuer
        .refresh_token("u1", "u1", &["cloud_controller.admin".into()], "cf")
        .unwrap();
    forged.push(("refresh token as access token", refresh));

    for (what, token) in forged {
        let r = t
            .request(Method::GET, "/v2/service_bindings", Some(&token), None)
            .await;
        r.assert_error(401, "CF-InvalidAuthToken");
        assert_eq!(r.body["code"], 1000, "{what}");
    }
    // Scheme and header variants.
    for header in ["Basic abc", "bearer", "Bearer   ", "token xyz"] {
        let r = t
            .client
            .get(format!("{}/v2/service_bindings", t.base))
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        assert!(r.status() == 401, "{header}: {}", r.status());
    }
    let r = t
        .client
        .get(format!("{}/v2/service_bindings", t.base))
        .header("Authorization", format!("BEARER {}", t.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the scheme is case-insensitive");
}

/// A tiny external UAA publishing `/token_keys`, whose key set can be swapped (rotation).
struct Jwks {
    url: String,
    keys: Arc<Mutex<Value>>,
    hits: Arc<Mutex<u32>>,
    _thread: std::thread::JoinHandle<()>,
}

fn jwk_of(pem: &str, kid: &str) -> Value {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPublicKey::from_public_key_pem(pem).unwrap();
    json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
           "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
}

fn start_jwks(initial: Value) -> Jwks {
    let keys = Arc::new(Mutex::new(initial));
    let hits = Arc::new(Mutex::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let (k, h) = (keys.clone(), hits.clone());
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                let (k, h) = (k.clone(), h.clone());
                actix_web::App::new().route(
                    "/token_keys",
                    actix_web::web::get().to(move || {
                        let (k, h) = (k.clone(), h.clone());
                        async move {
                            *h.lock().unwrap() += 1;
                            let body = k.lock().unwrap().clone();
                            actix_web::HttpResponse::Ok().json(body)
                        }
                    }),
                )
            })
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            let _ = server.run().await;
        });
    });
    let addr = rx.recv().unwrap();
    Jwks {
        url: format!("http://{addr}/token_keys"),
        keys,
        hits,
        _thread: thread,
    }
}

async fn external_jwks_with_rotation(backend: Backend) {
    let pem = fixture("external-uaa-rs256.pub");
    let jwks = start_jwks(json!({"keys": [jwk_of(&pem, "key-1")]}));
    let url = jwks.url.clone();
    let t = TestApp::start_with(
        backend,
        Options {
            customize: Some(Box::new(move |c| {
                c.uaa_jwks_url = Some(url);
                c.uaa_jwks_min_refresh = std::time::Duration::from_millis(300);
            })),
            ..Default::default()
        },
    )
    .await;
    let good = claims("jwks-user", &["cloud_controller.admin"]);
    assert_eq!(status_with(&t, &rs256(&good, Some("key-1"))).await.0, 200);
    assert_eq!(status_with(&t, &rs256(&good, Some("key-1"))).await.0, 200);
    assert_eq!(*jwks.hits.lock().unwrap(), 1, "keys are cached");
    // Made-up key ids do not turn into a fetch each: at most one per min-refresh interval.
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let started = std::time::Instant::now();
    for i in 0..10 {
        let kid = format!("made-up-{i}");
        assert_eq!(status_with(&t, &rs256(&good, Some(&kid))).await.0, 401);
    }
    let allowed = 1 + started.elapsed().as_millis() as u32 / 300;
    let fetches = *jwks.hits.lock().unwrap() - 1;
    assert!(
        (1..=allowed.min(9)).contains(&fetches),
        "{fetches} fetches for 10 unknown kids in {:?}",
        started.elapsed()
    );
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;

    // The UAA rotates to a new key id: an unknown kid triggers a refetch.
    let other_pub = {
        use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(&fixture("other-rs256.key")).unwrap();
        rsa::RsaPublicKey::from(&private)
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
    };
    *jwks.keys.lock().unwrap() = json!({"keys": [jwk_of(&other_pub, "key-2")]});
    let rotated = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(fixture("other-rs256.key").as_bytes()).unwrap(),
        Some("key-2"),
        &good,
    );
    assert_eq!(
        status_with(&t, &rotated).await.0,
        200,
        "token of the rotated key"
    );
    assert_eq!(*jwks.hits.lock().unwrap(), 3);
    // Tokens of the retired key no longer verify.
    assert_eq!(status_with(&t, &rs256(&good, Some("key-1"))).await.0, 401);
}

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

async fn token_without_cc_scopes_cannot_read(backend: Backend) {
    let t = TestApp::start(backend).await;
    // A token for CC (aud) but with no cloud_controller scope at all.
    let token = {
        let c = json!({"user_id": "u", "user_name": "u", "sub": "u", "scope": ["openid"], "aud": ["cloud_controller"], "exp": now() + 60});
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(JWT_SECRET),
            None,
            &c,
        )
    };
    let r = t
        .as_user(&token, Method::GET, "/v2/service_bindings", None)
        .await;
    r.assert_error(403, "CF-InsufficientScope");
}

backend_tests!(
    external_rs256_pem_and_forged_tokens,
    external_jwks_with_rotation,
    builtin_uaa_grants,
    role_matrix,
    token_without_cc_scopes_cannot_read,
);
