//! The change feed. Writers announce committed changes (ids only); a dispatcher reads each
//! changed row once, through the organization's scope, and fans it out to subscribers.
//! The database stays the source of truth: a subscriber that may have missed a signal (lag,
//! lost PostgreSQL listener) re-reads from its own cursor. See `pg.rs` for the replica bridge.

mod feed;
pub mod pg;
pub mod ws;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::db::Db;
use crate::entity::{incident, incident_event};
use crate::incident::{OrgScope, read};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[graphql(name = "IncidentChangeKind")]
pub enum ChangeKind {
    Created,
    Updated,
    StatusChanged,
    EventAdded,
    PostmortemUpdated,
}

/// One committed change. `sequence` is set for `EventAdded`. Ids only: NOTIFY payloads are
/// visible to every database user, so they carry no tenant data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    #[serde(rename = "o")]
    pub org_id: Uuid,
    #[serde(rename = "i")]
    pub incident_id: Uuid,
    #[serde(rename = "k")]
    pub kind: ChangeKind,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i32>,
}

pub use feed::{changes, timeline};

/// A change with the rows it touched, as read after the commit.
#[derive(Debug)]
pub struct Change {
    pub announcement: Announcement,
    pub incident: incident::Model,
    pub event: Option<incident_event::Model>,
}

impl Change {
    /// The one tenancy rule of the feed: a subscriber sees only its organization's changes.
    pub fn visible_to(&self, scope: OrgScope) -> bool {
        self.announcement.org_id == scope.org_id()
            && self.incident.organization_id == scope.org_id()
    }
}

#[derive(Debug, Clone)]
pub enum Signal {
    Change(Arc<Change>),
    /// Signals may have been lost (the PostgreSQL listener reconnected): re-read from your cursor.
    Resync,
}

enum Input {
    /// What one transaction announced, in order.
    Committed(Vec<Announcement>),
    Resync,
}

#[derive(Clone)]
pub struct Hub {
    input: mpsc::UnboundedSender<Input>,
    output: broadcast::Sender<Signal>,
    /// Whether commits are announced by PostgreSQL NOTIFY (true) or in-process (false).
    pub via_postgres: bool,
}

/// Signals kept for subscribers that are behind; one further behind re-reads from the database.
pub const SIGNAL_BUFFER: usize = 1024;

const LISTEN_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Hub {
    /// Starts the dispatcher. On PostgreSQL, also starts the LISTEN bridge and waits (up to
    /// `LISTEN_READY_TIMEOUT`) until it listens, so no commit after start-up goes unheard.
    pub async fn start(db: Db) -> Hub {
        let (input, rx) = mpsc::unbounded_channel();
        let (output, _) = broadcast::channel(SIGNAL_BUFFER);
        let via_postgres = db.backend() == sea_orm::DatabaseBackend::Postgres;
        let hub = Hub {
            input,
            output,
            via_postgres,
        };
        tokio::spawn(dispatch(db.clone(), rx, hub.output.clone()));
        if via_postgres {
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            tokio::spawn(pg::listen(db, hub.clone(), ready_tx));
            if tokio::time::timeout(LISTEN_READY_TIMEOUT, ready_rx)
                .await
                .is_err()
            {
                tracing::warn!("the change listener is not up yet; it keeps retrying");
            }
        }
        hub
    }

    /// What one committed transaction announced (in-process on SQLite, from NOTIFY on PostgreSQL).
    pub fn committed(&self, announcements: Vec<Announcement>) {
        if announcements.is_empty() {
            return;
        }
        for _ in &announcements {
            crate::monitoring::change_published();
        }
        // The dispatcher lives as long as the hub; a send fails only during shutdown.
        let _ = self.input.send(Input::Committed(announcements));
    }

    fn resync(&self) {
        let _ = self.input.send(Input::Resync);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.output.subscribe()
    }
}

/// Reads each announced change once and broadcasts it with its rows.
async fn dispatch(
    db: Db,
    mut rx: mpsc::UnboundedReceiver<Input>,
    output: broadcast::Sender<Signal>,
) {
    while let Some(input) = rx.recv().await {
        let batch = match input {
            Input::Resync => {
                let _ = output.send(Signal::Resync);
                continue;
            }
            Input::Committed(batch) => batch,
        };
        if output.receiver_count() == 0 {
            // Nobody is subscribed: nothing to read or deliver.
            continue;
        }
        // A transaction announces several changes to one incident (an event and a status
        // change, say): read the incident once for all of them.
        let mut incidents: HashMap<Uuid, incident::Model> = HashMap::new();
        for a in batch {
            let scope = OrgScope::new(a.org_id);
            let incident = match incidents.get(&a.incident_id) {
                Some(incident) => incident.clone(),
                None => match read::incident(&db, scope, a.incident_id).await {
                    Ok(incident) => {
                        incidents.insert(a.incident_id, incident.clone());
                        incident
                    }
                    Err(_) => {
                        // The row could not be read (database trouble): make everyone re-read.
                        let _ = output.send(Signal::Resync);
                        continue;
                    }
                },
            };
            let event = match a.sequence {
                Some(seq) => read::event_at(&db, scope, a.incident_id, seq)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            let _ = output.send(Signal::Change(Arc::new(Change {
                announcement: a,
                incident,
                event,
            })));
        }
    }
}
