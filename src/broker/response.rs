//! A broker's answer and its classification, with Cloud Controller's texts
//! (`lib/services/service_brokers/v2/errors/*.rb`, the validators of `response_parser.rb`).
//! No description carries the broker's URL: CC keeps it out, and the `http` object says which
//! method failed with which status.

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use super::error::{truncate_message, BrokerError, BrokerErrorKind, BrokerHttpInfo};
use super::model::{BindingData, ErrorBody, UnbindOutcome};

/// CC's prefix of every `ServiceBrokerResponseMalformed` and `ServiceBrokerInvalidVolumeMounts`.
const INVALID_RESPONSE: &str = "The service broker returned an invalid response: ";

pub(super) struct RawResponse {
    pub status: StatusCode,
    /// The broker URL asked, for the errors CC reports with it (`http.uri`, never in the
    /// description).
    pub uri: String,
    pub body: Vec<u8>,
    pub retry_after: Option<u64>,
    pub method: Method,
}

impl RawResponse {
    fn http_info(&self) -> BrokerHttpInfo {
        BrokerHttpInfo {
            uri: None,
            method: self.method.to_string(),
            status: Some(self.status.as_u16()),
        }
    }

    pub fn json_object(&self) -> Option<Map<String, Value>> {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    pub fn error_body(&self) -> Option<ErrorBody> {
        serde_json::from_slice::<ErrorBody>(&self.body).ok()
    }

    fn reason(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("")
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn err(&self, kind: BrokerErrorKind, description: String, mitigate: bool) -> BrokerError {
        BrokerError {
            kind,
            description: truncate_message(description),
            http: self.http_info(),
            needs_orphan_mitigation: mitigate,
        }
    }

    /// CC: a JSON object body with a `description` key is shown as "Service broker error: …"
    /// (whatever the key holds, as Ruby prints it).
    fn described_or(&self, fallback: String) -> String {
        let Some(obj) = self.json_object() else {
            return fallback;
        };
        match obj.get("description") {
            None => fallback,
            Some(Value::String(s)) => format!("Service broker error: {s}"),
            Some(Value::Null) => "Service broker error: ".to_string(),
            Some(other) => format!("Service broker error: {other}"),
        }
    }

    /// `ServiceBrokerBadResponse`.
    pub fn bad_response(&self, mitigate: bool) -> BrokerError {
        let msg = self.described_or(format!(
            "The service broker returned an invalid response. Status Code: {} {}, Body: {}",
            self.status.as_u16(),
            self.reason(),
            self.body_text()
        ));
        self.err(BrokerErrorKind::BadResponse, msg, mitigate)
    }

    /// `ServiceBrokerResponseMalformed` with CC's prefix before what was wrong.
    pub fn malformed(&self, what: &str, mitigate: bool) -> BrokerError {
        self.err(
            BrokerErrorKind::ResponseMalformed,
            format!("{INVALID_RESPONSE}{what}"),
            mitigate,
        )
    }

    /// CC's `JsonObjectValidator`: the body is not a JSON object.
    pub fn not_an_object(&self, mitigate: bool) -> BrokerError {
        let what = format!(
            "expected valid JSON object in body, broker returned '{}'",
            self.body_text()
        );
        self.malformed(&what, mitigate)
    }

    /// The body as a JSON object, or CC's `JsonObjectValidator` error.
    pub fn object(&self, mitigate: bool) -> Result<Map<String, Value>, BrokerError> {
        self.json_object()
            .ok_or_else(|| self.not_an_object(mitigate))
    }

    /// The `error` field of a 422 body.
    fn error_field(&self) -> Option<String> {
        self.error_body().and_then(|b| b.error)
    }

    /// CC's `ServiceBrokerConflict`.
    pub fn conflict(&self) -> BrokerError {
        let msg = match self.json_object().map(|o| o.contains_key("description")) {
            Some(true) => self.described_or(String::new()),
            _ => "Resource conflict".into(),
        };
        self.err(BrokerErrorKind::Conflict, msg, false)
    }

    /// The 422 errors CC names (`FailWhenValidator` on `error`); any other 422 is a bad response.
    fn unprocessable(&self, mitigate_other: bool) -> BrokerError {
        match self.error_field().as_deref() {
            Some("AsyncRequired") => self.err(
                BrokerErrorKind::AsyncRequired,
                "This service plan requires client support for asynchronous service operations."
                    .into(),
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
            _ => self.bad_response(mitigate_other),
        }
    }

    /// The errors every endpoint maps the same way (CC's `CommonErrorValidator`).
    pub fn common_error(&self, mitigate_5xx: bool) -> BrokerError {
        match self.status.as_u16() {
            401 => self.err(
                BrokerErrorKind::ApiAuthenticationFailed,
                "Authentication with the service broker failed. Double-check that the username and password are correct.".into(),
                false,
            ),
            // CC's ServiceBrokerApiTimeout is an HttpRequestError: `http` has the URI and
            // the method, not the status.
            408 => transport_error(
                BrokerErrorKind::ApiTimeout,
                &self.uri,
                &self.method,
                false,
            ),
            422 => self.unprocessable(mitigate_5xx),
            400..=499 => {
                let msg = self.described_or(format!(
                    "The service broker rejected the request. Status Code: {} {}, Body: {}",
                    self.status.as_u16(),
                    self.reason(),
                    self.body_text()
                ));
                self.err(BrokerErrorKind::RequestRejected, msg, false)
            }
            _ => self.bad_response(mitigate_5xx),
        }
    }
}

/// An async answer's `operation` (a string of at most 10,000 characters, or absent).
pub(super) fn parse_operation(
    raw: &RawResponse,
    obj: &Map<String, Value>,
) -> Result<Option<String>, BrokerError> {
    match obj.get("operation") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 10_000 => Ok(Some(s.clone())),
        Some(_) => Err(raw.malformed(
            "expected \"operation\" to be a string of at most 10000 characters",
            true,
        )),
    }
}

/// A 202's body: empty, or a JSON object with an optional `operation`.
pub(super) fn parse_async(raw: &RawResponse) -> Result<Option<String>, BrokerError> {
    let obj = if raw.body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        raw.object(true)?
    };
    parse_operation(raw, &obj)
}

/// CC's `encode_syslog_drain_url_commas`: a comma would split the drain list of the loggregator.
pub fn encode_syslog_drain_url_commas(url: &str) -> String {
    url.replace(',', "%2c")
}

fn requires(requires: &[String], what: &str) -> bool {
    requires.iter().any(|r| r == what)
}

fn parse_syslog_drain_url(
    raw: &RawResponse,
    obj: &Map<String, Value>,
    required: &[String],
    mitigate: bool,
) -> Result<Option<String>, BrokerError> {
    match obj.get("syslog_drain_url") {
        None | Some(Value::Null) => Ok(None),
        Some(_) if !requires(required, "syslog_drain") => Err(raw.err(
            BrokerErrorKind::InvalidSyslogDrainUrl,
            "The service is attempting to stream logs from your application, but is not registered as a logging service. Please contact the service provider.".into(),
            mitigate,
        )),
        Some(Value::String(s)) => Ok(Some(encode_syslog_drain_url_commas(s))),
        Some(_) => Err(raw.malformed("expected \"syslog_drain_url\" to be a string", mitigate)),
    }
}

fn parse_volume_mounts(
    raw: &RawResponse,
    obj: &Map<String, Value>,
    required: &[String],
    mitigate: bool,
) -> Result<String, BrokerError> {
    let invalid = |what: String| {
        raw.err(
            BrokerErrorKind::InvalidVolumeMounts,
            format!("{INVALID_RESPONSE}{what}"),
            mitigate,
        )
    };
    match obj.get("volume_mounts") {
        None | Some(Value::Null) => Ok("[]".to_string()),
        // An empty list asks for nothing: accepted from any service.
        Some(Value::Array(items)) if items.is_empty() => Ok("[]".to_string()),
        Some(_) if !requires(required, "volume_mount") => Err(invalid(
            "The service is attempting to supply volume mounts from your application, but is not registered as a volume mount service. Please contact the service provider.".into(),
        )),
        Some(Value::Array(items)) if items.iter().all(Value::is_object) => {
            Ok(Value::Array(items.clone()).to_string())
        }
        Some(_) => Err(invalid(format!(
            "expected \"volume_mounts\" key to contain an array of JSON objects in body, broker returned '{}'",
            raw.body_text()
        ))),
    }
}

/// Validates the binding fields of a bind/fetch response against what the service `requires`,
/// in the order of CC's validators (credentials, syslog drain, volume mounts).
pub(super) fn parse_binding_data(
    raw: &RawResponse,
    obj: &Map<String, Value>,
    required: &[String],
    mitigate: bool,
) -> Result<BindingData, BrokerError> {
    let credentials = match obj.get("credentials") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(_) => {
            return Err(raw.malformed("expected credentials to be a valid JSON object", mitigate))
        }
    };
    Ok(BindingData {
        credentials,
        syslog_drain_url: parse_syslog_drain_url(raw, obj, required, mitigate)?,
        volume_mounts: parse_volume_mounts(raw, obj, required, mitigate)?,
        parameters: obj.get("parameters").cloned(),
    })
}

/// A fetched binding's `parameters`: a JSON object (or absent). Anything else fails CC's schema
/// (`fetch_service_binding_response_schema`), with the json-schema validator's message.
pub(super) fn check_parameters(
    raw: &RawResponse,
    obj: &Map<String, Value>,
) -> Result<(), BrokerError> {
    let kind = match obj.get("parameters") {
        None | Some(Value::Null) | Some(Value::Object(_)) => return Ok(()),
        Some(Value::Array(_)) => "array",
        Some(Value::String(_)) => "string",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(n)) if n.is_f64() => "number",
        Some(Value::Number(_)) => "integer",
    };
    Err(raw.malformed(
        &format!(
            "\nThe property '#/parameters' of type {kind} did not match the following type: object"
        ),
        false,
    ))
}

pub(super) fn parse_delete_response(raw: &RawResponse) -> Result<UnbindOutcome, BrokerError> {
    match raw.status.as_u16() {
        200 => Ok(UnbindOutcome::Deleted),
        // Already gone: the platform treats it as deleted (OSB A.8).
        410 => Ok(UnbindOutcome::Deleted),
        202 => {
            let obj = raw.json_object().unwrap_or_default();
            let operation = parse_operation(raw, &obj)?;
            Ok(UnbindOutcome::Async { operation })
        }
        400..=499 => Err(raw.common_error(false)),
        _ => Err(raw.bad_response(true)),
    }
}

pub(super) fn parse_retry_after(v: &str) -> Option<u64> {
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

/// A failure before any answer (CC's `HttpRequestError`s: the `http` object has the URI and the
/// method, the description does not).
pub(super) fn transport_error(
    kind: BrokerErrorKind,
    uri: &str,
    method: &Method,
    mitigate: bool,
) -> BrokerError {
    let description = match kind {
        BrokerErrorKind::HttpClientTimeout | BrokerErrorKind::ApiTimeout => {
            "The request to the service broker timed out"
        }
        BrokerErrorKind::ApiAuthenticationFailed => {
            "Authentication with the service broker failed: its stored password cannot be read."
        }
        _ => "The service broker could not be reached",
    };
    BrokerError {
        kind,
        description: description.to_string(),
        http: BrokerHttpInfo {
            uri: Some(uri.to_string()),
            method: method.to_string(),
            status: None,
        },
        needs_orphan_mitigation: mitigate,
    }
}

pub(super) fn classify_transport(e: &reqwest::Error, uri: &str, method: &Method) -> BrokerError {
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
    fn syslog_commas_are_encoded() {
        assert_eq!(
            encode_syslog_drain_url_commas("syslog://a,b,c"),
            "syslog://a%2cb%2cc"
        );
    }
}
