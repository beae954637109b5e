//! `fanout`: N WebSocket subscribers (graphql-transport-ws), `incidentEvents` and
//! `incidentChanged` mixed, spread over the organizations' hot incidents, while writers add
//! events at a fixed rate; optionally a stalled client and faults (the server's LISTEN
//! connection terminated, PostgreSQL restarted) during the run. Measures commit-to-receipt
//! latency (receipt − the event's own `createdAt`) and counts missed and duplicated deliveries
//! against what the database holds.
//!
//! Correctness is judged against the database, not against the writers' answers: the hot
//! incidents' last sequences are read before the subscribers connect and after the writers stop,
//! so an `incidentEvents` subscriber must receive exactly the sequences in between, once each.
//! Subscribers behave as careful clients: a lost socket is reopened and a subscription the server
//! ends is started again, `incidentEvents` from the last sequence received, so "missed" means
//! lost. An `incidentChanged` subscriber must receive exactly one `EVENT_ADDED` change per event
//! written to its organization's hot incidents, as long as its stream never ended; one whose
//! stream ended once the writers ran (`SUBSCRIBER_LAGGED` after a resync, a lost socket) starts
//! again as the schema tells clients to, and is counted as *resynced*: the feed cannot replay,
//! so it is held only to "never more changes than events" (duplicates), not to missed ones.
//! Latency of a change (which carries no sequence) pairs the k-th change received for an
//! incident with the k-th event written to it: per incident, changes arrive in commit order.

mod arm;
mod connection;
mod drive;
pub mod faults;
mod plan;
mod reconcile;
mod report;
mod servers;
mod startup;

use std::time::Duration;

use crate::client::Credentials;
use crate::db::Pool;
use crate::world::World;
pub use connection::{Stall, StallOutcome};
pub use faults::{Fault, FaultKind, FaultReport};
pub use report::{FanoutReport, PhaseReport, ServerReport, StalledReport};
pub use startup::{Spread, StartupReport};

pub const EVENTS_SUBSCRIPTION: &str = "subscription Timeline($id: UUID!, $after: Int) { \
     incidentEvents(incidentId: $id, afterSequence: $after) { id sequence eventType content createdAt } }";
pub const CHANGES_SUBSCRIPTION: &str =
    "subscription Dashboard { incidentChanged { kind incident { id status severity updatedAt } } }";
const ADD_EVENT: &str = "mutation AddEvent($id: UUID!, $input: AddIncidentEventInput!) { \
     addIncidentEvent(incidentId: $id, input: $input) { sequence createdAt } }";

#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// WebSocket URLs (`ws://host:port/graphql`); subscribers are spread over them in turn.
    pub ws_urls: Vec<String>,
    /// HTTP base URL the writers post to.
    pub url: String,
    pub subscribers: usize,
    /// Share of subscribers on `incidentChanged` (the rest follow one incident's timeline).
    pub changed_share: f64,
    /// Subscriptions carried by one WebSocket (1: a connection per subscriber; at most the
    /// server's 100).
    pub per_connection: usize,
    /// Incidents per organization that receive events and `incidentEvents` subscribers.
    pub hot_per_org: usize,
    /// Events per second over all writers.
    pub rate: f64,
    pub writers: usize,
    /// Bytes of each written event's content (0: a short note).
    pub content_bytes: usize,
    pub duration: Duration,
    /// Longest wait, after the writers stop, for deliveries still on their way.
    pub drain: Duration,
    /// Connections being opened at once while ramping up.
    pub connect_parallelism: usize,
    /// Reconnects allowed per connection (resuming `incidentEvents` from its cursor).
    pub max_reconnects: u32,
    /// Restarts allowed per subscription the server ended (lag, errors).
    pub max_resubscribes: u32,
    /// Server processes whose CPU time and memory are read from /proc (one per replica).
    pub server_pids: Vec<u32>,
    /// One more connection, on the first organization and the first URL, that stops reading.
    pub stall: Option<Stall>,
    /// Subscriptions the stalled connection carries (one `incidentChanged`, the rest
    /// `incidentEvents` on its organization's hot incidents).
    pub stall_subscriptions: usize,
    pub faults: Vec<Fault>,
    pub seed: u64,
}

/// One run, phase by phase: choose the incidents, arm the subscribers, drive the writers,
/// reconcile what arrived with what the database holds, report.
pub async fn run(
    pool: &Pool,
    world: &World,
    credentials: &Credentials,
    opts: &FanoutOptions,
) -> anyhow::Result<FanoutReport> {
    raise_fd_limit(opts.subscribers / opts.per_connection.max(1) + 1024);
    let mut servers = servers::Servers::watch(&opts.server_pids);
    let (plan, groups) = plan::choose(world, credentials, opts)?;
    let mut armed = arm::subscribers(&plan, groups, opts).await?;
    servers.before_writes();
    let driven = drive::writers(pool, &plan, &armed, opts).await?;
    let drained = reconcile::drain(pool, &plan, &armed, &driven, opts).await?;
    servers.after_drain().await;
    let latencies = report::Latencies::new(&driven, opts);
    let accounted = reconcile::collect(&mut armed, &plan, &drained.truth, latencies).await;
    Ok(report::build(
        opts, &plan, &armed, &driven, &drained, accounted, &servers,
    ))
}

fn raise_fd_limit(wanted: usize) {
    let wanted = (wanted as u64).max(1024);
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < wanted
    {
        let _ = rlimit::Resource::NOFILE.set(wanted.min(hard), hard);
    }
}
