//! The single-connection mode of SSE: streams reserved by PUT, opened by one GET and fed by
//! operation POSTs, kept by token until the stream ends or the reservation lapses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::connections::{PendingSlot, Place};
use crate::incident::identity::Principal;

/// The SSE transport's own state: its keep-alive interval and the single-connection
/// reservations. Connection limits, write timeout and shutdown are the WebSocket's (`WsState`).
#[derive(Clone)]
pub struct SseState {
    pub keep_alive: Duration,
    reservations: Arc<Mutex<HashMap<String, Reservation>>>,
}

impl SseState {
    pub fn new(keep_alive: Duration) -> SseState {
        SseState {
            keep_alive,
            reservations: Arc::default(),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Reservation>> {
        // A panic while holding this lock leaves the map as consistent as any single insert or
        // remove does; keep serving rather than poisoning every later request.
        self.reservations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A single-connection stream: reserved by PUT, opened by one GET, fed by operation POSTs.
pub(super) struct Reservation {
    pub(super) principal: Principal,
    pub(super) sender: mpsc::Sender<String>,
    /// Taken by the GET that opens the stream; `None` while a stream is open.
    pub(super) receiver: Option<mpsc::Receiver<String>>,
    pub(super) operations: HashMap<String, CancellationToken>,
    /// Cancelled when the reservation ends (stream closed, expired, client too slow, shutdown):
    /// its operations stop with it.
    pub(super) closed: CancellationToken,
    /// Held while the stream is not open: a reservation costs a pending place, not a
    /// connection's, until its stream opens.
    pub(super) pending: Option<PendingSlot>,
    /// Taken when the stream opens: a connection's place.
    pub(super) place: Option<Place>,
}
