//! The GraphQL rendering of `AppError`, the only one: `message` plus `extensions.code` (and
//! `field`, `currentStatus`, `allowedTransitions`, `requestId` where they apply), for field
//! errors, request errors and WebSocket errors alike.

use std::sync::Arc;

use async_graphql::{ErrorExtensionValues, ErrorExtensions, Pos, ServerError};

use crate::error::{AppError, code};
use crate::telemetry::current_request_id;

/// The error type GraphQL resolvers return. It has no `Display`, so async-graphql's blanket
/// `From<T: Display>` (which would copy raw messages to the client) can never apply to it.
/// Cloneable, because a DataLoader hands one failure to every key of its batch.
#[derive(Clone)]
pub struct GqlError(pub Arc<AppError>);

impl<E: Into<AppError>> From<E> for GqlError {
    fn from(e: E) -> Self {
        GqlError(Arc::new(e.into()))
    }
}

impl From<GqlError> for async_graphql::Error {
    fn from(e: GqlError) -> Self {
        render(&e.0, &current_request_id())
    }
}

pub type GqlResult<T> = Result<T, GqlError>;

/// The rendering. Logs what the client will not see, under the request id the client does see.
pub fn render(err: &AppError, request_id: &str) -> async_graphql::Error {
    err.log(request_id);
    async_graphql::Error::new(err.public_message(request_id)).extend_with(|_, ext| {
        ext.set("code", err.code());
        match err {
            AppError::BadInput {
                field: Some(field), ..
            } => ext.set("field", field.as_str()),
            AppError::InvalidTransition { from, allowed, .. } => {
                ext.set("currentStatus", from.as_str());
                ext.set(
                    "allowedTransitions",
                    async_graphql::Value::List(
                        allowed
                            .iter()
                            .map(|s| async_graphql::Value::from(s.as_str()))
                            .collect(),
                    ),
                );
            }
            AppError::Internal(_) | AppError::DatabaseUnavailable(_) => {
                ext.set("requestId", request_id)
            }
            _ => {}
        }
    })
}

/// An error that belongs to no place in the document: a request refused before it ran (it also
/// names the request id, so the client can quote it), or a limit of the connection.
pub fn request_error(err: &AppError, request_id: &str) -> ServerError {
    let mut error = render(err, request_id).into_server_error(Pos::default());
    error.locations.clear();
    error
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default)
        .set("requestId", request_id);
    error
}

/// Gives every error a code: errors of async-graphql's own parse and validation carry none, and
/// they are all the client's doing (`BAD_USER_INPUT`); the limits are checked by our extension,
/// which codes its own. Says whether the request failed as a whole (nothing ran: no data, and no
/// error belongs to a field, i.e. none has a path).
pub fn classify(response: &mut async_graphql::Response) -> bool {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", code::BAD_USER_INPUT);
        }
    }
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}
