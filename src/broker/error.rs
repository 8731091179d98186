//! Failures talking to a service broker, classified the way Cloud Controller classifies them
//! (`lib/services/service_brokers/v2/errors/*.rb`), each carrying whether the OSB spec's orphan
//! mitigation table asks the platform to clean up at the broker.

use serde::Serialize;

/// The `http` object CC adds to broker errors.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BrokerHttpInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerErrorKind {
    /// Broker answered 401.
    ApiAuthenticationFailed,
    /// Broker answered 408.
    ApiTimeout,
    /// Our own request timed out.
    HttpClientTimeout,
    /// Connection refused, DNS failure, connection dropped.
    ApiUnreachable,
    /// Any other 4xx.
    RequestRejected,
    /// 5xx, unexpected codes, unknown 422.
    BadResponse,
    /// 409 on bind/provision.
    Conflict,
    /// A body we could not understand.
    ResponseMalformed,
    /// 422 `AsyncRequired`.
    AsyncRequired,
    /// 422 `RequiresApp`.
    AppRequired,
    /// 422 `ConcurrencyError`.
    ConcurrencyError,
    /// The broker returned `syslog_drain_url` for a service that does not `require` it.
    InvalidSyslogDrainUrl,
    /// The broker returned `volume_mounts` for a service that does not `require` them.
    InvalidVolumeMounts,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{description}")]
pub struct BrokerError {
    pub kind: BrokerErrorKind,
    pub description: String,
    pub http: BrokerHttpInfo,
    /// Whether the platform must send an unbind/deprovision to clean up (OSB orphan mitigation).
    pub needs_orphan_mitigation: bool,
}

/// CC truncates broker bodies echoed in messages past 16 KiB, to 8 KiB.
pub(crate) fn truncate_message(message: String) -> String {
    if message.len() <= 1 << 14 {
        return message;
    }
    let mut cut = 1 << 13;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}...This message has been truncated due to size. To read the full message, check the broker's logs",
        &message[..cut]
    )
}

impl BrokerError {
    pub fn status(&self) -> u16 {
        use BrokerErrorKind::*;
        match self.kind {
            ApiAuthenticationFailed
            | ApiUnreachable
            | RequestRejected
            | BadResponse
            | ResponseMalformed
            | InvalidSyslogDrainUrl
            | InvalidVolumeMounts => 502,
            ApiTimeout | HttpClientTimeout => 504,
            Conflict => 409,
            AsyncRequired | AppRequired => 400,
            ConcurrencyError => 422,
        }
    }

    /// CC renders `CF-<error class name>`.
    pub fn error_name(&self) -> &'static str {
        use BrokerErrorKind::*;
        match self.kind {
            ApiAuthenticationFailed => "ServiceBrokerApiAuthenticationFailed",
            ApiTimeout => "ServiceBrokerApiTimeout",
            HttpClientTimeout => "HttpClientTimeout",
            ApiUnreachable => "ServiceBrokerApiUnreachable",
            RequestRejected => "ServiceBrokerRequestRejected",
            BadResponse => "ServiceBrokerBadResponse",
            Conflict => "ServiceBrokerConflict",
            ResponseMalformed => "ServiceBrokerResponseMalformed",
            AsyncRequired => "AsyncRequired",
            AppRequired => "AppRequired",
            ConcurrencyError => "ConcurrencyError",
            InvalidSyslogDrainUrl => "ServiceBrokerInvalidSyslogDrainUrl",
            InvalidVolumeMounts => "ServiceBrokerInvalidVolumeMounts",
        }
    }

    pub fn http_info(&self) -> Option<&BrokerHttpInfo> {
        Some(&self.http)
    }

    /// CC wraps unbind failures with the names of what was being unbound.
    pub fn wrap_description(mut self, prefix: &str) -> Self {
        self.description = format!("{prefix}{}", self.description);
        self
    }
}
