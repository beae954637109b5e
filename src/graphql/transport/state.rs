//! What the GraphQL transports need, taken from the application's state with `FromRef`: the
//! schema and what operations run against, the authenticator, and each transport's own part.

use std::sync::Arc;
use std::time::Duration;

use super::connections::WsState;
use super::graphiql::Graphiql;
use super::persisted::Documents;
use super::reservations::SseState;
use crate::auth::Authenticator;
use crate::auth::sessions::Sessions;
use crate::graphql::schema::AppSchema;
use crate::incident::budget::ServerBudget;
use crate::incident::service::Domain;
use crate::live::Hub;

#[derive(Clone)]
pub struct GraphqlState {
    pub schema: AppSchema,
    pub domain: Domain,
    pub hub: Hub,
    pub auth: Arc<Authenticator>,
    /// Sign-in sessions: the cookie a browser authenticates with.
    pub sessions: Sessions,
    /// In dev mode: a token for the demo organization, filled into GraphiQL.
    pub dev_token: Option<String>,
    /// Most bytes of text one HTTP response may carry (`RESPONSE_TOO_LARGE` beyond).
    pub max_response_bytes: usize,
    /// The bytes all responses in flight may hold together (`BUSY` beyond).
    pub in_flight: ServerBudget,
    pub ws: WsState,
    pub sse: SseState,
    /// Persisted queries (APQ) and, when configured, the trusted-documents manifest.
    pub documents: Documents,
    /// In trusted-documents mode: still serve GraphiQL and run introspection queries.
    pub trusted_introspection: bool,
    /// `Cache-Control: max-age` of a successful query over GET.
    pub get_max_age: Duration,
    /// The GraphiQL page, its policy, and its files when they are served from here.
    pub graphiql: Arc<Graphiql>,
}
