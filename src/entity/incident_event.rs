use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "incident_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organization_id: Uuid,
    pub incident_id: Uuid,
    /// 1, 2, 3… within the incident, assigned under the incident's row lock.
    pub sequence: i64,
    pub event_type: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub content: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    /// On a `status_changed` event, the status it left and the one it entered (what statistics
    /// read); `None` on every other event.
    pub from_status: Option<super::Status>,
    pub to_status: Option<super::Status>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::incident::Entity",
        from = "Column::IncidentId",
        to = "super::incident::Column::Id",
        on_delete = "Cascade"
    )]
    Incident,
}

impl Related<super::incident::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Incident.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
