//! The middleware every request passes through: request id and CC's standard headers, a
//! deadline on the request body, a panic guard, and CF error bodies for the errors actix
//! produces itself (unknown routes, wrong methods, oversized or unreadable bodies, bad path
//! segments), so that a client always gets a document it can parse.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, ResponseError};
use futures_util::{FutureExt, Stream};

use crate::api::extract::RequestId;
use crate::error::ApiError;

/// Request id, CC's standard response headers, the body deadline, the panic guard and CF error
/// bodies, on every response (errors included).
pub async fn standard_headers(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request_id(req.headers());
    req.extensions_mut().insert(RequestId(id.clone()));
    if let Some(limit) = body_timeout(&req).filter(|_| has_body(&req)) {
        let payload = req.take_payload();
        req.set_payload(Payload::Stream {
            payload: Box::pin(Deadline::new(payload, limit)),
        });
    }
    let res = if req.path().to_ascii_lowercase().contains("%00") {
        // A NUL byte can name no resource, and PostgreSQL refuses it in text: answer here.
        req.into_response(ApiError::NotFound.error_response())
            .map_into_right_body()
    } else {
        match AssertUnwindSafe(next.call(req)).catch_unwind().await {
            Ok(Ok(res)) => cf_error_body(res),
            // Neither of these has a request left to answer with: the error goes to actix, which
            // renders it with `error_response` (a CF document with the request id).
            Ok(Err(e)) if e.as_error::<ApiError>().is_some() => return Err(e),
            Ok(Err(e)) => {
                let status = e.as_response_error().status_code();
                return Err(Failed(to_api_error(Some(&e), status), id).into());
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let e = ApiError::internal(format!("a request handler panicked: {what}"));
                return Err(Failed(e, id).into());
            }
        }
    };
    Ok(with_standard_headers(res, &id))
}

/// CC's `VcapRequestContextSetter`: the client's `X-VCAP-Request-ID`, else its `X-Request-ID`,
/// keeps only word characters and `-`, at most 255 of them, and gets `::` and a fresh UUID
/// appended (so that two requests never share an id); without either header, a fresh UUID.
/// This id is echoed, logged and forwarded to brokers.
pub(crate) fn request_id(headers: &header::HeaderMap) -> String {
    let fresh = uuid::Uuid::new_v4().to_string();
    let given = ["x-vcap-request-id", "x-request-id"]
        .iter()
        .filter_map(|name| headers.get(*name))
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .find(|v| !v.trim().is_empty());
    match given {
        Some(value) => {
            let kept: String = value
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .take(255)
                .collect();
            format!("{kept}::{fresh}")
        }
        None => fresh,
    }
}

fn with_standard_headers<B>(mut res: ServiceResponse<B>, id: &str) -> ServiceResponse<B> {
    set_standard_headers(res.headers_mut(), id);
    res
}

fn set_standard_headers(headers: &mut header::HeaderMap, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert(HeaderName::from_static("x-vcap-request-id"), v);
    }
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
}

/// An error that reached the middleware without a response (a panic, an error of the
/// framework's own services), with the request id to answer it under.
#[derive(Debug)]
struct Failed(ApiError, String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for Failed {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        let mut resp = render(&self.0);
        set_standard_headers(resp.headers_mut(), &self.1);
        resp
    }
}

/// The configured deadline for reading a request body (`None` in apps built without state).
fn body_timeout(req: &ServiceRequest) -> Option<Duration> {
    req.app_data::<actix_web::web::Data<crate::app::AppState>>()
        .map(|state| state.config.request_body_timeout)
}

/// Whether the request announces a body (a length above zero, or chunks).
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Gives an error response that is not already a JSON document a CF error body. Our own
/// errors (and the UAA endpoints' OAuth errors) are JSON already and pass unchanged.
fn cf_error_body<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> ServiceResponse<EitherBody<B, BoxBody>> {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res.map_into_left_body();
    }
    let replacement = render(&to_api_error(res.response().error(), status));
    let (req, _) = res.into_parts();
    ServiceResponse::new(req, replacement).map_into_right_body()
}

/// The CF error for an error actix raised (or for a bare status).
fn to_api_error(error: Option<&actix_web::Error>, status: StatusCode) -> ApiError {
    if let Some(ours) = error.and_then(|e| e.as_error::<ApiError>()) {
        // Ours, but its response lost its JSON type on the way: ours are never rendered so.
        return ApiError::internal(format!("{status}: {ours}"));
    }
    match error.and_then(error_kind) {
        Some(PayloadProblem::TooLarge) => ApiError::RequestBodyTooLarge(crate::api::MAX_BODY_BYTES),
        Some(PayloadProblem::TimedOut) => ApiError::RequestBodyTimeout,
        Some(PayloadProblem::Unreadable) => {
            ApiError::MessageParseError("the request body could not be read".into())
        }
        None => match status.as_u16() {
            // CC (Rails routes) answers an unknown path and a known path with another method
            // alike: 404 "Unknown request".
            404 | 405 => ApiError::NotFound,
            401 => ApiError::NotAuthenticated,
            403 => ApiError::NotAuthorized,
            413 => ApiError::RequestBodyTooLarge(crate::api::MAX_BODY_BYTES),
            408 => ApiError::RequestBodyTimeout,
            400..=499 => ApiError::InvalidRequest,
            503 => ApiError::Busy,
            _ => ApiError::internal(match error {
                Some(e) => format!("{status}: {e}"),
                None => status.to_string(),
            }),
        },
    }
}

/// The response for an error raised here.
fn render(error: &ApiError) -> actix_web::HttpResponse {
    let mut resp = error.error_response();
    if matches!(error, ApiError::RequestBodyTimeout) {
        // The rest of the body may still be on its way: this connection is done.
        resp.head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    resp
}

enum PayloadProblem {
    TooLarge,
    TimedOut,
    Unreadable,
}

/// What went wrong with a request body, if that is what the error is about (the body
/// extractors wrap the payload's error in their own).
fn error_kind(error: &actix_web::Error) -> Option<PayloadProblem> {
    let payload = error.as_error::<PayloadError>().or_else(|| {
        error
            .as_error::<actix_web::error::JsonPayloadError>()
            .and_then(|e| match e {
                actix_web::error::JsonPayloadError::Payload(p) => Some(p),
                _ => None,
            })
    })?;
    Some(match payload {
        PayloadError::Overflow => PayloadProblem::TooLarge,
        PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => PayloadProblem::TimedOut,
        _ => PayloadProblem::Unreadable,
    })
}

/// A request body that must arrive in full before a deadline (nginx in front of CC has
/// `client_body_timeout`): a client that announces a body and then stalls would otherwise hold
/// its connection, and the handler waiting on it, forever.
struct Deadline {
    inner: Payload,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(inner: Payload, limit: Duration) -> Self {
        Deadline {
            inner,
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body deadline passed",
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }
}
