//! GraphQL over HTTP: authentication, `Accept` negotiation between `application/json` and
//! `application/graphql-response+json`, GET for queries only, and GraphiQL for browsers.

use async_graphql::ParseRequestError;
use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql_axum::GraphQLRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use std::sync::Arc;

use super::GraphqlState;
use super::error::{classify, request_error};
use crate::error::AppError;
use crate::incident::budget::ResponseBudget;
use crate::telemetry::{request_id, with_request_id};

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

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            MediaType::Json => "application/json; charset=utf-8",
            MediaType::GraphQLResponseJson => "application/graphql-response+json; charset=utf-8",
        })
    }
}

fn json_response(status: StatusCode, media: MediaType, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
    response
}

/// A request-level failure (nothing executed): `{"errors": [...]}` without `data`.
fn error_response(err: &AppError, media: MediaType, request_id: &str) -> Response {
    let body = json!({ "errors": [request_error(err, request_id)] });
    let status = match (err, media) {
        (AppError::Unauthenticated(_) | AppError::Forbidden(_), _) => err.http_status(),
        (_, MediaType::Json) => StatusCode::OK,
        _ => err.http_status(),
    };
    json_response(status, media, &body)
}

/// A request the server could not even read as GraphQL: always `status`, whatever the media type.
fn rejected(status: StatusCode, err: &AppError, media: MediaType, request_id: &str) -> Response {
    let mut response = error_response(err, media, request_id);
    *response.status_mut() = status;
    response
}

fn not_acceptable() -> Response {
    (
        StatusCode::NOT_ACCEPTABLE,
        "accepts application/graphql-response+json or application/json",
    )
        .into_response()
}

pub async fn graphql_post(
    State(app): State<GraphqlState>,
    headers: HeaderMap,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> Response {
    let Some(media) = MediaType::negotiate(&headers) else {
        return not_acceptable();
    };
    let request_id = request_id(&headers);
    if !is_json_content_type(&headers) {
        let err = AppError::BadInput {
            field: None,
            message: "a GraphQL POST needs `Content-Type: application/json` \
                      (or application/graphql-response+json)"
                .into(),
        };
        return rejected(StatusCode::UNSUPPORTED_MEDIA_TYPE, &err, media, &request_id);
    }
    match request {
        Ok(request) if request.0.query.trim().is_empty() => {
            let err = AppError::bad_input("query", "the request has no `query`");
            rejected(StatusCode::BAD_REQUEST, &err, media, &request_id)
        }
        Ok(request) => execute(&app, &headers, request.into_inner(), media).await,
        Err(rejection) => {
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
            rejected(status, &err, media, &request_id)
        }
    }
}

/// `application/json` or `application/graphql-response+json`, whatever the parameters.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .is_some_and(|essence| essence == "application/json" || essence == GRAPHQL_RESPONSE_JSON)
}

pub async fn graphql_get(
    State(app): State<GraphqlState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Ok(ws) = ws {
        return super::ws::upgrade(app, headers, ws).await;
    }
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html && query.as_deref().is_none_or(|q| !q.contains("query=")) {
        return graphiql(&app);
    }
    let Some(media) = MediaType::negotiate(&headers) else {
        return not_acceptable();
    };
    let request_id = request_id(&headers);
    let request = match parse_query_string(query.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => {
            let err = AppError::BadInput {
                field: None,
                message: format!("the query string is not a GraphQL request: {e}"),
            };
            return rejected(StatusCode::BAD_REQUEST, &err, media, &request_id);
        }
    };
    if let Some(ty) = operation_type(&request)
        && ty != OperationType::Query
    {
        let mut response = (
            StatusCode::METHOD_NOT_ALLOWED,
            "only queries may be sent with GET; use POST for mutations",
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(&app, &headers, request, media).await
}

/// async-graphql 7.2's `parse_query_string` reads the operation name from an `operation_name`
/// parameter; the GraphQL-over-HTTP spec (and every client) sends `operationName`.
fn parse_query_string(
    raw: &str,
) -> Result<async_graphql::Request, async_graphql::ParseRequestError> {
    let normalized: Vec<String> = raw
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("operationName", value)) => format!("operation_name={value}"),
            _ => pair.to_string(),
        })
        .collect();
    async_graphql::http::parse_query_string(&normalized.join("&"))
}

/// The type of the operation a request would run, when its document parses.
fn operation_type(request: &async_graphql::Request) -> Option<OperationType> {
    let document = async_graphql::parser::parse_query(&request.query).ok()?;
    match document.operations {
        DocumentOperations::Single(op) => Some(op.node.ty),
        DocumentOperations::Multiple(ops) => match &request.operation_name {
            Some(name) => ops.get(name.as_str()).map(|op| op.node.ty),
            None if ops.len() == 1 => ops.values().next().map(|op| op.node.ty),
            None => None,
        },
    }
}

async fn execute(
    app: &GraphqlState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    media: MediaType,
) -> Response {
    let request_id = request_id(headers);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match app.auth.authenticate_header(authorization) {
        Ok(p) => p,
        Err(e) => return error_response(&e, media, &request_id),
    };
    let budget = Arc::new(ResponseBudget::new(app.max_response_bytes));
    let request = super::schema::request_data(
        request,
        principal,
        &app.domain,
        &app.hub,
        Some(budget.clone()),
    );
    let mut response = with_request_id(request_id.clone(), app.schema.execute(request)).await;
    if budget.exceeded() {
        // What was built so far is dropped: one error says why, nothing partial is sent.
        drop(response);
        return error_response(&budget.error(), media, &request_id);
    }
    // A request error: nothing ran (parse, validation or variable coercion failed).
    let request_error = classify(&mut response);
    let body = if request_error {
        json!({ "errors": response.errors })
    } else {
        serde_json::to_value(&response).unwrap_or_else(|_| json!({}))
    };
    let status = if request_error && media == MediaType::GraphQLResponseJson {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    json_response(status, media, &body)
}

fn graphiql(app: &GraphqlState) -> Response {
    let bearer = app.dev_token.as_ref().map(|t| format!("Bearer {t}"));
    let mut source = GraphiQLSource::build()
        .endpoint("/graphql")
        .subscription_endpoint("/graphql")
        .title("incidentd");
    if let Some(bearer) = &bearer {
        source = source
            .header("Authorization", bearer)
            .ws_connection_param("Authorization", bearer);
    }
    Html(source.finish()).into_response()
}
