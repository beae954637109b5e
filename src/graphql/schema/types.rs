//! The GraphQL object types: thin wrappers over entity models, with nested relations loaded
//! through the request's DataLoader.

use std::borrow::Cow;
use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Json, Object, ServerResult, SimpleObject, Value};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::context::{charge, domain, principal};
use super::fast::{
    FastConnection, Fields, PlainFields, Slot, failed, fast_object, later, plain_list, text,
    unknown, value,
};
use super::loaders::{
    AppLoader, EventCountOf, EventsOf, IncidentById, PageBatch, PageBatches, PersonById,
    PostmortemOf, RolesOf,
};
use crate::entity::{
    IncidentRole, Severity, Status, audit_event, incident, incident_event, incident_role, person,
    postmortem,
};
use crate::error::{AppError, AppResult};
use crate::graphql::error::GqlResult;
use crate::incident::identity::Role;
use crate::incident::input::{self, IncidentFilter};
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
    if let Some(read) = ctx
        .data_opt::<PageBatches>()
        .and_then(|b| b.prefetched_postmortem(incident_id))
    {
        return Ok(read);
    }
    match page_of(ctx, incident_id) {
        Some(page) => page.postmortem(loader(ctx).loader(), incident_id).await,
        None => Ok(loader(ctx).load_one(PostmortemOf(incident_id)).await?),
    }
}

pub struct Incident(pub incident::Model);

fast_object!(Incident, IncidentResolvers);

impl Fields for Incident {
    fn type_name(&self) -> Cow<'static, str> {
        Cow::Borrowed("Incident")
    }

    fn field<'b>(&'b self, ctx: Context<'b>) -> Slot<'b> {
        let m = &self.0;
        match ctx.item.node.name.node.as_str() {
            "id" => value(&m.id),
            "organizationId" => value(&m.organization_id),
            "title" => text(&m.title),
            "status" => value(&m.status),
            "severity" => value(&m.severity),
            "linkedTicketIds" => value(&m.ticket_ids()),
            "linkedProblemId" => value(&m.linked_problem_id),
            "startedAt" => value(&m.started_at),
            "resolvedAt" => value(&m.resolved_at),
            "createdBy" => value(&m.created_by),
            "createdAt" => value(&m.created_at),
            "updatedAt" => value(&m.updated_at),
            // Without a postmortem to look up, the workflow answers from the row alone.
            "allowedTransitions" if !workflow::depends_on_postmortem(m) => {
                value(&workflow::allowed_now(m, false))
            }
            "transitions" if !workflow::depends_on_postmortem(m) => {
                Slot::Ready(plain_list(&ctx, &transitions(m, false)))
            }
            "closeBlocker" if !workflow::depends_on_postmortem(m) => Slot::Ready(Ok(Value::Null)),
            "editable" => value(&workflow::is_editable(m)),
            _ => later(ctx, IncidentResolvers(m)),
        }
    }
}

/// The `Incident` fields that may read its postmortem: itself, and the workflow's answers
/// (through `has_postmortem_if_asked`).
pub(crate) const READ_POSTMORTEM: [&str; 4] = [
    "postmortem",
    "allowedTransitions",
    "transitions",
    "closeBlocker",
];

/// Whether the incident has a postmortem, looked up only when the workflow's answer depends on it.
async fn has_postmortem_if_asked(ctx: &Context<'_>, m: &incident::Model) -> GqlResult<bool> {
    Ok(workflow::depends_on_postmortem(m) && postmortem_of(ctx, m.id).await?.is_some())
}

fn transitions(m: &incident::Model, has_postmortem: bool) -> Vec<IncidentTransition> {
    workflow::transitions_now(m, has_postmortem)
        .into_iter()
        .map(IncidentTransition)
        .collect()
}

/// A transition the workflow allows from the incident's status now.
pub struct IncidentTransition(workflow::Transition);

impl PlainFields for IncidentTransition {
    const TYPE_NAME: &'static str = "IncidentTransition";

    fn field(&self, ctx: &Context<'_>) -> ServerResult<Value> {
        Ok(match ctx.item.node.name.node.as_str() {
            "to" => async_graphql::InputType::to_value(&self.0.to),
            "needsNote" => Value::Boolean(self.0.needs_note),
            other => return Err(unknown(ctx, other)),
        })
    }
}

#[Object]
impl IncidentTransition {
    async fn to(&self) -> Status {
        self.0.to
    }
    /// Whether `transitionIncident` refuses it without a `note` (reopening does).
    async fn needs_note(&self) -> bool {
        self.0.needs_note
    }
}

/// Why closing is refused.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum CloseBlockReason {
    /// A postmortem is required (the incident is or was SEV1 or SEV2) and none exists yet.
    PostmortemRequired,
}

/// What stands between a resolved incident and CLOSED.
pub struct CloseBlocker(workflow::CloseBlocker);

#[Object]
impl CloseBlocker {
    async fn reason(&self) -> CloseBlockReason {
        match self.0.reason {
            workflow::CloseBlockReason::PostmortemRequired => CloseBlockReason::PostmortemRequired,
        }
    }
    /// The reason in words, for people.
    async fn message(&self) -> String {
        self.0.message()
    }
    /// The severity that makes the postmortem required: the highest the incident ever had,
    /// which may be above its current one.
    async fn severity(&self) -> Severity {
        self.0.severity
    }
}

/// `Incident`'s GraphQL type and the resolvers of the fields that wait for a relation.
struct IncidentResolvers<'a>(&'a incident::Model);

#[Object(name = "Incident")]
impl<'a> IncidentResolvers<'a> {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn organization_id(&self) -> Uuid {
        self.0.organization_id
    }
    async fn title(&self) -> &'a str {
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
        let has_postmortem = has_postmortem_if_asked(ctx, self.0).await?;
        Ok(workflow::allowed_now(self.0, has_postmortem))
    }

    /// The transitions the workflow allows from here, now (as `allowedTransitions`), each with
    /// whether it needs a note.
    async fn transitions(&self, ctx: &Context<'_>) -> GqlResult<Vec<IncidentTransition>> {
        let has_postmortem = has_postmortem_if_asked(ctx, self.0).await?;
        Ok(transitions(self.0, has_postmortem))
    }

    /// Whether its fields and roles can still change (a closed incident is final).
    async fn editable(&self) -> bool {
        workflow::is_editable(self.0)
    }

    /// Why CLOSED is missing from `transitions` although the incident is resolved: null when
    /// nothing blocks closing (or the incident is not resolved).
    async fn close_blocker(&self, ctx: &Context<'_>) -> GqlResult<Option<CloseBlocker>> {
        let has_postmortem = has_postmortem_if_asked(ctx, self.0).await?;
        Ok(workflow::close_blocker(self.0, has_postmortem).map(CloseBlocker))
    }

    /// The timeline, oldest first. `types` selects events of these types (at most 50).
    #[graphql(
        complexity = "crate::graphql::schema::limits::page_complexity(first, last, child_complexity)"
    )]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        types: Option<Vec<String>>,
    ) -> GqlResult<FastConnection<IncidentEvent, EventsTotal>> {
        let (page, window) = events_window(first, after, last, before, types)?;
        let types = window.types.clone();
        let prefetched = ctx
            .data_opt::<PageBatches>()
            .and_then(|b| b.prefetched_events(self.0.id, &window));
        let rows = match (prefetched, page_of(ctx, self.0.id)) {
            (Some(rows), _) => rows,
            (None, Some(page)) => {
                page.events(loader(ctx).loader(), self.0.id, &window)
                    .await?
            }
            (None, None) => loader(ctx)
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
        Ok(FastConnection::new(
            page.has_previous,
            page.has_next,
            total,
            page.rows
                .into_iter()
                .map(|e| (SeqCursor(e.sequence).encode(), IncidentEvent(e))),
        ))
    }

    async fn postmortem(&self, ctx: &Context<'_>) -> GqlResult<Option<Postmortem>> {
        Ok(postmortem_of(ctx, self.0.id).await?.map(Postmortem))
    }

    /// Who holds which role, in the order COMMANDER, COMMUNICATIONS, SCRIBE.
    async fn roles(&self, ctx: &Context<'_>) -> GqlResult<Vec<IncidentRoleAssignment>> {
        let rows = match page_of(ctx, self.0.id) {
            Some(page) => page.roles(loader(ctx).loader(), self.0.id).await?,
            None => loader(ctx)
                .load_one(RolesOf(self.0.id))
                .await?
                .unwrap_or_default(),
        };
        Ok(rows.into_iter().map(IncidentRoleAssignment).collect())
    }

    /// Who declared the incident (`createdBy`), as the directory knows them; null when unknown.
    async fn creator(&self, ctx: &Context<'_>) -> GqlResult<Option<Person>> {
        person_of(ctx, self.0.created_by).await
    }
}

/// The page and the window of events `Incident.events` asks for with these arguments.
fn events_window(
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
    types: Option<Vec<String>>,
) -> AppResult<(Page<SeqCursor>, read::EventWindow)> {
    let page = Page::<SeqCursor>::parse(first, after.as_deref(), last, before.as_deref())?;
    let window = read::EventWindow {
        after: page.after.map(|c| c.0),
        before: page.before.map(|c| c.0),
        types: input::event_types("types", types)?,
        backward: page.backward,
        fetch: page.fetch(),
    };
    Ok((page, window))
}

/// The window an `events` selection asks for, read from its arguments as `Incident.events`
/// reads them; `None` when they do not parse (the field's resolver then reports why).
pub(crate) fn selected_events_window(
    field: &async_graphql::SelectionField<'_>,
) -> Option<read::EventWindow> {
    let arguments = field.arguments().ok()?;
    let argument = |name: &str| {
        arguments
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v.clone())
    };
    fn parse<T: async_graphql::InputType>(value: Option<Value>) -> Option<T> {
        T::parse(value).ok()
    }
    let (_, window) = events_window(
        parse(argument("first"))?,
        parse(argument("after"))?,
        parse(argument("last"))?,
        parse(argument("before"))?,
        parse(argument("types"))?,
    )
    .ok()?;
    Some(window)
}

/// A person of the organization's directory, as their identity provider or token last named them.
pub struct Person(pub person::Model);

#[Object]
impl Person {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
}

/// The person with this id, when there is an id and the directory knows them.
pub(crate) async fn person_of(ctx: &Context<'_>, id: Option<Uuid>) -> GqlResult<Option<Person>> {
    let Some(id) = id else {
        return Ok(None);
    };
    Ok(loader(ctx).load_one(PersonById(id)).await?.map(Person))
}

/// Who holds a role on an incident.
pub struct IncidentRoleAssignment(pub incident_role::Model);

#[Object]
impl IncidentRoleAssignment {
    async fn role(&self) -> IncidentRole {
        self.0.role
    }
    async fn person(&self, ctx: &Context<'_>) -> GqlResult<Person> {
        person_of(ctx, Some(self.0.person_id))
            .await?
            .ok_or_else(|| AppError::NotFound("person").into())
    }
    async fn assigned_at(&self) -> DateTime<Utc> {
        self.0.assigned_at
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

/// An event, shared with every other field that loaded the same window (see `read::event_windows`).
pub struct IncidentEvent(pub Arc<incident_event::Model>);

impl From<incident_event::Model> for IncidentEvent {
    fn from(event: incident_event::Model) -> Self {
        IncidentEvent(Arc::new(event))
    }
}

fast_object!(IncidentEvent, IncidentEventResolvers);

impl Fields for IncidentEvent {
    fn type_name(&self) -> Cow<'static, str> {
        Cow::Borrowed("IncidentEvent")
    }

    fn field<'b>(&'b self, ctx: Context<'b>) -> Slot<'b> {
        let m: &incident_event::Model = &self.0;
        match ctx.item.node.name.node.as_str() {
            "id" => value(&m.id),
            "incidentId" => value(&m.incident_id),
            "sequence" => value(&sequence(m)),
            "eventType" => text(&m.event_type),
            "content" => match charge(&ctx, m.content.as_deref().map_or(0, str::len)) {
                Ok(()) => value(&m.content),
                Err(err) => failed(&ctx, err),
            },
            "createdBy" => value(&m.created_by),
            "createdAt" => value(&m.created_at),
            _ => later(ctx, IncidentEventResolvers(m)),
        }
    }
}

/// Stored as BIGINT; GraphQL's Int is 32-bit, and no timeline comes near its end.
fn sequence(m: &incident_event::Model) -> i32 {
    i32::try_from(m.sequence).unwrap_or(i32::MAX)
}

/// `IncidentEvent`'s GraphQL type and the resolver of its incident.
struct IncidentEventResolvers<'a>(&'a incident_event::Model);

#[Object(name = "IncidentEvent")]
impl<'a> IncidentEventResolvers<'a> {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn incident_id(&self) -> Uuid {
        self.0.incident_id
    }
    /// 1, 2, 3… within its incident, gapless, in commit order.
    async fn sequence(&self) -> i32 {
        sequence(self.0)
    }
    async fn event_type(&self) -> &'a str {
        &self.0.event_type
    }
    async fn content(&self, ctx: &Context<'_>) -> GqlResult<Option<&'a str>> {
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
    /// Who wrote the event (`createdBy`), as the directory knows them; null when unknown.
    async fn author(&self, ctx: &Context<'_>) -> GqlResult<Option<Person>> {
        person_of(ctx, self.0.created_by).await
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

impl PlainFields for ActionItem {
    const TYPE_NAME: &'static str = "ActionItem";

    fn field(&self, ctx: &Context<'_>) -> ServerResult<Value> {
        let item = &self.0;
        Ok(match ctx.item.node.name.node.as_str() {
            "title" => Value::String(item.title.clone()),
            "owner" => async_graphql::InputType::to_value(&item.owner),
            "done" => Value::Boolean(item.done),
            "ticketId" => async_graphql::InputType::to_value(&item.ticket_id),
            "dueDate" => async_graphql::InputType::to_value(&item.due_date),
            other => return Err(unknown(ctx, other)),
        })
    }
}

fn action_items(m: &postmortem::Model) -> Vec<ActionItem> {
    DomainActionItem::list_from_json(&m.action_items)
        .into_iter()
        .map(ActionItem)
        .collect()
}

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

fast_object!(Postmortem, PostmortemResolvers);

impl Fields for Postmortem {
    fn type_name(&self) -> Cow<'static, str> {
        Cow::Borrowed("Postmortem")
    }

    fn field<'b>(&'b self, ctx: Context<'b>) -> Slot<'b> {
        let m = &self.0;
        let long = |text: &Option<String>| match charge(&ctx, text.as_deref().map_or(0, str::len)) {
            Ok(()) => value(text),
            Err(err) => failed(&ctx, err),
        };
        match ctx.item.node.name.node.as_str() {
            "id" => value(&m.id),
            "incidentId" => value(&m.incident_id),
            "impactSummary" => long(&m.impact_summary),
            "rootCause" => long(&m.root_cause),
            "timeline" => long(&m.timeline),
            "whatWentWell" => long(&m.what_went_well),
            "whatWentWrong" => long(&m.what_went_wrong),
            "actionItems" => Slot::Ready(plain_list(&ctx, &action_items(m))),
            "publicSummary" => long(&m.public_summary),
            "internalNotes" => long(&m.internal_notes),
            "createdBy" => value(&m.created_by),
            "createdAt" => value(&m.created_at),
            "updatedAt" => value(&m.updated_at),
            _ => later(ctx, PostmortemResolvers(m)),
        }
    }
}

/// A long text field, charged to the response's budget.
fn long_text<'a>(ctx: &Context<'_>, value: Option<&'a str>) -> GqlResult<Option<&'a str>> {
    charge(ctx, value.map_or(0, str::len))?;
    Ok(value)
}

/// `Postmortem`'s GraphQL type and the resolver of its incident.
struct PostmortemResolvers<'a>(&'a postmortem::Model);

#[Object(name = "Postmortem")]
impl<'a> PostmortemResolvers<'a> {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn incident_id(&self) -> Uuid {
        self.0.incident_id
    }
    async fn impact_summary(&self, ctx: &Context<'_>) -> GqlResult<Option<&'a str>> {
        long_text(ctx, self.0.impact_summary.as_deref())
    }
    async fn root_cause(&self, ctx: &Context<'_>) -> GqlResult<Option<&'a str>> {
        long_text(ctx, self.0.root_cause.as_deref())
    }
    async fn timeline(&self, ctx: &Context<'_>) -> GqlResult<Option<&'a str>> {
        long_text(ctx, self.0.timeline.as_deref())
    }
    async fn what_went_well(&self, ctx: &Context<'_>) -> GqlResult<Option<&'a str>> {
        long_text(ctx, self.0.what_went_well.as_deref())
    }
    async fn what_went_wrong(&self, ctx: &Context<'_>) -> GqlResult<Option<&'a str>> {
        long_text(ctx, self.0.what_went_wrong.as_deref())
    }
    async fn action_items(&self) -> Vec<ActionItem> {
        action_items(self.0)
    }
    async fn public_summary(&self, ctx: &Context<'_>) -> GqlResult<Option<&'a str>> {
        long_text(ctx, self.0.public_summary.as_deref())
    }
    async fn internal_notes(&self, ctx: &Context<'_>) -> GqlResult<Option<&'a str>> {
        long_text(ctx, self.0.internal_notes.as_deref())
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
    /// Who wrote the postmortem (`createdBy`), as the directory knows them; null when unknown.
    async fn author(&self, ctx: &Context<'_>) -> GqlResult<Option<Person>> {
        person_of(ctx, self.0.created_by).await
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
    /// Who made the change (`actorId`), as the directory knows them; null when unknown.
    async fn actor(&self, ctx: &Context<'_>) -> GqlResult<Option<Person>> {
        person_of(ctx, self.0.actor_id).await
    }
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Viewer {
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub role: Role,
}

#[async_graphql::ComplexObject]
impl Viewer {
    /// The caller as the people directory knows them; null until it does.
    async fn person(&self, ctx: &Context<'_>) -> GqlResult<Option<Person>> {
        person_of(ctx, Some(self.user_id)).await
    }
}

/// `totalCount` of a list, computed only when asked for.
pub enum ListTotal {
    /// Read with the page, in the same statement, because the query asked for it.
    Known(u64),
    Incidents(IncidentFilter),
    Postmortems,
    AuditEvents(Option<Uuid>),
    /// People matching a (lowercased) search.
    People(Option<String>),
}

#[Object(name = "ListTotal")]
impl ListTotal {
    async fn total_count(&self, ctx: &Context<'_>) -> GqlResult<u64> {
        let (db, scope) = (&domain(ctx).db, principal(ctx)?.scope());
        Ok(match self {
            ListTotal::Known(total) => *total,
            ListTotal::Incidents(filter) => read::count_incidents(db, scope, filter).await?,
            ListTotal::Postmortems => read::count_postmortems(db, scope).await?,
            ListTotal::AuditEvents(entity) => read::count_audit_events(db, scope, *entity).await?,
            ListTotal::People(search) => read::count_people(db, scope, search.as_deref()).await?,
        })
    }
}

/// Builds a connection from a page of rows ordered by (created_at, id).
pub fn time_connection<M, N>(
    page: PageOf<M>,
    total: ListTotal,
    key: impl Fn(&M) -> TimeCursor,
    node: impl Fn(M) -> N,
) -> FastConnection<N, ListTotal>
where
    N: async_graphql::OutputType,
{
    FastConnection::new(
        page.has_previous,
        page.has_next,
        total,
        page.rows
            .into_iter()
            .map(|row| (key(&row).encode(), node(row))),
    )
}

/// The fast path (`fast.rs`) and the `#[Object]` resolvers must answer every field alike: the
/// same query runs on both over the same rows, every plain field of each type selected (found
/// by introspection, so a field added later is checked too), under aliases, fragments and
/// merged keys.
#[cfg(test)]
mod tests {
    use async_graphql::connection::Connection;
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 123_456_000).unwrap()
    }

    fn incident() -> &'static incident::Model {
        Box::leak(Box::new(incident::Model {
            id: Uuid::from_u128(1),
            organization_id: Uuid::from_u128(2),
            title: "Checkout \"latency\" \u{1F525}".into(),
            status: Status::Mitigating,
            severity: Severity::Sev2,
            highest_severity: Some(Severity::Sev1),
            linked_ticket_ids: json!(["OPS-1", "OPS-2"]),
            linked_problem_id: Some(Uuid::from_u128(3)),
            started_at: at(0),
            resolved_at: None,
            created_by: Some(Uuid::from_u128(4)),
            created_at: at(1),
            updated_at: at(2),
        }))
    }

    fn events() -> Vec<incident_event::Model> {
        (1..=3)
            .map(|n| incident_event::Model {
                id: Uuid::from_u128(10 + n as u128),
                organization_id: Uuid::from_u128(2),
                incident_id: Uuid::from_u128(1),
                sequence: n,
                event_type: "note".into(),
                content: (n != 2).then(|| format!("line {n}\nwith \"quotes\"")),
                created_by: (n == 1).then(|| Uuid::from_u128(4)),
                created_at: at(10 + n),
                from_status: (n == 3).then_some(Status::Open),
                to_status: (n == 3).then_some(Status::Mitigating),
            })
            .collect()
    }

    fn postmortem() -> &'static postmortem::Model {
        Box::leak(Box::new(postmortem::Model {
            id: Uuid::from_u128(20),
            incident_id: Uuid::from_u128(1),
            organization_id: Uuid::from_u128(2),
            impact_summary: Some("Checkout failed for 4% of users".into()),
            root_cause: None,
            timeline: Some("10:00 page\n10:05 rollback".into()),
            what_went_well: Some("fast rollback".into()),
            what_went_wrong: None,
            action_items: json!([
                { "title": "Add alert", "owner": "sre", "dueDate": "2026-12-24", "done": false },
                { "title": "Fix retry", "done": true, "ticketId": "OPS-9" }
            ]),
            public_summary: None,
            internal_notes: Some("n".into()),
            created_by: None,
            created_at: at(30),
            updated_at: at(31),
        }))
    }

    fn page() -> FastConnection<IncidentEvent, EventsTotal> {
        FastConnection::new(
            false,
            true,
            total(),
            events()
                .into_iter()
                .map(|e| (SeqCursor(e.sequence).encode(), IncidentEvent::from(e))),
        )
    }

    fn total() -> EventsTotal {
        EventsTotal {
            incident_id: Uuid::from_u128(1),
            types: None,
        }
    }

    struct TestQuery;

    #[Object]
    impl TestQuery {
        async fn fast_incident(&self) -> Incident {
            Incident(incident().clone())
        }
        async fn slow_incident(&self) -> IncidentResolvers<'static> {
            IncidentResolvers(incident())
        }
        async fn fast_event(&self) -> IncidentEvent {
            IncidentEvent::from(events().remove(0))
        }
        async fn slow_event(&self) -> IncidentEventResolvers<'static> {
            IncidentEventResolvers(Box::leak(Box::new(events().remove(0))))
        }
        async fn fast_postmortem(&self) -> Postmortem {
            Postmortem(postmortem().clone())
        }
        async fn slow_postmortem(&self) -> PostmortemResolvers<'static> {
            PostmortemResolvers(postmortem())
        }
        async fn fast_events(&self) -> FastConnection<IncidentEvent, EventsTotal> {
            page()
        }
        async fn slow_events(&self) -> Connection<String, IncidentEvent, EventsTotal> {
            page().0
        }
    }

    /// The people and roles the fixtures name, in a database of their own, and the loader the
    /// relation fields read them through.
    async fn loader() -> DataLoader<AppLoader> {
        use crate::db::{Db, DbOptions};
        use crate::incident::{OrgScope, people};
        let db = Db::connect(&DbOptions {
            url: "sqlite::memory:".into(),
            max_connections: 1,
            acquire_timeout: std::time::Duration::from_secs(5),
            statement_timeout: std::time::Duration::from_secs(5),
            lock_timeout: std::time::Duration::from_secs(5),
        })
        .await
        .unwrap();
        db.migrate().await.unwrap();
        let scope = OrgScope::new(Uuid::from_u128(2));
        let ada = people::PersonClaims {
            id: Uuid::from_u128(4),
            issuer: None,
            subject: None,
            name: Some("Ada \"the first\" Lovelace".into()),
            email: Some("ada@example.com".into()),
        };
        people::remember(db.conn(), scope, &ada).await.unwrap();
        scope
            .try_insert_incident(db.conn(), incident().clone().into())
            .await
            .unwrap();
        for role in [IncidentRole::Scribe, IncidentRole::Commander] {
            let row = incident_role::Model {
                organization_id: scope.org_id(),
                incident_id: Uuid::from_u128(1),
                role,
                person_id: ada.id,
                assigned_at: at(5),
                assigned_by: None,
            };
            scope.put_role(db.conn(), row.into()).await.unwrap();
        }
        DataLoader::new(
            AppLoader {
                db,
                scope,
                budget: None,
            },
            tokio::spawn,
        )
    }

    async fn schema() -> Schema<TestQuery, EmptyMutation, EmptySubscription> {
        Schema::build(TestQuery, EmptyMutation, EmptySubscription)
            .data(loader().await)
            .finish()
    }

    async fn run(query: &str) -> serde_json::Value {
        let response = schema().await.execute(query).await;
        assert!(response.errors.is_empty(), "{query}: {:?}", response.errors);
        serde_json::to_value(&response.data).unwrap()
    }

    /// Every field of `ty` that takes no argument and whose type is a scalar or an enum (or a
    /// list of them), plus `actionItems` with its own such fields.
    async fn plain_fields(ty: &str) -> String {
        let data = run(&format!(
            r#"{{ __type(name: "{ty}") {{ fields {{ name args {{ name }}
                 type {{ kind name ofType {{ kind name ofType {{ kind name ofType {{ kind name }} }} }} }} }} }} }}"#
        ))
        .await;
        let mut selected = Vec::new();
        for field in data["__type"]["fields"].as_array().unwrap() {
            let mut t = &field["type"];
            while t["kind"] == "NON_NULL" || t["kind"] == "LIST" {
                t = &t["ofType"];
            }
            let name = field["name"].as_str().unwrap();
            let no_args = field["args"].as_array().unwrap().is_empty();
            match t["kind"].as_str().unwrap() {
                "SCALAR" | "ENUM" if no_args => selected.push(name.to_owned()),
                "OBJECT" if t["name"] == "ActionItem" => selected.push(format!(
                    "{name} {{ {} }}",
                    Box::pin(plain_fields("ActionItem")).await
                )),
                _ => {}
            }
        }
        selected.join(" ")
    }

    /// Runs `selection` on the fast and the slow root field in one query; `fragments` follow it.
    async fn same(fast: &str, slow: &str, selection: &str, fragments: &str) {
        let query = format!("{{ a: {fast} {selection} b: {slow} {selection} }} {fragments}");
        let data = run(&query).await;
        assert_ne!(data["a"], serde_json::Value::Null, "{query}");
        assert_eq!(
            data["a"].to_string(),
            data["b"].to_string(),
            "the fast path and the resolvers differ on {query}"
        );
    }

    #[tokio::test]
    async fn the_fast_path_answers_every_plain_field_as_the_resolvers_do() {
        for (ty, fast, slow, at_least) in [
            ("Incident", "fastIncident", "slowIncident", 12),
            ("IncidentEvent", "fastEvent", "slowEvent", 7),
            ("Postmortem", "fastPostmortem", "slowPostmortem", 13),
        ] {
            let fields = plain_fields(ty).await;
            assert!(
                fields
                    .split_whitespace()
                    .filter(|f| f.chars().all(char::is_alphanumeric))
                    .count()
                    >= at_least,
                "too few plain fields found on {ty}: {fields}"
            );
            same(fast, slow, &format!("{{ {fields} }}"), "").await;
            same(
                fast,
                slow,
                &format!("{{ __typename x: id ...F ... on {ty} {{ id }} ... {{ __typename }} }}"),
                &format!("fragment F on {ty} {{ {fields} }}"),
            )
            .await;
        }
    }

    #[tokio::test]
    async fn the_fast_path_answers_the_workflow_fields_as_the_resolvers_do() {
        same(
            "fastIncident",
            "slowIncident",
            "{ transitions { __typename to needsNote n: needsNote } closeBlocker { reason } \
               ... on Incident { transitions { to } } allowedTransitions }",
            "",
        )
        .await;
        let data =
            run("{ fastIncident { transitions { to needsNote } closeBlocker { reason } } }").await;
        assert_eq!(
            data["fastIncident"],
            json!({ "transitions": [{ "to": "RESOLVED", "needsNote": false }], "closeBlocker": null })
        );
    }

    #[tokio::test]
    async fn the_fast_path_answers_the_people_fields_as_the_resolvers_do() {
        let people = "{ creator { __typename id name email } roles { role assignedAt \
                       person { id name } } ... on Incident { c: creator { name } } }";
        same("fastIncident", "slowIncident", people, "").await;
        let author = "{ author { id name email } createdBy }";
        same("fastEvent", "slowEvent", author, "").await;
        same("fastPostmortem", "slowPostmortem", author, "").await;
        same(
            "fastEvents",
            "slowEvents",
            "{ nodes { createdBy author { name } } }",
            "",
        )
        .await;
        let data = run(
            "{ fastIncident { creator { name } roles { role person { email } } } \
                        fastEvents { nodes { author { name } } } }",
        )
        .await;
        assert_eq!(
            data["fastIncident"],
            json!({
                "creator": { "name": "Ada \"the first\" Lovelace" },
                "roles": [
                    { "role": "COMMANDER", "person": { "email": "ada@example.com" } },
                    { "role": "SCRIBE", "person": { "email": "ada@example.com" } }
                ]
            })
        );
        assert_eq!(
            data["fastEvents"]["nodes"],
            json!([
                { "author": { "name": "Ada \"the first\" Lovelace" } },
                { "author": null },
                { "author": null }
            ])
        );
    }

    #[tokio::test]
    async fn the_fast_connection_answers_as_async_graphql_s_does() {
        same(
            "fastEvents",
            "slowEvents",
            "{ __typename pageInfo { __typename hasPreviousPage hasNextPage startCursor endCursor } \
               edges { __typename cursor node { id sequence } } edges { node { content } c: cursor } \
               nodes { id eventType content createdBy createdAt } \
               ... on IncidentEventConnection { e: edges { cursor } pageInfo { endCursor } } }",
            "",
        )
        .await;
    }
}
