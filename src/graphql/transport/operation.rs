//! The one path of an operation, whatever carried it: authenticate → resolve the document
//! (APQ, trusted documents) → check the method → attach the request data → execute, whole (HTTP)
//! or as a stream (WebSocket, SSE). Transports only frame bytes around it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use axum::http::HeaderMap;
use futures_util::{Stream, StreamExt};

use super::persisted::{Document, PersistedQuery};
use super::state::GraphqlState;
use crate::auth::authenticate_request;
use crate::auth::sessions::Use;
use crate::error::AppError;
use crate::graphql::error::{classify, request_error};
use crate::graphql::schema::context::request_data;
use crate::incident::budget::ResponseBudget;
use crate::incident::identity::Principal;

/// Who sent an HTTP request (HTTP, SSE, a WebSocket upgrade): its bearer token, or else its
/// session cookie with what the request's use needs besides it (a CSRF token for writes, our
/// origin for streams).
pub async fn authenticate(
    state: &GraphqlState,
    headers: &HeaderMap,
    usage: Use,
) -> Result<Principal, AppError> {
    authenticate_request(&state.auth, &state.sessions, headers, usage).await
}

/// Who a bare bearer token (a WebSocket's `connection_init` payload) names, or why not.
pub fn authenticate_token(
    state: &GraphqlState,
    token: Option<&str>,
) -> Result<Principal, AppError> {
    match token {
        Some(token) => state.auth.authenticate(token),
        None => Err(AppError::Unauthenticated(
            "connection_init must carry {\"Authorization\": \"Bearer <token>\"} (or the \
             WebSocket must come with a session cookie)"
                .into(),
        )),
    }
}

/// The HTTP method an operation came with. A GET may be repeated by a proxy, prefetched or
/// cached, so it runs queries only, however its document arrived (text, APQ hash, manifest id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    /// POST, or a message on an open WebSocket.
    Post,
}

/// An operation ready to run: its document resolved and allowed for its method, with the
/// caller, the domain, the live feed and fresh loaders attached.
pub struct Prepared(async_graphql::Request);

/// Resolves the request's document, checks it against the method, and attaches what it runs
/// with. `budget` bounds the bytes a whole answer may carry.
pub async fn prepare(
    state: &GraphqlState,
    principal: Principal,
    request: async_graphql::Request,
    method: Method,
    budget: Option<Arc<ResponseBudget>>,
) -> Result<Prepared, AppError> {
    state.domain.recognize(&principal).await;
    let request = resolve_document(state, &principal, request).await?;
    if method == Method::Get && !is_query(&request) {
        return Err(get_refused());
    }
    Ok(Prepared(request_data(
        request,
        principal,
        &state.domain,
        &state.hub,
        budget,
    )))
}

/// Runs an operation whose whole answer is sent at once (HTTP).
pub async fn execute(state: &GraphqlState, operation: Prepared) -> async_graphql::Response {
    state.schema.execute(operation.0).await
}

/// What a streamed operation sends: results, then the end; or a single error when it could not
/// run at all (nothing executed).
pub enum Out {
    Next(async_graphql::Response),
    Error(Vec<async_graphql::ServerError>),
    Complete,
}

/// Prepares and runs an operation whose results go out one by one (WebSocket, SSE): a
/// subscription or not. A request that cannot run becomes its stream's only message.
pub fn execute_stream(
    state: GraphqlState,
    principal: Principal,
    request: async_graphql::Request,
    method: Method,
) -> impl Stream<Item = Out> + Send + 'static {
    async_stream::stream! {
        match Box::pin(prepare(&state, principal, request, method, None)).await {
            Ok(operation) => {
                let mut outs = std::pin::pin!(stream_prepared(state, operation));
                while let Some(out) = outs.next().await {
                    yield out;
                }
            }
            Err(error) => {
                let request_id = crate::telemetry::current_request_id();
                yield Out::Error(vec![request_error(&error, &request_id)]);
            }
        }
    }
}

/// Runs a prepared operation as a stream. Its messages are sent one at a time, so no
/// whole-response budget applies.
pub fn stream_prepared(
    state: GraphqlState,
    operation: Prepared,
) -> impl Stream<Item = Out> + Send + 'static {
    async_stream::stream! {
        let mut responses = std::pin::pin!(state.schema.execute_stream(operation.0));
        let mut first = true;
        while let Some(mut response) = responses.next().await {
            // A request error (parse, validation, limits) comes as the first and only response.
            if classify(&mut response) && first {
                yield Out::Error(response.errors);
                return;
            }
            first = false;
            yield Out::Next(response);
        }
        yield Out::Complete;
    }
}

/// Resolves when the caller's token expires: a stream ends with the credentials that opened it.
pub fn expiry(principal: Option<&Principal>) -> impl std::future::Future<Output = ()> + use<> {
    let remaining = principal.map(|p| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Duration::from_secs(p.expires_at.saturating_sub(now))
    });
    async move {
        match remaining {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    }
}

/// Fills the request's text from its persisted hash, or refuses the request.
async fn resolve_document(
    state: &GraphqlState,
    principal: &Principal,
    mut request: async_graphql::Request,
) -> Result<async_graphql::Request, AppError> {
    let persisted = match request.extensions.0.get("persistedQuery") {
        Some(value) => {
            let json = value.clone().into_json().map_err(|_| {
                AppError::bad_input("extensions.persistedQuery", "persistedQuery is not JSON")
            })?;
            Some(PersistedQuery::parse(&json)?)
        }
        None => None,
    };
    let text = std::mem::take(&mut request.query);
    request.query = match state.documents.resolve(Some(text), persisted).await? {
        Document::Run(text) => text,
        // Stored only once it would run: a document that fails to parse, validate or keep
        // within the limits is never kept, and its hash stays unknown.
        Document::Unregistered { text, sha256 } => {
            request.query = text;
            if state.schema.passes_checks(&request).await {
                let documents = &state.documents;
                documents
                    .register(principal.org_id, &sha256, &request.query)
                    .await?;
            }
            std::mem::take(&mut request.query)
        }
        Document::Unlisted(text)
            if state.trusted_introspection
                && is_introspection(&text, request.operation_name.as_deref()) =>
        {
            text
        }
        Document::Unlisted(_) => {
            return Err(AppError::PersistedQueryNotAllowed(
                "this server runs only the operations of its persisted-operations manifest; \
                 send the operation's id as extensions.persistedQuery.sha256Hash"
                    .into(),
            ));
        }
    };
    Ok(request)
}

/// The answer to a GET whose operation is not a query.
pub fn get_refused() -> AppError {
    AppError::MethodNotAllowed("only queries may be sent with GET; use POST for mutations")
}

/// Whether the request runs a query (or cannot tell: a document that does not parse, which
/// then fails as such).
pub fn is_query(request: &async_graphql::Request) -> bool {
    operation_type(request).is_none_or(|ty| ty == OperationType::Query)
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

/// Whether the operation asks only for `__schema`, `__type` and `__typename` at its root.
fn is_introspection(text: &str, operation_name: Option<&str>) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(text) else {
        return false;
    };
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => op,
            None => return false,
        },
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().expect("one operation")
        }
        _ => return false,
    };
    operation.node.selection_set.node.items.iter().all(|s| {
        matches!(&s.node, Selection::Field(f)
            if matches!(f.node.name.node.as_str(), "__schema" | "__type" | "__typename"))
    })
}
