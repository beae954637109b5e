//! Outbound webhooks, the domain's half: the event types, the outbox each change writes in its
//! own transaction, the endpoints admins manage and their delivery log. Sending is `webhook/`'s.

pub mod address;
pub mod secret;
mod service;
pub mod store;

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait};
use serde_json::{Value, json};
use uuid::Uuid;

use super::OrgScope;
use crate::entity::{
    WebhookDeliveryStatus, incident, incident_event, postmortem, webhook_delivery, webhook_endpoint,
};
use crate::error::AppResult;

pub use address::{Destinations, Resolver, SystemResolver};
pub use secret::Cipher;
pub use service::{ENDPOINT_DISABLED, attempts, audit_row, deliveries};

pub const INCIDENT_CREATED: &str = "incident.created";
pub const INCIDENT_UPDATED: &str = "incident.updated";
pub const INCIDENT_STATUS_CHANGED: &str = "incident.status_changed";
pub const INCIDENT_TIMELINE_EVENT_ADDED: &str = "incident.timeline_event_added";
pub const POSTMORTEM_CREATED: &str = "postmortem.created";
pub const POSTMORTEM_UPDATED: &str = "postmortem.updated";
pub const INCIDENT_ROLE_ASSIGNED: &str = "incident.role_assigned";
pub const INCIDENT_ROLE_UNASSIGNED: &str = "incident.role_unassigned";
pub const WEBHOOK_TEST: &str = "webhook.test";

/// The types an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 9] = [
    INCIDENT_CREATED,
    INCIDENT_UPDATED,
    INCIDENT_STATUS_CHANGED,
    INCIDENT_TIMELINE_EVENT_ADDED,
    POSTMORTEM_CREATED,
    POSTMORTEM_UPDATED,
    INCIDENT_ROLE_ASSIGNED,
    INCIDENT_ROLE_UNASSIGNED,
    WEBHOOK_TEST,
];

/// What the webhook half of the domain is configured with.
#[derive(Clone)]
pub struct WebhookSettings {
    /// The URL people open, without a trailing slash: links in payloads point there.
    pub public_url: String,
    pub destinations: Destinations,
    pub cipher: Option<Cipher>,
    pub resolver: Arc<dyn Resolver>,
    /// Woken after a commit that queued messages (the in-process delivery worker waits on it).
    pub wake: Arc<tokio::sync::Notify>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            public_url: "http://127.0.0.1:8080".into(),
            destinations: Destinations::default(),
            cipher: None,
            resolver: Arc::new(SystemResolver),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

/// What a change adds to its message besides the incident.
pub enum Detail<'a> {
    None,
    Event(&'a incident_event::Model),
    Postmortem(&'a postmortem::Model),
}

/// One change, as its messages tell it.
pub struct Change<'a> {
    pub event_type: &'static str,
    pub incident: &'a incident::Model,
    pub detail: Detail<'a>,
    /// The incident's last timeline sequence after the change.
    pub sequence: i64,
    pub at: DateTime<Utc>,
}

/// Writes, in the change's transaction, one message for each enabled endpoint of the
/// organization that takes this event type; how many.
pub async fn enqueue<C: ConnectionTrait>(
    txn: &C,
    scope: OrgScope,
    settings: &WebhookSettings,
    change: Change<'_>,
) -> AppResult<usize> {
    let endpoints = store::enabled_endpoints(txn, scope).await?;
    let endpoints: Vec<_> = endpoints
        .into_iter()
        .filter(|e| takes(e, change.event_type))
        .collect();
    if endpoints.is_empty() {
        return Ok(0);
    }
    let payload = payload(scope, settings, &change);
    let message_id = message_id();
    let rows = endpoints
        .iter()
        .map(|endpoint| {
            pending(
                endpoint.id,
                &message_id,
                change.event_type,
                Some(change.incident.id),
                payload.clone(),
                change.at,
            )
        })
        .collect::<Vec<_>>();
    let n = rows.len();
    store::insert_deliveries(txn, scope, rows).await?;
    Ok(n)
}

/// Whether an endpoint takes messages of `event_type` (an empty list: every type).
fn takes(endpoint: &webhook_endpoint::Model, event_type: &str) -> bool {
    match endpoint.event_types.as_array() {
        Some(types) if !types.is_empty() => types.iter().any(|t| t.as_str() == Some(event_type)),
        _ => true,
    }
}

/// A fresh message id: `msg_` and a time-ordered UUID.
fn message_id() -> String {
    format!("msg_{}", Uuid::now_v7().simple())
}

fn pending(
    endpoint_id: Uuid,
    message_id: &str,
    event_type: &str,
    incident_id: Option<Uuid>,
    payload: Value,
    at: DateTime<Utc>,
) -> webhook_delivery::ActiveModel {
    webhook_delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(Uuid::nil()), // set by the store from the scope
        endpoint_id: Set(endpoint_id),
        message_id: Set(message_id.to_string()),
        event_type: Set(event_type.to_string()),
        incident_id: Set(incident_id),
        payload: Set(payload),
        status: Set(WebhookDeliveryStatus::Pending),
        attempt_count: Set(0),
        next_attempt_at: Set(Some(at)),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        created_at: Set(at),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The `STANDARD` body of a change (snake_case).
fn payload(scope: OrgScope, settings: &WebhookSettings, change: &Change<'_>) -> Value {
    let i = change.incident;
    let mut data = json!({
        "organization_id": scope.org_id(),
        "incident": {
            "id": i.id,
            "title": i.title,
            "status": i.status,
            "severity": i.severity,
            "highest_severity": i.highest_severity.unwrap_or(i.severity),
            "started_at": rfc3339(i.started_at),
            "resolved_at": i.resolved_at.map(rfc3339),
            "linked_ticket_ids": i.linked_ticket_ids,
            "linked_problem_id": i.linked_problem_id,
            "created_at": rfc3339(i.created_at),
            "updated_at": rfc3339(i.updated_at),
            "url": format!("{}/desk/incidents/{}", settings.public_url, i.id),
        },
        "sequence": change.sequence,
    });
    match change.detail {
        Detail::None => {}
        Detail::Event(e) => {
            data["event"] = json!({
                "id": e.id,
                "sequence": e.sequence,
                "event_type": e.event_type,
                "content": e.content,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "created_by": e.created_by,
                "created_at": rfc3339(e.created_at),
            });
        }
        Detail::Postmortem(p) => {
            // Internal notes stay inside incidentd.
            data["postmortem"] = json!({
                "id": p.id,
                "impact_summary": p.impact_summary,
                "root_cause": p.root_cause,
                "timeline": p.timeline,
                "what_went_well": p.what_went_well,
                "what_went_wrong": p.what_went_wrong,
                "action_items": p.action_items,
                "public_summary": p.public_summary,
                "created_at": rfc3339(p.created_at),
                "updated_at": rfc3339(p.updated_at),
            });
        }
    }
    json!({
        "type": change.event_type,
        "timestamp": rfc3339(change.at),
        "data": data,
    })
}
