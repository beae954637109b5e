//! GraphQL over HTTP: authentication, `Accept` negotiation between `application/json` and
//! `application/graphql-response+json`, GET for queries only, and GraphiQL for browsers.

use async_graphql::ParseRequestError;
use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql_axum::GraphQLRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use std::net::SocketAddr;

use axum::Extension;
use axum::extract::ConnectInfo;
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

pub(super) fn json_response(
    status: StatusCode,
    media: MediaType,
    body: &serde_json::Value,
) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
    response
}

/// A request-level failure (nothing executed): `{"errors": [...]}` without `data`.
pub(super) fn error_response(err: &AppError, media: MediaType, request_id: &str) -> Response {
    let body = json!({ "errors": [request_error(err, request_id)] });
    let status = match (err, media) {
        (
            AppError::Unauthenticated(_)
            | AppError::Forbidden(_)
            | AppError::PersistedQueryNotFound,
            _,
        ) => err.http_status(),
        (_, MediaType::Json) => StatusCode::OK,
        _ => err.http_status(),
    };
    json_response(status, media, &body)
}

/// A request the server could not even read as GraphQL: always `status`, whatever the media type.
pub(super) fn rejected(
    status: StatusCode,
    err: &AppError,
    media: MediaType,
    request_id: &str,
) -> Response {
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
    // GraphQL over SSE: an operation for a reserved stream, or a stream of its own.
    if headers.contains_key(super::sse::TOKEN_HEADER) {
        return super::sse::operation(app, headers, request).await;
    }
    if super::sse::wants_event_stream(&headers) {
        return super::sse::distinct(app, headers, request).await;
    }
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
        Ok(request)
            if request.0.query.trim().is_empty()
                && !request.0.extensions.0.contains_key("persistedQuery") =>
        {
            let err = AppError::bad_input("query", "the request has no `query`");
            rejected(StatusCode::BAD_REQUEST, &err, media, &request_id)
        }
        Ok(request) => execute(&app, &headers, request.into_inner(), media, Method::Post).await,
        Err(rejection) => rejected_body(rejection, media, &request_id),
    }
}

/// The answer to a body that is not a GraphQL request.
pub(super) fn rejected_body(
    rejection: GraphQLRejection,
    media: MediaType,
    request_id: &str,
) -> Response {
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
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    if let Ok(ws) = ws {
        let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
        return super::ws::upgrade(app, headers, ws, peer).await;
    }
    if super::sse::wants_event_stream(&headers) {
        return super::sse::get(app, headers, query).await;
    }
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let has_operation = query
        .as_deref()
        .is_some_and(|q| q.contains("query=") || q.contains("extensions="));
    if wants_html && !has_operation {
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
    // Checked before authentication when the text is here, and again once a hash is resolved.
    if !is_query(&request) {
        return get_not_allowed();
    }
    execute(&app, &headers, request, media, Method::Get).await
}

/// Whether the request runs a query (or cannot tell yet: a parse error or a bare hash).
pub(super) fn is_query(request: &async_graphql::Request) -> bool {
    operation_type(request).is_none_or(|ty| ty == OperationType::Query)
}

pub(super) fn get_not_allowed() -> Response {
    let mut response = (
        StatusCode::METHOD_NOT_ALLOWED,
        "only queries may be sent with GET; use POST for mutations",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// async-graphql 7.2's `parse_query_string` reads the operation name from an `operation_name`
/// parameter; the GraphQL-over-HTTP spec (and every client) sends `operationName`.
pub(super) fn parse_query_string(
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
    method: Method,
) -> Response {
    let request_id = request_id(headers);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match app.auth.authenticate_header(authorization) {
        Ok(p) => p,
        Err(e) => return no_store(error_response(&e, media, &request_id)),
    };
    let prepared = with_request_id(request_id.clone(), super::persisted::prepare(app, request));
    let (request, hash_only) = match prepared.await {
        Ok(p) => (p.request, p.hash_only),
        Err(e @ AppError::BadInput { .. }) => {
            return no_store(rejected(StatusCode::BAD_REQUEST, &e, media, &request_id));
        }
        Err(e) => return no_store(error_response(&e, media, &request_id)),
    };
    if method == Method::Get && hash_only && !is_query(&request) {
        return get_not_allowed();
    }
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
        return no_store(error_response(&budget.error(), media, &request_id));
    }
    // A request error: nothing ran (parse, validation or variable coercion failed).
    let request_error = classify(&mut response);
    let has_errors = !response.errors.is_empty();
    // Serialized once, straight to bytes: no `serde_json::Value` copy of a page in between
    // (and the fields stay in the order the query asked for them).
    let body = if request_error {
        serde_json::to_vec(&json!({ "errors": response.errors }))
    } else {
        serde_json::to_vec(&response)
    }
    .unwrap_or_else(|_| b"{}".to_vec());
    drop(response);
    let status = if request_error && media == MediaType::GraphQLResponseJson {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
    match method {
        // A query over GET (a bare persisted hash makes a short, stable URL) may be cached
        // for `--get-max-age` by the browser, and by a shared cache that keys on the
        // `Authorization` header; a response with an error is never kept.
        Method::Get if !has_errors => cacheable(response, app.get_max_age),
        Method::Get => no_store(response),
        Method::Post => response,
    }
}

fn cacheable(mut response: Response, max_age: std::time::Duration) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("max-age={}", max_age.as_secs())) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Authorization"),
    );
    response
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn graphiql(app: &GraphqlState) -> Response {
    // GraphiQL sends documents of its own, which trusted-documents mode refuses.
    if app.documents.trusted_only() && !app.trusted_introspection {
        return (
            StatusCode::NOT_FOUND,
            "GraphiQL is off: this server runs only its persisted operations \
             (see --persisted-operations-introspection)",
        )
            .into_response();
    }
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
