//! Extractors for the REST handlers: the caller from the bearer token or the session cookie
//! (a write by cookie also shows its CSRF token), and axum's `Json`,
//! `Path` and `Query` with their rejections rendered as our `{"error": …}`.

use axum::extract::{FromRef, FromRequest, FromRequestParts};
use axum::http::Method;
use axum::http::request::Parts;

use super::RestState;
use super::error::ApiError;
use crate::auth::authenticate_request;
use crate::auth::sessions::Use;
use crate::incident::identity::{Principal, Writer};

/// Any authenticated caller: enough for reads. What its token says about its person reaches
/// the people directory.
pub struct Caller(pub Principal);

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    RestState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let rest = RestState::from_ref(state);
        let usage = match parts.method {
            Method::GET | Method::HEAD => Use::Read,
            _ => Use::Write,
        };
        let principal =
            authenticate_request(&rest.auth, &rest.sessions, &parts.headers, usage).await?;
        rest.domain.recognize(&principal).await;
        Ok(Caller(principal))
    }
}

/// A caller allowed to write. Checked before the body is read, so a viewer learns 403 whatever
/// it sent.
pub struct Responder(pub Writer);

impl<S> FromRequestParts<S> for Responder
where
    S: Send + Sync,
    RestState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        Ok(Responder(principal.writer()?))
    }
}

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
