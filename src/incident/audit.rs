//! Audit rows, written inside the transaction of the change they record, holding before/after
//! values of only the fields that changed.

use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::identity::Writer;
use crate::entity::audit_event;

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

pub async fn record<C: ConnectionTrait>(txn: &C, entry: Entry<'_>) -> Result<(), DbErr> {
    let row = audit_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(entry.writer.scope.org_id()),
        actor_id: Set(Some(entry.writer.user_id)),
        action: Set(entry.action.to_string()),
        entity_type: Set(entry.entity_type.to_string()),
        entity_id: Set(entry.entity_id),
        incident_id: Set(Some(entry.incident_id)),
        changes: Set(entry.diff.into_json()),
        created_at: Set(entry.at),
    };
    entry.writer.scope.insert_audit(txn, row).await
}
