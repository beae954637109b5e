//! The two live streams subscribers read: an incident's timeline (replay from a cursor, then
//! live, no gap, no duplicate) and an organization's change feed. Both take the caller's scope.

use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::{Hub, Inner, Signal};
use crate::entity::{incident, incident_event};
use crate::error::{AppError, AppResult};
use crate::incident::changes::ChangeKind;
use crate::incident::input::IncidentFilter;
use crate::incident::{OrgScope, read};

/// Events read from the database per round trip while catching up: at most this many, and
/// about this many bytes (events hold up to 64 KiB each).
const REPLAY_BATCH: u64 = 500;
const REPLAY_BATCH_BYTES: usize = 1024 * 1024;

/// The stored events of an incident after `after_sequence`, then each new one as it commits.
/// The database is the source of truth: signals only say "something new", and whenever one may
/// have been missed (lag, a lost listener, an unexpected sequence) the stream re-reads from its
/// cursor. `NOT_FOUND` for an incident outside the scope.
impl Hub {
    pub async fn timeline(
        &self,
        scope: OrgScope,
        incident_id: Uuid,
        after_sequence: i64,
    ) -> AppResult<impl Stream<Item = AppResult<incident_event::Model>> + use<>> {
        // Registered before the first read: whatever commits after the read is signalled.
        let mut signals = self.timeline_signals(scope, incident_id);
        let registered = Instant::now();
        self.inner.check_incident(scope, incident_id).await?;
        let inner = self.inner.clone();
        let mut cursor = after_sequence;
        Ok(async_stream::stream! {
            let mut first = true;
            // Reads started after this moment see everything this subscriber may have missed.
            let mut need_from = registered;
            loop {
                loop {
                    let batch = match Box::pin(inner.catch_up(scope, incident_id, cursor, first, need_from)).await {
                        Ok(batch) => batch,
                        Err(e) => {
                            yield Err(e);
                            return;
                        }
                    };
                    let complete = batch.complete;
                    for row in batch.rows {
                        cursor = row.sequence;
                        crate::monitoring::change_delivered();
                        yield Ok(row);
                    }
                    if complete {
                        break;
                    }
                }
                first = false;
                // Live: the next event arrives with its signal; anything else means re-read,
                // with a read that starts after what may have been missed: after the resync
                // was sent, or after now for a gap or a lag.
                need_from = loop {
                    match signals.recv().await {
                        Ok(Signal::Item(event)) => {
                            if event.sequence <= cursor {
                                continue;
                            }
                            if event.sequence != cursor + 1 {
                                break Instant::now();
                            }
                            cursor = event.sequence;
                            crate::monitoring::change_delivered();
                            yield Ok((*event).clone());
                        }
                        Ok(Signal::Resync(at)) => break at,
                        Err(RecvError::Lagged(_)) => break Instant::now(),
                        Err(RecvError::Closed) => return,
                    }
                };
            }
        })
    }

    /// Every change to the scope's incidents that passes `filter` before or after it (so a
    /// client sees an incident leave its filter, and can drop it), with the incident as it is
    /// when the change is delivered and whether that passes `filter`. The feed cannot replay, so
    /// a subscriber that may have missed a change gets `SUBSCRIBER_LAGGED` and the stream ends:
    /// refetch, then subscribe again.
    pub fn changes(
        &self,
        scope: OrgScope,
        filter: IncidentFilter,
    ) -> impl Stream<Item = AppResult<Delivered>> + use<> {
        let mut signals = self.feed_signals(scope);
        async_stream::stream! {
            loop {
                match signals.recv().await {
                    Ok(Signal::Item(change)) => {
                        if change.incident.organization_id != scope.org_id() {
                            continue;
                        }
                        let matches = filter.matches(&change.incident, change.awaiting_postmortem, &change.holders);
                        let was = change.before.as_ref().unwrap_or(&change.incident);
                        let matched = filter.matches(was, change.was_awaiting_postmortem, &change.was_holders);
                        if !matches && !matched {
                            continue;
                        }
                        crate::monitoring::change_delivered();
                        yield Ok(Delivered {
                            kind: change.kind,
                            incident: change.incident.clone(),
                            matches_filter: matches,
                        });
                    }
                    Ok(Signal::Resync(_)) | Err(RecvError::Lagged(_)) => {
                        yield Err(AppError::Lagged);
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}

/// A change as a change-feed subscriber receives it.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub kind: ChangeKind,
    pub incident: incident::Model,
    /// Whether `incident` passes the subscriber's filter; `false` when the change took it out.
    pub matches_filter: bool,
}

/// How long a timeline subscriber keeps retrying a failed catch-up read (the database
/// restarting, say) before its stream ends with the error; the client then resumes from its
/// cursor.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(60);

impl Inner {
    /// One batch of events after `cursor`, read after `need_from`. The first read of a
    /// subscription fails fast (the client sees why); later ones, after a resync, retry with
    /// backoff for a while, so a database restart does not end thousands of subscriptions at
    /// once.
    async fn catch_up(
        self: &Arc<Self>,
        scope: OrgScope,
        incident_id: Uuid,
        cursor: i64,
        first: bool,
        need_from: Instant,
    ) -> AppResult<read::EventBatch> {
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self
                .read_shared(scope, incident_id, cursor, need_from)
                .await
            {
                Ok(batch) => return Ok(batch),
                Err(e) if first || started.elapsed() >= CATCH_UP_PATIENCE || !e.is_transient() => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "a timeline catch-up read failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Subscribers of one incident at one cursor share a read: after a resync, the hundreds
    /// watching a hot incident (all at its last sequence) read it once, not once each. A
    /// caller joins only a read created after `need_from` (one that cannot predate what it
    /// may have missed); reads take turns, a few at a time. A shared read that failed is
    /// repeated alone, so each caller gets its own error.
    async fn read_shared(
        self: &Arc<Self>,
        scope: OrgScope,
        incident_id: Uuid,
        cursor: i64,
        need_from: Instant,
    ) -> AppResult<read::EventBatch> {
        let key = (scope.org_id(), incident_id, cursor);
        let shared = {
            let mut reads = self.reads.lock().expect("the reads lock");
            match reads.get(&key) {
                Some((created, read)) if *created >= need_from => read.clone(),
                _ => {
                    // In a task of its own: a read whose callers all went away (their clients
                    // left) still finishes, gives its turn back and leaves the map, instead
                    // of holding one of the few turns for as long as nobody polls it.
                    let inner = self.clone();
                    let created = Instant::now();
                    let task = tokio::spawn(async move {
                        let batch = inner
                            .read_events(scope, incident_id, cursor)
                            .await
                            .ok()
                            .map(Arc::new);
                        let mut reads = inner.reads.lock().expect("the reads lock");
                        if reads.get(&key).is_some_and(|(at, _)| *at == created) {
                            reads.remove(&key);
                        }
                        batch
                    });
                    let read = async move { task.await.ok().flatten() }.boxed().shared();
                    reads.insert(key, (created, read.clone()));
                    read
                }
            }
        };
        let result = shared.clone().await;
        {
            let mut reads = self.reads.lock().expect("the reads lock");
            if reads
                .get(&key)
                .is_some_and(|(_, read)| read.ptr_eq(&shared))
            {
                reads.remove(&key);
            }
        }
        match result {
            Some(batch) => Ok(read::EventBatch {
                rows: batch.rows.clone(),
                complete: batch.complete,
            }),
            None => self.read_events(scope, incident_id, cursor).await,
        }
    }

    /// `NOT_FOUND` unless the incident is the scope's. Subscriptions of one incident that start
    /// together (thousands at a server's start or after a reconnect storm) share one read, keyed
    /// by organization and incident, so the read names the caller's organization as before. An
    /// incident never changes organization, so "found" from a read that began before this
    /// caller holds for it too; "not found" or an error is read again alone, each caller
    /// getting its own answer. The read runs in a task of its own: a check whose subscribers
    /// all went away still finishes and gives its turn back.
    async fn check_incident(self: &Arc<Self>, scope: OrgScope, incident_id: Uuid) -> AppResult<()> {
        let key = (scope.org_id(), incident_id);
        let shared = {
            let mut checks = self.checks.lock().expect("the checks lock");
            match checks.get(&key) {
                Some(check) => check.clone(),
                None => {
                    let inner = self.clone();
                    let task = tokio::spawn(async move {
                        let _turn = inner.replays.acquire().await.expect("never closed");
                        read::incident(&inner.db, scope, incident_id).await.is_ok()
                    });
                    let check = async move { task.await.unwrap_or(false) }.boxed().shared();
                    checks.insert(key, check.clone());
                    check
                }
            }
        };
        let found = shared.clone().await;
        {
            let mut checks = self.checks.lock().expect("the checks lock");
            if checks.get(&key).is_some_and(|check| check.ptr_eq(&shared)) {
                checks.remove(&key);
            }
        }
        if found {
            return Ok(());
        }
        let _turn = self.replays.acquire().await.expect("never closed");
        read::incident(&self.db, scope, incident_id)
            .await
            .map(|_| ())
    }

    /// One batch of events after `cursor`, taking a turn among the subscribers reading at once.
    async fn read_events(
        &self,
        scope: OrgScope,
        incident_id: Uuid,
        cursor: i64,
    ) -> AppResult<read::EventBatch> {
        let _turn = self.replays.acquire().await.expect("never closed");
        read::events_after(
            &self.db,
            scope,
            incident_id,
            cursor,
            REPLAY_BATCH,
            REPLAY_BATCH_BYTES,
        )
        .await
    }
}
