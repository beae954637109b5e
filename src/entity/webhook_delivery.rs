use super::WebhookDeliveryStatus;
use sea_orm::entity::prelude::*;

/// One message to one endpoint; its id (`msg_…`) is the `webhook-id` of every attempt.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organization_id: Uuid,
    pub endpoint_id: Uuid,
    pub message_id: String,
    pub event_type: String,
    pub incident_id: Option<Uuid>,
    /// The `STANDARD` body; other formats are rendered from it when sent.
    pub payload: Json,
    pub status: WebhookDeliveryStatus,
    /// Failed attempts since the message was (re)queued: its place in the retry schedule.
    pub attempt_count: i32,
    pub next_attempt_at: Option<DateTimeUtc>,
    /// The replica sending it, until `lease_expires_at`.
    pub lease_owner: Option<Uuid>,
    pub lease_expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
