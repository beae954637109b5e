//! Audit rows, written inside the transaction of the change they record, holding before/after
//! values of only the fields that changed.

use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::identity::Writer;
use crate::entity::{audit_event, incident};

pub const INCIDENT_CREATED: &str = "incident_created";
pub const INCIDENT_UPDATED: &str = "incident_updated";
pub const INCIDENT_EVENT_ADDED: &str = "incident_event_added";
pub const POSTMORTEM_UPDATED: &str = "postmortem_updated";

/// Before/after pairs of changed fields.
#[derive(Debug, Default)]
pub struct Diff {
    before: Map<String, Value>,
    after: Map<String, Value>,
}

impl Diff {
    /// Records `field` when its value changes.
    pub fn field<T: serde::Serialize + PartialEq>(&mut self, name: &str, before: &T, after: &T) {
        if before != after {
            self.before.insert(name.into(), json!(before));
            self.after.insert(name.into(), json!(after));
        }
    }

    /// Records `field` as new (creations).
    pub fn created<T: serde::Serialize>(&mut self, name: &str, after: &T) {
        self.after.insert(name.into(), json!(after));
    }

    pub fn is_empty(&self) -> bool {
        self.after.is_empty() && self.before.is_empty()
    }

    pub fn into_json(self) -> Value {
        let before = if self.before.is_empty() {
            Value::Null
        } else {
            Value::Object(self.before)
        };
        json!({ "before": before, "after": Value::Object(self.after) })
    }
}

pub struct Entry<'a> {
    pub action: &'static str,
    pub entity_type: &'static str,
    pub entity_id: Uuid,
    pub incident_id: Uuid,
    pub diff: Diff,
    pub writer: &'a Writer,
    pub at: chrono::DateTime<chrono::Utc>,
}

pub async fn record<C: ConnectionTrait>(txn: &C, entry: Entry<'_>) -> Result<Uuid, DbErr> {
    let id = Uuid::now_v7();
    let row = audit_event::ActiveModel {
        id: Set(id),
        organization_id: Set(entry.writer.scope.org_id()),
        actor_id: Set(Some(entry.writer.user_id)),
        action: Set(entry.action.to_string()),
        entity_type: Set(entry.entity_type.to_string()),
        entity_id: Set(entry.entity_id),
        incident_id: Set(Some(entry.incident_id)),
        changes: Set(entry.diff.into_json()),
        created_at: Set(entry.at),
    };
    entry.writer.scope.insert_audit(txn, row).await?;
    Ok(id)
}

/// The incident as it was before the change an audit row recorded: `current` with every field
/// the row's `changes.before` names set back. Fields the change did not touch keep `current`'s
/// values. A value that does not decode leaves that field as it is.
pub fn before(current: &incident::Model, changes: &Value) -> incident::Model {
    let mut was = current.clone();
    let Some(before) = changes.get("before").and_then(Value::as_object) else {
        return was;
    };
    fn set<T: serde::de::DeserializeOwned>(field: &mut T, value: Option<&Value>) {
        if let Some(v) = value.and_then(|v| T::deserialize(v).ok()) {
            *field = v;
        }
    }
    set(&mut was.title, before.get("title"));
    set(&mut was.status, before.get("status"));
    set(&mut was.severity, before.get("severity"));
    set(&mut was.linked_problem_id, before.get("linkedProblemId"));
    set(&mut was.started_at, before.get("startedAt"));
    set(&mut was.resolved_at, before.get("resolvedAt"));
    if let Some(tickets) = before.get("linkedTicketIds") {
        was.linked_ticket_ids = tickets.clone();
    }
    was
}

/// Who held a role on the incident before the change an audit row recorded: the row's
/// `changes.before.roles` when the change was a role change, else `current`.
pub fn holders_before(current: &[Uuid], changes: &Value) -> Vec<Uuid> {
    match changes
        .get("before")
        .and_then(|b| b.get("roles"))
        .and_then(Value::as_object)
    {
        Some(roles) => roles
            .values()
            .filter_map(|v| v.as_str()?.parse().ok())
            .collect(),
        None => current.to_vec(),
    }
}
