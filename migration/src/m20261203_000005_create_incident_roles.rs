//! Incident roles: who leads an incident (commander), who speaks for it (communications) and
//! who writes it down (scribe). One person per role per incident; the person is one of the
//! organization's directory, so a role never names someone the directory does not know.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IncidentRoles {
    Table,
    OrganizationId,
    IncidentId,
    Role,
    PersonId,
    AssignedAt,
    AssignedBy,
}

#[derive(DeriveIden)]
enum IncidentRecords {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum People {
    Table,
    OrganizationId,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IncidentRoles::Table)
                    .col(
                        ColumnDef::new(IncidentRoles::OrganizationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IncidentRoles::IncidentId).uuid().not_null())
                    // COMMANDER, COMMUNICATIONS or SCRIBE: text on both databases, so a role
                    // added later needs no type change.
                    .col(
                        ColumnDef::new(IncidentRoles::Role)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(IncidentRoles::PersonId).uuid().not_null())
                    .col(
                        ColumnDef::new(IncidentRoles::AssignedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IncidentRoles::AssignedBy).uuid())
                    .primary_key(
                        Index::create()
                            .col(IncidentRoles::OrganizationId)
                            .col(IncidentRoles::IncidentId)
                            .col(IncidentRoles::Role),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(IncidentRoles::Table, IncidentRoles::IncidentId)
                            .to(IncidentRecords::Table, IncidentRecords::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                IncidentRoles::Table,
                                (IncidentRoles::OrganizationId, IncidentRoles::PersonId),
                            )
                            .to(People::Table, (People::OrganizationId, People::Id)),
                    )
                    .to_owned(),
            )
            .await?;
        // "Incidents where this person holds a role" (the `person` filter).
        manager
            .create_index(
                Index::create()
                    .name("idx_incident_roles_person")
                    .table(IncidentRoles::Table)
                    .col(IncidentRoles::OrganizationId)
                    .col(IncidentRoles::PersonId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IncidentRoles::Table).to_owned())
            .await
    }
}
