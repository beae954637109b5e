//! Per-request DataLoaders: every relation a query can nest (an incident's events, postmortem
//! and roles, an event's or postmortem's incident, the people who wrote or hold them) is fetched for a whole batch in one statement;
//! the incidents of a listed page read their relations once for the page (`PageBatches`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::dataloader::Loader;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::db::Db;
use crate::entity::{incident, incident_event, incident_role, person, postmortem};
use crate::graphql::error::GqlError;
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

/// A person of the directory: the author of an event, an incident, a postmortem, a role holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PersonById(pub Uuid);

/// Who holds which role on an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RolesOf(pub Uuid);

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

impl Loader<PersonById> for AppLoader {
    type Value = person::Model;
    type Error = GqlError;

    async fn load(
        &self,
        keys: &[PersonById],
    ) -> Result<HashMap<PersonById, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = read::people_by_id(&self.db, self.scope, &ids).await?;
        Ok(rows.into_iter().map(|r| (PersonById(r.id), r)).collect())
    }
}

/// Role rows grouped by incident, each incident's in role order.
fn roles_by_incident(rows: Vec<incident_role::Model>) -> HashMap<Uuid, Vec<incident_role::Model>> {
    let mut grouped: HashMap<Uuid, Vec<incident_role::Model>> = HashMap::new();
    for row in rows {
        grouped.entry(row.incident_id).or_default().push(row);
    }
    for roles in grouped.values_mut() {
        roles.sort_by_key(|r| r.role);
    }
    grouped
}

impl Loader<RolesOf> for AppLoader {
    type Value = Vec<incident_role::Model>;
    type Error = GqlError;

    async fn load(&self, keys: &[RolesOf]) -> Result<HashMap<RolesOf, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = read::roles_of(&self.db, self.scope, &ids).await?;
        Ok(roles_by_incident(rows)
            .into_iter()
            .map(|(id, roles)| (RolesOf(id), roles))
            .collect())
    }
}

impl Loader<EventsOf> for AppLoader {
    type Value = Vec<Arc<incident_event::Model>>;
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

/// The relations of the pages of incidents a request lists, each read once for a whole page,
/// and what a single incident's read fetched ahead for the fields nested under it.
///
/// A DataLoader batches the keys registered within a time window; on a loaded machine the 50
/// incidents of a page do not all register in time and a page costs a statement per partial
/// batch (BENCHMARKS.md measured 20 instead of 3). The list resolver registers its page here, so
/// the first nested field of a kind reads it for every incident of the page and the others wait
/// for that read: one statement per relation and page, whatever the timing.
///
/// `incident(id)` reads the incident, the window of events and the postmortem its selection
/// asks for in one statement, and leaves them here (`prefetched`); the nested fields take them
/// from here before they would read anything.
#[derive(Default)]
pub struct PageBatches {
    by_incident: Mutex<HashMap<Uuid, Arc<PageBatch>>>,
    prefetched: Mutex<HashMap<Uuid, Prefetched>>,
}

/// What was read ahead for one incident: windows of its events, and its postmortem (`Some(None)`:
/// it has none).
#[derive(Default)]
struct Prefetched {
    events: HashMap<read::EventWindow, Vec<Arc<incident_event::Model>>>,
    postmortem: Option<Option<postmortem::Model>>,
}

pub struct PageBatch {
    ids: Vec<Uuid>,
    events: Mutex<HashMap<read::EventWindow, Arc<EventsCell>>>,
    counts: Mutex<HashMap<Option<Vec<String>>, Arc<CountsCell>>>,
    postmortems: OnceCell<HashMap<Uuid, postmortem::Model>>,
    roles: OnceCell<HashMap<Uuid, Vec<incident_role::Model>>>,
}

type EventsCell = OnceCell<HashMap<Uuid, Vec<Arc<incident_event::Model>>>>;
type CountsCell = OnceCell<HashMap<Uuid, u64>>;

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PageBatches {
    /// Registers a page; its incidents' nested fields then read through it. A page of one
    /// is left to the DataLoader, which can batch it with other single incidents.
    pub fn register(&self, ids: Vec<Uuid>) {
        if ids.len() < 2 {
            return;
        }
        let batch = Arc::new(PageBatch {
            ids,
            events: Mutex::default(),
            counts: Mutex::default(),
            postmortems: OnceCell::new(),
            roles: OnceCell::new(),
        });
        let mut map = locked(&self.by_incident);
        for id in &batch.ids {
            map.insert(*id, batch.clone());
        }
    }

    /// The page `incident_id` was listed in, if any.
    pub fn of(&self, incident_id: Uuid) -> Option<Arc<PageBatch>> {
        locked(&self.by_incident).get(&incident_id).cloned()
    }

    /// Keeps what a detail read fetched with its incident: the events of `window` (in window
    /// order) and the postmortem, each when it was read.
    pub fn prefetch(
        &self,
        incident_id: Uuid,
        window: Option<read::EventWindow>,
        detail: &read::Detail,
    ) {
        let mut map = locked(&self.prefetched);
        let entry = map.entry(incident_id).or_default();
        if let Some(window) = window {
            entry.events.insert(window, detail.events.clone());
        }
        if let Some(postmortem) = &detail.postmortem {
            entry.postmortem = Some(postmortem.clone());
        }
    }

    /// The events of `window` read ahead for the incident, if they were.
    pub fn prefetched_events(
        &self,
        incident_id: Uuid,
        window: &read::EventWindow,
    ) -> Option<Vec<Arc<incident_event::Model>>> {
        locked(&self.prefetched)
            .get(&incident_id)?
            .events
            .get(window)
            .cloned()
    }

    /// The incident's postmortem (or `Some(None)`: none exists) when it was read ahead.
    pub fn prefetched_postmortem(&self, incident_id: Uuid) -> Option<Option<postmortem::Model>> {
        locked(&self.prefetched)
            .get(&incident_id)?
            .postmortem
            .clone()
    }
}

impl PageBatch {
    pub async fn events(
        &self,
        loader: &AppLoader,
        incident_id: Uuid,
        window: &read::EventWindow,
    ) -> Result<Vec<Arc<incident_event::Model>>, GqlError> {
        let cell = locked(&self.events)
            .entry(window.clone())
            .or_default()
            .clone();
        let all = cell
            .get_or_try_init(|| {
                read::event_windows(
                    &loader.db,
                    loader.scope,
                    &self.ids,
                    window,
                    loader.budget.as_deref(),
                )
            })
            .await?;
        Ok(all.get(&incident_id).cloned().unwrap_or_default())
    }

    pub async fn event_count(
        &self,
        loader: &AppLoader,
        incident_id: Uuid,
        types: &Option<Vec<String>>,
    ) -> Result<u64, GqlError> {
        let cell = locked(&self.counts)
            .entry(types.clone())
            .or_default()
            .clone();
        let all = cell
            .get_or_try_init(|| {
                read::event_counts(&loader.db, loader.scope, &self.ids, types.as_deref())
            })
            .await?;
        Ok(all.get(&incident_id).copied().unwrap_or(0))
    }

    pub async fn roles(
        &self,
        loader: &AppLoader,
        incident_id: Uuid,
    ) -> Result<Vec<incident_role::Model>, GqlError> {
        let all = self
            .roles
            .get_or_try_init(|| async {
                let rows = read::roles_of(&loader.db, loader.scope, &self.ids).await?;
                Ok::<_, crate::error::AppError>(roles_by_incident(rows))
            })
            .await?;
        Ok(all.get(&incident_id).cloned().unwrap_or_default())
    }

    pub async fn postmortem(
        &self,
        loader: &AppLoader,
        incident_id: Uuid,
    ) -> Result<Option<postmortem::Model>, GqlError> {
        let all = self
            .postmortems
            .get_or_try_init(|| async {
                let rows =
                    read::postmortems_by_incident(&loader.db, loader.scope, &self.ids).await?;
                Ok::<_, crate::error::AppError>(
                    rows.into_iter().map(|p| (p.incident_id, p)).collect(),
                )
            })
            .await?;
        Ok(all.get(&incident_id).cloned())
    }
}
