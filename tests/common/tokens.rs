//! Tokens as other issuers make them (an external UAA's RS256, a shared HS256 secret), for the
//! tests of token verification, the built-in UAA and roles.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};

use super::TestApp;

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("key fixture")
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn claims(user: &str, scopes: &[&str]) -> Value {
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

pub fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).expect("sign")
}

pub fn rs256(claims: &Value, kid: Option<&str>) -> String {
    sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(fixture("external-uaa-rs256.key").as_bytes()).unwrap(),
        kid,
        claims,
    )
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub async fn status_with(t: &TestApp, token: &str) -> (u16, Value) {
    let r = t
        .request(Method::GET, "/v2/service_bindings", Some(token), None)
        .await;
    (r.status.as_u16(), r.body)
}
