//! The audit log: one row per change, written in the transaction of the change it records.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OrganizationId,
    ActorId,
    Action,
    EntityType,
    EntityId,
    IncidentId,
    Changes,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(
                        ColumnDef::new(AuditEvents::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::OrganizationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::ActorId).uuid())
                    .col(
                        ColumnDef::new(AuditEvents::Action)
                            .string_len(50)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::EntityType)
                            .string_len(50)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::EntityId).uuid().not_null())
                    .col(ColumnDef::new(AuditEvents::IncidentId).uuid())
                    .col(
                        ColumnDef::new(AuditEvents::Changes)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_org_created")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::OrganizationId)
                    .col(AuditEvents::CreatedAt)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_org_entity")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::OrganizationId)
                    .col(AuditEvents::EntityId)
                    .col(AuditEvents::CreatedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
