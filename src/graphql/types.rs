//! The GraphQL object types: thin wrappers over entity models, with nested relations loaded
//! through the request's DataLoader.

use async_graphql::connection::{Connection, Edge};
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::error::GqlResult;
use super::loaders::{
    AppLoader, EventCountOf, EventsOf, IncidentById, PageBatch, PageBatches, PostmortemOf,
};
use super::schema::{charge, domain, principal};
use crate::entity::{Severity, Status, audit_event, incident, incident_event, postmortem};
use crate::error::AppError;
use crate::incident::identity::Role;
use crate::incident::input::IncidentFilter;
use crate::incident::input::{ActionItem as DomainActionItem, Date};
use crate::incident::page::{Cursor, Page, PageOf, SeqCursor, TimeCursor};
use crate::incident::{read, workflow};

fn loader<'a>(ctx: &'a Context<'_>) -> &'a DataLoader<AppLoader> {
    ctx.data_unchecked::<DataLoader<AppLoader>>()
}

/// The page this incident was listed in, when it was: its relations are read for the whole page.
fn page_of(ctx: &Context<'_>, incident_id: Uuid) -> Option<std::sync::Arc<PageBatch>> {
    ctx.data_opt::<PageBatches>()?.of(incident_id)
}

async fn postmortem_of(
    ctx: &Context<'_>,
    incident_id: Uuid,
) -> GqlResult<Option<postmortem::Model>> {
    match page_of(ctx, incident_id) {
        Some(page) => page.postmortem(loader(ctx).loader(), incident_id).await,
        None => Ok(loader(ctx).load_one(PostmortemOf(incident_id)).await?),
    }
}

pub struct Incident(pub incident::Model);

#[Object]
impl Incident {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn organization_id(&self) -> Uuid {
        self.0.organization_id
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn status(&self) -> Status {
        self.0.status
    }
    async fn severity(&self) -> Severity {
        self.0.severity
    }
    async fn linked_ticket_ids(&self) -> Vec<String> {
        self.0.ticket_ids()
    }
    async fn linked_problem_id(&self) -> Option<Uuid> {
        self.0.linked_problem_id
    }
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    async fn created_by(&self) -> Option<Uuid> {
        self.0.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    /// The statuses the workflow allows from here, now (CLOSED only once a required postmortem exists).
    async fn allowed_transitions(&self, ctx: &Context<'_>) -> GqlResult<Vec<Status>> {
        let needs_check = self.0.status == Status::Resolved && workflow::needs_postmortem(&self.0);
        let has_postmortem = needs_check && postmortem_of(ctx, self.0.id).await?.is_some();
        Ok(workflow::allowed_now(&self.0, has_postmortem))
    }

    /// The timeline, oldest first.
    #[graphql(complexity = "crate::graphql::page_complexity(first, last, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        types: Option<Vec<String>>,
    ) -> GqlResult<Connection<String, IncidentEvent, EventsTotal>> {
        let page = Page::<SeqCursor>::parse(first, after.as_deref(), last, before.as_deref())?;
        if let Some(types) = &types
            && types.len() > 50
        {
            return Err(AppError::bad_input("types", "at most 50 event types").into());
        }
        let window = read::EventWindow {
            after: page.after.map(|c| c.0),
            before: page.before.map(|c| c.0),
            types: types.clone(),
            backward: page.backward,
            fetch: page.fetch(),
        };
        let rows = match page_of(ctx, self.0.id) {
            Some(page) => {
                page.events(loader(ctx).loader(), self.0.id, &window)
                    .await?
            }
            None => loader(ctx)
                .load_one(EventsOf {
                    incident_id: self.0.id,
                    window,
                })
                .await?
                .unwrap_or_default(),
        };
        let page = PageOf::from_fetched(rows, &page);
        let total = EventsTotal {
            incident_id: self.0.id,
            types,
        };
        let mut connection =
            Connection::with_additional_fields(page.has_previous, page.has_next, total);
        connection.edges.extend(
            page.rows
                .into_iter()
                .map(|e| Edge::new(SeqCursor(e.sequence).encode(), IncidentEvent(e))),
        );
        Ok(connection)
    }

    async fn postmortem(&self, ctx: &Context<'_>) -> GqlResult<Option<Postmortem>> {
        Ok(postmortem_of(ctx, self.0.id).await?.map(Postmortem))
    }
}

pub struct EventsTotal {
    incident_id: Uuid,
    types: Option<Vec<String>>,
}

#[Object]
impl EventsTotal {
    async fn total_count(&self, ctx: &Context<'_>) -> GqlResult<u64> {
        if let Some(page) = page_of(ctx, self.incident_id) {
            return page
                .event_count(loader(ctx).loader(), self.incident_id, &self.types)
                .await;
        }
        Ok(loader(ctx)
            .load_one(EventCountOf {
                incident_id: self.incident_id,
                types: self.types.clone(),
            })
            .await?
            .unwrap_or(0))
    }
}

pub struct IncidentEvent(pub incident_event::Model);

#[Object]
impl IncidentEvent {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn incident_id(&self) -> Uuid {
        self.0.incident_id
    }
    /// 1, 2, 3… within its incident, gapless, in commit order.
    async fn sequence(&self) -> i32 {
        // Stored as BIGINT; GraphQL's Int is 32-bit, and no timeline comes near its end.
        i32::try_from(self.0.sequence).unwrap_or(i32::MAX)
    }
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    async fn content(&self, ctx: &Context<'_>) -> GqlResult<Option<&str>> {
        let content = self.0.content.as_deref();
        charge(ctx, content.map_or(0, str::len))?;
        Ok(content)
    }
    async fn created_by(&self) -> Option<Uuid> {
        self.0.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn incident(&self, ctx: &Context<'_>) -> GqlResult<Incident> {
        incident_of(ctx, self.0.incident_id).await
    }
}

async fn incident_of(ctx: &Context<'_>, id: Uuid) -> GqlResult<Incident> {
    loader(ctx)
        .load_one(IncidentById(id))
        .await?
        .map(Incident)
        .ok_or_else(|| AppError::NotFound("incident").into())
}

/// A postmortem's action item as GraphQL answers it (the input is `ActionItemInput`, the
/// domain's own type): a view, not a second definition.
pub struct ActionItem(DomainActionItem);

#[Object]
impl ActionItem {
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn owner(&self) -> Option<&str> {
        self.0.owner.as_deref()
    }
    async fn done(&self) -> bool {
        self.0.done
    }
    async fn ticket_id(&self) -> Option<&str> {
        self.0.ticket_id.as_deref()
    }
    async fn due_date(&self) -> Option<Date> {
        self.0.due_date
    }
}

pub struct Postmortem(pub postmortem::Model);

/// A long text field, charged to the response's budget.
fn text<'a>(ctx: &Context<'_>, value: Option<&'a str>) -> GqlResult<Option<&'a str>> {
    charge(ctx, value.map_or(0, str::len))?;
    Ok(value)
}

#[Object]
impl Postmortem {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn incident_id(&self) -> Uuid {
        self.0.incident_id
    }
    async fn impact_summary(&self, ctx: &Context<'_>) -> GqlResult<Option<&str>> {
        text(ctx, self.0.impact_summary.as_deref())
    }
    async fn root_cause(&self, ctx: &Context<'_>) -> GqlResult<Option<&str>> {
        text(ctx, self.0.root_cause.as_deref())
    }
    async fn timeline(&self, ctx: &Context<'_>) -> GqlResult<Option<&str>> {
        text(ctx, self.0.timeline.as_deref())
    }
    async fn what_went_well(&self, ctx: &Context<'_>) -> GqlResult<Option<&str>> {
        text(ctx, self.0.what_went_well.as_deref())
    }
    async fn what_went_wrong(&self, ctx: &Context<'_>) -> GqlResult<Option<&str>> {
        text(ctx, self.0.what_went_wrong.as_deref())
    }
    async fn action_items(&self) -> Vec<ActionItem> {
        DomainActionItem::list_from_json(&self.0.action_items)
            .into_iter()
            .map(ActionItem)
            .collect()
    }
    async fn public_summary(&self, ctx: &Context<'_>) -> GqlResult<Option<&str>> {
        text(ctx, self.0.public_summary.as_deref())
    }
    async fn internal_notes(&self, ctx: &Context<'_>) -> GqlResult<Option<&str>> {
        text(ctx, self.0.internal_notes.as_deref())
    }
    async fn created_by(&self) -> Option<Uuid> {
        self.0.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    async fn incident(&self, ctx: &Context<'_>) -> GqlResult<Incident> {
        incident_of(ctx, self.0.incident_id).await
    }
}

pub struct AuditEvent(pub audit_event::Model);

#[Object]
impl AuditEvent {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn actor_id(&self) -> Option<Uuid> {
        self.0.actor_id
    }
    /// `incident_created`, `incident_updated`, `incident_event_added` or `postmortem_updated`.
    async fn action(&self) -> &str {
        &self.0.action
    }
    async fn entity_type(&self) -> &str {
        &self.0.entity_type
    }
    async fn entity_id(&self) -> Uuid {
        self.0.entity_id
    }
    async fn incident_id(&self) -> Option<Uuid> {
        self.0.incident_id
    }
    /// `{"before": {…}, "after": {…}}` of the fields that changed.
    async fn changes(&self) -> Json<serde_json::Value> {
        Json(self.0.changes.clone())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(SimpleObject)]
pub struct Viewer {
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub role: Role,
}

/// `totalCount` of a list, computed only when asked for.
pub enum ListTotal {
    Incidents(IncidentFilter),
    Postmortems,
    AuditEvents(Option<Uuid>),
}

#[Object(name = "ListTotal")]
impl ListTotal {
    async fn total_count(&self, ctx: &Context<'_>) -> GqlResult<u64> {
        let (db, scope) = (&domain(ctx).db, principal(ctx)?.scope());
        Ok(match self {
            ListTotal::Incidents(filter) => read::count_incidents(db, scope, filter).await?,
            ListTotal::Postmortems => read::count_postmortems(db, scope).await?,
            ListTotal::AuditEvents(entity) => read::count_audit_events(db, scope, *entity).await?,
        })
    }
}

/// Builds a connection from a page of rows ordered by (created_at, id).
pub fn time_connection<M, N>(
    page: PageOf<M>,
    total: ListTotal,
    key: impl Fn(&M) -> TimeCursor,
    node: impl Fn(M) -> N,
) -> Connection<String, N, ListTotal>
where
    N: async_graphql::OutputType,
{
    let mut connection =
        Connection::with_additional_fields(page.has_previous, page.has_next, total);
    connection.edges.extend(
        page.rows
            .into_iter()
            .map(|row| Edge::new(key(&row).encode(), node(row))),
    );
    connection
}
