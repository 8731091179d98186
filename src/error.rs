//! The one error type of the HTTP API. Every failure a client can see is a variant here, and every
//! variant renders Cloud Controller's v2 error body:
//! `{"description": "...", "error_code": "CF-<Name>", "code": <n>}` with CC's HTTP status
//! (codes, names and templates from cloud_controller_ng `errors/v2.yml`).
//!
//! Internal causes (database, I/O, bugs) are logged with the request id and rendered as CC's
//! generic `UnknownError`; their text never reaches the client.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::broker::BrokerError;

/// The content type of every JSON document tether answers with (CC's spelling).
pub const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    // --- request and auth -------------------------------------------------------------------
    #[error("Invalid Auth Token")]
    InvalidAuthToken,
    #[error("Request invalid due to parse error: {0}")]
    MessageParseError(String),
    #[error("{0}")]
    InvalidRelation(String),
    #[error("Unknown request")]
    NotFound,
    /// CC's generic `ResourceNotFound` (10010), for resources without an error of their own.
    #[error("{0}")]
    NotFoundResource(String),
    #[error("Authentication error")]
    NotAuthenticated,
    #[error("You are not authorized to perform the requested action")]
    NotAuthorized,
    #[error("The request is invalid")]
    InvalidRequest,
    #[error("The query parameter is invalid: {0}")]
    BadQueryParameter(String),
    #[error("Please delete the {0} associations for your {1}.")]
    AssociationNotEmpty(String, String),
    #[error("Your token lacks the necessary scopes to access this resource.")]
    InsufficientScope,
    #[error("{0}")]
    UnprocessableEntity(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("The organization is suspended")]
    OrgSuspended,
    /// A body over the size limit (413; CC's nginx answers it before CC sees the request).
    #[error("The request body is too large: at most {0} bytes are accepted.")]
    RequestBodyTooLarge(usize),
    /// A body that did not arrive before the deadline (408; nginx's `client_body_timeout`).
    #[error("The request body was not received in time.")]
    RequestBodyTimeout,

    // --- users, organizations, spaces, apps ----------------------------------------------------
    #[error("The user info is invalid: {0}")]
    UserInvalid(String),
    #[error("The UAA ID is taken: {0}")]
    UaaIdTaken(String),
    #[error("The user could not be found: {0}")]
    UserNotFound(String),
    #[error("The organization info is invalid: {0}")]
    OrganizationInvalid(String),
    #[error("The organization name is taken: {0}")]
    OrganizationNameTaken(String),
    #[error("The organization could not be found: {0}")]
    OrganizationNotFound(String),
    #[error("The app space info is invalid: {0}")]
    SpaceInvalid(String),
    #[error("The app space name is taken: {0}")]
    SpaceNameTaken(String),
    #[error("The app space and the user are not in the same org: {0}")]
    SpaceUserNotInOrg(String),
    #[error("The app space could not be found: {0}")]
    SpaceNotFound(String),
    #[error("The app is invalid: {0}")]
    AppInvalid(String),
    #[error("The app name is taken: {0}")]
    AppNameTaken(String),
    #[error("The app could not be found: {0}")]
    AppNotFound(String),

    // --- service instances -----------------------------------------------------------------
    #[error("Service instance name is required.")]
    ServiceInstanceNameEmpty,
    #[error("The service instance name is taken: {0}")]
    ServiceInstanceNameTaken(String),
    #[error("The service instance is invalid: {0}")]
    ServiceInstanceInvalid(String),
    #[error("The service instance could not be found: {0}")]
    ServiceInstanceNotFound(String),
    #[error(
        "You have requested an invalid service instance name. Names are limited to 255 characters."
    )]
    ServiceInstanceNameTooLong,
    #[error("Combined length of tags for service {0} must be 2048 characters or less.")]
    ServiceInstanceTagsTooLong(String),
    #[error("An operation for service instance {0} is in progress.")]
    AsyncServiceInstanceOperationInProgress(String),
    #[error("The service broker reported an error during deprovisioning: {0}")]
    ServiceInstanceDeprovisionFailed(String),
    #[error("The service instance could not be found: {0}")]
    UserProvidedServiceInstanceNotFound(String),
    #[error("Please use the User Provided Services API to manage this resource.")]
    UserProvidedServiceInstanceHandlerNeeded,
    /// The instance's name, and each association's error (tab-indented, blank-line separated).
    #[error("Deletion of service instance {0} failed because one or more associated resources could not be deleted.\n\n{1}")]
    ServiceInstanceRecursiveDeleteFailed(String, String),

    // --- service bindings --------------------------------------------------------------------
    #[error("The service binding is invalid: {0}")]
    ServiceBindingInvalid(String),
    #[error("{0}")]
    ServiceBindingAppServiceTaken(String),
    #[error("The service binding could not be found: {0}")]
    ServiceBindingNotFound(String),
    #[error("The service instance doesn't support binding.")]
    UnbindableService,
    #[error("This service does not support fetching service binding parameters.")]
    ServiceFetchBindingParametersNotSupported,
    #[error("An operation for the service binding between app {0} and service instance {1} is in progress.")]
    AsyncServiceBindingOperationInProgress(String, String),

    // --- catalog: brokers, services, plans ---------------------------------------------------
    #[error("The service plan is invalid: {0}")]
    ServicePlanInvalid(String),
    #[error("The service plan could not be found: {0}")]
    ServicePlanNotFound(String),
    #[error("The service does not support changing plans.")]
    ServicePlanNotUpdateable,
    #[error("The service could not be found: {0}")]
    ServiceNotFound(String),
    #[error("This combination of ServicePlan and Organization is already taken: {0}")]
    ServicePlanVisibilityAlreadyExists(String),
    #[error("The service plan visibility could not be found: {0}")]
    ServicePlanVisibilityNotFound(String),
    #[error("Service Plan Visibility is invalid: {0}")]
    ServicePlanVisibilityInvalid(String),
    #[error("Service broker is invalid: {0}")]
    ServiceBrokerInvalid(String),
    #[error("The service broker name is taken")]
    ServiceBrokerNameTaken,
    #[error("The service broker url is taken: {0}")]
    ServiceBrokerUrlTaken(String),
    #[error("The service broker was not found: {0}")]
    ServiceBrokerNotFound(String),
    #[error("Can not remove brokers that have associated service instances: {0}")]
    ServiceBrokerNotRemovable(String),
    #[error("{0} is not a valid URL")]
    ServiceBrokerUrlInvalid(String),
    #[error("Service broker catalog is invalid: {0}")]
    ServiceBrokerCatalogInvalid(String),
    #[error("User name and password fields in the broker URI are not supported")]
    ServiceBrokerUrlBasicAuthNotSupported,
    #[error("This service plan requires client support for asynchronous service operations.")]
    ServiceBrokerAsyncRequired,
    #[error("The service broker responded asynchronously to a request, but the accepts_incomplete query parameter was false or not given.")]
    ServiceBrokerRespondedAsyncWhenNotAllowed,
    #[error("The service broker could not perform this operation in parallel with other running operations")]
    ServiceBrokerConcurrencyError,

    // --- service keys ---------------------------------------------------------------------
    #[error("The service key name is taken: {0}")]
    ServiceKeyNameTaken(String),
    #[error("The service key is invalid: {0}")]
    ServiceKeyInvalid(String),
    #[error("The service key could not be found: {0}")]
    ServiceKeyNotFound(String),
    #[error("{0}")]
    ServiceKeyNotSupported(String),

    // --- feature flags ----------------------------------------------------------------------
    #[error("The feature flag could not be found: {0}")]
    FeatureFlagNotFound(String),

    // --- jobs ---------------------------------------------------------------------------------
    #[error("The job could not be found: {0}")]
    JobNotFound(String),

    /// A failure reported by (or while talking to) a service broker. Rendered the way CC renders
    /// its `HttpResponseError`s: code 10001 and an `http` object.
    #[error("{0}")]
    Broker(#[from] BrokerError),

    /// The database pool or the bounded blocking executor could not serve the request in time.
    #[error("The service is temporarily unavailable, please retry")]
    Busy,

    /// Anything else. The cause (and where it was raised) is logged, never sent.
    #[error("An unknown error occurred.")]
    Internal(Box<Internal>),
}

/// An internal error's cause and the place in tether's code it was raised.
#[derive(Debug)]
pub struct Internal {
    pub cause: Box<dyn std::error::Error + Send + Sync>,
    pub at: &'static std::panic::Location<'static>,
}

impl std::fmt::Display for Internal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at {})", self.cause, self.at)?;
        let mut source = self.cause.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// CC's v2 error document.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CfError)]
pub struct ErrorBody<'a> {
    /// For people.
    description: String,
    /// `CF-<Name>` (CC's error name; a bare `UnknownError` for internal errors).
    error_code: String,
    /// CC's number for the error.
    code: u32,
    /// For a broker's failure: the request tether made and the broker's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = crate::broker::BrokerHttpInfo)]
    http: Option<&'a crate::broker::BrokerHttpInfo>,
}

impl ApiError {
    /// An internal error with its cause, recorded where this is called.
    #[track_caller]
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(Box::new(Internal {
            cause: cause.into(),
            at: std::panic::Location::caller(),
        }))
    }

    /// What to write to the server's own log: the internal cause and where it was raised, where
    /// there is one (clients only ever see the generic description).
    pub fn log_text(&self) -> String {
        match self {
            ApiError::Internal(internal) => format!("internal: {internal}"),
            other => other.to_string(),
        }
    }

    /// `(http status, CC code, CC name)`.
    ///
    /// One exhaustive match, on purpose longer than a screen: it is a table, and a new variant
    /// that is not in it fails to compile instead of rendering as an UnknownError (split into
    /// per-family lookups it lost that check, so it went back to one).
    pub fn details(&self) -> (u16, u32, &'static str) {
        use ApiError::*;
        match self {
            InvalidAuthToken => (401, 1000, "InvalidAuthToken"),
            MessageParseError(_) => (400, 1001, "MessageParseError"),
            InvalidRelation(_) => (400, 1002, "InvalidRelation"),
            NotFound => (404, 10000, "NotFound"),
            NotFoundResource(_) => (404, 10010, "ResourceNotFound"),
            NotAuthenticated => (401, 10002, "NotAuthenticated"),
            NotAuthorized => (403, 10003, "NotAuthorized"),
            InvalidRequest => (400, 10004, "InvalidRequest"),
            BadQueryParameter(_) => (400, 10005, "BadQueryParameter"),
            AssociationNotEmpty(..) => (400, 10006, "AssociationNotEmpty"),
            InsufficientScope => (403, 10007, "InsufficientScope"),
            UnprocessableEntity(_) => (422, 10008, "UnprocessableEntity"),
            ServiceUnavailable(_) => (503, 10015, "ServiceUnavailable"),
            OrgSuspended => (403, 10017, "OrgSuspended"),
            RequestBodyTooLarge(_) => (413, 10004, "InvalidRequest"),
            RequestBodyTimeout => (408, 10004, "InvalidRequest"),
            UserInvalid(_) => (400, 20001, "UserInvalid"),
            UaaIdTaken(_) => (400, 20002, "UaaIdTaken"),
            UserNotFound(_) => (404, 20003, "UserNotFound"),
            OrganizationInvalid(_) => (400, 30001, "OrganizationInvalid"),
            OrganizationNameTaken(_) => (400, 30002, "OrganizationNameTaken"),
            OrganizationNotFound(_) => (404, 30003, "OrganizationNotFound"),
            SpaceInvalid(_) => (400, 40001, "SpaceInvalid"),
            SpaceNameTaken(_) => (400, 40002, "SpaceNameTaken"),
            SpaceUserNotInOrg(_) => (400, 40003, "SpaceUserNotInOrg"),
            SpaceNotFound(_) => (404, 40004, "SpaceNotFound"),
            AppInvalid(_) => (400, 100001, "AppInvalid"),
            AppNameTaken(_) => (400, 100002, "AppNameTaken"),
            AppNotFound(_) => (404, 100004, "AppNotFound"),
            ServiceInstanceNameEmpty => (400, 60001, "ServiceInstanceNameEmpty"),
            ServiceInstanceNameTaken(_) => (400, 60002, "ServiceInstanceNameTaken"),
            ServiceInstanceInvalid(_) => (400, 60003, "ServiceInstanceInvalid"),
            ServiceInstanceNotFound(_) => (404, 60004, "ServiceInstanceNotFound"),
            ServiceInstanceNameTooLong => (400, 60009, "ServiceInstanceNameTooLong"),
            ServiceInstanceTagsTooLong(_) => (400, 60015, "ServiceInstanceTagsTooLong"),
            AsyncServiceInstanceOperationInProgress(_) => {
                (409, 60016, "AsyncServiceInstanceOperationInProgress")
            }
            ServiceInstanceDeprovisionFailed(_) => (409, 60011, "ServiceInstanceDeprovisionFailed"),
            UserProvidedServiceInstanceNotFound(_) => {
                (404, 340001, "UserProvidedServiceInstanceNotFound")
            }
            UserProvidedServiceInstanceHandlerNeeded => {
                (400, 340002, "UserProvidedServiceInstanceHandlerNeeded")
            }
            ServiceInstanceRecursiveDeleteFailed(..) => {
                (502, 60027, "ServiceInstanceRecursiveDeleteFailed")
            }
            ServiceBindingInvalid(_) => (400, 90001, "ServiceBindingInvalid"),
            ServiceBindingAppServiceTaken(_) => (400, 90003, "ServiceBindingAppServiceTaken"),
            ServiceBindingNotFound(_) => (404, 90004, "ServiceBindingNotFound"),
            UnbindableService => (400, 90005, "UnbindableService"),
            ServiceFetchBindingParametersNotSupported => {
                (400, 90007, "ServiceFetchBindingParametersNotSupported")
            }
            AsyncServiceBindingOperationInProgress(..) => {
                (409, 90008, "AsyncServiceBindingOperationInProgress")
            }
            ServicePlanInvalid(_) => (400, 110001, "ServicePlanInvalid"),
            ServicePlanNotFound(_) => (404, 110003, "ServicePlanNotFound"),
            ServicePlanNotUpdateable => (400, 110004, "ServicePlanNotUpdateable"),
            ServiceNotFound(_) => (404, 120003, "ServiceNotFound"),
            ServicePlanVisibilityInvalid(_) => (400, 260001, "ServicePlanVisibilityInvalid"),
            ServicePlanVisibilityAlreadyExists(_) => {
                (400, 260002, "ServicePlanVisibilityAlreadyExists")
            }
            ServicePlanVisibilityNotFound(_) => (404, 260003, "ServicePlanVisibilityNotFound"),
            ServiceBrokerInvalid(_) => (400, 270001, "ServiceBrokerInvalid"),
            ServiceBrokerNameTaken => (400, 270002, "ServiceBrokerNameTaken"),
            ServiceBrokerUrlTaken(_) => (400, 270003, "ServiceBrokerUrlTaken"),
            ServiceBrokerNotFound(_) => (404, 270004, "ServiceBrokerNotFound"),
            ServiceBrokerNotRemovable(_) => (400, 270010, "ServiceBrokerNotRemovable"),
            ServiceBrokerUrlInvalid(_) => (400, 270011, "ServiceBrokerUrlInvalid"),
            ServiceBrokerCatalogInvalid(_) => (502, 270012, "ServiceBrokerCatalogInvalid"),
            ServiceBrokerUrlBasicAuthNotSupported => {
                (400, 270016, "ServiceBrokerUrlBasicAuthNotSupported")
            }
            ServiceBrokerAsyncRequired => (400, 270014, "ServiceBrokerAsyncRequired"),
            ServiceBrokerRespondedAsyncWhenNotAllowed => {
                (502, 270017, "ServiceBrokerRespondedAsyncWhenNotAllowed")
            }
            ServiceBrokerConcurrencyError => (422, 270018, "ServiceBrokerConcurrencyError"),
            ServiceKeyNameTaken(_) => (400, 360001, "ServiceKeyNameTaken"),
            ServiceKeyInvalid(_) => (400, 360002, "ServiceKeyInvalid"),
            ServiceKeyNotFound(_) => (404, 360003, "ServiceKeyNotFound"),
            ServiceKeyNotSupported(_) => (400, 360004, "ServiceKeyNotSupported"),
            FeatureFlagNotFound(_) => (404, 330000, "FeatureFlagNotFound"),
            JobNotFound(_) => (404, 10000, "NotFound"),
            Broker(e) => (e.status(), 10001, e.error_name()),
            Busy => (503, 10015, "ServiceUnavailable"),
            Internal(_) => (500, 10001, "UnknownError"),
        }
    }

    /// The JSON body, as bytes (also used by non-actix callers such as the job API).
    pub fn body(&self) -> Vec<u8> {
        let (_, code, name) = self.details();
        let error_code = match self {
            // CC's generic handler uses the bare name for unknown errors.
            ApiError::Internal(_) => name.to_string(),
            _ => format!("CF-{name}"),
        };
        let http = match self {
            ApiError::Broker(e) => e.http_info(),
            _ => None,
        };
        serde_json::to_vec(&ErrorBody {
            description: self.to_string(),
            error_code,
            code,
            http,
        })
        .unwrap_or_default()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.details().0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(internal) => tracing::error!(cause = %internal, "internal error"),
            ApiError::Busy => tracing::warn!("request refused: database pool exhausted"),
            ApiError::Broker(e) => tracing::info!(error = %e, "broker error"),
            _ => {}
        }
        HttpResponse::build(self.status_code())
            .content_type(JSON_CONTENT_TYPE)
            .body(self.body())
    }
}

impl From<crate::db::DbError> for ApiError {
    #[track_caller]
    fn from(e: crate::db::DbError) -> Self {
        if e.is_unavailable() {
            // The database went away (restart, failover) or is busy: the client may retry.
            tracing::warn!(error = %e, "database unavailable");
            return ApiError::Busy;
        }
        ApiError::internal(e)
    }
}

impl From<diesel::result::Error> for ApiError {
    #[track_caller]
    fn from(e: diesel::result::Error) -> Self {
        ApiError::from(crate::db::DbError::Query(e))
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        ApiError::Busy
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
