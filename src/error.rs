//! The one error type of incidentd, its codes and its HTTP status. Each transport renders it in
//! one place (`graphql::error`, `rest::error`); database text never reaches a client.

use axum::http::StatusCode;
use sea_orm::{DbErr, RuntimeErr};

use crate::db::BeginError;
use crate::entity::{Severity, Status};

/// The codes clients see (`extensions.code` in GraphQL, `error.code` in REST).
pub mod code {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const INVALID_TRANSITION: &str = "INVALID_TRANSITION";
    pub const POSTMORTEM_REQUIRED: &str = "POSTMORTEM_REQUIRED";
    pub const CONFLICT: &str = "CONFLICT";
    /// The HTTP method cannot carry this operation (a mutation or subscription over GET).
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    pub const QUERY_TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";
    pub const BUSY: &str = "BUSY";
    pub const RESPONSE_TOO_LARGE: &str = "RESPONSE_TOO_LARGE";
    pub const SUBSCRIBER_LAGGED: &str = "SUBSCRIBER_LAGGED";
    /// Apollo's APQ name: the hash is unknown here, send the query text with it.
    pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
    /// Trusted-documents mode: the document is not in the manifest.
    pub const PERSISTED_QUERY_NOT_ALLOWED: &str = "PERSISTED_QUERY_NOT_ALLOWED";
    pub const DATABASE_UNAVAILABLE: &str = "DATABASE_UNAVAILABLE";
    pub const INTERNAL: &str = "INTERNAL";
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// `field` names the input at fault as GraphQL spells it (`actionItems.0.title`); REST shows
    /// it in snake_case.
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
    PostmortemRequired(Severity),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    MethodNotAllowed(&'static str),
    #[error("{0}")]
    QueryTooComplex(String),
    #[error(
        "the response would be larger than {0} bytes; ask for fewer items or fewer fields (page through them)"
    )]
    ResponseTooLarge(usize),
    #[error("the change feed was interrupted; refetch with a query and subscribe again")]
    Lagged,
    /// The message is the one Apollo Client and urql match on (urql by message only).
    #[error("PersistedQueryNotFound")]
    PersistedQueryNotFound,
    #[error("{0}")]
    PersistedQueryNotAllowed(String),
    /// A wait for a turn ran out (a hot incident's lock, a statement over its time): retry.
    #[error("{0}")]
    Busy(&'static str),
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
    /// Whether the same request may succeed if tried again shortly (the database away or busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, AppError::DatabaseUnavailable(_) | AppError::Busy(_))
    }

    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::BadInput {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => code::UNAUTHENTICATED,
            AppError::Forbidden(_) => code::FORBIDDEN,
            AppError::NotFound(_) => code::NOT_FOUND,
            AppError::BadInput { .. } => code::BAD_USER_INPUT,
            AppError::InvalidTransition { .. } => code::INVALID_TRANSITION,
            AppError::PostmortemRequired(_) => code::POSTMORTEM_REQUIRED,
            AppError::Conflict(_) => code::CONFLICT,
            AppError::MethodNotAllowed(_) => code::BAD_REQUEST,
            AppError::QueryTooComplex(_) => code::QUERY_TOO_COMPLEX,
            AppError::Lagged => code::SUBSCRIBER_LAGGED,
            AppError::PersistedQueryNotFound => code::PERSISTED_QUERY_NOT_FOUND,
            AppError::PersistedQueryNotAllowed(_) => code::PERSISTED_QUERY_NOT_ALLOWED,
            AppError::Busy(_) => code::BUSY,
            AppError::ResponseTooLarge(_) => code::RESPONSE_TOO_LARGE,
            AppError::DatabaseUnavailable(_) => code::DATABASE_UNAVAILABLE,
            AppError::Internal(_) => code::INTERNAL,
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadInput { .. }
            | AppError::QueryTooComplex(_)
            | AppError::ResponseTooLarge(_)
            | AppError::PersistedQueryNotAllowed(_) => StatusCode::BAD_REQUEST,
            // Not a failure of the request but a step of the protocol: the client retries with
            // the text. A 4xx here would be cached by CDNs (negative caching) and keep failing
            // the hash-only GET after the retry registered it.
            AppError::PersistedQueryNotFound => StatusCode::OK,
            AppError::InvalidTransition { .. }
            | AppError::PostmortemRequired(_)
            | AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::DatabaseUnavailable(_) | AppError::Lagged | AppError::Busy(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
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
}

/// The constraints whose violation is the client's doing, by name, with what to tell it.
/// Names are the migrations' own (PostgreSQL reports the constraint's name; SQLite reports none,
/// and there every writer runs alone, so the service's own checks under its lock speak first).
const CONSTRAINTS: [(&str, &str); 5] = [
    (
        "incident_records_pkey",
        "an incident with this id already exists",
    ),
    (
        "incident_events_pkey",
        "an event with this id already exists",
    ),
    (
        "uq_incident_events_incident_sequence",
        "another event took this place in the timeline at the same moment; try again",
    ),
    (
        "incident_postmortems_pkey",
        "a postmortem with this id already exists",
    ),
    (
        "uq_incident_postmortems_incident",
        "this incident already has a postmortem; change it with updatePostmortem",
    ),
];

const BUSY_WRITERS: &str = "the incident is busy with other changes; retry shortly";
const SLOW_STATEMENT: &str = "the database took too long to answer; retry shortly";

impl From<BeginError> for AppError {
    fn from(err: BeginError) -> Self {
        match err {
            BeginError::Busy => AppError::Busy(BUSY_WRITERS),
            BeginError::Db(err) => err.into(),
        }
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        if is_connection_error(&err) {
            return AppError::DatabaseUnavailable(err);
        }
        // PostgreSQL: lock_not_available (the lock timeout), query_canceled (the statement
        // timeout); SQLite: SQLITE_BUSY past its busy timeout.
        match database_error(&err).and_then(|e| e.code()).as_deref() {
            Some("55P03") | Some("5") => return AppError::Busy(BUSY_WRITERS),
            Some("57014") => return AppError::Busy(SLOW_STATEMENT),
            _ => {}
        }
        if let Some(db_err) = database_error(&err)
            && db_err.is_unique_violation()
        {
            let message = db_err
                .constraint()
                .and_then(|name| CONSTRAINTS.iter().find(|(n, _)| *n == name))
                .map_or("the change conflicts with existing data", |(_, m)| m);
            return AppError::Conflict(message.into());
        }
        AppError::Internal(err.into())
    }
}

fn database_error(err: &DbErr) -> Option<&dyn sea_orm::sqlx::error::DatabaseError> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                sea_orm::sqlx::Error::Database(db_err) => Some(db_err.as_ref()),
                _ => None,
            }
        }
        _ => None,
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
            ) || database_error(err).is_some_and(is_unavailable_sqlstate)
        }
        _ => false,
    }
}

/// The server ended the session (class 57P: admin shutdown, crash, not accepting connections)
/// or the connection failed (class 08): the database is away, the request is not at fault.
fn is_unavailable_sqlstate(err: &dyn sea_orm::sqlx::error::DatabaseError) -> bool {
    err.code()
        .is_some_and(|code| code.starts_with("57P") || code.starts_with("08"))
}
