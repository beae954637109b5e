//! The GraphQL transport: the schema and its resolvers (thin over `incident/` and `live/`), and
//! the two ways operations arrive: HTTP (`http.rs`) and WebSocket (`ws.rs`), both on `/graphql`.

pub mod error;
mod extensions;
pub mod http;
mod loaders;
mod metrics;
mod mutation;
mod query;
mod schema;
mod subscription;
mod types;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;

use crate::auth::Authenticator;
use crate::incident::service::Domain;
use crate::live::Hub;

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
}

/// `/graphql`: POST and GET over HTTP, GraphiQL for browsers, and the WebSocket upgrade.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    GraphqlState: FromRef<S>,
{
    Router::new().route("/graphql", get(http::graphql_get).post(http::graphql_post))
}
