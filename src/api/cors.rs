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

/// What the configuration says about one request, decided while the request is borrowed.
struct Decision {
    /// The `Access-Control-Allow-Origin` value, for an allowed `Origin` (most API clients send
    /// none: then nothing is copied).
    allow: Option<HeaderValue>,
    /// Any origin configured at all.
    configured: bool,
    /// `*` configured.
    any_origin: bool,
}

fn decide(req: &ServiceRequest) -> Decision {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Decision {
            allow: None,
            configured: false,
            any_origin: false,
        };
    };
    let origins = &state.config.cors_origins;
    Decision {
        allow: req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| allowed(origins, o)),
        configured: !origins.is_empty(),
        any_origin: wildcard(origins),
    }
}

fn is_preflight(req: &ServiceRequest) -> bool {
    req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The middleware (wrapped outermost in `build_app!`, so that it also sees the responses other
/// middleware produce on their own).
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, actix_web::body::BoxBody>>, actix_web::Error>
{
    let decision = decide(&req);
    if is_preflight(&req) {
        // Answered here whatever the origin: a preflight never reaches the API's handlers.
        let resp = preflight_response(decision.allow);
        return Ok(req.into_response(resp).map_into_right_body());
    }
    if !decision.configured {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let headers = ActualHeaders {
        allow: decision.allow,
        vary: !decision.any_origin,
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

/// The answer to a preflight: 204 with what the browser may send, for an allowed origin; else
/// no CORS headers at all, so the browser refuses the real request (the 403 says why to
/// whoever looks at the network log).
fn preflight_response(allow: Option<HeaderValue>) -> HttpResponse {
    let mut resp = match allow {
        Some(value) => {
            let mut resp = HttpResponse::NoContent().finish();
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            for (name, v) in [
                (header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS),
                (header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS),
                (header::ACCESS_CONTROL_MAX_AGE, MAX_AGE),
            ] {
                h.insert(name, HeaderValue::from_static(v));
            }
            resp
        }
        None => ApiError::NotAuthorized.error_response(),
    };
    let h = resp.headers_mut();
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
    resp
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
