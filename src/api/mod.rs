//! HTTP layer: routing, request parsing, response envelopes. Handlers parse and authorize, then
//! call `crate::service`.

pub mod access_log;
#[cfg(test)]
pub(crate) mod body_properties;
pub mod cors;
pub mod dashboard;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod middleware;
pub mod query;
pub mod render;
pub mod uaa;
pub mod v2;
pub mod v3;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;
use query::{total_pages, ListParams};
use render::PageDoc;

pub use crate::error::JSON_CONTENT_TYPE;

/// Registers every route. Used by `main` and by the tests' `init_service`, so both exercise the
/// same application.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    crate::api::health::configure(cfg);
    crate::api::metrics::configure(cfg);
    crate::api::uaa::configure(cfg);
    crate::api::v2::configure(cfg);
    crate::api::v3::configure(cfg);
    // After the API's routes: the dashboard's static paths then cost API requests nothing.
    crate::api::dashboard::configure(cfg);
}

/// Body size accepted on JSON endpoints.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Builds the actix `App` around shared state.
#[macro_export]
macro_rules! build_app {
    ($state:expr) => {{
        actix_web::App::new()
            .app_data($state.clone())
            .app_data(actix_web::web::PayloadConfig::new(
                $crate::api::MAX_BODY_BYTES,
            ))
            .app_data(
                actix_web::web::QueryConfig::default().error_handler(|_, _| {
                    $crate::error::ApiError::BadQueryParameter("query string".into()).into()
                }),
            )
            .wrap(actix_web::middleware::from_fn(
                $crate::api::middleware::standard_headers,
            ))
            // Outermost, so that every response gets CORS headers, also those the inner
            // middleware makes up itself.
            .wrap(actix_web::middleware::from_fn($crate::api::cors::cors))
            // Outside everything else: it logs the response the client gets.
            .wrap(actix_web::middleware::from_fn(
                $crate::api::access_log::access_log,
            ))
            .configure($crate::api::configure)
            .default_service(actix_web::web::to($crate::api::v2::not_found))
    }};
}

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    json_sized(status, body, 1024)
}

/// [`json`] with a guess of the body's size, so that a large document (a page of resources)
/// is written into one buffer instead of one that doubles and is copied a dozen times.
pub fn json_sized<T: Serialize>(status: StatusCode, body: &T, size_hint: usize) -> HttpResponse {
    let mut bytes = Vec::with_capacity(size_hint);
    match serde_json::to_writer(&mut bytes, body) {
        Ok(()) => HttpResponse::build(status)
            .content_type(JSON_CONTENT_TYPE)
            .body(bytes),
        Err(e) => ApiError::internal(format!("serialization: {e}")).error_response_owned(),
    }
}

impl ApiError {
    fn error_response_owned(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

/// Renders a page of a list in CC's envelope.
pub fn page<T: Serialize>(
    params: &ListParams,
    path: &str,
    total: i64,
    resources: Vec<T>,
    preserve: &[&str],
) -> HttpResponse {
    let pages = total_pages(total, params.per_page);
    let prev_url = (params.page > 1).then(|| params.page_url(path, params.page - 1, preserve));
    let next_url = (params.page < pages).then(|| params.page_url(path, params.page + 1, preserve));
    // A rendered binding is ~1.2 KB; most resources are smaller.
    let size_hint = 512 + resources.len() * 1536;
    json_sized(
        StatusCode::OK,
        &PageDoc {
            total_results: total,
            total_pages: pages,
            prev_url,
            next_url,
            resources,
        },
        size_hint,
    )
}

/// Parses a request body as a JSON object whatever the Content-Type (cf-client sends JSON text
/// as `application/x-www-form-urlencoded`; CC reads it as JSON too). An empty body is `{}`.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::MessageParseError(
            "the request body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::MessageParseError(format!("invalid JSON: {e}"))),
    }
}

/// Typed access to a request's JSON fields with CC-style messages.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn type_error(key: &str, what: &str) -> ApiError {
        ApiError::MessageParseError(format!("Field: {key}, Error: Value must be {what}"))
    }

    fn no_nul(key: &str, s: &'a str) -> Result<&'a str, ApiError> {
        if s.contains('\0') {
            return Err(ApiError::MessageParseError(format!(
                "Field: {key}, Error: must not contain NUL characters"
            )));
        }
        Ok(s)
    }

    pub fn required_str(&self, key: &str) -> Result<&'a str, ApiError> {
        match self.0.get(key) {
            Some(Value::String(s)) => Self::no_nul(key, s),
            None | Some(Value::Null) => Err(ApiError::MessageParseError(format!(
                "Field: {key}, Error: Missing field {key}"
            ))),
            Some(_) => Err(Self::type_error(key, "a string")),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Self::no_nul(key, s).map(Some),
            Some(_) => Err(Self::type_error(key, "a string")),
        }
    }

    pub fn opt_object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(Self::type_error(key, "a hash")),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Self::type_error(key, "a boolean")),
        }
    }

    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| Self::type_error(key, "an integer")),
            Some(_) => Err(Self::type_error(key, "an integer")),
        }
    }

    pub fn opt_string_list(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| Self::type_error(key, "an array of strings"))
                        .and_then(|s| Self::no_nul(key, s))
                        .map(str::to_string)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(Self::type_error(key, "an array of strings")),
        }
    }
}

/// `true` for CC's truthy flag values (`accepts_incomplete=true`, `async=true`).
pub fn flag(req: &HttpRequest, name: &str) -> bool {
    flag_in(req.query_string(), name)
}

fn flag_in(query: &str, name: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == name && v.eq_ignore_ascii_case("true"))
}

/// CC's `convert_flag_to_bool`: exactly `true` or `false`, or absent (false). Anything else
/// (`yes`, `TRUE`, an empty value) is `400 CF-InvalidRequest`, answered before anything is done.
pub fn strict_flag(req: &HttpRequest, name: &str) -> Result<bool, ApiError> {
    strict_flag_in(req.query_string(), name)
}

fn strict_flag_in(query: &str, name: &str) -> Result<bool, ApiError> {
    // Rails keeps the last of repeated keys.
    let value = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == name)
        .last()
        .map(|(_, v)| v);
    match value.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::InvalidRequest),
    }
}

/// The externally visible base URL: configured, else scheme and Host of the request.
pub fn base_url(req: &HttpRequest, configured: Option<&str>) -> String {
    if let Some(url) = configured {
        return url.to_string();
    }
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// Adds a `X-Cf-Warnings` header (URL-encoded, comma-separated), as CC does.
pub fn with_warnings(mut resp: HttpResponse, warnings: &[String]) -> HttpResponse {
    if warnings.is_empty() {
        return resp;
    }
    let value = warnings
        .iter()
        .map(|w| utf8_percent(w))
        .collect::<Vec<_>>()
        .join(",");
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-cf-warnings"), v);
    }
    resp
}

/// Escapes all but RFC 3986 unreserved characters (the cf CLI query-unescapes warnings).
const WARNING_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn utf8_percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, WARNING_SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A query string of `pairs`, form-encoded as clients write them.
    fn query_of(pairs: &[(String, String)]) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    fn other_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec(("\\PC{0,12}", "\\PC{0,12}"), 0..4).prop_map(|pairs| {
            pairs
                .into_iter()
                .filter(|(k, _)| k != "accepts_incomplete")
                .collect()
        })
    }

    proptest! {
        #![proptest_config(body_properties::config())]

        /// Any query string, bytes included: the flag is read or refused with
        /// `CF-InvalidRequest`, never a panic.
        #[test]
        fn any_query_string_gives_a_flag_or_invalid_request(raw in prop::collection::vec(any::<u8>(), 0..64)) {
            let encoded: String = form_urlencoded::byte_serialize(&raw).collect();
            for query in [
                String::from_utf8_lossy(&raw).into_owned(),
                format!("accepts_incomplete={encoded}"),
            ] {
                match strict_flag_in(&query, "accepts_incomplete") {
                    Ok(_) => {}
                    Err(e) => prop_assert_eq!(e.details(), (400, 10004, "InvalidRequest")),
                }
                let _ = flag_in(&query, "accepts_incomplete");
            }
        }

        /// A flag written among other parameters is read back: the last of repeated values
        /// counts, only `true` and `false` are values (`flag` also takes `TRUE`).
        #[test]
        fn a_written_flag_is_read_back(
            before in other_pairs(),
            after in other_pairs(),
            values in prop::collection::vec(
                prop_oneof![Just("true".to_string()), Just("false".to_string()), "\\PC{0,8}"],
                0..3,
            ),
        ) {
            let mut pairs = before;
            pairs.extend(values.iter().map(|v| ("accepts_incomplete".to_string(), v.clone())));
            pairs.extend(after);
            let query = query_of(&pairs);
            let strict = strict_flag_in(&query, "accepts_incomplete");
            match values.last().map(String::as_str) {
                None | Some("false") => prop_assert!(matches!(strict, Ok(false))),
                Some("true") => prop_assert!(matches!(strict, Ok(true))),
                Some(_) => prop_assert!(matches!(strict, Err(ApiError::InvalidRequest))),
            }
            let lenient = values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            prop_assert_eq!(flag_in(&query, "accepts_incomplete"), lenient);
        }
    }

    #[test]
    fn json_object_takes_blank_bodies_as_empty_and_refuses_other_documents() {
        assert!(json_object(b"").unwrap().is_empty());
        assert!(json_object(b" \r\n\t").unwrap().is_empty());
        for refused in [&b"[]"[..], b"null", b"1", b"\"x\"", b"{", b"\xff"] {
            assert!(matches!(
                json_object(refused),
                Err(ApiError::MessageParseError(_))
            ));
        }
    }
}
