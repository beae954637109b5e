//! The transports, the other half of `graphql/`: how operations arrive on `/graphql` (HTTP,
//! WebSocket, Server-Sent Events) and the one path they all run them through (`operation`).
//! Persisted documents (APQ, trusted documents) live here, with the path that resolves them.

mod connections;
pub mod graphiql;
pub mod http;
mod operation;
pub mod persisted;
mod reservations;
pub mod sse;
mod state;
mod wire;
pub mod ws;

use std::net::SocketAddr;

use async_graphql_axum::GraphQLRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::Extension;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, FromRef, Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;

pub use connections::{WsLimits, WsState};
pub use reservations::SseState;
pub use state::GraphqlState;

/// `/graphql`: POST and GET over HTTP, GraphiQL for browsers, the WebSocket upgrade, and the
/// SSE requests (`Accept: text/event-stream`, PUT reservations, DELETE of an operation); and
/// GraphiQL's files under `/graphql/assets/` when they are served from here.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    GraphqlState: FromRef<S>,
{
    Router::new()
        .route(
            "/graphql",
            get(on_get)
                .post(on_post)
                .put(sse::reserve)
                .delete(sse::stop),
        )
        .route("/graphql/assets/{file}", get(graphiql_asset))
}

/// A POST is an SSE operation (for a reserved stream, or on a stream of its own) or a plain one.
async fn on_post(
    State(state): State<GraphqlState>,
    headers: HeaderMap,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> Response {
    if headers.contains_key(sse::TOKEN_HEADER) {
        return sse::add_operation(state, headers, request).await;
    }
    if sse::wants_event_stream(&headers) {
        return sse::distinct(state, headers, request).await;
    }
    http::post(state, headers, request).await
}

/// A GET is a WebSocket upgrade, an event stream, or a plain query (or GraphiQL).
async fn on_get(
    State(state): State<GraphqlState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    if let Ok(ws) = ws {
        let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
        return ws::upgrade(state, headers, ws, peer).await;
    }
    if sse::wants_event_stream(&headers) {
        return sse::get(state, headers, query).await;
    }
    http::get(state, headers, query).await
}

async fn graphiql_asset(
    State(state): State<GraphqlState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    http::graphiql_asset(&state, &file, &headers)
}
