//! The GraphQL transport: the schema and its resolvers (thin over `incident/` and `live/`), and
//! the three ways operations arrive, all on `/graphql`: HTTP (`http.rs`), WebSocket (`ws.rs`)
//! and Server-Sent Events (`sse.rs`); persisted documents are resolved for all three in
//! `persisted.rs`.

pub mod error;
mod extensions;
mod fast;
pub mod http;
mod loaders;
mod metrics;
mod mutation;
mod persisted;
mod query;
mod schema;
pub mod sse;
mod subscription;
mod types;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::incident::service::Domain;
use crate::live::Hub;
use crate::persisted::Documents;

pub(crate) use schema::page_complexity;
pub use schema::{AppSchema, Limits, build_schema, sdl};

/// What the GraphQL transport needs, taken from the application's state with `FromRef`.
#[derive(Clone)]
pub struct GraphqlState {
    pub schema: AppSchema,
    pub domain: Domain,
    pub hub: Hub,
    pub auth: Arc<Authenticator>,
    /// In dev mode: a token for the demo organization, filled into GraphiQL.
    pub dev_token: Option<String>,
    /// Most bytes of text one HTTP response may carry (`RESPONSE_TOO_LARGE` beyond).
    pub max_response_bytes: usize,
    pub ws: ws::WsState,
    pub sse: sse::SseState,
    /// Persisted queries (APQ) and, when configured, the trusted-documents manifest.
    pub documents: Documents,
    /// In trusted-documents mode: still serve GraphiQL and run introspection queries.
    pub trusted_introspection: bool,
    /// `Cache-Control: max-age` of a successful query over GET.
    pub get_max_age: Duration,
}

/// `/graphql`: POST and GET over HTTP, GraphiQL for browsers, the WebSocket upgrade, and the
/// SSE requests (`Accept: text/event-stream`, PUT reservations, DELETE of an operation).
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    GraphqlState: FromRef<S>,
{
    Router::new().route(
        "/graphql",
        get(http::graphql_get)
            .post(http::graphql_post)
            .put(sse::reserve)
            .delete(sse::stop),
    )
}
