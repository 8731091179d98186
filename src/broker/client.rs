//! The OSB client: one shared `reqwest::Client`, basic auth on every call, CC's headers, and the
//! response classification of CC's `response_parser.rb` (see `shared/spec/osb-bindings.md` B).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::error::{truncate_message, BrokerError, BrokerErrorKind, BrokerHttpInfo};
use super::model::*;

mod observe;

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

struct RawResponse {
    status: StatusCode,
    body: Vec<u8>,
    retry_after: Option<u64>,
    uri: String,
    method: Method,
}

impl RawResponse {
    fn http_info(&self) -> BrokerHttpInfo {
        BrokerHttpInfo {
            uri: None,
            method: self.method.to_string(),
            status: Some(self.status.as_u16()),
        }
    }

    fn json_object(&self) -> Option<Map<String, Value>> {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    fn error_body(&self) -> Option<ErrorBody> {
        serde_json::from_slice::<ErrorBody>(&self.body).ok()
    }

    fn reason(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("")
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn err(&self, kind: BrokerErrorKind, description: String, mitigate: bool) -> BrokerError {
        BrokerError {
            kind,
            description: truncate_message(description),
            http: self.http_info(),
            needs_orphan_mitigation: mitigate,
        }
    }

    fn described_or(&self, fallback: String) -> String {
        match self.error_body().and_then(|b| b.description) {
            Some(d) => format!("Service broker error: {d}"),
            None => fallback,
        }
    }

    fn bad_response(&self, mitigate: bool) -> BrokerError {
        let msg = self.described_or(format!(
            "The service broker returned an invalid response. Status Code: {} {}, Body: {}",
            self.status.as_u16(),
            self.reason(),
            self.body_text()
        ));
        self.err(BrokerErrorKind::BadResponse, msg, mitigate)
    }

    fn malformed(&self, mitigate: bool) -> BrokerError {
        self.err(
            BrokerErrorKind::ResponseMalformed,
            "The service broker response was not understood".into(),
            mitigate,
        )
    }

    /// The errors every endpoint maps the same way.
    fn common_error(&self, mitigate_5xx: bool) -> BrokerError {
        let code = self.status.as_u16();
        match code {
            401 => self.err(
                BrokerErrorKind::ApiAuthenticationFailed,
                "Authentication with the service broker failed. Double-check that the username and password are correct.".into(),
                false,
            ),
            408 => self.err(
                BrokerErrorKind::ApiTimeout,
                format!("The service broker API timed out: {}", self.uri),
                false,
            ),
            422 => {
                let body = self.error_body();
                match body.as_ref().and_then(|b| b.error.as_deref()) {
                    Some("AsyncRequired") => self.err(
                        BrokerErrorKind::AsyncRequired,
                        "Service broker error: This service plan requires client support for asynchronous provisioning.".into(),
                        false,
                    ),
                    Some("RequiresApp") => self.err(
                        BrokerErrorKind::AppRequired,
                        "This service supports generation of credentials through binding an application only.".into(),
                        false,
                    ),
                    Some("ConcurrencyError") => self.err(
                        BrokerErrorKind::ConcurrencyError,
                        "The service broker could not perform this operation in parallel with other running operations".into(),
                        false,
                    ),
                    // CC treats any other 422 as a bad response (and mitigates).
                    _ => self.bad_response(mitigate_5xx),
                }
            }
            400..=499 => {
                let msg = self.described_or(format!(
                    "The service broker API returned an error from {}: {} {}",
                    self.uri,
                    code,
                    self.reason()
                ));
                self.err(BrokerErrorKind::RequestRejected, msg, false)
            }
            _ => self.bad_response(mitigate_5xx),
        }
    }
}

fn parse_operation(obj: &Map<String, Value>) -> Result<Option<String>, ()> {
    match obj.get("operation") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 10_000 => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

/// Validates the binding fields of a bind/fetch response against what the service `requires`.
fn parse_binding_data(
    raw: &RawResponse,
    obj: &Map<String, Value>,
    requires: &[String],
    mitigate: bool,
) -> Result<BindingData, BrokerError> {
    let credentials = match obj.get("credentials") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(_) => return Err(raw.malformed(mitigate)),
    };
    let syslog_drain_url = match obj.get("syslog_drain_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            if !requires.iter().any(|r| r == "syslog_drain") {
                return Err(raw.err(
                    BrokerErrorKind::InvalidSyslogDrainUrl,
                    "The service is attempting to stream logs from your application, but is not registered as a logging service. Please contact the service provider.".into(),
                    mitigate,
                ));
            }
            Some(s.clone())
        }
        Some(_) => return Err(raw.malformed(mitigate)),
    };
    let volume_mounts = match obj.get("volume_mounts") {
        None | Some(Value::Null) => "[]".to_string(),
        Some(Value::Array(items)) => {
            if !items.is_empty() && !requires.iter().any(|r| r == "volume_mount") {
                return Err(raw.err(
                    BrokerErrorKind::InvalidVolumeMounts,
                    "The service is attempting to supply volume mounts from your application, but is not registered as a volume mount service. Please contact the service provider.".into(),
                    mitigate,
                ));
            }
            if !items.iter().all(Value::is_object) {
                return Err(raw.malformed(mitigate));
            }
            Value::Array(items.clone()).to_string()
        }
        Some(_) => return Err(raw.malformed(mitigate)),
    };
    Ok(BindingData {
        credentials,
        syslog_drain_url,
        volume_mounts,
        parameters: obj.get("parameters").cloned(),
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

    /// Sends one request (see `observe::send`, which logs and counts it).
    async fn send_unobserved(
        &self,
        target: &BrokerTarget,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        ctx: &CallContext,
    ) -> Result<RawResponse, BrokerError> {
        let mut uri = format!("{}{}", target.url.trim_end_matches('/'), path);
        if !query.is_empty() {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                ser.append_pair(k, v);
            }
            uri.push('?');
            uri.push_str(&ser.finish());
        }
        let _permit = match &self.limiter {
            Some(sem) => Some(sem.clone().acquire_owned().await.map_err(|_| {
                transport_error(BrokerErrorKind::ApiUnreachable, &uri, &method, false)
            })?),
            None => None,
        };
        let password = match &self.keyring {
            Some(k) => k.open(&target.password).map_err(|e| {
                tracing::error!(error = %e, "cannot open the broker's password");
                transport_error(
                    BrokerErrorKind::ApiAuthenticationFailed,
                    &uri,
                    &method,
                    false,
                )
            })?,
            None => target.password.clone(),
        };
        let mut req = self
            .http
            .request(method.clone(), &uri)
            .basic_auth(&target.username, Some(&password))
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
        let resp = req.send().await;
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(%uri, %method, error = %e, "broker request failed");
                return Err(classify_transport(&e, &uri, &method));
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(BrokerError {
                            kind: BrokerErrorKind::ResponseMalformed,
                            description: "The service broker response was not understood".into(),
                            http: BrokerHttpInfo {
                                uri: None,
                                method: method.to_string(),
                                status: Some(status.as_u16()),
                            },
                            needs_orphan_mitigation: true,
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(%uri, %method, error = %e, "broker response body failed");
                    return Err(classify_transport(&e, &uri, &method));
                }
            }
        }
        Ok(RawResponse {
            status,
            body,
            retry_after,
            uri,
            method,
        })
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
        let query: &[(&str, &str)] = if accepts_incomplete {
            &[("accepts_incomplete", "true")]
        } else {
            &[]
        };
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
                let obj = raw.json_object().ok_or_else(|| raw.malformed(mitigate))?;
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
            202 => {
                let obj = if raw.body.iter().all(u8::is_ascii_whitespace) {
                    Map::new()
                } else {
                    raw.json_object().ok_or_else(|| raw.malformed(true))?
                };
                let operation = parse_operation(&obj).map_err(|_| raw.malformed(true))?;
                Ok(BindOutcome::Async { operation })
            }
            409 => {
                let msg = raw
                    .error_body()
                    .and_then(|b| b.description)
                    .map(|d| format!("Service broker error: {d}"))
                    .unwrap_or_else(|| "Resource conflict".into());
                Err(raw.err(BrokerErrorKind::Conflict, msg, false))
            }
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
        let obj = raw.json_object().ok_or_else(|| raw.malformed(false))?;
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
                let obj = raw.json_object().ok_or_else(|| raw.malformed(false))?;
                let state = obj
                    .get("state")
                    .and_then(Value::as_str)
                    .and_then(OperationState::parse)
                    .ok_or_else(|| raw.malformed(false))?;
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
        let query: &[(&str, &str)] = if accepts_incomplete {
            &[("accepts_incomplete", "true")]
        } else {
            &[]
        };
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
                let obj = raw.json_object().ok_or_else(|| raw.malformed(mitigate))?;
                Ok(ProvisionOutcome::Created {
                    dashboard_url: dashboard(&obj),
                })
            }
            202 => {
                let obj = raw.json_object().unwrap_or_default();
                let operation = parse_operation(&obj).map_err(|_| raw.malformed(true))?;
                Ok(ProvisionOutcome::Async {
                    operation,
                    dashboard_url: dashboard(&obj),
                })
            }
            409 => {
                let msg = raw
                    .error_body()
                    .and_then(|b| b.description)
                    .map(|d| format!("Service broker error: {d}"))
                    .unwrap_or_else(|| "Resource conflict".into());
                Err(raw.err(BrokerErrorKind::Conflict, msg, false))
            }
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

fn parse_delete_response(raw: &RawResponse) -> Result<UnbindOutcome, BrokerError> {
    match raw.status.as_u16() {
        200 => Ok(UnbindOutcome::Deleted),
        // Already gone: the platform treats it as deleted (OSB A.8).
        410 => Ok(UnbindOutcome::Deleted),
        202 => {
            let obj = raw.json_object().unwrap_or_default();
            let operation = parse_operation(&obj).map_err(|_| raw.malformed(true))?;
            Ok(UnbindOutcome::Async { operation })
        }
        422 => Err(raw.common_error(false)),
        400..=499 => Err(raw.common_error(false)),
        _ => Err(raw.bad_response(true)),
    }
}

fn parse_retry_after(v: &str) -> Option<u64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs);
    }
    // An HTTP date is allowed too.
    chrono::DateTime::parse_from_rfc2822(v).ok().map(|t| {
        let delta = t.with_timezone(&chrono::Utc) - chrono::Utc::now();
        delta.num_seconds().max(0) as u64
    })
}

fn transport_error(
    kind: BrokerErrorKind,
    uri: &str,
    method: &Method,
    mitigate: bool,
) -> BrokerError {
    let description = match kind {
        BrokerErrorKind::HttpClientTimeout => {
            format!("The request to the service broker timed out: {uri}")
        }
        BrokerErrorKind::ApiAuthenticationFailed => {
            "Authentication with the service broker failed: its stored password cannot be read."
                .to_string()
        }
        _ => format!("The service broker API could not be reached: {uri}"),
    };
    BrokerError {
        kind,
        description,
        http: BrokerHttpInfo {
            uri: Some(uri.to_string()),
            method: method.to_string(),
            status: None,
        },
        needs_orphan_mitigation: mitigate,
    }
}

fn classify_transport(e: &reqwest::Error, uri: &str, method: &Method) -> BrokerError {
    if e.is_connect() {
        // The request never reached the broker.
        transport_error(BrokerErrorKind::ApiUnreachable, uri, method, false)
    } else if e.is_timeout() {
        transport_error(BrokerErrorKind::HttpClientTimeout, uri, method, true)
    } else {
        // Connection dropped mid-request: the broker may have acted on it.
        transport_error(BrokerErrorKind::ApiUnreachable, uri, method, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(7));
        assert_eq!(parse_retry_after(" 12 "), Some(12));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(enc("abc-1.2_~"), "abc-1.2_~");
    }
}
