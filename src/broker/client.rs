//! The OSB client: one shared `reqwest::Client`, basic auth on every call, CC's headers, and the
//! response classification of CC's `response_parser.rb` (see `shared/spec/osb-bindings.md` B).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::error::{BrokerError, BrokerErrorKind};
use super::model::*;
use super::response::{
    check_parameters, classify_transport, parse_async, parse_binding_data, parse_delete_response,
    parse_operation, parse_retry_after, transport_error, RawResponse,
};

mod update;
pub use update::{PreviousValues, UpdateOutcome, UpdateRequest};

mod observe;

/// The query of a request that may be answered asynchronously (OSB `accepts_incomplete`).
fn incomplete_query(accepts_incomplete: bool) -> &'static [(&'static str, &'static str)] {
    if accepts_incomplete {
        &[("accepts_incomplete", "true")]
    } else {
        &[]
    }
}

/// RFC 3986 unreserved characters stay, everything else is escaped (OSB A.3).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Brokers answer small documents; a broker that streams megabytes at us is broken.
const MAX_BODY_BYTES: usize = 4 << 20;

pub(crate) fn enc(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[derive(Debug, Clone)]
pub struct BrokerClientConfig {
    pub timeout: Duration,
    pub api_version: String,
    /// `X-Api-Info-Location`: where the broker can find our `/v2/info`.
    pub api_info_location: Option<String>,
    /// At most this many broker requests in flight from this process (0: no limit).
    pub max_concurrent_requests: usize,
}

impl Default for BrokerClientConfig {
    fn default() -> Self {
        BrokerClientConfig {
            timeout: Duration::from_secs(60),
            api_version: "2.15".into(),
            api_info_location: None,
            max_concurrent_requests: 0,
        }
    }
}

/// Who caused a broker call (for `X-Broker-API-Originating-Identity` and request tracing).
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub request_id: Option<String>,
    pub user_id: Option<String>,
}

#[derive(Clone)]
pub struct BrokerClient {
    http: reqwest::Client,
    config: Arc<BrokerClientConfig>,
    limiter: Option<Arc<Semaphore>>,
    /// Opens broker passwords sealed at rest.
    keyring: Option<Arc<crate::crypto::KeyRing>>,
    /// Requests by broker, operation and outcome (recorded in `observe`).
    metrics: crate::metrics::BrokerMetrics,
}

/// The broker's URL, the OSB path and the query.
fn broker_uri(base: &str, path: &str, query: &[(&str, &str)]) -> String {
    let mut uri = format!("{}{}", base.trim_end_matches('/'), path);
    if !query.is_empty() {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            ser.append_pair(k, v);
        }
        uri.push('?');
        uri.push_str(&ser.finish());
    }
    uri
}

/// Reads the status, `Retry-After` and the body (at most [`MAX_BODY_BYTES`]).
async fn read_response(
    mut resp: reqwest::Response,
    uri: &str,
    method: Method,
) -> Result<RawResponse, BrokerError> {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_BODY_BYTES => {
                let raw = RawResponse {
                    status,
                    uri: uri.to_string(),
                    body: Vec::new(),
                    retry_after,
                    method,
                };
                return Err(raw.malformed("the body is larger than 4 MiB", true));
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                tracing::info!(%uri, %method, error = %e, "broker response body failed");
                return Err(classify_transport(&e, uri, &method));
            }
        }
    }
    Ok(RawResponse {
        status,
        uri: uri.to_string(),
        body,
        retry_after,
        method,
    })
}

impl BrokerClient {
    pub fn new(config: BrokerClientConfig) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(30)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let limiter = (config.max_concurrent_requests > 0)
            .then(|| Arc::new(Semaphore::new(config.max_concurrent_requests)));
        Ok(BrokerClient {
            http,
            config: Arc::new(config),
            limiter,
            keyring: None,
            metrics: crate::metrics::BrokerMetrics::default(),
        })
    }

    /// Broker passwords given to this client may be sealed by this key ring.
    pub fn with_keyring(mut self, keyring: Arc<crate::crypto::KeyRing>) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Its request metrics (registered with the application's).
    pub fn metrics(&self) -> &crate::metrics::BrokerMetrics {
        &self.metrics
    }

    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// One OSB call: the URI, a slot under the concurrency limit, the broker's password, CC's
    /// headers, and the answer read whole (bounded). `observe::send` wraps it to log and count.
    async fn send_unobserved(
        &self,
        target: &BrokerTarget,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        ctx: &CallContext,
    ) -> Result<RawResponse, BrokerError> {
        let uri = broker_uri(&target.url, path, query);
        let _permit = match &self.limiter {
            Some(sem) => Some(sem.clone().acquire_owned().await.map_err(|_| {
                transport_error(BrokerErrorKind::ApiUnreachable, &uri, &method, false)
            })?),
            None => None,
        };
        let password = self.password(target, &uri, &method)?;
        let req = self.request(target, &password, method.clone(), &uri, body, ctx);
        let resp = req.send().await.map_err(|e| {
            tracing::info!(%uri, %method, error = %e, "broker request failed");
            classify_transport(&e, &uri, &method)
        })?;
        read_response(resp, &uri, method).await
    }

    /// The broker's password, opened if it is sealed at rest.
    fn password(
        &self,
        target: &BrokerTarget,
        uri: &str,
        method: &Method,
    ) -> Result<String, BrokerError> {
        match &self.keyring {
            Some(k) => k.open(&target.password).map_err(|e| {
                tracing::error!(error = %e, "cannot open the broker's password");
                transport_error(BrokerErrorKind::ApiAuthenticationFailed, uri, method, false)
            }),
            None => Ok(target.password.clone()),
        }
    }

    /// The request with basic auth and CC's headers (API version, request identity, request id,
    /// info location, originating identity).
    fn request(
        &self,
        target: &BrokerTarget,
        password: &str,
        method: Method,
        uri: &str,
        body: Option<Vec<u8>>,
        ctx: &CallContext,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, uri)
            .basic_auth(&target.username, Some(password))
            .header("X-Broker-API-Version", &self.config.api_version)
            .header(
                "X-Broker-API-Request-Identity",
                uuid::Uuid::new_v4().to_string(),
            )
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(rid) = &ctx.request_id {
            req = req.header("X-Vcap-Request-Id", rid);
        }
        if let Some(loc) = &self.config.api_info_location {
            req = req.header("X-Api-Info-Location", loc);
        }
        if let Some(user) = &ctx.user_id {
            let payload = serde_json::json!({ "user_id": user }).to_string();
            let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
            req = req.header(
                "X-Broker-API-Originating-Identity",
                format!("cloudfoundry {encoded}"),
            );
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        req
    }

    pub async fn fetch_catalog(
        &self,
        target: &BrokerTarget,
        ctx: &CallContext,
    ) -> Result<Vec<u8>, BrokerError> {
        let raw = self
            .send(target, Method::GET, "/v2/catalog", &[], None, ctx)
            .await?;
        if raw.status == StatusCode::OK {
            Ok(raw.body)
        } else {
            Err(raw.common_error(false))
        }
    }

    /// `PUT /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    #[allow(clippy::too_many_arguments)] // mirrors the OSB call: ids, body, flags, caller
    pub async fn bind(
        &self,
        target: &BrokerTarget,
        instance_id: &str,
        binding_id: &str,
        request: &BindRequest,
        requires: &[String],
        accepts_incomplete: bool,
        ctx: &CallContext,
    ) -> Result<BindOutcome, BrokerError> {
        let path = format!(
            "/v2/service_instances/{}/service_bindings/{}",
            enc(instance_id),
            enc(binding_id)
        );
        let query = incomplete_query(accepts_incomplete);
        let body = serde_json::to_vec(request).map_err(|_| {
            transport_error(BrokerErrorKind::BadResponse, &path, &Method::PUT, false)
        })?;
        let raw = self
            .send(target, Method::PUT, &path, query, Some(body), ctx)
            .await
            .map_err(|mut e| {
                // A bind that may have reached the broker must be cleaned up (OSB A.10).
                if e.kind == BrokerErrorKind::HttpClientTimeout
                    || (e.kind == BrokerErrorKind::ApiUnreachable && e.needs_orphan_mitigation)
                {
                    e.needs_orphan_mitigation = true;
                }
                e
            })?;
        match raw.status.as_u16() {
            200 | 201 => {
                // 200 with a malformed body: no mitigation; 201 malformed: mitigate.
                let mitigate = raw.status.as_u16() == 201;
                let obj = raw.object(mitigate)?;
                let data =
                    parse_binding_data(&raw, &obj, requires, mitigate).map_err(|mut e| {
                        // CC (client.rb `bind`) unbinds after a syslog drain or volume mounts the
                        // service may not supply, whatever the status; only a malformed 200 is
                        // left alone.
                        if matches!(
                            e.kind,
                            BrokerErrorKind::InvalidSyslogDrainUrl
                                | BrokerErrorKind::InvalidVolumeMounts
                        ) {
                            e.needs_orphan_mitigation = true;
                        }
                        e
                    })?;
                Ok(BindOutcome::Created(data))
            }
            202 => Ok(BindOutcome::Async {
                operation: parse_async(&raw)?,
            }),
            409 => Err(raw.conflict()),
            // CC: a 410 on bind is a bad response, and mitigated.
            410 => Err(raw.bad_response(true)),
            400..=499 => Err(raw.common_error(true)),
            // 5xx, other 2xx, 3xx: failure, and the broker may hold a binding.
            _ => Err(raw.bad_response(true)),
        }
    }

    /// `DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    pub async fn unbind(
        &self,
        target: &BrokerTarget,
        instance_id: &str,
        binding_id: &str,
        ids: &CatalogIds,
        accepts_incomplete: bool,
        ctx: &CallContext,
    ) -> Result<UnbindOutcome, BrokerError> {
        let path = format!(
            "/v2/service_instances/{}/service_bindings/{}",
            enc(instance_id),
            enc(binding_id)
        );
        let mut query = vec![
            ("service_id", ids.service_id.as_str()),
            ("plan_id", ids.plan_id.as_str()),
        ];
        if accepts_incomplete {
            query.push(("accepts_incomplete", "true"));
        }
        let raw = self
            .send(target, Method::DELETE, &path, &query, None, ctx)
            .await?;
        parse_delete_response(&raw)
    }

    /// `GET /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    pub async fn fetch_binding(
        &self,
        target: &BrokerTarget,
        instance_id: &str,
        binding_id: &str,
        ids: &CatalogIds,
        requires: &[String],
        ctx: &CallContext,
    ) -> Result<BindingData, BrokerError> {
        let path = format!(
            "/v2/service_instances/{}/service_bindings/{}",
            enc(instance_id),
            enc(binding_id)
        );
        let query = [
            ("service_id", ids.service_id.as_str()),
            ("plan_id", ids.plan_id.as_str()),
        ];
        let raw = self
            .send(target, Method::GET, &path, &query, None, ctx)
            .await?;
        if raw.status != StatusCode::OK {
            return Err(raw.common_error(false));
        }
        let obj = raw.object(false)?;
        check_parameters(&raw, &obj)?;
        parse_binding_data(&raw, &obj, requires, false)
    }

    /// `GET .../service_bindings/:binding_id/last_operation`.
    pub async fn binding_last_operation(
        &self,
        target: &BrokerTarget,
        instance_id: &str,
        binding_id: &str,
        ids: &CatalogIds,
        operation: Option<&str>,
        ctx: &CallContext,
    ) -> Result<LastOperationOutcome, BrokerError> {
        let path = format!(
            "/v2/service_instances/{}/service_bindings/{}/last_operation",
            enc(instance_id),
            enc(binding_id)
        );
        self.last_operation(target, &path, ids, operation, ctx)
            .await
    }

    /// `GET /v2/service_instances/:instance_id/last_operation`.
    pub async fn instance_last_operation(
        &self,
        target: &BrokerTarget,
        instance_id: &str,
        ids: &CatalogIds,
        operation: Option<&str>,
        ctx: &CallContext,
    ) -> Result<LastOperationOutcome, BrokerError> {
        let path = format!("/v2/service_instances/{}/last_operation", enc(instance_id));
        self.last_operation(target, &path, ids, operation, ctx)
            .await
    }

    async fn last_operation(
        &self,
        target: &BrokerTarget,
        path: &str,
        ids: &CatalogIds,
        operation: Option<&str>,
        ctx: &CallContext,
    ) -> Result<LastOperationOutcome, BrokerError> {
        let mut query = vec![
            ("service_id", ids.service_id.as_str()),
            ("plan_id", ids.plan_id.as_str()),
        ];
        if let Some(op) = operation {
            query.push(("operation", op));
        }
        let raw = self
            .send(target, Method::GET, path, &query, None, ctx)
            .await?;
        match raw.status.as_u16() {
            200 => {
                let obj = raw.object(false)?;
                let state = obj
                    .get("state")
                    .and_then(Value::as_str)
                    .and_then(OperationState::parse)
                    .ok_or_else(|| {
                        raw.malformed(
                            "expected \"state\" to be one of 'in progress', 'succeeded', 'failed'",
                            false,
                        )
                    })?;
                let description = obj
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                Ok(LastOperationOutcome::State {
                    state,
                    description,
                    retry_after: raw.retry_after,
                })
            }
            410 => Ok(LastOperationOutcome::Gone),
            // CC: a 400 on last_operation means the operation failed.
            400 => Ok(LastOperationOutcome::State {
                state: OperationState::Failed,
                description: raw.error_body().and_then(|b| b.description),
                retry_after: None,
            }),
            _ => Err(raw.common_error(false)),
        }
    }

    /// `PUT /v2/service_instances/:instance_id`.
    pub async fn provision(
        &self,
        target: &BrokerTarget,
        instance_id: &str,
        request: &ProvisionRequest,
        accepts_incomplete: bool,
        ctx: &CallContext,
    ) -> Result<ProvisionOutcome, BrokerError> {
        let path = format!("/v2/service_instances/{}", enc(instance_id));
        let query = incomplete_query(accepts_incomplete);
        let body = serde_json::to_vec(request).unwrap_or_default();
        let raw = self
            .send(target, Method::PUT, &path, query, Some(body), ctx)
            .await
            .map_err(|mut e| {
                if e.kind == BrokerErrorKind::HttpClientTimeout {
                    e.needs_orphan_mitigation = true;
                }
                e
            })?;
        let dashboard = |obj: &Map<String, Value>| {
            obj.get("dashboard_url")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match raw.status.as_u16() {
            200 | 201 => {
                let mitigate = raw.status.as_u16() == 201;
                let obj = raw.object(mitigate)?;
                Ok(ProvisionOutcome::Created {
                    dashboard_url: dashboard(&obj),
                })
            }
            202 => {
                let obj = raw.json_object().unwrap_or_default();
                let operation = parse_operation(&raw, &obj)?;
                Ok(ProvisionOutcome::Async {
                    operation,
                    dashboard_url: dashboard(&obj),
                })
            }
            409 => Err(raw.conflict()),
            400..=499 => Err(raw.common_error(true)),
            _ => Err(raw.bad_response(true)),
        }
    }

    /// `DELETE /v2/service_instances/:instance_id`.
    pub async fn deprovision(
        &self,
        target: &BrokerTarget,
        instance_id: &str,
        ids: &CatalogIds,
        accepts_incomplete: bool,
        ctx: &CallContext,
    ) -> Result<UnbindOutcome, BrokerError> {
        let path = format!("/v2/service_instances/{}", enc(instance_id));
        let mut query = vec![
            ("service_id", ids.service_id.as_str()),
            ("plan_id", ids.plan_id.as_str()),
        ];
        if accepts_incomplete {
            query.push(("accepts_incomplete", "true"));
        }
        let raw = self
            .send(target, Method::DELETE, &path, &query, None, ctx)
            .await?;
        parse_delete_response(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(enc("abc-1.2_~"), "abc-1.2_~");
    }
}
