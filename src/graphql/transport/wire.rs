//! The bytes the HTTP-based transports share: `Accept` negotiation between `application/json`
//! and `application/graphql-response+json`, the GraphQL-over-HTTP error shape and its statuses,
//! and reading an operation from a query string.

use async_graphql::ParseRequestError;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::AppError;
use crate::graphql::error::request_error;

pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Json,
    GraphQLResponseJson,
}

impl MediaType {
    /// The client's preference from `Accept`; `None` when it accepts neither JSON type.
    pub fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Some(MediaType::Json);
        };
        let mut best: Option<(MediaType, f32)> = None;
        for part in accept.split(',') {
            let mut params = part.split(';');
            let mime = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let media = match mime.as_str() {
                GRAPHQL_RESPONSE_JSON => MediaType::GraphQLResponseJson,
                "application/json" | "application/*" | "*/*" => MediaType::Json,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(_, bq)| q > bq) {
                best = Some((media, q));
            }
        }
        best.map(|(m, _)| m)
    }

    pub fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            MediaType::Json => "application/json; charset=utf-8",
            MediaType::GraphQLResponseJson => "application/graphql-response+json; charset=utf-8",
        })
    }
}

pub fn json_response(status: StatusCode, media: MediaType, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
    response
}

/// A request-level failure (nothing executed): `{"errors": [...]}` without `data`.
pub fn error_response(err: &AppError, media: MediaType, request_id: &str) -> Response {
    let body = json!({ "errors": [request_error(err, request_id)] });
    let status = match (err, media) {
        (
            AppError::Unauthenticated(_)
            | AppError::Forbidden(_)
            | AppError::MethodNotAllowed(_)
            | AppError::PersistedQueryNotFound,
            _,
        ) => err.http_status(),
        (_, MediaType::Json) => StatusCode::OK,
        _ => err.http_status(),
    };
    let mut response = json_response(status, media, &body);
    if matches!(err, AppError::MethodNotAllowed(_)) {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// A request the server could not even read as GraphQL: always `status`, whatever the media type.
pub fn rejected(
    status: StatusCode,
    err: &AppError,
    media: MediaType,
    request_id: &str,
) -> Response {
    let mut response = error_response(err, media, request_id);
    *response.status_mut() = status;
    response
}

pub fn not_acceptable() -> Response {
    (
        StatusCode::NOT_ACCEPTABLE,
        "accepts application/graphql-response+json or application/json",
    )
        .into_response()
}

/// The answer to a body that is not a GraphQL request.
pub fn rejected_body(rejection: GraphQLRejection, media: MediaType, request_id: &str) -> Response {
    let (status, message) = match &rejection.0 {
        ParseRequestError::UnsupportedBatch => (
            StatusCode::BAD_REQUEST,
            "batched requests (a JSON array body) are not supported; send one \
             operation per request"
                .to_string(),
        ),
        // The body stream is cut by `RequestBodyLimitLayer` when no Content-Length
        // announced the size; the extractor only keeps the error's text.
        ParseRequestError::Io(e) if e.to_string().contains("length limit exceeded") => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large".to_string(),
        ),
        other => (
            StatusCode::BAD_REQUEST,
            format!("the request is not a GraphQL request: {other}"),
        ),
    };
    let err = AppError::BadInput {
        field: None,
        message,
    };
    rejected(status, &err, media, request_id)
}

/// `application/json` or `application/graphql-response+json`, whatever the parameters.
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .is_some_and(|essence| essence == "application/json" || essence == GRAPHQL_RESPONSE_JSON)
}

/// async-graphql 7.2's `parse_query_string` reads the operation name from an `operation_name`
/// parameter; the GraphQL-over-HTTP spec (and every client) sends `operationName`. A query
/// string that is not a GraphQL request is `BAD_USER_INPUT`.
pub fn parse_query_string(raw: &str) -> Result<async_graphql::Request, AppError> {
    let normalized: Vec<String> = raw
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("operationName", value)) => format!("operation_name={value}"),
            _ => pair.to_string(),
        })
        .collect();
    async_graphql::http::parse_query_string(&normalized.join("&")).map_err(|e| AppError::BadInput {
        field: None,
        message: format!("the query string is not a GraphQL request: {e}"),
    })
}
