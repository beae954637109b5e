//! The budget of streaming connections, shared by WebSocket and SSE: their limits, the slots they
//! hold, the sockets still waiting for `connection_init`, and what shutdown needs to close them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::incident::identity::Principal;

/// The WebSocket transport's share of the state: its limits, the connections it holds, and
/// what shutdown needs to close them.
#[derive(Clone)]
pub struct WsState {
    pub limits: WsLimits,
    pub permits: Arc<Semaphore>,
    /// Sockets that have not yet sent a valid `connection_init` (per peer address) and
    /// unopened SSE reservations (per caller): a small budget of its own, so neither can hold
    /// the connections' places.
    pub pending: Arc<Pending>,
    /// Each organization's and each caller's share of the connections.
    pub shares: Arc<Shares>,
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
            shares: Arc::new(Shares::new(limits.max_per_org, limits.max_per_caller)),
            limits,
            permits: Arc::new(Semaphore::new(max_connections)),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            allowed_origins: allowed_origins.into(),
        }
    }
}

/// A streaming connection's place: one of `--ws-max-connections`, and a share of its
/// organization's and its caller's.
pub struct Place {
    _permit: OwnedSemaphorePermit,
    _share: Share,
}

impl WsState {
    /// A place for the caller's new connection, or `None` when the server, the caller's
    /// organization or the caller holds as many as allowed.
    pub fn place(&self, principal: &Principal) -> Option<Place> {
        let share = self.shares.take(principal)?;
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(Place {
            _permit: permit,
            _share: share,
        })
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
    /// Sockets not yet initialised and unopened reservations, server-wide and per peer
    /// address (sockets) or per caller (reservations).
    pub max_pending: usize,
    pub max_pending_per_peer: usize,
    /// Streaming connections (WebSockets after `connection_init`, SSE streams) one
    /// organization, and one caller, may hold.
    pub max_per_org: usize,
    pub max_per_caller: usize,
}

/// Places counted per key, each key up to `max`.
struct Counts<K> {
    max: usize,
    held: HashMap<K, usize>,
}

impl<K: std::hash::Hash + Eq> Counts<K> {
    fn new(max: usize) -> Counts<K> {
        Counts {
            max,
            held: HashMap::new(),
        }
    }

    fn has_room(&self, key: &K) -> bool {
        self.held.get(key).copied().unwrap_or(0) < self.max
    }

    fn add(&mut self, key: K) {
        *self.held.entry(key).or_default() += 1;
    }

    fn remove(&mut self, key: &K) {
        if let Some(n) = self.held.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(key);
            }
        }
    }
}

/// Who holds a pending place: a socket that has not sent `connection_init` yet, by its peer
/// address; an SSE reservation whose stream is not open yet, by the caller who made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    Peer(IpAddr),
    Caller { org: Uuid, user: Uuid },
}

impl Holder {
    pub fn caller(principal: &Principal) -> Holder {
        Holder::Caller {
            org: principal.org_id,
            user: principal.user_id,
        }
    }
}

/// The budget of what waits to become a connection: sockets before `connection_init` and
/// unopened SSE reservations. They cost little, but each could hold a connection's place, so
/// they have a small budget of their own, server-wide and per holder, and hold no place of the
/// connections' until they are one.
pub struct Pending {
    max: usize,
    held: Mutex<(usize, Counts<Holder>)>,
}

/// One place in the pending budget, given back when its holder becomes a connection or ends.
pub struct PendingSlot {
    pending: Arc<Pending>,
    holder: Option<Holder>,
}

impl Pending {
    fn new(max: usize, max_per_holder: usize) -> Pending {
        Pending {
            max,
            held: Mutex::new((0, Counts::new(max_per_holder))),
        }
    }

    pub(super) fn take(self: &Arc<Self>, holder: Option<Holder>) -> Option<PendingSlot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_holder) = &mut *held;
        if *total >= self.max || holder.is_some_and(|h| !per_holder.has_room(&h)) {
            return None;
        }
        if let Some(holder) = holder {
            per_holder.add(holder);
        }
        *total += 1;
        Some(PendingSlot {
            pending: self.clone(),
            holder,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut held = self.pending.held.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_holder) = &mut *held;
        *total -= 1;
        if let Some(holder) = &self.holder {
            per_holder.remove(holder);
        }
    }
}

/// The connections' places each organization and each caller may hold, so that no
/// organization, and no caller within one, can take the places the others need.
pub struct Shares {
    held: Mutex<ShareCounts>,
}

/// Connections per organization, and per (organization, user).
type ShareCounts = (Counts<Uuid>, Counts<(Uuid, Uuid)>);

/// One connection's share, given back when it ends.
pub struct Share {
    shares: Arc<Shares>,
    org: Uuid,
    user: Uuid,
}

impl Shares {
    fn new(max_per_org: usize, max_per_caller: usize) -> Shares {
        Shares {
            held: Mutex::new((Counts::new(max_per_org), Counts::new(max_per_caller))),
        }
    }

    /// A share for the caller's connection, or `None` when its organization or the caller
    /// holds as many as allowed.
    pub(super) fn take(self: &Arc<Self>, principal: &Principal) -> Option<Share> {
        let (org, user) = (principal.org_id, principal.user_id);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (per_org, per_caller) = &mut *held;
        if !per_org.has_room(&org) || !per_caller.has_room(&(org, user)) {
            return None;
        }
        per_org.add(org);
        per_caller.add((org, user));
        Some(Share {
            shares: self.clone(),
            org,
            user,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.shares.held.lock().unwrap_or_else(|e| e.into_inner());
        let (per_org, per_caller) = &mut *held;
        per_org.remove(&self.org);
        per_caller.remove(&(self.org, self.user));
    }
}
