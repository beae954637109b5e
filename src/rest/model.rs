//! The JSON the REST API speaks (snake_case, as the tables' columns) and its parsing into the
//! domain's typed inputs, through the same `incident::input` parsers GraphQL uses.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::Iterable;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::entity::{Severity, Status, incident, incident_event, postmortem};
use crate::error::{AppError, AppResult};
use crate::incident::input::{
    self, ActionItem as DomainActionItem, Content, EventType, IncidentFilter, NewEvent,
    NewIncident, PostmortemPatch, TicketIds, Title,
};
use crate::incident::page::{Cursor, DEFAULT_PAGE, MAX_PAGE, Page, PageOf, TimeCursor};

// The two workflow enums are the entity's own; their OpenAPI schemas are built from them here
// (see `enum_schemas`) and referenced by name.
pub const STATUS_SCHEMA: &str = "IncidentStatus";
pub const SEVERITY_SCHEMA: &str = "IncidentSeverity";

pub fn status_ref() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(STATUS_SCHEMA))
}
pub fn status_list_ref() -> Schema {
    Schema::Array(ArrayBuilder::new().items(status_ref()).build())
}
pub fn severity_ref() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(SEVERITY_SCHEMA))
}

/// The `IncidentStatus` and `IncidentSeverity` components, listing what the entities define.
pub fn enum_schemas() -> [(&'static str, Schema); 2] {
    let strings = |values: Vec<&'static str>, description: &str| {
        Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(values))
                .description(Some(description))
                .build(),
        )
    };
    [
        (
            STATUS_SCHEMA,
            strings(
                Status::iter().map(Status::as_str).collect(),
                "Where the incident is in the workflow.",
            ),
        ),
        (
            SEVERITY_SCHEMA,
            strings(
                Severity::iter().map(Severity::as_str).collect(),
                "SEV1 is the most severe.",
            ),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Answers

#[derive(Debug, Serialize, ToSchema)]
pub struct Incident {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub title: String,
    #[schema(schema_with = status_ref)]
    pub status: Status,
    #[schema(schema_with = severity_ref)]
    pub severity: Severity,
    pub linked_ticket_ids: Vec<String>,
    #[schema(required = true)]
    pub linked_problem_id: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    #[schema(required = true)]
    pub resolved_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<incident::Model> for Incident {
    fn from(m: incident::Model) -> Self {
        Incident {
            linked_ticket_ids: m.ticket_ids(),
            id: m.id,
            organization_id: m.organization_id,
            title: m.title,
            status: m.status,
            severity: m.severity,
            linked_problem_id: m.linked_problem_id,
            started_at: m.started_at,
            resolved_at: m.resolved_at,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A page of incidents, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentList {
    pub data: Vec<Incident>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl From<PageOf<incident::Model>> for IncidentList {
    fn from(page: PageOf<incident::Model>) -> Self {
        // The same position GraphQL's `incidents` cursors name, so either API's cursor works.
        let next_cursor = page
            .has_next
            .then(|| page.rows.last())
            .flatten()
            .map(|last| {
                TimeCursor {
                    at: last.created_at,
                    id: last.id,
                }
                .encode()
            });
        IncidentList {
            data: page.rows.into_iter().map(Incident::from).collect(),
            next_cursor,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentEvent {
    pub id: Uuid,
    pub incident_id: Uuid,
    /// 1, 2, 3… within the incident, gapless, in commit order.
    pub sequence: i32,
    pub event_type: String,
    #[schema(required = true)]
    pub content: Option<String>,
    #[schema(required = true)]
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<incident_event::Model> for IncidentEvent {
    fn from(m: incident_event::Model) -> Self {
        IncidentEvent {
            id: m.id,
            incident_id: m.incident_id,
            sequence: m.sequence,
            event_type: m.event_type,
            content: m.content,
            created_by: m.created_by,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionItem {
    pub title: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub due_date: Option<NaiveDate>,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub ticket_id: Option<String>,
}

impl From<DomainActionItem> for ActionItem {
    fn from(a: DomainActionItem) -> Self {
        ActionItem {
            title: a.title,
            owner: a.owner,
            due_date: a.due_date,
            done: a.done,
            ticket_id: a.ticket_id,
        }
    }
}

impl From<ActionItem> for DomainActionItem {
    fn from(a: ActionItem) -> Self {
        DomainActionItem {
            title: a.title,
            owner: a.owner,
            due_date: a.due_date,
            done: a.done,
            ticket_id: a.ticket_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Postmortem {
    pub id: Uuid,
    pub incident_id: Uuid,
    pub organization_id: Uuid,
    #[schema(required = true)]
    pub impact_summary: Option<String>,
    #[schema(required = true)]
    pub root_cause: Option<String>,
    #[schema(required = true)]
    pub timeline: Option<String>,
    #[schema(required = true)]
    pub what_went_well: Option<String>,
    #[schema(required = true)]
    pub what_went_wrong: Option<String>,
    pub action_items: Vec<ActionItem>,
    #[schema(required = true)]
    pub public_summary: Option<String>,
    #[schema(required = true)]
    pub internal_notes: Option<String>,
    #[schema(required = true)]
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<postmortem::Model> for Postmortem {
    fn from(m: postmortem::Model) -> Self {
        Postmortem {
            action_items: DomainActionItem::list_from_json(&m.action_items)
                .into_iter()
                .map(ActionItem::from)
                .collect(),
            id: m.id,
            incident_id: m.incident_id,
            organization_id: m.organization_id,
            impact_summary: m.impact_summary,
            root_cause: m.root_cause,
            timeline: m.timeline,
            what_went_well: m.what_went_well,
            what_went_wrong: m.what_went_wrong,
            public_summary: m.public_summary,
            internal_notes: m.internal_notes,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// An incident with its whole timeline (oldest first, at most 1000 events) and its postmortem
/// (null until one is written).
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: Incident,
    pub events: Vec<IncidentEvent>,
    #[schema(required = true)]
    pub postmortem: Option<Postmortem>,
}

/// How many events `GET /api/v1/incidents/{id}` returns at most (the OpenAPI text says 1000 too);
/// GraphQL's `events` connection pages through any number.
pub const MAX_EVENTS: u64 = 1000;

// ---------------------------------------------------------------------------------------------
// Requests

/// `GET /api/v1/incidents` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Comma-separated statuses, e.g. `OPEN,MITIGATING`.
    #[param(example = "OPEN,MITIGATING")]
    pub status: Option<String>,
    /// Comma-separated severities, e.g. `SEV1,SEV2`.
    #[param(example = "SEV1,SEV2")]
    pub severity: Option<String>,
    /// Page size, 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    pub fn parse(self) -> AppResult<(IncidentFilter, Page<TimeCursor>)> {
        let filter = IncidentFilter {
            status: list("status", self.status.as_deref(), Status::iter(), |s| {
                s.as_str()
            })?,
            severity: list(
                "severity",
                self.severity.as_deref(),
                Severity::iter(),
                |s| s.as_str(),
            )?,
            ..IncidentFilter::default()
        }
        .validate()?;
        let limit = match self.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    AppError::bad_input(
                        "limit",
                        format!("limit must be a whole number from 1 to {MAX_PAGE}"),
                    )
                })?,
        };
        let after = self
            .cursor
            .as_deref()
            .map(|raw| {
                TimeCursor::decode(raw).ok_or_else(|| {
                    AppError::bad_input("cursor", "cursor is not a cursor this API returned")
                })
            })
            .transpose()?;
        Ok((
            filter,
            Page {
                limit,
                backward: false,
                after,
                before: None,
            },
        ))
    }
}

/// A comma-separated list of enum values; absent or empty selects everything.
fn list<T: Copy>(
    field: &str,
    raw: Option<&str>,
    all: impl Iterator<Item = T> + Clone,
    name: fn(T) -> &'static str,
) -> AppResult<Option<Vec<T>>> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(None);
    };
    raw.split(',')
        .map(|part| {
            let part = part.trim();
            all.clone().find(|v| name(*v) == part).ok_or_else(|| {
                let known: Vec<_> = all.clone().map(name).collect();
                AppError::bad_input(
                    field,
                    format!("{field} {part:?} is not one of {}", known.join(", ")),
                )
            })
        })
        .collect::<AppResult<Vec<T>>>()
        .map(Some)
}

/// `POST /api/v1/incidents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIncident {
    /// Optional, chosen by the client: a retry with the same id and body returns the same incident.
    pub id: Option<Uuid>,
    pub title: String,
    /// SEV3 when absent.
    #[serde(default)]
    #[schema(schema_with = severity_ref)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub linked_ticket_ids: Option<Vec<String>>,
    #[serde(default)]
    pub linked_problem_id: Option<Uuid>,
    /// Now when absent; never in the future.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
}

impl CreateIncident {
    pub fn parse(self) -> AppResult<NewIncident> {
        let now = crate::incident::now();
        Ok(NewIncident {
            id: self.id,
            title: Title::parse("title", &self.title)?,
            severity: self.severity.unwrap_or(input::DEFAULT_SEVERITY),
            linked_ticket_ids: TicketIds::parse(
                "linked_ticket_ids",
                &self.linked_ticket_ids.unwrap_or_default(),
            )?,
            linked_problem_id: self.linked_problem_id,
            started_at: self
                .started_at
                .map(|t| input::started_at("started_at", t, now))
                .transpose()?,
        })
    }
}

/// `POST /api/v1/incidents/{id}/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddEvent {
    /// Optional, chosen by the client: a retry with the same id and body returns the same event.
    pub id: Option<Uuid>,
    /// `^[a-z][a-z0-9_]{0,49}$`; `note` when absent.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Up to 64 KiB.
    pub content: String,
}

impl AddEvent {
    pub fn parse(self) -> AppResult<NewEvent> {
        Ok(NewEvent {
            id: self.id,
            event_type: EventType::parse(
                "event_type",
                self.event_type
                    .as_deref()
                    .unwrap_or(input::DEFAULT_EVENT_TYPE),
            )?,
            content: Content::parse("content", &self.content)?,
        })
    }
}

/// `POST /api/v1/incidents/{id}/postmortem`: every field optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostmortemInput {
    #[serde(default)]
    pub impact_summary: Option<String>,
    #[serde(default)]
    pub root_cause: Option<String>,
    #[serde(default)]
    pub timeline: Option<String>,
    #[serde(default)]
    pub what_went_well: Option<String>,
    #[serde(default)]
    pub what_went_wrong: Option<String>,
    #[serde(default)]
    pub action_items: Option<Vec<ActionItem>>,
    #[serde(default)]
    pub public_summary: Option<String>,
    #[serde(default)]
    pub internal_notes: Option<String>,
}

impl PostmortemInput {
    pub fn parse(self) -> AppResult<PostmortemPatch> {
        let text = PostmortemPatch::long_text;
        Ok(PostmortemPatch {
            impact_summary: text("impact_summary", self.impact_summary)?,
            root_cause: text("root_cause", self.root_cause)?,
            timeline: text("timeline", self.timeline)?,
            what_went_well: text("what_went_well", self.what_went_well)?,
            what_went_wrong: text("what_went_wrong", self.what_went_wrong)?,
            action_items: self
                .action_items
                .map(|items| {
                    DomainActionItem::parse_list(items.into_iter().map(Into::into).collect())
                })
                .transpose()?,
            public_summary: text("public_summary", self.public_summary)?,
            internal_notes: text("internal_notes", self.internal_notes)?,
        })
    }
}

/// `POST /api/v1/incidents/{id}/transition`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    #[schema(schema_with = status_ref)]
    pub to: Status,
    /// Required when reopening a resolved incident.
    #[serde(default)]
    pub note: Option<String>,
}

impl Transition {
    pub fn parse(self) -> AppResult<(Status, Option<String>)> {
        Ok((self.to, input::note("note", self.note.as_deref())?))
    }
}
