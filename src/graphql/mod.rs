//! GraphQL, in two halves: `schema` (the types, resolvers, loaders and limits, thin over
//! `incident/` and `live/`) and `transport` (HTTP, WebSocket and SSE on `/graphql`, persisted
//! documents, and the one operation path they share). `error` renders errors for both.

pub mod error;
pub mod schema;
pub mod transport;

pub use schema::{AppSchema, Limits, build_schema, sdl};
pub use transport::{GraphqlState, router};
