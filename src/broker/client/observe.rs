//! Every broker request, observed at the one place it is sent: a debug line (method, broker,
//! path, status, latency), a warning when it fails, and the broker metrics by operation and
//! outcome.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use super::{BrokerClient, RawResponse};
use crate::broker::{BrokerError, BrokerErrorKind, BrokerTarget, CallContext};

/// The OSB operation a request is, from its method and path.
pub(crate) fn operation_of(method: &Method, path: &str) -> &'static str {
    if path == "/v2/catalog" {
        return "catalog";
    }
    if path.ends_with("/last_operation") {
        return "poll";
    }
    let binding = path.contains("/service_bindings/");
    match (
        *method == Method::PUT,
        *method == Method::DELETE,
        *method == Method::PATCH,
    ) {
        _ if *method == Method::GET => "fetch",
        (true, _, _) if binding => "bind",
        (_, true, _) if binding => "unbind",
        (true, _, _) => "provision",
        (_, true, _) => "deprovision",
        (_, _, true) => "update",
        _ => "other",
    }
}

fn status_outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other_status",
    }
}

fn error_outcome(error: &BrokerError) -> &'static str {
    match error.kind {
        BrokerErrorKind::HttpClientTimeout => "timeout",
        BrokerErrorKind::ApiUnreachable => "unreachable",
        // The broker answered 408; its `http` object carries no status (CC's shape).
        BrokerErrorKind::ApiTimeout => "4xx",
        _ => match error.http.status.and_then(|s| StatusCode::from_u16(s).ok()) {
            Some(status) => status_outcome(status),
            None => "unreachable",
        },
    }
}

/// A broker's answer that is part of the protocol rather than a failure: success, and `410
/// Gone` (unbind/deprovision of something already gone).
fn is_failure(status: StatusCode) -> bool {
    !(status.is_success() || status == StatusCode::GONE)
}

impl BrokerClient {
    pub(super) async fn send(
        &self,
        target: &BrokerTarget,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        ctx: &CallContext,
    ) -> Result<RawResponse, BrokerError> {
        let started = Instant::now();
        let result = self
            .send_unobserved(target, method.clone(), path, query, body, ctx)
            .await;
        let latency = started.elapsed();
        let operation = operation_of(&method, path);
        let outcome = match &result {
            Ok(raw) => status_outcome(raw.status),
            Err(e) => error_outcome(e),
        };
        self.metrics
            .observe(&target.name, operation, outcome, latency);
        log(target, &method, path, &result, latency);
        result
    }
}

fn log(
    target: &BrokerTarget,
    method: &Method,
    path: &str,
    result: &Result<RawResponse, BrokerError>,
    latency: Duration,
) {
    let latency_ms = (latency.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    match result {
        Ok(raw) if !is_failure(raw.status) => tracing::debug!(
            broker = %target.name, %method, path, status = raw.status.as_u16(), latency_ms,
            "broker request"
        ),
        Ok(raw) => tracing::warn!(
            broker = %target.name, %method, path, status = raw.status.as_u16(), latency_ms,
            "broker request failed"
        ),
        Err(e) => tracing::warn!(
            broker = %target.name, %method, path, status = e.http.status, kind = ?e.kind,
            latency_ms, "broker request failed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::operation_of;
    use reqwest::Method;

    #[test]
    fn operations_from_method_and_path() {
        let binding = "/v2/service_instances/i/service_bindings/b";
        let instance = "/v2/service_instances/i";
        for (method, path, op) in [
            (Method::GET, "/v2/catalog", "catalog"),
            (Method::PUT, binding, "bind"),
            (Method::DELETE, binding, "unbind"),
            (Method::GET, binding, "fetch"),
            (
                Method::GET,
                "/v2/service_instances/i/service_bindings/b/last_operation",
                "poll",
            ),
            (
                Method::GET,
                "/v2/service_instances/i/last_operation",
                "poll",
            ),
            (Method::PUT, instance, "provision"),
            (Method::PATCH, instance, "update"),
            (Method::DELETE, instance, "deprovision"),
            (Method::GET, instance, "fetch"),
        ] {
            assert_eq!(operation_of(&method, path), op, "{method} {path}");
        }
    }
}
