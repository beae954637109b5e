//! Every command a client can send, defined once, and its one parse into a typed value at the
//! edge ("parse, don't validate"): code past this module never re-checks a string.
//!
//! Each command type carries what its transports need to read it: `async_graphql::InputObject`
//! (camelCase, as GraphQL names fields) and `serde::Deserialize` + `utoipa::ToSchema` (snake_case,
//! as REST does). That is the price of one definition per input: the domain names GraphQL and
//! OpenAPI traits, but a field added here reaches both APIs at once and no transport can keep a
//! second, drifting copy of an input. Transports convert into these and add nothing; each one's
//! `parse` gives a distinct domain value (`NewIncident`, `StatusChange`, `IncidentFilter`…), so
//! code past this module holds only values that passed. Every failure names the field at fault
//! as GraphQL spells it; REST shows the same name in snake_case.
//!
//! Bounds every input keeps (beyond them `BAD_USER_INPUT`):
//! - times and dates: years 1 to 9999 (see [`instant`]);
//! - lists: enum lists (statuses, severities) collapse to their distinct values; linked ticket
//!   ids at most [`MAX_TICKET_IDS`], action items at most [`MAX_ACTION_ITEMS`], event types of a
//!   timeline filter at most [`MAX_EVENT_TYPES`].

use async_graphql::{
    InputObject, InputValueError, InputValueResult, MaybeUndefined, Scalar, ScalarType, Value,
};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::entity::{IncidentRole, Severity, Status, openapi};
use crate::error::{AppError, AppResult};

pub const MAX_TITLE_CHARS: usize = 500;
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
pub const MAX_TICKET_IDS: usize = 50;
pub const MAX_TICKET_ID_CHARS: usize = 100;
pub const MAX_ACTION_ITEMS: usize = 100;
pub const MAX_OWNER_CHARS: usize = 200;
/// Most event types one timeline filter (`Incident.events(types:)`) may name.
pub const MAX_EVENT_TYPES: usize = 50;
/// The first and last year a time or date input may name. PostgreSQL stores years from 4713 BC
/// to 294276 AD, SQLite stores times as text (compared as text: a negative or five-digit year
/// sorts wrongly), and the calendar arithmetic of the statistics must not overflow; four-digit
/// years of our era are what both databases keep and compare alike, and what RFC 3339 writes.
pub const MIN_YEAR: i32 = 1;
pub const MAX_YEAR: i32 = 9999;
/// What an incident is declared as when the caller does not say.
pub const DEFAULT_SEVERITY: Severity = Severity::Sev3;
/// The event type of a timeline entry when the caller does not say.
pub const DEFAULT_EVENT_TYPE: &str = "note";
/// Clients' clocks drift; a start time this far ahead of ours still counts as "now".
pub const CLOCK_SKEW_SECS: i64 = 60;

/// Text a database can store: no NUL bytes (PostgreSQL rejects them).
fn text(field: &str, value: &str, max_bytes: usize) -> AppResult<String> {
    if value.contains('\0') {
        return Err(AppError::bad_input(
            field,
            format!("{field} must not contain NUL characters"),
        ));
    }
    if value.len() > max_bytes {
        return Err(AppError::bad_input(
            field,
            format!("{field} is longer than {max_bytes} bytes"),
        ));
    }
    Ok(value.to_string())
}

/// Trimmed, non-empty, at most `max_chars` characters.
fn short_text(field: &str, value: &str, max_chars: usize) -> AppResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AppError::bad_input(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().count() > max_chars {
        return Err(AppError::bad_input(
            field,
            format!("{field} is longer than {max_chars} characters"),
        ));
    }
    text(field, value, max_chars * 4)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(field: &str, value: &str) -> AppResult<Title> {
        short_text(field, value, MAX_TITLE_CHARS).map(Title)
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A timeline event type chosen by a user: `^[a-z][a-z0-9_]{0,49}$`, not one the server writes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventType(String);

pub const STATUS_CHANGED: &str = "status_changed";
pub const SEVERITY_CHANGED: &str = "severity_changed";
pub const ROLE_ASSIGNED: &str = "role_assigned";
pub const ROLE_UNASSIGNED: &str = "role_unassigned";
/// The event types only the server writes.
const SERVER_EVENT_TYPES: [&str; 4] = [
    STATUS_CHANGED,
    SEVERITY_CHANGED,
    ROLE_ASSIGNED,
    ROLE_UNASSIGNED,
];

impl EventType {
    pub fn parse(field: &str, value: &str) -> AppResult<EventType> {
        let bytes = value.as_bytes();
        let well_formed = !bytes.is_empty()
            && bytes.len() <= 50
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !well_formed {
            return Err(AppError::bad_input(
                field,
                "eventType must match ^[a-z][a-z0-9_]{0,49}$",
            ));
        }
        if SERVER_EVENT_TYPES.contains(&value) {
            return Err(AppError::bad_input(
                field,
                format!("eventType {value} is written by the server itself"),
            ));
        }
        Ok(EventType(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Event content: 1 byte to 64 KiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content(String);

impl Content {
    pub fn parse(field: &str, value: &str) -> AppResult<Content> {
        if value.trim().is_empty() {
            return Err(AppError::bad_input(
                field,
                format!("{field} must not be empty"),
            ));
        }
        text(field, value, MAX_CONTENT_BYTES).map(Content)
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Up to 50 distinct ticket ids of up to 100 characters, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicketIds(Vec<String>);

impl TicketIds {
    pub fn parse(field: &str, values: &[String]) -> AppResult<TicketIds> {
        if values.len() > MAX_TICKET_IDS {
            return Err(AppError::bad_input(
                field,
                format!("at most {MAX_TICKET_IDS} ticket ids may be linked"),
            ));
        }
        let mut ids: Vec<String> = Vec::with_capacity(values.len());
        for value in values {
            let id = short_text(field, value, MAX_TICKET_ID_CHARS)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(TicketIds(ids))
    }
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::from(self.0.clone())
    }
}

/// Whether a year is one an input may name ([`MIN_YEAR`] to [`MAX_YEAR`]).
pub fn year_in_range(year: i32) -> bool {
    (MIN_YEAR..=MAX_YEAR).contains(&year)
}

/// The one check of every time an input carries (GraphQL `DateTime` arguments and input
/// fields, REST bodies and parameters, the times inside cursors): within years 1 to 9999.
pub fn instant(field: &str, value: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    if !year_in_range(value.year()) {
        return Err(AppError::bad_input(
            field,
            format!("{field} must be within the years {MIN_YEAR} to {MAX_YEAR}"),
        ));
    }
    Ok(value)
}

/// The same check for a calendar date.
pub fn date(field: &str, value: NaiveDate) -> AppResult<NaiveDate> {
    if !year_in_range(value.year()) {
        return Err(AppError::bad_input(
            field,
            format!("{field} must be within the years {MIN_YEAR} to {MAX_YEAR}"),
        ));
    }
    Ok(value)
}

/// A start time that is not in the future.
fn started_at(field: &str, value: DateTime<Utc>, now: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    let value = instant(field, value)?;
    if value > now + chrono::TimeDelta::seconds(CLOCK_SKEW_SECS) {
        return Err(AppError::bad_input(
            field,
            "startedAt must not be in the future",
        ));
    }
    Ok(super::truncate(value))
}

/// A calendar date, `YYYY-MM-DD` (GraphQL's `Date`, as the contract names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Date)]
pub struct Date(pub NaiveDate);

/// A calendar date, `YYYY-MM-DD`.
#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| InputValueError::custom("expected a date as YYYY-MM-DD")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

// A postmortem's follow-up: as sent, and as REST answers it (snake_case). The `action_items`
// column stores camelCase keys (`list_to_json`); reading accepts both.
// (Plain comments: a doc comment would become the GraphQL type's description.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, InputObject, ToSchema)]
#[graphql(name = "ActionItemInput")]
#[schema(as = ActionItem)]
#[serde(deny_unknown_fields)]
pub struct ActionItem {
    pub title: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default, alias = "dueDate")]
    pub due_date: Option<Date>,
    #[graphql(default = false)]
    #[serde(default)]
    pub done: bool,
    #[serde(default, alias = "ticketId")]
    pub ticket_id: Option<String>,
}

impl ActionItem {
    fn parse(index: usize, raw: ActionItem) -> AppResult<ActionItem> {
        let field = |name: &str| format!("actionItems.{index}.{name}");
        Ok(ActionItem {
            title: short_text(&field("title"), &raw.title, MAX_TITLE_CHARS)?,
            owner: raw
                .owner
                .map(|o| short_text(&field("owner"), &o, MAX_OWNER_CHARS))
                .transpose()?,
            due_date: raw
                .due_date
                .map(|d| date(&field("dueDate"), d.0).map(Date))
                .transpose()?,
            done: raw.done,
            ticket_id: raw
                .ticket_id
                .map(|t| short_text(&field("ticketId"), &t, MAX_TICKET_ID_CHARS))
                .transpose()?,
        })
    }

    fn parse_list(raw: Vec<ActionItem>) -> AppResult<Vec<ActionItem>> {
        if raw.len() > MAX_ACTION_ITEMS {
            return Err(AppError::bad_input(
                "actionItems",
                format!("at most {MAX_ACTION_ITEMS} action items"),
            ));
        }
        raw.into_iter()
            .enumerate()
            .map(|(i, item)| ActionItem::parse(i, item))
            .collect()
    }

    /// The stored list (`action_items`), read back.
    pub fn list_from_json(value: &serde_json::Value) -> Vec<ActionItem> {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// The list as `action_items` stores it: camelCase keys, as since the first migration (and
    /// as SQL over the column, such as the statistics, reads them).
    pub fn list_to_json(items: &[ActionItem]) -> serde_json::Value {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Stored<'a> {
            title: &'a str,
            owner: Option<&'a str>,
            due_date: Option<Date>,
            done: bool,
            ticket_id: Option<&'a str>,
        }
        serde_json::Value::Array(
            items
                .iter()
                .map(|i| {
                    serde_json::json!(Stored {
                        title: &i.title,
                        owner: i.owner.as_deref(),
                        due_date: i.due_date,
                        done: i.done,
                        ticket_id: i.ticket_id.as_deref(),
                    })
                })
                .collect(),
        )
    }
}

fn default_severity() -> Severity {
    DEFAULT_SEVERITY
}

fn default_event_type() -> String {
    DEFAULT_EVENT_TYPE.to_string()
}

// `createIncident(input:)` and `POST /api/v1/incidents`.
#[derive(Debug, Clone, InputObject, Deserialize, ToSchema)]
#[graphql(name = "CreateIncidentInput")]
#[schema(as = CreateIncident)]
#[serde(deny_unknown_fields)]
pub struct CreateIncident {
    /// Optional, chosen by the client: a retry with the same id and input returns the same incident.
    pub id: Option<Uuid>,
    pub title: String,
    #[graphql(default_with = "DEFAULT_SEVERITY")]
    #[serde(default = "default_severity")]
    #[schema(schema_with = openapi::severity_ref)]
    pub severity: Severity,
    /// At most 50 (repeats count once), each at most 100 characters.
    pub linked_ticket_ids: Option<Vec<String>>,
    pub linked_problem_id: Option<Uuid>,
    /// Defaults to now; never in the future; within the years 1 to 9999.
    pub started_at: Option<DateTime<Utc>>,
    /// Who leads the incident: a person of the organization's directory. Defaults to the
    /// declarer.
    #[serde(default)]
    pub commander: Option<Uuid>,
}

impl CreateIncident {
    pub fn parse(self) -> AppResult<NewIncident> {
        Ok(NewIncident {
            id: self.id,
            title: Title::parse("title", &self.title)?,
            severity: self.severity,
            linked_ticket_ids: TicketIds::parse(
                "linkedTicketIds",
                &self.linked_ticket_ids.unwrap_or_default(),
            )?,
            linked_problem_id: self.linked_problem_id,
            started_at: self
                .started_at
                .map(|t| started_at("startedAt", t, super::now()))
                .transpose()?,
            commander: self.commander,
        })
    }
}

/// A new incident, parsed.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub id: Option<Uuid>,
    pub title: Title,
    pub severity: Severity,
    pub linked_ticket_ids: TicketIds,
    pub linked_problem_id: Option<Uuid>,
    pub started_at: Option<DateTime<Utc>>,
    /// `None`: the declarer.
    pub commander: Option<Uuid>,
}

// `updateIncident(input:)`.
/// Only the fields given change; `linkedProblemId: null` unlinks the problem.
#[derive(Debug, Clone, InputObject)]
#[graphql(name = "UpdateIncidentInput")]
pub struct UpdateIncident {
    pub title: Option<String>,
    pub severity: Option<Severity>,
    /// At most 50 (repeats count once), each at most 100 characters.
    pub linked_ticket_ids: Option<Vec<String>>,
    pub linked_problem_id: MaybeUndefined<Uuid>,
    /// Never in the future; within the years 1 to 9999.
    pub started_at: Option<DateTime<Utc>>,
}

impl UpdateIncident {
    pub fn parse(self) -> AppResult<IncidentPatch> {
        Ok(IncidentPatch {
            title: self.title.map(|t| Title::parse("title", &t)).transpose()?,
            severity: self.severity,
            linked_ticket_ids: self
                .linked_ticket_ids
                .map(|ids| TicketIds::parse("linkedTicketIds", &ids))
                .transpose()?,
            linked_problem_id: match self.linked_problem_id {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(id) => Some(Some(id)),
            },
            started_at: self
                .started_at
                .map(|t| started_at("startedAt", t, super::now()))
                .transpose()?,
        })
    }
}

/// Changes to an incident's fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct IncidentPatch {
    pub title: Option<Title>,
    pub severity: Option<Severity>,
    pub linked_ticket_ids: Option<TicketIds>,
    /// `Some(None)` unlinks the problem.
    pub linked_problem_id: Option<Option<Uuid>>,
    pub started_at: Option<DateTime<Utc>>,
}

// `addIncidentEvent(input:)` and `POST /api/v1/incidents/{id}/events`.
#[derive(Debug, Clone, InputObject, Deserialize, ToSchema)]
#[graphql(name = "AddIncidentEventInput")]
#[schema(as = AddEvent)]
#[serde(deny_unknown_fields)]
pub struct AddEvent {
    /// Optional, chosen by the client: a retry with the same id and input returns the same event.
    pub id: Option<Uuid>,
    /// `^[a-z][a-z0-9_]{0,49}$`.
    #[graphql(default_with = "default_event_type()")]
    #[serde(default = "default_event_type")]
    pub event_type: String,
    /// Up to 64 KiB.
    pub content: String,
}

impl AddEvent {
    pub fn parse(self) -> AppResult<NewEvent> {
        Ok(NewEvent {
            id: self.id,
            event_type: EventType::parse("eventType", &self.event_type)?,
            content: Content::parse("content", &self.content)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Option<Uuid>,
    pub event_type: EventType,
    pub content: Content,
}

/// `transitionIncident(to:, note:)` and `POST /api/v1/incidents/{id}/transition`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    #[schema(schema_with = openapi::status_ref)]
    pub to: Status,
    /// Required when reopening a resolved incident.
    #[serde(default)]
    pub note: Option<String>,
}

impl Transition {
    pub fn parse(self) -> AppResult<StatusChange> {
        Ok(StatusChange {
            to: self.to,
            note: self.note.map(|v| Content::parse("note", &v)).transpose()?,
        })
    }
}

/// A transition, parsed: where to, and the note (when given: 1 byte to 64 KiB, no NUL).
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub to: Status,
    pub note: Option<Content>,
}

/// `assignIncidentRole` / `unassignIncidentRole` and `POST /api/v1/incidents/{id}/roles`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(as = AssignRole)]
#[serde(deny_unknown_fields)]
pub struct AssignRole {
    pub role: IncidentRole,
    /// A person of the organization's directory; `null` leaves the role to nobody. Required,
    /// so that a body that forgot it never takes a role away.
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, value_type = Option<Uuid>)]
    pub person_id: Option<Option<Uuid>>,
}

/// A field that may be `null` but must be there: `Some(None)` for `null`, `None` when absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Uuid>>, D::Error> {
    Option::<Uuid>::deserialize(d).map(Some)
}

impl AssignRole {
    pub fn parse(self) -> AppResult<RoleChange> {
        let person = self.person_id.ok_or_else(|| {
            AppError::bad_input(
                "personId",
                "personId is required (null leaves the role to nobody)",
            )
        })?;
        Ok(RoleChange {
            role: self.role,
            person,
        })
    }
}

/// A role change: the role, and who holds it next (`None`: nobody).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleChange {
    pub role: IncidentRole,
    pub person: Option<Uuid>,
}

/// `people(search:)`: lowercased, at most 320 bytes (an email's length), no NUL; blank
/// searches for nothing in particular (`None`).
pub fn people_search(field: &str, value: Option<String>) -> AppResult<Option<String>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = text(field, value.trim(), 320)?;
    Ok((!value.is_empty()).then(|| value.to_lowercase()))
}

/// `incidentEvents(afterSequence:)`: where a timeline replay starts (0 when absent: from the
/// first event); never negative.
pub fn after_sequence(field: &str, value: Option<i64>) -> AppResult<i64> {
    match value {
        Some(n) if n < 0 => Err(AppError::bad_input(
            field,
            format!("{field} must not be negative"),
        )),
        Some(n) => Ok(n),
        None => Ok(0),
    }
}

/// The event types a timeline filter names (`Incident.events(types:)`): at most
/// [`MAX_EVENT_TYPES`], each distinct (repeats collapse), no NUL characters. Any name may be
/// asked for, the server's own types included; one that no event has selects nothing.
pub fn event_types(field: &str, values: Option<Vec<String>>) -> AppResult<Option<Vec<String>>> {
    let Some(values) = values else {
        return Ok(None);
    };
    if values.len() > MAX_EVENT_TYPES {
        return Err(AppError::bad_input(
            field,
            format!("at most {MAX_EVENT_TYPES} event types"),
        ));
    }
    let mut types: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        let value = text(field, &value, MAX_CONTENT_BYTES)?;
        if !types.contains(&value) {
            types.push(value);
        }
    }
    Ok(Some(types))
}

// `createPostmortem` / `updatePostmortem(input:)` and `POST /api/v1/incidents/{id}/postmortem`.
/// Postmortem fields; on update only the fields given change.
#[derive(Debug, Clone, Default, InputObject, Deserialize, ToSchema)]
#[graphql(name = "PostmortemInput")]
#[serde(deny_unknown_fields)]
pub struct PostmortemInput {
    pub impact_summary: Option<String>,
    pub root_cause: Option<String>,
    pub timeline: Option<String>,
    pub what_went_well: Option<String>,
    pub what_went_wrong: Option<String>,
    /// At most 100.
    pub action_items: Option<Vec<ActionItem>>,
    pub public_summary: Option<String>,
    pub internal_notes: Option<String>,
}

impl PostmortemInput {
    pub fn parse(self) -> AppResult<PostmortemPatch> {
        // Each long-form field: up to 64 KiB, no NUL characters.
        let long = |field: &str, value: Option<String>| {
            value
                .map(|v| text(field, &v, MAX_CONTENT_BYTES))
                .transpose()
        };
        Ok(PostmortemPatch(PostmortemInput {
            impact_summary: long("impactSummary", self.impact_summary)?,
            root_cause: long("rootCause", self.root_cause)?,
            timeline: long("timeline", self.timeline)?,
            what_went_well: long("whatWentWell", self.what_went_well)?,
            what_went_wrong: long("whatWentWrong", self.what_went_wrong)?,
            action_items: self.action_items.map(ActionItem::parse_list).transpose()?,
            public_summary: long("publicSummary", self.public_summary)?,
            internal_notes: long("internalNotes", self.internal_notes)?,
        }))
    }
}

/// A postmortem input that passed `PostmortemInput::parse`; `None` leaves a field as it is (on
/// create: empty).
#[derive(Debug, Clone, Default)]
pub struct PostmortemPatch(PostmortemInput);

impl PostmortemPatch {
    pub fn into_inner(self) -> PostmortemInput {
        self.0
    }
}

// `incidents(filter:)`, `incidentMetrics(filter:)`, `incidentChanged(filter:)`; REST's list
// parameters build one too.
/// Which incidents to select; every field given narrows the selection.
#[derive(Debug, Clone, Default, InputObject)]
#[graphql(name = "IncidentFilter")]
pub struct IncidentFilterInput {
    /// Any of these statuses (repeats count once).
    pub status: Option<Vec<Status>>,
    /// Any of these severities (repeats count once).
    pub severity: Option<Vec<Severity>>,
    /// Case-insensitive substring of the title.
    pub search: Option<String>,
    /// Started after this time (years 1 to 9999).
    pub started_after: Option<DateTime<Utc>>,
    /// Started before this time (years 1 to 9999).
    pub started_before: Option<DateTime<Utc>>,
    pub linked_ticket_id: Option<String>,
    pub linked_problem_id: Option<Uuid>,
    /// `true`: resolved incidents whose closing waits for a required postmortem not written
    /// yet (they are or were SEV1 or SEV2); `false`: every other incident.
    pub awaiting_postmortem: Option<bool>,
    /// Incidents where this person holds a role.
    pub person: Option<Uuid>,
}

/// The distinct values of an enum list, in the order first given: a list of any length selects
/// what its distinct values select, and never becomes more than four bind parameters.
fn distinct<T: PartialEq + Copy>(values: Option<Vec<T>>) -> Option<Vec<T>> {
    values.map(|values| {
        let mut out: Vec<T> = Vec::with_capacity(4);
        for value in values {
            if !out.contains(&value) {
                out.push(value);
            }
        }
        out
    })
}

impl IncidentFilterInput {
    pub fn parse(self) -> AppResult<IncidentFilter> {
        let search = self
            .search
            .map(|s| text("filter.search", &s, 500).map(|s| s.to_lowercase()))
            .transpose()?;
        let linked_ticket_id = self
            .linked_ticket_id
            .map(|t| text("filter.linkedTicketId", &t, 400))
            .transpose()?;
        Ok(IncidentFilter {
            status: distinct(self.status),
            severity: distinct(self.severity),
            search,
            started_after: self
                .started_after
                .map(|t| instant("filter.startedAfter", t))
                .transpose()?,
            started_before: self
                .started_before
                .map(|t| instant("filter.startedBefore", t))
                .transpose()?,
            linked_ticket_id,
            linked_problem_id: self.linked_problem_id,
            awaiting_postmortem: self.awaiting_postmortem,
            person: self.person,
        })
    }
}

/// An incident filter, parsed: enum lists distinct, `search` already lowercased, times within
/// the years an input may name. `None` selects everything for that field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentFilter {
    pub status: Option<Vec<Status>>,
    pub severity: Option<Vec<Severity>>,
    /// Lowercased: the title, lowercased, must contain it.
    pub search: Option<String>,
    pub started_after: Option<DateTime<Utc>>,
    pub started_before: Option<DateTime<Utc>>,
    pub linked_ticket_id: Option<String>,
    pub linked_problem_id: Option<Uuid>,
    /// `true`: resolved incidents whose closing waits for a required postmortem not written
    /// yet (they are or were SEV1 or SEV2); `false`: every other incident.
    pub awaiting_postmortem: Option<bool>,
    /// Incidents where this person holds a role.
    pub person: Option<Uuid>,
}

impl IncidentFilter {
    /// Whether `incident` passes the filter, for feeds that test incidents one by one;
    /// `awaiting_postmortem` is `workflow::awaiting_postmortem` of it, `holders` the people
    /// holding a role on it.
    pub fn matches(
        &self,
        incident: &crate::entity::incident::Model,
        awaiting_postmortem: bool,
        holders: &[Uuid],
    ) -> bool {
        self.status
            .as_ref()
            .is_none_or(|s| s.contains(&incident.status))
            && self
                .severity
                .as_ref()
                .is_none_or(|s| s.contains(&incident.severity))
            && self
                .search
                .as_ref()
                .is_none_or(|q| incident.title.to_lowercase().contains(q.as_str()))
            && self.started_after.is_none_or(|t| incident.started_at > t)
            && self.started_before.is_none_or(|t| incident.started_at < t)
            && self
                .linked_ticket_id
                .as_ref()
                .is_none_or(|t| incident.ticket_ids().contains(t))
            && self
                .linked_problem_id
                .is_none_or(|p| incident.linked_problem_id == Some(p))
            && self
                .awaiting_postmortem
                .is_none_or(|want| want == awaiting_postmortem)
            && self.person.is_none_or(|p| holders.contains(&p))
    }
}

// `createWebhookEndpoint(input:)`.
/// A webhook endpoint: where, which event types (none: every type) and in which format.
#[derive(Debug, Clone, InputObject)]
#[graphql(name = "WebhookEndpointInput")]
pub struct WebhookEndpointInput {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    #[graphql(default_with = "Some(crate::entity::WebhookFormat::Standard)")]
    pub format: Option<crate::entity::WebhookFormat>,
}

// `updateWebhookEndpoint(input:)`.
/// Only the fields given change; enabling an endpoint clears its disabled reason.
#[derive(Debug, Clone, InputObject)]
#[graphql(name = "WebhookEndpointUpdate")]
pub struct WebhookEndpointUpdate {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// Longest endpoint description.
pub const MAX_WEBHOOK_DESCRIPTION_CHARS: usize = 500;
/// Longest endpoint URL.
pub const MAX_WEBHOOK_URL_CHARS: usize = 2_000;

/// A new endpoint; its URL is checked (scheme and destination) by the service, which resolves it.
#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub format: crate::entity::WebhookFormat,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookEndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

impl WebhookEndpointInput {
    pub fn parse(self) -> AppResult<NewWebhookEndpoint> {
        Ok(NewWebhookEndpoint {
            url: webhook_url(&self.url)?,
            description: self.description.map(webhook_description).transpose()?,
            event_types: webhook_event_types(self.event_types.unwrap_or_default())?,
            format: self
                .format
                .unwrap_or(crate::entity::WebhookFormat::Standard),
        })
    }
}

impl WebhookEndpointUpdate {
    pub fn parse(self) -> AppResult<WebhookEndpointPatch> {
        Ok(WebhookEndpointPatch {
            url: self.url.as_deref().map(webhook_url).transpose()?,
            description: self.description.map(webhook_description).transpose()?,
            event_types: self.event_types.map(webhook_event_types).transpose()?,
            enabled: self.enabled,
        })
    }
}

fn webhook_url(url: &str) -> AppResult<String> {
    let url = url.trim();
    if url.is_empty() || url.chars().count() > MAX_WEBHOOK_URL_CHARS {
        return Err(AppError::bad_input(
            "url",
            format!("the URL must have 1 to {MAX_WEBHOOK_URL_CHARS} characters"),
        ));
    }
    Ok(url.to_string())
}

fn webhook_description(text: String) -> AppResult<String> {
    if text.chars().count() > MAX_WEBHOOK_DESCRIPTION_CHARS {
        return Err(AppError::bad_input(
            "description",
            format!("at most {MAX_WEBHOOK_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(text)
}

/// Known event types only, each once, in the order given.
fn webhook_event_types(types: Vec<String>) -> AppResult<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for t in types {
        if !super::webhooks::EVENT_TYPES.contains(&t.as_str()) {
            return Err(AppError::bad_input(
                "eventTypes",
                format!(
                    "unknown event type {t:?}; known: {}",
                    super::webhooks::EVENT_TYPES.join(", ")
                ),
            ));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}
