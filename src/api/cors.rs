//! CORS, so that a dashboard served from another origin can call the API from a browser with a
//! bearer token (`--cors-origin`). Off by default: without configured origins no
//! response carries CORS headers and every preflight is refused, so browsers keep other origins
//! out as before.
//!
//! Origins match exactly (scheme, host and port, as the browser serializes them). Responses never
//! say `Access-Control-Allow-Credentials`: a bearer token travels in the `Authorization` header,
//! which needs no credentials mode, and never sending it also rules out the dangerous pairing of
//! credentials with a `*` origin.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};

use crate::app::AppState;
use crate::error::ApiError;

/// Methods the API serves.
const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";
/// Request headers a CF client sends beyond the CORS-safelisted ones.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Accept, X-VCAP-Request-ID";
/// Response headers a client reads beyond the safelisted ones (request ids for support, CC's
/// warnings, a created resource's location, the reason of a 401).
const EXPOSE_HEADERS: &str = "X-VCAP-Request-ID, X-Cf-Warnings, Location, WWW-Authenticate";
/// How long a browser may cache a preflight answer, seconds (Chromium caps it at 7200).
const MAX_AGE: &str = "600";

/// The `Access-Control-Allow-Origin` value for a request's `Origin`, if that origin is allowed.
fn allowed(origins: &[String], origin: &HeaderValue) -> Option<HeaderValue> {
    if origins.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let o = origin.to_str().ok()?;
    origins.iter().any(|a| a == o).then(|| origin.clone())
}

fn wildcard(origins: &[String]) -> bool {
    origins.iter().any(|o| o == "*")
}

/// The middleware (wrapped outermost in `build_app!`, so that it also sees the responses other
/// middleware produce on their own).
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, actix_web::body::BoxBody>>, actix_web::Error>
{
    // Everything is decided while the request is borrowed: the allowed origin's header value is
    // the only thing copied, and only for a request that has one (most API clients send none).
    let (allow, configured, any_origin) = match req.app_data::<web::Data<AppState>>() {
        Some(state) => {
            let origins = &state.config.cors_origins;
            (
                req.headers()
                    .get(header::ORIGIN)
                    .and_then(|o| allowed(origins, o)),
                !origins.is_empty(),
                wildcard(origins),
            )
        }
        None => (None, false, false),
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);

    if preflight {
        // Answered here whatever the origin: a preflight never reaches the API's handlers.
        let resp = match allow {
            Some(value) => {
                let mut resp = HttpResponse::NoContent().finish();
                let h = resp.headers_mut();
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static(ALLOW_METHODS),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static(ALLOW_HEADERS),
                );
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static(MAX_AGE),
                );
                resp
            }
            // Without CORS headers the browser refuses the real request; the status says why
            // to whoever looks at the network log.
            None => ApiError::NotAuthorized.error_response(),
        };
        let mut res = req.into_response(resp).map_into_right_body();
        let h = res.headers_mut();
        for name in [
            "Origin",
            "Access-Control-Request-Method",
            "Access-Control-Request-Headers",
        ] {
            h.append(header::VARY, HeaderValue::from_static(name));
        }
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        return Ok(res);
    }

    if !configured {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let headers = ActualHeaders {
        allow,
        vary: !any_origin,
    };
    // Handler and extractor errors (CC's JSON errors) are responses by now. What still arrives
    // as an error (a panic caught by the inner middleware) is rendered by actix after every
    // middleware has run, so it takes its CORS headers along: the dashboard can read why a
    // request failed either way.
    match next.call(req).await {
        Ok(mut res) => {
            headers.apply(res.headers_mut());
            Ok(res.map_into_left_body())
        }
        Err(inner) => Err(WithCors { inner, headers }.into()),
    }
}

/// The CORS headers of an actual (non-preflight) response.
#[derive(Debug)]
struct ActualHeaders {
    allow: Option<HeaderValue>,
    /// The answer depends on `Origin` (unless every origin gets the same `*`): tell caches.
    vary: bool,
}

impl ActualHeaders {
    fn apply(&self, h: &mut header::HeaderMap) {
        if self.vary {
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(value) = &self.allow {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value.clone());
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
    }
}

/// An error on its way to actix, with the CORS headers its response must carry.
#[derive(Debug)]
struct WithCors {
    inner: actix_web::Error,
    headers: ActualHeaders,
}

impl std::fmt::Display for WithCors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl ResponseError for WithCors {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.inner.as_response_error().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = self.inner.error_response();
        self.headers.apply(resp.headers_mut());
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> anyhow::Result<Vec<String>> {
        crate::config::parse_origins(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn origins_are_normalized_as_browsers_send_them() {
        assert_eq!(
            parse(&[
                "https://Dash.Example.com/",
                "http://127.0.0.1:8081",
                "https://x.example:443",
                " ",
                "http://127.0.0.1:8081",
            ])
            .unwrap(),
            vec![
                "https://dash.example.com",
                "http://127.0.0.1:8081",
                "https://x.example"
            ]
        );
        assert_eq!(parse(&["*"]).unwrap(), vec!["*"]);
    }

    #[test]
    fn anything_but_an_origin_is_refused() {
        for bad in [
            "dash.example.com",
            "https://dash.example.com/app",
            "https://dash.example.com/?x=1",
            "https://user@dash.example.com",
            "ftp://dash.example.com",
            "null",
            "file:///tmp/x",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn matching_is_exact() {
        let origins = parse(&["https://dash.example.com"]).unwrap();
        let check = |o: &'static str| allowed(&origins, &HeaderValue::from_static(o));
        assert!(check("https://dash.example.com").is_some());
        for other in [
            "https://dash.example.com.evil.test",
            "http://dash.example.com",
            "https://dash.example.com:8443",
            "https://evil.test",
            "null",
        ] {
            assert!(check(other).is_none(), "{other} allowed");
        }
        let any = parse(&["*"]).unwrap();
        assert_eq!(
            allowed(&any, &HeaderValue::from_static("https://evil.test")).unwrap(),
            "*"
        );
    }
}
