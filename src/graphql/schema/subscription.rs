//! Subscription roots over the live streams of `crate::live`: parse, call, shape.

use async_graphql::{Context, Subscription};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use super::context::{hub, principal};
use super::types::{Incident, IncidentEvent};
use crate::graphql::error::{GqlError, GqlResult};
use crate::incident::changes::ChangeKind;
use crate::incident::input::{self, IncidentFilterInput};

#[derive(async_graphql::SimpleObject)]
pub struct IncidentChange {
    pub kind: ChangeKind,
    pub incident: Incident,
    /// Whether `incident` passes the subscription's filter. A change is delivered when the
    /// incident passed the filter before it or after it: `false` means this change took the
    /// incident out of the filter (resolved under `status: [OPEN]`, lowered under
    /// `severity: [SEV1]`), so a dashboard can drop it. Always `true` without a filter.
    pub matches_filter: bool,
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
        let after = input::after_sequence("afterSequence", after_sequence.map(i64::from))?;
        // Boxed: async-graphql keeps this resolver's future, spent, beside the stream it
        // returned for the subscription's lifetime; the start's reads need not stay with it.
        let events = Box::pin(hub(ctx).timeline(scope, incident_id, after)).await?;
        Ok(events.map(|e| e.map(IncidentEvent::from).map_err(GqlError::from)))
    }

    /// Every change to the organization's incidents that passes `filter` before or after it
    /// (see `matchesFilter`), in commit order, with
    /// the incident as it is when the change is delivered: never older than the change, and
    /// possibly newer when more changes followed quickly (`kind` says what happened; the
    /// incident is the latest state a dashboard should show). A subscriber too slow to keep up
    /// gets a `SUBSCRIBER_LAGGED` error and the stream ends: refetch with a query, then
    /// subscribe again.
    async fn incident_changed(
        &self,
        ctx: &Context<'_>,
        filter: Option<IncidentFilterInput>,
    ) -> Result<impl Stream<Item = GqlResult<IncidentChange>> + use<>, GqlError> {
        let scope = principal(ctx)?.scope();
        let filter = filter.unwrap_or_default().parse()?;
        Ok(hub(ctx).changes(scope, filter).map(|change| {
            change
                .map(|change| IncidentChange {
                    kind: change.kind,
                    incident: Incident(change.incident),
                    matches_filter: change.matches_filter,
                })
                .map_err(GqlError::from)
        }))
    }
}
