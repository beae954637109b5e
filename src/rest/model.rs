//! The JSON the REST API answers with (snake_case, as the tables' columns), and the list's query
//! parameters. Request bodies are the domain's own command types (`incident::input`).

use chrono::{DateTime, Utc};
use sea_orm::Iterable;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::entity::openapi::{severity_ref, status_ref};
use std::collections::HashMap;

use crate::entity::{IncidentRole, Severity, Status, incident, incident_event, person, postmortem};
use crate::error::{AppError, AppResult};
use crate::incident::input::{ActionItem, IncidentFilter, IncidentFilterInput};
use crate::incident::page::{Cursor, DEFAULT_PAGE, MAX_PAGE, Page, PageOf, TimeCursor};

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
    /// Who holds which role, in the order COMMANDER, COMMUNICATIONS, SCRIBE.
    pub roles: Vec<RoleAssignment>,
}

/// A person of the organization's directory.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Person {
    pub id: Uuid,
    #[schema(required = true)]
    pub name: Option<String>,
    #[schema(required = true)]
    pub email: Option<String>,
}

impl From<person::Model> for Person {
    fn from(m: person::Model) -> Self {
        Person {
            id: m.id,
            name: m.name,
            email: m.email,
        }
    }
}

/// Who holds a role on an incident.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleAssignment {
    pub role: IncidentRole,
    pub person: Person,
    pub assigned_at: DateTime<Utc>,
}

/// The roles of some incidents, by incident, with their holders: what `Incident::new` takes.
pub type RolesByIncident = HashMap<Uuid, Vec<RoleAssignment>>;

impl Incident {
    pub fn new(m: incident::Model, roles: &RolesByIncident) -> Self {
        let roles = roles.get(&m.id).cloned().unwrap_or_default();
        Incident {
            roles,
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

impl IncidentList {
    pub fn new(page: PageOf<incident::Model>, roles: &RolesByIncident) -> Self {
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
            data: page
                .rows
                .into_iter()
                .map(|m| Incident::new(m, roles))
                .collect(),
            next_cursor,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentEvent {
    pub id: Uuid,
    pub incident_id: Uuid,
    /// 1, 2, 3… within the incident, gapless, in commit order.
    pub sequence: i64,
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
            action_items: ActionItem::list_from_json(&m.action_items),
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

/// An incident with a page of its timeline (oldest first) and its postmortem (null until one
/// is written).
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: Incident,
    pub events: Vec<IncidentEvent>,
    /// Pass as `events_after` for the next page of the timeline; null when this page ends it.
    #[schema(required = true)]
    pub events_next_after: Option<i64>,
    #[schema(required = true)]
    pub postmortem: Option<Postmortem>,
}

/// Most events one `GET /api/v1/incidents/{id}` returns (also the default), and about the most
/// bytes of them (events hold up to 64 KiB each); `events_next_after` continues.
pub const MAX_EVENTS: u64 = 1000;
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// `GET /api/v1/incidents/{id}` parameters: which page of the timeline.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DetailParams {
    /// Events per page, 1 to 1000; 1000 when absent (fewer when they are large).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub events_limit: Option<String>,
    /// Start after this sequence (`events_next_after` of the previous page); 0 when absent.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub events_after: Option<String>,
}

impl DetailParams {
    /// (after, limit).
    pub fn parse(&self) -> AppResult<(i64, u64)> {
        let limit = match self.events_limit.as_deref() {
            None => MAX_EVENTS,
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_EVENTS).contains(n))
                .ok_or_else(|| {
                    AppError::bad_input(
                        "eventsLimit",
                        format!("events_limit must be a whole number from 1 to {MAX_EVENTS}"),
                    )
                })?,
        };
        let after = match self.events_after.as_deref() {
            None => 0,
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    AppError::bad_input(
                        "eventsAfter",
                        "events_after must be a sequence number (0 or more)",
                    )
                })?,
        };
        Ok((after, limit))
    }
}

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
    /// Only incidents where this person holds a role.
    pub person: Option<Uuid>,
}

impl ListParams {
    pub fn parse(self) -> AppResult<(IncidentFilter, Page<TimeCursor>)> {
        let filter = IncidentFilterInput {
            status: list("status", self.status.as_deref(), Status::iter(), |s| {
                s.as_str()
            })?,
            severity: list(
                "severity",
                self.severity.as_deref(),
                Severity::iter(),
                |s| s.as_str(),
            )?,
            person: self.person,
            ..IncidentFilterInput::default()
        }
        .parse()?;
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
