//! The one error type of incidentd and its two renderings: a GraphQL error with `extensions.code`
//! and an HTTP status with `{"error": {"code", "message"}}`. Database text never reaches a client.

use crate::entity::Status;
use async_graphql::ErrorExtensions;
use axum::http::StatusCode;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    BadInput {
        field: Option<String>,
        message: String,
    },
    #[error("cannot move an incident from {from} to {to}; allowed from {from}: {}", list(.allowed))]
    InvalidTransition {
        from: Status,
        to: Status,
        allowed: Vec<Status>,
    },
    #[error("closing a {0} incident needs a postmortem first")]
    PostmortemRequired(crate::entity::Severity),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    QueryTooComplex(String),
    #[error("the change feed was interrupted; refetch with a query and subscribe again")]
    Lagged,
    #[error("the database is unavailable; try again shortly")]
    DatabaseUnavailable(#[source] DbErr),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

fn list(statuses: &[Status]) -> String {
    if statuses.is_empty() {
        return "none (final)".into();
    }
    statuses
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::BadInput {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::BadInput { .. } => "BAD_USER_INPUT",
            AppError::InvalidTransition { .. } => "INVALID_TRANSITION",
            AppError::PostmortemRequired(_) => "POSTMORTEM_REQUIRED",
            AppError::Conflict(_) => "CONFLICT",
            AppError::QueryTooComplex(_) => "QUERY_TOO_COMPLEX",
            AppError::Lagged => "SUBSCRIBER_LAGGED",
            AppError::DatabaseUnavailable(_) => "DATABASE_UNAVAILABLE",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadInput { .. } | AppError::QueryTooComplex(_) => StatusCode::BAD_REQUEST,
            AppError::InvalidTransition { .. }
            | AppError::PostmortemRequired(_)
            | AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::DatabaseUnavailable(_) | AppError::Lagged => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs what the client will not see, tagged with the request id the client does see.
    pub fn log(&self, request_id: &str) {
        match self {
            AppError::Internal(e) => {
                tracing::error!(request_id, error = ?e, "internal error")
            }
            AppError::DatabaseUnavailable(e) => {
                tracing::warn!(request_id, error = %e, "database unavailable")
            }
            _ => {}
        }
    }

    /// The message a client may read: for internal failures, only the request id.
    pub fn public_message(&self, request_id: &str) -> String {
        match self {
            AppError::Internal(_) => format!("internal error (request id {request_id})"),
            other => other.to_string(),
        }
    }

    /// The GraphQL rendering. Call through `GqlError` so `?` in a resolver can never bypass it.
    pub fn to_graphql(&self, request_id: &str) -> async_graphql::Error {
        self.log(request_id);
        async_graphql::Error::new(self.public_message(request_id)).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
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
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        if is_connection_error(&err) {
            return AppError::DatabaseUnavailable(err);
        }
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                AppError::Conflict("the change conflicts with existing data".into())
            }
            _ => AppError::Internal(err.into()),
        }
    }
}

fn is_connection_error(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(
                e.as_ref(),
                sea_orm::sqlx::Error::Io(_)
                    | sea_orm::sqlx::Error::PoolTimedOut
                    | sea_orm::sqlx::Error::PoolClosed
                    | sea_orm::sqlx::Error::WorkerCrashed
                    | sea_orm::sqlx::Error::Tls(_)
            ) || is_unavailable_sqlstate(e.as_ref())
        }
        _ => false,
    }
}

/// The server ended the session (class 57P: admin shutdown, crash, not accepting connections)
/// or the connection failed (class 08): the database is away, the request is not at fault.
fn is_unavailable_sqlstate(err: &sea_orm::sqlx::Error) -> bool {
    match err {
        sea_orm::sqlx::Error::Database(db_err) => db_err
            .code()
            .is_some_and(|code| code.starts_with("57P") || code.starts_with("08")),
        _ => false,
    }
}

/// The error type GraphQL resolvers return. It has no `Display`, so async-graphql's blanket
/// `From<T: Display>` (which would copy raw messages to the client) can never apply to it.
/// Cloneable, because a DataLoader hands one failure to every key of its batch.
#[derive(Clone)]
pub struct GqlError(pub std::sync::Arc<AppError>);

impl<E: Into<AppError>> From<E> for GqlError {
    fn from(e: E) -> Self {
        GqlError(std::sync::Arc::new(e.into()))
    }
}

impl From<GqlError> for async_graphql::Error {
    fn from(e: GqlError) -> Self {
        let request_id = crate::telemetry::current_request_id();
        e.0.to_graphql(&request_id)
    }
}

pub type GqlResult<T> = Result<T, GqlError>;
