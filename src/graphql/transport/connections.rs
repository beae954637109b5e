//! The budget of streaming connections, shared by WebSocket and SSE: their limits, the slots they
//! hold, the sockets still waiting for `connection_init`, and what shutdown needs to close them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The WebSocket transport's share of the state: its limits, the connections it holds, and
/// what shutdown needs to close them.
#[derive(Clone)]
pub struct WsState {
    pub limits: WsLimits,
    pub permits: Arc<Semaphore>,
    /// Sockets that have not yet sent a valid `connection_init`, server-wide and per peer
    /// address: a small budget of its own, so unauthenticated sockets cannot hold the slots.
    pub pending: Arc<Pending>,
    /// Cancelled at shutdown: every WebSocket closes with 1001.
    pub shutdown: CancellationToken,
    /// The WebSocket connections, which axum's graceful shutdown does not wait for.
    pub tasks: TaskTracker,
    /// Browser origins allowed beyond same-origin.
    pub allowed_origins: Arc<[String]>,
}

impl WsState {
    pub fn new(limits: WsLimits, max_connections: usize, allowed_origins: Vec<String>) -> WsState {
        WsState {
            pending: Arc::new(Pending::new(
                limits.max_pending,
                limits.max_pending_per_peer,
            )),
            limits,
            permits: Arc::new(Semaphore::new(max_connections)),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            allowed_origins: allowed_origins.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WsLimits {
    /// How often the server pings (graphql-transport-ws `ping`; a WebSocket ping frame on the
    /// legacy protocol); a pong must come back before the next one. Zero: no pings.
    pub ping_interval: Duration,
    /// Largest message the server sends; a larger one becomes an error for its operation.
    pub max_outgoing_bytes: usize,
    pub init_timeout: Duration,
    pub max_subscriptions: usize,
    pub max_message_bytes: usize,
    pub write_timeout: Duration,
    /// Sockets not yet initialised, server-wide and per peer address.
    pub max_pending: usize,
    pub max_pending_per_peer: usize,
}

/// The budget of sockets waiting for their `connection_init`.
pub struct Pending {
    max: usize,
    max_per_peer: usize,
    held: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One socket's place in the pending budget, given back when it initialises or ends.
pub struct PendingSlot {
    pending: Arc<Pending>,
    peer: Option<IpAddr>,
}

impl Pending {
    fn new(max: usize, max_per_peer: usize) -> Pending {
        Pending {
            max,
            max_per_peer,
            held: Mutex::new((0, HashMap::new())),
        }
    }

    pub(super) fn take(self: &Arc<Self>, peer: Option<IpAddr>) -> Option<PendingSlot> {
        let mut held = self.held.lock().expect("the pending lock");
        let (total, per_peer) = &mut *held;
        if *total >= self.max {
            return None;
        }
        if let Some(peer) = peer {
            let n = per_peer.entry(peer).or_default();
            if *n >= self.max_per_peer {
                return None;
            }
            *n += 1;
        }
        *total += 1;
        Some(PendingSlot {
            pending: self.clone(),
            peer,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut held = self.pending.held.lock().expect("the pending lock");
        let (total, per_peer) = &mut *held;
        *total -= 1;
        if let Some(peer) = self.peer
            && let Some(n) = per_peer.get_mut(&peer)
        {
            *n -= 1;
            if *n == 0 {
                per_peer.remove(&peer);
            }
        }
    }
}
