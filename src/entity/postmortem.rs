use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "incident_postmortems")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub incident_id: Uuid,
    pub organization_id: Uuid,
    #[sea_orm(column_type = "Text", nullable)]
    pub impact_summary: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub root_cause: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub timeline: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub what_went_well: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub what_went_wrong: Option<String>,
    /// A JSON array of action items (see `incident::ActionItem`).
    pub action_items: Json,
    #[sea_orm(column_type = "Text", nullable)]
    pub public_summary: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub internal_notes: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
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
