//! GraphQL over HTTP (the GraphQL-over-HTTP spec): a POST or GET runs one operation and answers
//! it whole, under the response budget; GET runs queries only and may be cached; browsers that
//! ask for HTML get GraphiQL.

use std::sync::Arc;

use async_graphql_axum::GraphQLRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::operation::{self, Method};
use super::state::GraphqlState;
use super::wire::{
    MediaType, error_response, is_json_content_type, not_acceptable, parse_query_string, rejected,
    rejected_body,
};
use crate::auth::sessions::Use;
use crate::error::AppError;
use crate::graphql::error::classify;
use crate::incident::budget::ResponseBudget;
use crate::telemetry::{request_id, with_request_id};

/// `POST /graphql` with a JSON body.
pub async fn post(
    app: GraphqlState,
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

/// `GET /graphql?query=…` (or `?extensions=…` with a persisted hash); GraphiQL for a browser
/// that asks for HTML and sends no operation.
pub async fn get(app: GraphqlState, headers: HeaderMap, query: Option<String>) -> Response {
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
        Err(err) => return rejected(StatusCode::BAD_REQUEST, &err, media, &request_id),
    };
    execute(&app, &headers, request, media, Method::Get).await
}

async fn execute(
    app: &GraphqlState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    media: MediaType,
    method: Method,
) -> Response {
    let request_id = request_id(headers);
    // A POST by cookie shows its CSRF token, whatever it runs; a GET runs queries only.
    let usage = match method {
        Method::Get => Use::Read,
        Method::Post => Use::Write,
    };
    let principal = match operation::authenticate(app, headers, usage).await {
        Ok(p) => p,
        Err(e) => return no_store(error_response(&e, media, &request_id)),
    };
    let budget = Arc::new(ResponseBudget::within(
        app.max_response_bytes,
        &app.in_flight,
    ));
    let prepared = operation::prepare(app, principal, request, method, Some(budget.clone()));
    let prepared = match with_request_id(request_id.clone(), prepared).await {
        Ok(prepared) => prepared,
        Err(e @ AppError::BadInput { .. }) => {
            return no_store(rejected(StatusCode::BAD_REQUEST, &e, media, &request_id));
        }
        Err(e) => return no_store(error_response(&e, media, &request_id)),
    };
    let executed = operation::execute(app, prepared);
    let mut response = with_request_id(request_id.clone(), executed).await;
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
        // `Authorization` header; a response with an error is never kept, and one for a
        // session cookie is the browser's alone (a shared cache does not see whose it is).
        Method::Get if !has_errors => {
            let by_cookie = !headers.contains_key(header::AUTHORIZATION);
            cacheable(response, app.get_max_age, by_cookie)
        }
        Method::Get => no_store(response),
        Method::Post => response,
    }
}

fn cacheable(mut response: Response, max_age: std::time::Duration, by_cookie: bool) -> Response {
    let headers = response.headers_mut();
    let (private, vary) = match by_cookie {
        true => ("private, ", "Accept, Authorization, Cookie"),
        false => ("", "Accept, Authorization"),
    };
    if let Ok(value) = HeaderValue::from_str(&format!("{private}max-age={}", max_age.as_secs())) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    headers.insert(header::VARY, HeaderValue::from_static(vary));
    response
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn graphiql(app: &GraphqlState) -> Response {
    if !graphiql_enabled(app) {
        return app.graphiql.off(GRAPHIQL_OFF);
    }
    app.graphiql.page()
}

/// `GET /graphql/assets/{file}`: GraphiQL's files, when they are served from here.
pub fn graphiql_asset(app: &GraphqlState, file: &str, headers: &HeaderMap) -> Response {
    if !graphiql_enabled(app) {
        return app.graphiql.off(GRAPHIQL_OFF);
    }
    app.graphiql.asset(file, headers)
}

const GRAPHIQL_OFF: &str = "GraphiQL is off: this server runs only its persisted operations \
                            (see --persisted-operations-introspection)";

/// GraphiQL sends documents of its own, which trusted-documents mode refuses unless told.
fn graphiql_enabled(app: &GraphqlState) -> bool {
    !app.documents.trusted_only() || app.trusted_introspection
}
