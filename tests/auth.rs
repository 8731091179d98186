//! Token verification (built-in ES256, shared HS256, external RS256 by PEM and JWKS) and the
//! forged-token set.

mod common;

use std::sync::{Arc, Mutex};

use common::tokens::{b64, claims, fixture, now, rs256, sign, status_with};
use common::{Backend, Options, TestApp, JWT_SECRET};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{json, Value};

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
    token_without_cc_scopes_cannot_read,
);
