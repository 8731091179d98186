//! The access log: one `tracing` event per request once its response is ready (target
//! `tether::access`), with the method, the path (query values only of `q` and the paging and
//! flag parameters; any other value is replaced, so that nothing a client put in a query can end
//! up in a log), the status, the latency, the response size, the request id as sent back, the
//! user id of a verified token (never the token), and the guid of the binding or instance the
//! path names. Health probes and metric scrapes are logged at debug level, everything else at info. The same
//! middleware counts the request in the HTTP metrics.

use std::time::{Duration, Instant};

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};

/// The user id of the request's verified token, put into the request's extensions by the
/// `Actor` extractor for the access log.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub String);

/// Query parameters whose values are logged: filters and paging, nothing a secret hides in.
const LOGGED_QUERY_KEYS: &[&str] = &[
    "q",
    "page",
    "results-per-page",
    "order-direction",
    "order-by",
    "inline-relations-depth",
    "accepts_incomplete",
    "async",
    "recursive",
    "purge",
];

/// What to do with a request: log it (`--access-log`), count it (`--metrics`).
#[derive(Clone, Copy)]
struct Observing {
    log: bool,
    count: bool,
}

fn observing(req: &ServiceRequest) -> Observing {
    match req.app_data::<actix_web::web::Data<crate::app::AppState>>() {
        Some(state) => Observing {
            log: state.config.access_log,
            count: state.config.metrics,
        },
        None => Observing {
            log: true,
            count: false,
        },
    }
}

/// The method as a metric label (a bounded set: any other method is `other`).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn count<B>(res: &ServiceResponse<B>, latency: Duration) {
    let req = res.request();
    let Some(state) = req.app_data::<actix_web::web::Data<crate::app::AppState>>() else {
        return;
    };
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    state.metrics.http.observe(
        route,
        method_label(req.method()),
        res.status().as_u16(),
        latency,
    );
}

/// The middleware: times the request and logs it when its response is ready. Outermost, so
/// that it sees the response as the client gets it (request id and CORS headers included).
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let observe = observing(&req);
    if !observe.log && !observe.count {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let started = Instant::now();
    // The request itself cannot be kept (routing needs it unshared); an error without a
    // response is logged from these.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    match next.call(req).await {
        Ok(res) => {
            let latency = started.elapsed();
            if observe.count {
                count(&res, latency);
            }
            if observe.log {
                log_response(&res, latency);
            }
            Ok(res.map_into_left_body())
        }
        Err(e) if observe.log => {
            let status = e.as_response_error().status_code().as_u16();
            tracing::info!(
                target: crate::logging::ACCESS_TARGET,
                method = %method,
                path = %loggable_path(uri.path(), uri.query()),
                status,
                latency_ms = millis(started.elapsed()),
                "request"
            );
            Err(e)
        }
        Err(e) => Err(e),
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn log_response<B: MessageBody>(res: &ServiceResponse<B>, latency: Duration) {
    let req = res.request();
    let size: i64 = match res.response().body().size() {
        BodySize::Sized(n) => i64::try_from(n).unwrap_or(i64::MAX),
        BodySize::None => 0,
        // A streamed body: its size is not known when the response starts.
        BodySize::Stream => -1,
    };
    let request_id = res
        .headers()
        .get("x-vcap-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let extensions = req.extensions();
    let user = extensions
        .get::<AuthenticatedUser>()
        .map_or("-", |u| u.0.as_str());
    let (binding, instance) = guids(req);
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: crate::logging::ACCESS_TARGET,
                $level,
                method = %req.method(),
                path = %loggable_path(req.path(), Some(req.query_string())),
                status = res.status().as_u16(),
                latency_ms = millis(latency),
                size,
                request_id,
                user_id = user,
                binding_guid = binding.unwrap_or("-"),
                instance_guid = instance.unwrap_or("-"),
                "request"
            )
        };
    }
    if is_probe(req.path()) {
        event!(tracing::Level::DEBUG);
    } else {
        event!(tracing::Level::INFO);
    }
}

/// Health probes and metric scrapes come every few seconds from machines: debug level.
fn is_probe(path: &str) -> bool {
    crate::api::health::is_health_path(path) || path == "/metrics"
}

/// The binding and the service instance the matched route names, if any.
fn guids(req: &HttpRequest) -> (Option<&str>, Option<&str>) {
    let info = req.match_info();
    let path = req.path();
    if path.starts_with("/v2/service_bindings/") {
        (info.get("guid"), None)
    } else if path.starts_with("/v2/apps/") {
        (info.get("binding"), None)
    } else if path.starts_with("/v2/service_instances/")
        || path.starts_with("/v2/user_provided_service_instances/")
    {
        (None, info.get("guid"))
    } else {
        (None, None)
    }
}

/// The path with its query, values kept only for [`LOGGED_QUERY_KEYS`] (others become `…`).
pub fn loggable_path(path: &str, query: Option<&str>) -> String {
    let query = match query {
        Some(q) if !q.is_empty() => q,
        _ => return path.to_string(),
    };
    let mut out = String::with_capacity(path.len() + query.len() + 1);
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded: String = form_urlencoded::parse(key.as_bytes())
            .next()
            .map(|(k, _)| k.into_owned())
            .unwrap_or_default();
        out.push_str(key);
        if pair.contains('=') {
            out.push('=');
            if LOGGED_QUERY_KEYS.contains(&decoded.as_str()) {
                out.push_str(value);
            } else {
                out.push('…');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn only_filter_and_paging_values_are_kept() {
        assert_eq!(loggable_path("/v2/info", None), "/v2/info");
        assert_eq!(
            loggable_path(
                "/v2/service_bindings",
                Some("q=app_guid:abc&results-per-page=5&access_token=SECRET&flag")
            ),
            "/v2/service_bindings?q=app_guid:abc&results-per-page=5&access_token=…&flag"
        );
        assert_eq!(
            loggable_path("/x", Some("p%61ge=2&pass=x")),
            "/x?p%61ge=2&pass=…"
        );
    }
}
