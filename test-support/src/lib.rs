//! What `tests/` and `bench/` share: a database of the test's own, a server in the test's
//! process on port 0, writes through the service layer, and a raw GraphQL-over-WebSocket client.

mod db;
mod server;
mod write;
pub mod ws;

pub use db::TestDb;
pub use server::{TestServer, config};
pub use write::{write_event, writer};
