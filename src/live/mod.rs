//! The change feed: the domain's `ChangeSink`, and the streams subscribers read. Writers
//! announce committed changes (ids only); a dispatcher reads each changed row once, through the
//! organization's scope, and fans it out. The database stays the source of truth: a subscriber
//! that may have missed a signal (lag, lost PostgreSQL listener) re-reads from its own cursor.
//! See `pg.rs` for the bridge between replicas.

mod feed;
mod pg;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::{DatabaseTransaction, DbErr};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::db::Db;
use crate::entity::{incident, incident_event};
use crate::incident::changes::{Announcement, ChangeSink};
use crate::incident::{OrgScope, read};

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

/// One server's end of the change feed: it receives commits (from NOTIFY on PostgreSQL, from
/// the writers themselves on SQLite) and hands them to subscribers.
#[derive(Clone)]
pub struct Hub {
    db: Db,
    input: mpsc::UnboundedSender<Input>,
    output: broadcast::Sender<Signal>,
    /// Whether commits are announced by PostgreSQL NOTIFY (true) or in-process (false).
    via_postgres: bool,
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
            db: db.clone(),
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
    fn publish(&self, announcements: Vec<Announcement>) {
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

/// PostgreSQL: a NOTIFY inside the transaction reaches every replica's listener at commit.
/// SQLite (one process): published in-process right after the commit.
impl ChangeSink for Hub {
    fn within<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        announcements: &'a [Announcement],
    ) -> BoxFuture<'a, Result<(), DbErr>> {
        if self.via_postgres {
            pg::notify(txn, announcements).boxed()
        } else {
            std::future::ready(Ok(())).boxed()
        }
    }

    fn committed(&self, announcements: Vec<Announcement>) {
        if !self.via_postgres {
            self.publish(announcements);
        }
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
