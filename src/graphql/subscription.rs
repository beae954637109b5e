//! Subscriptions: an incident's timeline (replay from a cursor, then live, with no gap and no
//! duplicate) and the organization-wide change feed for dashboards.

use async_graphql::{Context, Subscription};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::query::IncidentFilterInput;
use super::types::{Incident, IncidentEvent};
use super::{domain, principal};
use crate::error::{AppError, GqlError, GqlResult};
use crate::incident::read;
use crate::live::{ChangeKind, Signal};

/// Events read from the database per round trip while catching up.
const REPLAY_BATCH: u64 = 500;

#[derive(async_graphql::SimpleObject)]
pub struct IncidentChange {
    pub kind: ChangeKind,
    pub incident: Incident,
}

#[derive(Default)]
pub struct IncidentSubscription;

#[Subscription]
impl IncidentSubscription {
    /// The stored events after `afterSequence` (all when absent), then each new event as it
    /// commits, in sequence order: no gap, no duplicate. Resume after a disconnect by passing
    /// the last sequence received.
    async fn incident_events(
        &self,
        ctx: &Context<'_>,
        incident_id: Uuid,
        after_sequence: Option<i32>,
    ) -> Result<impl Stream<Item = GqlResult<IncidentEvent>> + use<>, GqlError> {
        let scope = principal(ctx)?.scope();
        let domain = domain(ctx).clone();
        if after_sequence.is_some_and(|s| s < 0) {
            return Err(
                AppError::bad_input("afterSequence", "afterSequence must not be negative").into(),
            );
        }
        // Subscribe before the first read: whatever commits after the read is signalled.
        let mut signals = domain.hub.subscribe();
        read::incident(&domain.db, scope, incident_id).await?;
        let mut cursor = after_sequence.unwrap_or(0);
        Ok(async_stream::stream! {
            loop {
                // Catch up from the database: the source of truth.
                loop {
                    match read::events_after(&domain.db, scope, incident_id, cursor, REPLAY_BATCH).await {
                        Ok(rows) => {
                            let complete = (rows.len() as u64) < REPLAY_BATCH;
                            for row in rows {
                                cursor = row.sequence;
                                domain.hub.delivered();
                                yield Ok(IncidentEvent(row));
                            }
                            if complete {
                                break;
                            }
                        }
                        Err(e) => {
                            yield Err(GqlError::from(e));
                            return;
                        }
                    }
                }
                // Live: the next event arrives with its signal; anything unexpected means re-read.
                loop {
                    match signals.recv().await {
                        Ok(Signal::Change(change)) => {
                            let a = &change.announcement;
                            if a.org_id != scope.org_id() || a.incident_id != incident_id || a.kind != ChangeKind::EventAdded {
                                continue;
                            }
                            match (&change.event, a.sequence) {
                                (Some(event), _) if event.sequence == cursor + 1 => {
                                    cursor = event.sequence;
                                    domain.hub.delivered();
                                    yield Ok(IncidentEvent(event.clone()));
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

    /// Every change to the organization's incidents that passes `filter`, with the incident as
    /// it is after the change. A subscriber too slow to keep up gets a `SUBSCRIBER_LAGGED`
    /// error and the stream ends: refetch with a query, then subscribe again.
    async fn incident_changed(
        &self,
        ctx: &Context<'_>,
        filter: Option<IncidentFilterInput>,
    ) -> Result<impl Stream<Item = GqlResult<IncidentChange>> + use<>, GqlError> {
        let scope = principal(ctx)?.scope();
        let domain = domain(ctx).clone();
        let filter = filter.unwrap_or_default().parse()?;
        let mut signals = domain.hub.subscribe();
        Ok(async_stream::stream! {
            loop {
                match signals.recv().await {
                    Ok(Signal::Change(change)) => {
                        if change.announcement.org_id != scope.org_id() {
                            continue;
                        }
                        let Some(incident) = &change.incident else { continue };
                        if incident.organization_id != scope.org_id() || !filter.matches(incident) {
                            continue;
                        }
                        domain.hub.delivered();
                        yield Ok(IncidentChange {
                            kind: change.announcement.kind,
                            incident: Incident(incident.clone()),
                        });
                    }
                    Ok(Signal::Resync) | Err(RecvError::Lagged(_)) => {
                        yield Err(GqlError::from(AppError::Lagged));
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }
}
