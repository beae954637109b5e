use super::{Severity, Status};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "incident_records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organization_id: Uuid,
    pub title: String,
    pub status: Status,
    pub severity: Severity,
    /// The most severe level the incident ever had; `None` when that is its current one.
    pub highest_severity: Option<Severity>,
    /// A JSON array of strings.
    pub linked_ticket_ids: Json,
    pub linked_problem_id: Option<Uuid>,
    pub started_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::incident_event::Entity")]
    Events,
    #[sea_orm(has_one = "super::postmortem::Entity")]
    Postmortem,
}

impl Related<super::incident_event::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Events.def()
    }
}

impl Related<super::postmortem::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Postmortem.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The most severe level the incident ever had, its current one included.
    pub fn highest_severity(&self) -> Severity {
        match self.highest_severity {
            Some(highest) => Severity::most_severe(highest, self.severity),
            None => self.severity,
        }
    }

    pub fn ticket_ids(&self) -> Vec<String> {
        serde_json::from_value(self.linked_ticket_ids.clone()).unwrap_or_default()
    }
}
