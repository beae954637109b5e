//! Per-request DataLoaders: every relation a query can nest (an incident's events and
//! postmortem, an event's or postmortem's incident) is fetched for a whole batch in one statement.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use super::error::GqlError;
use crate::db::Db;
use crate::entity::{incident, incident_event, postmortem};
use crate::incident::budget::ResponseBudget;
use crate::incident::{OrgScope, read};

/// Built per request, for the caller's organization only; what it loads is charged to the
/// response's byte budget when the request has one.
pub struct AppLoader {
    pub db: Db,
    pub scope: OrgScope,
    pub budget: Option<Arc<ResponseBudget>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IncidentById(pub Uuid);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PostmortemOf(pub Uuid);

/// One page of one incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventsOf {
    pub incident_id: Uuid,
    pub window: read::EventWindow,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventCountOf {
    pub incident_id: Uuid,
    pub types: Option<Vec<String>>,
}

impl Loader<IncidentById> for AppLoader {
    type Value = incident::Model;
    type Error = GqlError;

    async fn load(
        &self,
        keys: &[IncidentById],
    ) -> Result<HashMap<IncidentById, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = read::incidents_by_id(&self.db, self.scope, &ids).await?;
        Ok(rows.into_iter().map(|r| (IncidentById(r.id), r)).collect())
    }
}

impl Loader<PostmortemOf> for AppLoader {
    type Value = postmortem::Model;
    type Error = GqlError;

    async fn load(
        &self,
        keys: &[PostmortemOf],
    ) -> Result<HashMap<PostmortemOf, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = read::postmortems_by_incident(&self.db, self.scope, &ids).await?;
        Ok(rows
            .into_iter()
            .map(|r| (PostmortemOf(r.incident_id), r))
            .collect())
    }
}

impl Loader<EventsOf> for AppLoader {
    type Value = Vec<incident_event::Model>;
    type Error = GqlError;

    async fn load(&self, keys: &[EventsOf]) -> Result<HashMap<EventsOf, Self::Value>, Self::Error> {
        // Keys asking for the same window share one statement; a typical query has one window.
        let mut by_window: HashMap<&read::EventWindow, Vec<Uuid>> = HashMap::new();
        for key in keys {
            by_window
                .entry(&key.window)
                .or_default()
                .push(key.incident_id);
        }
        let mut out = HashMap::with_capacity(keys.len());
        for (window, ids) in by_window {
            let mut grouped =
                read::event_windows(&self.db, self.scope, &ids, window, self.budget.as_deref())
                    .await?;
            for id in ids {
                let rows = grouped.remove(&id).unwrap_or_default();
                out.insert(
                    EventsOf {
                        incident_id: id,
                        window: window.clone(),
                    },
                    rows,
                );
            }
        }
        Ok(out)
    }
}

impl Loader<EventCountOf> for AppLoader {
    type Value = u64;
    type Error = GqlError;

    async fn load(
        &self,
        keys: &[EventCountOf],
    ) -> Result<HashMap<EventCountOf, Self::Value>, Self::Error> {
        let mut by_types: HashMap<&Option<Vec<String>>, Vec<Uuid>> = HashMap::new();
        for key in keys {
            by_types
                .entry(&key.types)
                .or_default()
                .push(key.incident_id);
        }
        let mut out = HashMap::with_capacity(keys.len());
        for (types, ids) in by_types {
            let counts = read::event_counts(&self.db, self.scope, &ids, types.as_deref()).await?;
            for id in ids {
                let key = EventCountOf {
                    incident_id: id,
                    types: types.clone(),
                };
                out.insert(key, counts.get(&id).copied().unwrap_or(0));
            }
        }
        Ok(out)
    }
}
