//! Extractors: who is calling (the bearer token, verified), the request id, and the two
//! together as the use cases' [`Caller`] (or [`MaybeCaller`] where CC serves callers without
//! a token too).

use std::future::{ready, Ready};

use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::auth::Actor;
use crate::error::ApiError;
use crate::service::Caller;

/// The request id (see `middleware::request_id`: the client's, sanitised, plus a fresh UUID); stored in request extensions
/// by the middleware and forwarded to brokers.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl FromRequest for RequestId {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::new_v4().to_string()));
        ready(Ok(id))
    }
}

/// Parses `Authorization: bearer <jwt>` (scheme case-insensitive, as the cf CLI sends
/// lowercase and the Python client capitalised).
pub fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Err(ApiError::NotAuthenticated);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::InvalidAuthToken)?
        .trim();
    if value.is_empty() {
        return Err(ApiError::NotAuthenticated);
    }
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::InvalidAuthToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::InvalidAuthToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::InvalidAuthToken);
    }
    Ok(token)
}

impl FromRequest for Actor {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req
            .app_data::<actix_web::web::Data<crate::app::AppState>>()
            .cloned();
        let token = bearer_token(req).map(str::to_string);
        let req = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let actor = state.verifier.verify(&token?).await?;
            // For the access log: who, never the token.
            let who = match (&actor.user_id, &actor.client_id) {
                (Some(user), _) => Some(user.clone()),
                (None, Some(client)) => Some(format!("client:{client}")),
                (None, None) => None,
            };
            if let Some(who) = who {
                req.extensions_mut()
                    .insert(crate::api::access_log::AuthenticatedUser(who));
            }
            Ok(actor)
        })
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let actor = Actor::from_request(req, payload);
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Box::pin(async move {
            Ok(Caller {
                actor: actor.await?,
                request_id,
            })
        })
    }
}

/// The caller of a route that CC also serves without a token (`allow_unauthenticated_access`,
/// the marketplace lists): `None` when the request carries no token at all (what
/// [`bearer_token`] calls not authenticated). A token that is there but does not verify is
/// refused as on every other route (`CF-InvalidAuthToken`), as CC refuses it.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequest for MaybeCaller {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        if matches!(bearer_token(req), Err(ApiError::NotAuthenticated)) {
            return Box::pin(ready(Ok(MaybeCaller(None))));
        }
        let caller = Caller::from_request(req, payload);
        Box::pin(async move { Ok(MaybeCaller(Some(caller.await?))) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body_properties as props;
    use actix_web::http::header::{HeaderValue, AUTHORIZATION};
    use actix_web::test::TestRequest;
    use proptest::prelude::*;

    fn request_with(authorization: Option<HeaderValue>) -> HttpRequest {
        let mut req = TestRequest::default();
        if let Some(value) = authorization {
            req = req.insert_header((AUTHORIZATION, value));
        }
        req.to_http_request()
    }

    proptest! {
        #![proptest_config(props::config())]

        /// Any `Authorization` header: a token, or `401` with CF's `InvalidAuthToken` (or
        /// `NotAuthenticated` when it is blank), never a panic. A token is never blank and
        /// never carries the header's surrounding blanks.
        #[test]
        fn any_authorization_header_is_a_token_or_a_cf_401(
            raw in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..48),
                ("(bearer|Bearer|BEARER|basic|bearer\t)?[ \t]{0,2}", "[ -~\u{80}-\u{ff}]{0,40}")
                    .prop_map(|(scheme, rest)| format!("{scheme}{rest}").into_bytes()),
            ],
        ) {
            let Ok(value) = HeaderValue::from_bytes(&raw) else {
                return Ok(());
            };
            let req = request_with(Some(value));
            match bearer_token(&req) {
                Ok(token) => {
                    prop_assert!(!token.is_empty());
                    prop_assert_eq!(token, token.trim());
                }
                Err(e) => {
                    prop_assert!(
                        matches!(e, ApiError::InvalidAuthToken | ApiError::NotAuthenticated),
                        "{:?}", e
                    );
                    props::check_refusal(&Err::<(), _>(e), &[1000, 10002])?;
                }
            }
        }

        /// `bearer <token>` in any case of the scheme, with blanks around, gives the token.
        #[test]
        fn a_bearer_token_is_read_back(
            scheme in "[bB][eE][aA][rR][eE][rR]",
            token in "[!-~]{1,60}",
            before in "[ \t]{0,2}",
            after in "[ \t]{0,2}",
        ) {
            let value = HeaderValue::from_str(&format!("{before}{scheme} {token}{after}")).unwrap();
            let req = request_with(Some(value));
            prop_assert_eq!(bearer_token(&req).ok(), Some(token.as_str()));
        }
    }

    #[test]
    fn no_or_blank_header_is_not_authenticated_and_other_schemes_are_invalid() {
        assert!(matches!(
            bearer_token(&request_with(None)),
            Err(ApiError::NotAuthenticated)
        ));
        assert!(matches!(
            bearer_token(&request_with(Some(HeaderValue::from_static("  ")))),
            Err(ApiError::NotAuthenticated)
        ));
        for refused in ["Basic abc", "bearer", "bearer   ", "token", "Bearerabc"] {
            assert!(
                matches!(
                    bearer_token(&request_with(Some(HeaderValue::from_static(refused)))),
                    Err(ApiError::InvalidAuthToken)
                ),
                "{refused}"
            );
        }
    }
}
