//! Outbound webhooks: each organization's endpoints, the outbox of messages to them (one row per
//! endpoint and message, written in the transaction of the change it tells of), and every
//! attempt at a delivery. Every table names its organization.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    OrganizationId,
    Url,
    Description,
    EventTypes,
    Format,
    Enabled,
    DisabledReason,
    Secret,
    PreviousSecret,
    PreviousSecretExpiresAt,
    FailingSince,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    OrganizationId,
    EndpointId,
    MessageId,
    EventType,
    IncidentId,
    Payload,
    Status,
    AttemptCount,
    NextAttemptAt,
    LeaseOwner,
    LeaseExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    OrganizationId,
    DeliveryId,
    At,
    ResponseStatus,
    DurationMs,
    Error,
}

fn time(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn optional_time(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use WebhookEndpoints as E;
        manager
            .create_table(
                Table::create()
                    .table(E::Table)
                    .col(ColumnDef::new(E::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(E::OrganizationId).uuid().not_null())
                    .col(ColumnDef::new(E::Url).text().not_null())
                    .col(ColumnDef::new(E::Description).text().null())
                    // A JSON array of event types; empty: every type.
                    .col(ColumnDef::new(E::EventTypes).json_binary().not_null())
                    .col(ColumnDef::new(E::Format).string_len(16).not_null())
                    .col(ColumnDef::new(E::Enabled).boolean().not_null())
                    .col(ColumnDef::new(E::DisabledReason).text().null())
                    // `whsec_…`, or its AES-GCM encryption when a key is configured.
                    .col(ColumnDef::new(E::Secret).text().not_null())
                    .col(ColumnDef::new(E::PreviousSecret).text().null())
                    .col(optional_time(E::PreviousSecretExpiresAt))
                    // The first failure since the last success: five days of it disable.
                    .col(optional_time(E::FailingSince))
                    .col(time(E::CreatedAt))
                    .col(time(E::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_endpoints_org")
                    .table(E::Table)
                    .col(E::OrganizationId)
                    .col(E::CreatedAt)
                    .to_owned(),
            )
            .await?;

        use WebhookDeliveries as D;
        manager
            .create_table(
                Table::create()
                    .table(D::Table)
                    .col(ColumnDef::new(D::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(D::OrganizationId).uuid().not_null())
                    .col(ColumnDef::new(D::EndpointId).uuid().not_null())
                    // `msg_…`: the `webhook-id` of every attempt.
                    .col(ColumnDef::new(D::MessageId).string_len(64).not_null())
                    .col(ColumnDef::new(D::EventType).string_len(64).not_null())
                    .col(ColumnDef::new(D::IncidentId).uuid().null())
                    .col(ColumnDef::new(D::Payload).json_binary().not_null())
                    .col(ColumnDef::new(D::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(D::AttemptCount)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(optional_time(D::NextAttemptAt))
                    .col(ColumnDef::new(D::LeaseOwner).uuid().null())
                    .col(optional_time(D::LeaseExpiresAt))
                    .col(time(D::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_deliveries_endpoint")
                            .from(D::Table, D::EndpointId)
                            .to(E::Table, E::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The worker's scan: due messages.
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_due")
                    .table(D::Table)
                    .col(D::Status)
                    .col(D::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        // Order per (endpoint, incident), and the delivery log newest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_order")
                    .table(D::Table)
                    .col(D::EndpointId)
                    .col(D::IncidentId)
                    .col(D::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_log")
                    .table(D::Table)
                    .col(D::OrganizationId)
                    .col(D::EndpointId)
                    .col(D::Id)
                    .to_owned(),
            )
            .await?;

        use WebhookAttempts as A;
        manager
            .create_table(
                Table::create()
                    .table(A::Table)
                    .col(ColumnDef::new(A::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(A::OrganizationId).uuid().not_null())
                    .col(ColumnDef::new(A::DeliveryId).uuid().not_null())
                    .col(time(A::At))
                    .col(ColumnDef::new(A::ResponseStatus).integer().null())
                    .col(ColumnDef::new(A::DurationMs).integer().not_null())
                    .col(ColumnDef::new(A::Error).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_attempts_delivery")
                            .from(A::Table, A::DeliveryId)
                            .to(D::Table, D::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_attempts_delivery")
                    .table(A::Table)
                    .col(A::DeliveryId)
                    .col(A::At)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookAttempts::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
