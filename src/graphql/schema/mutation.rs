//! Mutations: parse the input (the domain's own command types), call the service, shape the answer.

use async_graphql::{Context, Object};
use uuid::Uuid;

use super::context::{domain, principal};
use super::types::{Incident, IncidentEvent, Postmortem};
use crate::entity::{IncidentRole, Status};
use crate::graphql::error::GqlResult;
use crate::incident::input::{
    AddEvent, AssignRole, CreateIncident, PostmortemInput, Transition, UpdateIncident,
};

#[derive(Default)]
pub struct IncidentMutation;

#[Object]
impl IncidentMutation {
    async fn create_incident(
        &self,
        ctx: &Context<'_>,
        input: CreateIncident,
    ) -> GqlResult<Incident> {
        let writer = principal(ctx)?.writer()?;
        let input = input.parse()?;
        Ok(Incident(domain(ctx).create_incident(&writer, input).await?))
    }

    async fn update_incident(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        input: UpdateIncident,
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
        let change = Transition { to, note }.parse()?;
        Ok(Incident(domain(ctx).transition(&writer, id, change).await?))
    }

    /// Gives the role to a person of the organization's directory, replacing whoever held it.
    async fn assign_incident_role(
        &self,
        ctx: &Context<'_>,
        incident_id: Uuid,
        role: IncidentRole,
        person_id: Uuid,
    ) -> GqlResult<Incident> {
        let writer = principal(ctx)?.writer()?;
        let change = AssignRole {
            role,
            person_id: Some(Some(person_id)),
        }
        .parse()?;
        Ok(Incident(
            domain(ctx)
                .change_role(&writer, incident_id, change)
                .await?,
        ))
    }

    /// Leaves the role to nobody; a role nobody holds stays so, and nothing is written.
    async fn unassign_incident_role(
        &self,
        ctx: &Context<'_>,
        incident_id: Uuid,
        role: IncidentRole,
    ) -> GqlResult<Incident> {
        let writer = principal(ctx)?.writer()?;
        let change = AssignRole {
            role,
            person_id: Some(None),
        }
        .parse()?;
        Ok(Incident(
            domain(ctx)
                .change_role(&writer, incident_id, change)
                .await?,
        ))
    }

    async fn add_incident_event(
        &self,
        ctx: &Context<'_>,
        incident_id: Uuid,
        input: AddEvent,
    ) -> GqlResult<IncidentEvent> {
        let writer = principal(ctx)?.writer()?;
        let event = input.parse()?;
        Ok(IncidentEvent::from(
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
