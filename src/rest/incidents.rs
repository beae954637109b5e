//! The `/api/v1/incidents` handlers: parse, call the domain, shape the answer. Nothing else.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::RestState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json, Path, Query, Responder};
use super::model::{
    DetailParams, Incident, IncidentDetail, IncidentEvent, IncidentList, ListParams,
    MAX_EVENT_BYTES, Person, Postmortem, RoleAssignment, RolesByIncident,
};
use crate::entity::incident;
use crate::incident::input::{AddEvent, AssignRole, CreateIncident, PostmortemInput, Transition};
use crate::incident::{OrgScope, read};
use std::collections::HashMap;

type ApiResult<T> = Result<T, ApiError>;

/// List incidents, newest first.
#[utoipa::path(
    get,
    path = "/incidents",
    tag = "incidents",
    params(ListParams),
    responses(
        (status = 200, description = "One page of incidents", body = IncidentList),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        (status = 401, description = "No or bad bearer token", body = ErrorBody),
    )
)]
pub async fn list_incidents(
    State(app): State<RestState>,
    Caller(principal): Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<IncidentList>> {
    let (filter, page) = params.parse()?;
    let (db, scope) = (&app.domain.db, principal.scope());
    let (rows, _) = read::incidents(db, scope, &filter, &page, false).await?;
    let ids: Vec<Uuid> = rows.rows.iter().map(|i| i.id).collect();
    let roles = roles_of(&app, scope, &ids).await?;
    Ok(axum::Json(IncidentList::new(rows, &roles)))
}

/// One incident with a page of its timeline (oldest first: up to `events_limit` events after
/// `events_after`, and at most about 8 MiB of them) and its postmortem.
#[utoipa::path(
    get,
    path = "/incidents/{id}",
    tag = "incidents",
    params(("id" = Uuid, Path, description = "The incident's id"), DetailParams),
    responses(
        (status = 200, description = "The incident", body = IncidentDetail),
        (status = 401, description = "No or bad bearer token", body = ErrorBody),
        (status = 404, description = "No such incident in the caller's organization", body = ErrorBody),
    )
)]
pub async fn get_incident(
    State(app): State<RestState>,
    Caller(principal): Caller,
    Path(id): Path<Uuid>,
    Query(params): Query<DetailParams>,
) -> ApiResult<axum::Json<IncidentDetail>> {
    let (after, limit) = params.parse()?;
    let (db, scope) = (&app.domain.db, principal.scope());
    let incident = read::incident(db, scope, id).await?;
    let page = read::events_after(db, scope, id, after, limit, MAX_EVENT_BYTES).await?;
    let postmortem = read::postmortems_by_incident(db, scope, &[id]).await?;
    let events_next_after = (!page.complete)
        .then(|| page.rows.last().map(|e| e.sequence))
        .flatten();
    let roles = roles_of(&app, scope, &[id]).await?;
    Ok(axum::Json(IncidentDetail {
        incident: Incident::new(incident, &roles),
        events: page.rows.into_iter().map(IncidentEvent::from).collect(),
        events_next_after,
        postmortem: postmortem.into_iter().next().map(Postmortem::from),
    }))
}

/// Declare an incident.
#[utoipa::path(
    post,
    path = "/incidents",
    tag = "incidents",
    request_body = CreateIncident,
    responses(
        (status = 201, description = "Created (or the same incident again, for a retry with the same id and body)",
            body = Incident, headers(("Location" = String, description = "/api/v1/incidents/{id}"))),
        (status = 400, description = "The body is not valid", body = ErrorBody),
        (status = 401, description = "No or bad bearer token", body = ErrorBody),
        (status = 403, description = "The caller is a viewer", body = ErrorBody),
        (status = 409, description = "The id is taken with a different body", body = ErrorBody),
    )
)]
pub async fn create_incident(
    State(app): State<RestState>,
    Responder(writer): Responder,
    Json(body): Json<CreateIncident>,
) -> ApiResult<Response> {
    let incident = app.domain.create_incident(&writer, body.parse()?).await?;
    let location = format!("/api/v1/incidents/{}", incident.id);
    let incident = with_roles(&app, writer.scope, incident).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(incident),
    )
        .into_response())
}

/// Add an event to the incident's timeline.
#[utoipa::path(
    post,
    path = "/incidents/{id}/events",
    tag = "incidents",
    params(("id" = Uuid, Path, description = "The incident's id")),
    request_body = AddEvent,
    responses(
        (status = 201, description = "The event, at the next sequence number", body = IncidentEvent),
        (status = 400, description = "The body is not valid", body = ErrorBody),
        (status = 401, description = "No or bad bearer token", body = ErrorBody),
        (status = 403, description = "The caller is a viewer", body = ErrorBody),
        (status = 404, description = "No such incident in the caller's organization", body = ErrorBody),
        (status = 409, description = "The event id is taken with a different body", body = ErrorBody),
    )
)]
pub async fn add_event(
    State(app): State<RestState>,
    Responder(writer): Responder,
    Path(id): Path<Uuid>,
    Json(body): Json<AddEvent>,
) -> ApiResult<(StatusCode, axum::Json<IncidentEvent>)> {
    let event = app.domain.add_event(&writer, id, body.parse()?).await?;
    Ok((StatusCode::CREATED, axum::Json(event.into())))
}

/// Write the incident's postmortem.
#[utoipa::path(
    post,
    path = "/incidents/{id}/postmortem",
    tag = "incidents",
    params(("id" = Uuid, Path, description = "The incident's id")),
    request_body = PostmortemInput,
    responses(
        (status = 201, description = "The postmortem", body = Postmortem),
        (status = 400, description = "The body is not valid", body = ErrorBody),
        (status = 401, description = "No or bad bearer token", body = ErrorBody),
        (status = 403, description = "The caller is a viewer", body = ErrorBody),
        (status = 404, description = "No such incident in the caller's organization", body = ErrorBody),
        (status = 409, description = "The incident already has a postmortem", body = ErrorBody),
    )
)]
pub async fn create_postmortem(
    State(app): State<RestState>,
    Responder(writer): Responder,
    Path(id): Path<Uuid>,
    Json(body): Json<PostmortemInput>,
) -> ApiResult<(StatusCode, axum::Json<Postmortem>)> {
    let postmortem = app
        .domain
        .create_postmortem(&writer, id, body.parse()?)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(postmortem.into())))
}

/// Move the incident along the workflow; a transition to its current status changes nothing.
#[utoipa::path(
    post,
    path = "/incidents/{id}/transition",
    tag = "incidents",
    params(("id" = Uuid, Path, description = "The incident's id")),
    request_body = Transition,
    responses(
        (status = 200, description = "The incident after the transition", body = Incident),
        (status = 400, description = "The body is not valid (a reopen needs a note)", body = ErrorBody),
        (status = 401, description = "No or bad bearer token", body = ErrorBody),
        (status = 403, description = "The caller is a viewer", body = ErrorBody),
        (status = 404, description = "No such incident in the caller's organization", body = ErrorBody),
        (status = 409, description = "INVALID_TRANSITION or POSTMORTEM_REQUIRED", body = ErrorBody),
    )
)]
pub async fn transition_incident(
    State(app): State<RestState>,
    Responder(writer): Responder,
    Path(id): Path<Uuid>,
    Json(body): Json<Transition>,
) -> ApiResult<axum::Json<Incident>> {
    let incident = app.domain.transition(&writer, id, body.parse()?).await?;
    Ok(axum::Json(with_roles(&app, writer.scope, incident).await?))
}

/// Give a role on the incident to a person of the organization's directory (replacing whoever
/// held it), or to nobody (`person_id: null`). Giving a role to whoever holds it, or taking an
/// empty role away, changes nothing.
#[utoipa::path(
    post,
    path = "/incidents/{id}/roles",
    tag = "incidents",
    params(("id" = Uuid, Path, description = "The incident's id")),
    request_body = AssignRole,
    responses(
        (status = 200, description = "The incident with its roles", body = Incident),
        (status = 400, description = "The body is not valid", body = ErrorBody),
        (status = 401, description = "No or bad bearer token", body = ErrorBody),
        (status = 403, description = "The caller is a viewer", body = ErrorBody),
        (status = 404, description = "No such incident, or no such person, in the caller's organization", body = ErrorBody),
        (status = 409, description = "The incident is closed", body = ErrorBody),
    )
)]
pub async fn assign_role(
    State(app): State<RestState>,
    Responder(writer): Responder,
    Path(id): Path<Uuid>,
    Json(body): Json<AssignRole>,
) -> ApiResult<axum::Json<Incident>> {
    let incident = app.domain.change_role(&writer, id, body.parse()?).await?;
    Ok(axum::Json(with_roles(&app, writer.scope, incident).await?))
}

/// The incident's JSON, with its roles.
async fn with_roles(
    app: &RestState,
    scope: OrgScope,
    incident: incident::Model,
) -> ApiResult<Incident> {
    let roles = roles_of(app, scope, &[incident.id]).await?;
    Ok(Incident::new(incident, &roles))
}

/// The roles of these incidents with their holders: two statements, however many incidents.
async fn roles_of(app: &RestState, scope: OrgScope, ids: &[Uuid]) -> ApiResult<RolesByIncident> {
    let db = &app.domain.db;
    let rows = read::roles_of(db, scope, ids).await?;
    let mut person_ids: Vec<Uuid> = rows.iter().map(|r| r.person_id).collect();
    person_ids.sort_unstable();
    person_ids.dedup();
    let people: HashMap<Uuid, Person> = read::people_by_id(db, scope, &person_ids)
        .await?
        .into_iter()
        .map(|p| (p.id, Person::from(p)))
        .collect();
    let mut out = RolesByIncident::new();
    for row in rows {
        if let Some(person) = people.get(&row.person_id) {
            out.entry(row.incident_id)
                .or_default()
                .push(RoleAssignment {
                    role: row.role,
                    person: person.clone(),
                    assigned_at: row.assigned_at,
                });
        }
    }
    for roles in out.values_mut() {
        roles.sort_by_key(|r| r.role);
    }
    Ok(out)
}
