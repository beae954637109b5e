//! The REST rendering of `AppError`: `{"error": {"code", "message", …}}` with the status
//! `AppError::http_status()` gives, and axum's own extractor rejections turned into the same shape.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::entity::Status;
use crate::error::AppError;
use crate::telemetry::current_request_id;

/// What every REST handler and extractor fails with.
#[derive(Debug)]
pub struct ApiError {
    error: AppError,
    /// Set only where HTTP has a more precise status than the error's own (413, 405).
    status: Option<StatusCode>,
}

impl ApiError {
    fn bad_input(message: String) -> ApiError {
        ApiError::from(AppError::BadInput {
            field: None,
            message,
        })
    }

    fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = Some(status);
        self
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::bad_input("this method is not allowed on this path".into())
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        ApiError {
            error,
            status: None,
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(e) => ApiError::bad_input(format!(
                "the request body is not valid JSON: {}",
                e.body_text()
            )),
            JsonRejection::JsonDataError(e) => ApiError::bad_input(format!(
                "the request body does not have the expected fields: {}",
                e.body_text()
            )),
            JsonRejection::MissingJsonContentType(_) => ApiError::bad_input(
                "the request body must be sent as Content-Type: application/json".into(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::bad_input("the request body is too large".into())
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            other => ApiError::bad_input(format!(
                "cannot read the request body: {}",
                other.body_text()
            )),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::from(AppError::bad_input(
            "id",
            format!("the path is not valid: {}", rejection.body_text()),
        ))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_input(format!(
            "the query string is not valid: {}",
            rejection.body_text()
        ))
    }
}

/// `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, BAD_USER_INPUT, INVALID_TRANSITION,
    /// POSTMORTEM_REQUIRED, CONFLICT, BUSY, DATABASE_UNAVAILABLE or INTERNAL.
    pub code: &'static str,
    pub message: String,
    /// The input field at fault, for BAD_USER_INPUT when one field is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For INVALID_TRANSITION: where the incident is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::entity::openapi::status_ref)]
    pub current_status: Option<Status>,
    /// For INVALID_TRANSITION: where it may go from there.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::entity::openapi::status_list_ref)]
    pub allowed_transitions: Option<Vec<Status>>,
    /// For INTERNAL and DATABASE_UNAVAILABLE: the id under which the server logged the detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The REST router runs every request inside its own request id's scope.
        let request_id = current_request_id();
        let error = &self.error;
        error.log(&request_id);
        let mut detail = ErrorDetail {
            code: error.code(),
            message: error.public_message(&request_id),
            field: None,
            current_status: None,
            allowed_transitions: None,
            request_id: None,
        };
        match error {
            AppError::BadInput {
                field: Some(field), ..
            } => detail.field = Some(snake_case(field)),
            AppError::InvalidTransition { from, allowed, .. } => {
                detail.current_status = Some(*from);
                detail.allowed_transitions = Some(allowed.clone());
            }
            AppError::Internal(_) | AppError::DatabaseUnavailable(_) => {
                detail.request_id = Some(request_id)
            }
            _ => {}
        }
        let status = self.status.unwrap_or_else(|| error.http_status());
        let mut response = (status, Json(ErrorBody { error: detail })).into_response();
        if matches!(error, AppError::Busy(_) | AppError::DatabaseUnavailable(_)) {
            // Worth retrying: say when.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// The domain names some fields as GraphQL spells them (`actionItems.0.title`); REST speaks
/// snake_case (`action_items.0.title`).
fn snake_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len() + 4);
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn field_paths_become_snake_case() {
        assert_eq!(
            super::snake_case("actionItems.3.ticketId"),
            "action_items.3.ticket_id"
        );
        assert_eq!(super::snake_case("linked_ticket_ids"), "linked_ticket_ids");
    }
}
