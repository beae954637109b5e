//! The two live streams subscribers read: an incident's timeline (replay from a cursor, then
//! live, no gap, no duplicate) and an organization's change feed. Both take the caller's scope.

use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::{Hub, Signal};
use crate::entity::{incident, incident_event};
use crate::error::{AppError, AppResult};
use crate::incident::changes::ChangeKind;
use crate::incident::input::IncidentFilter;
use crate::incident::{OrgScope, read};

/// Events read from the database per round trip while catching up.
const REPLAY_BATCH: u64 = 500;

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
        // Subscribe before the first read: whatever commits after the read is signalled.
        let mut signals = self.subscribe();
        read::incident(&self.db, scope, incident_id).await?;
        let db = self.db.clone();
        let mut cursor = after_sequence;
        Ok(async_stream::stream! {
            loop {
                loop {
                    let rows = match read::events_after(&db, scope, incident_id, cursor, REPLAY_BATCH).await {
                        Ok(rows) => rows,
                        Err(e) => {
                            yield Err(e);
                            return;
                        }
                    };
                    let complete = (rows.len() as u64) < REPLAY_BATCH;
                    for row in rows {
                        cursor = row.sequence;
                        crate::monitoring::change_delivered();
                        yield Ok(row);
                    }
                    if complete {
                        break;
                    }
                }
                // Live: the next event arrives with its signal; anything else means re-read.
                loop {
                    match signals.recv().await {
                        Ok(Signal::Change(change)) => {
                            let a = &change.announcement;
                            if !change.visible_to(scope) || a.incident_id != incident_id || a.kind != ChangeKind::EventAdded {
                                continue;
                            }
                            match (&change.event, a.sequence) {
                                (Some(event), _) if event.sequence == cursor + 1 => {
                                    cursor = event.sequence;
                                    crate::monitoring::change_delivered();
                                    yield Ok(event.clone());
                                }
                                (_, Some(seq)) if seq <= cursor => {}
                                _ => break,
                            }
                        }
                        Ok(Signal::Resync) | Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return,
                    }
                }
            }
        })
    }

    /// Every change to the scope's incidents that passes `filter`, with the incident as it is after
    /// the change. The feed cannot replay, so a subscriber that may have missed a change gets
    /// `SUBSCRIBER_LAGGED` and the stream ends: refetch, then subscribe again.
    pub fn changes(
        &self,
        scope: OrgScope,
        filter: IncidentFilter,
    ) -> impl Stream<Item = AppResult<(ChangeKind, incident::Model)>> + use<> {
        let mut signals = self.subscribe();
        async_stream::stream! {
            loop {
                match signals.recv().await {
                    Ok(Signal::Change(change)) => {
                        if !change.visible_to(scope) || !filter.matches(&change.incident) {
                            continue;
                        }
                        crate::monitoring::change_delivered();
                        yield Ok((change.announcement.kind, change.incident.clone()));
                    }
                    Ok(Signal::Resync) | Err(RecvError::Lagged(_)) => {
                        yield Err(AppError::Lagged);
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}
