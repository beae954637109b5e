//! Mutations: parse the input into domain types, call the service, shape the answer.

use async_graphql::{Context, InputObject, MaybeUndefined, Object};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::scalars::Date;
use super::types::{Incident, IncidentEvent, Postmortem};
use super::{domain, principal};
use crate::entity::{Severity, Status};
use crate::error::{AppResult, GqlResult};
use crate::incident::input::{
    self, ActionItem, Content, EventType, IncidentPatch, NewEvent, NewIncident, PostmortemPatch,
    TicketIds, Title,
};

#[derive(InputObject)]
pub struct CreateIncidentInput {
    /// Optional, chosen by the client: a retry with the same id and input returns the same incident.
    pub id: Option<Uuid>,
    pub title: String,
    #[graphql(default_with = "input::DEFAULT_SEVERITY")]
    pub severity: Severity,
    pub linked_ticket_ids: Option<Vec<String>>,
    pub linked_problem_id: Option<Uuid>,
    /// Defaults to now; never in the future.
    pub started_at: Option<DateTime<Utc>>,
}

impl CreateIncidentInput {
    fn parse(self) -> AppResult<NewIncident> {
        let now = crate::incident::now();
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
                .map(|t| input::started_at("startedAt", t, now))
                .transpose()?,
        })
    }
}

/// Only the fields given change; `linkedProblemId: null` unlinks the problem.
#[derive(InputObject)]
pub struct UpdateIncidentInput {
    pub title: Option<String>,
    pub severity: Option<Severity>,
    pub linked_ticket_ids: Option<Vec<String>>,
    pub linked_problem_id: MaybeUndefined<Uuid>,
    pub started_at: Option<DateTime<Utc>>,
}

impl UpdateIncidentInput {
    fn parse(self) -> AppResult<IncidentPatch> {
        let now = crate::incident::now();
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
                .map(|t| input::started_at("startedAt", t, now))
                .transpose()?,
        })
    }
}

#[derive(InputObject)]
pub struct AddIncidentEventInput {
    /// Optional, chosen by the client: a retry with the same id and input returns the same event.
    pub id: Option<Uuid>,
    /// `^[a-z][a-z0-9_]{0,49}$`.
    #[graphql(default_with = "input::DEFAULT_EVENT_TYPE.to_string()")]
    pub event_type: String,
    /// Up to 64 KiB.
    pub content: String,
}

#[derive(InputObject)]
pub struct ActionItemInput {
    pub title: String,
    pub owner: Option<String>,
    pub due_date: Option<Date>,
    #[graphql(default = false)]
    pub done: bool,
    pub ticket_id: Option<String>,
}

/// Postmortem fields; on update only the fields given change.
#[derive(InputObject)]
pub struct PostmortemInput {
    pub impact_summary: Option<String>,
    pub root_cause: Option<String>,
    pub timeline: Option<String>,
    pub what_went_well: Option<String>,
    pub what_went_wrong: Option<String>,
    pub action_items: Option<Vec<ActionItemInput>>,
    pub public_summary: Option<String>,
    pub internal_notes: Option<String>,
}

impl PostmortemInput {
    fn parse(self) -> AppResult<PostmortemPatch> {
        let text = PostmortemPatch::long_text;
        Ok(PostmortemPatch {
            impact_summary: text("impactSummary", self.impact_summary)?,
            root_cause: text("rootCause", self.root_cause)?,
            timeline: text("timeline", self.timeline)?,
            what_went_well: text("whatWentWell", self.what_went_well)?,
            what_went_wrong: text("whatWentWrong", self.what_went_wrong)?,
            action_items: self
                .action_items
                .map(|items| {
                    ActionItem::parse_list(
                        items
                            .into_iter()
                            .map(|i| ActionItem {
                                title: i.title,
                                owner: i.owner,
                                due_date: i.due_date.map(|d| d.0),
                                done: i.done,
                                ticket_id: i.ticket_id,
                            })
                            .collect(),
                    )
                })
                .transpose()?,
            public_summary: text("publicSummary", self.public_summary)?,
            internal_notes: text("internalNotes", self.internal_notes)?,
        })
    }
}

#[derive(Default)]
pub struct IncidentMutation;

#[Object]
impl IncidentMutation {
    async fn create_incident(
        &self,
        ctx: &Context<'_>,
        input: CreateIncidentInput,
    ) -> GqlResult<Incident> {
        let writer = principal(ctx)?.writer()?;
        let input = input.parse()?;
        Ok(Incident(domain(ctx).create_incident(&writer, input).await?))
    }

    async fn update_incident(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        input: UpdateIncidentInput,
    ) -> GqlResult<Incident> {
        let writer = principal(ctx)?.writer()?;
        let patch = input.parse()?;
        Ok(Incident(
            domain(ctx).update_incident(&writer, id, patch).await?,
        ))
    }

    /// Moves the incident along the workflow; a transition to the current status changes nothing.
    async fn transition_incident(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        to: Status,
        note: Option<String>,
    ) -> GqlResult<Incident> {
        let writer = principal(ctx)?.writer()?;
        let note = input::note("note", note.as_deref())?;
        Ok(Incident(
            domain(ctx).transition(&writer, id, to, note).await?,
        ))
    }

    async fn add_incident_event(
        &self,
        ctx: &Context<'_>,
        incident_id: Uuid,
        input: AddIncidentEventInput,
    ) -> GqlResult<IncidentEvent> {
        let writer = principal(ctx)?.writer()?;
        let event = NewEvent {
            id: input.id,
            event_type: EventType::parse("eventType", &input.event_type)?,
            content: Content::parse("content", &input.content)?,
        };
        Ok(IncidentEvent(
            domain(ctx).add_event(&writer, incident_id, event).await?,
        ))
    }

    async fn create_postmortem(
        &self,
        ctx: &Context<'_>,
        incident_id: Uuid,
        input: PostmortemInput,
    ) -> GqlResult<Postmortem> {
        let writer = principal(ctx)?.writer()?;
        let patch = input.parse()?;
        Ok(Postmortem(
            domain(ctx)
                .create_postmortem(&writer, incident_id, patch)
                .await?,
        ))
    }

    /// Only the fields given change.
    async fn update_postmortem(
        &self,
        ctx: &Context<'_>,
        incident_id: Uuid,
        input: PostmortemInput,
    ) -> GqlResult<Postmortem> {
        let writer = principal(ctx)?.writer()?;
        let patch = input.parse()?;
        Ok(Postmortem(
            domain(ctx)
                .update_postmortem(&writer, incident_id, patch)
                .await?,
        ))
    }
}
