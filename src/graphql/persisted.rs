//! Persisted operations at the GraphQL edge, the same for every transport: reads
//! `extensions.persistedQuery`, asks `crate::persisted` for the document to run, and applies the
//! trusted-documents exception for introspection; then runs the operation as a stream.

use async_graphql::parser::types::{DocumentOperations, Selection};
use futures_util::{Stream, StreamExt};

use super::GraphqlState;
use super::error::request_error;
use crate::error::AppError;
use crate::incident::identity::Principal;
use crate::persisted::{Document, PersistedQuery};

/// A request whose document is known, and whether it arrived as a hash alone.
pub struct Prepared {
    pub request: async_graphql::Request,
    pub hash_only: bool,
}

/// Fills the request's text from its persisted hash, or refuses the request.
pub async fn prepare(
    state: &GraphqlState,
    mut request: async_graphql::Request,
) -> Result<Prepared, AppError> {
    let persisted = match request.extensions.0.get("persistedQuery") {
        Some(value) => {
            let json = value.clone().into_json().map_err(|_| {
                AppError::bad_input("extensions.persistedQuery", "persistedQuery is not JSON")
            })?;
            Some(PersistedQuery::parse(&json)?)
        }
        None => None,
    };
    let hash_only = persisted.is_some() && request.query.trim().is_empty();
    let text = std::mem::take(&mut request.query);
    request.query = match state.documents.resolve(Some(text), persisted).await? {
        Document::Run(text) => text,
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
    Ok(Prepared { request, hash_only })
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

/// Prepares and runs an operation for a streaming transport: its responses, or one response
/// holding the request error when it cannot run.
pub fn execute_stream(
    state: GraphqlState,
    principal: Principal,
    request: async_graphql::Request,
) -> impl Stream<Item = async_graphql::Response> + Send + 'static {
    async_stream::stream! {
        match Box::pin(prepare(&state, request)).await {
            Ok(prepared) => {
                // A subscription's messages go out one by one: no whole-response budget.
                let request = super::schema::request_data(
                    prepared.request,
                    principal,
                    &state.domain,
                    &state.hub,
                    None,
                );
                let mut responses = std::pin::pin!(state.schema.execute_stream(request));
                while let Some(response) = responses.next().await {
                    yield response;
                }
            }
            Err(error) => {
                let request_id = crate::telemetry::current_request_id();
                yield async_graphql::Response::from_errors(vec![request_error(&error, &request_id)]);
            }
        }
    }
}
