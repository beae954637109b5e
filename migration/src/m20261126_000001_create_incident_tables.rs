//! The three tables of the original design, the two enums, and what production needs on top:
//! foreign keys, one postmortem per incident, per-incident event sequences and the list indexes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

pub const SEVERITIES: [&str; 4] = ["SEV1", "SEV2", "SEV3", "SEV4"];
pub const STATUSES: [&str; 4] = ["OPEN", "MITIGATING", "RESOLVED", "CLOSED"];

#[derive(DeriveIden, Clone, Copy)]
enum IncidentRecords {
    Table,
    Id,
    OrganizationId,
    Title,
    Status,
    Severity,
    LinkedTicketIds,
    LinkedProblemId,
    StartedAt,
    ResolvedAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum IncidentEvents {
    Table,
    Id,
    OrganizationId,
    IncidentId,
    Sequence,
    EventType,
    Content,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IncidentPostmortems {
    Table,
    Id,
    IncidentId,
    OrganizationId,
    ImpactSummary,
    RootCause,
    Timeline,
    WhatWentWell,
    WhatWentWrong,
    ActionItems,
    PublicSummary,
    InternalNotes,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

/// A column holding one of `values`: the native enum type on PostgreSQL, checked text on SQLite.
fn enum_column<C: IntoIden + Clone + 'static>(
    backend: DatabaseBackend,
    col: C,
    type_name: &str,
    values: &[&str],
    default: &str,
) -> ColumnDef {
    let mut def = ColumnDef::new(col.clone());
    match backend {
        DatabaseBackend::Postgres => {
            def.custom(Alias::new(type_name))
                .default(Expr::cust(format!("'{default}'::{type_name}")));
        }
        _ => {
            def.string_len(16)
                .default(default)
                .check(Expr::col(col).is_in(values.iter().copied()));
        }
    }
    def.not_null();
    def
}

fn timestamptz<C: IntoIden>(col: C) -> ColumnDef {
    let mut def = ColumnDef::new(col);
    def.timestamp_with_time_zone();
    def
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        if backend == DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared(
                "CREATE TYPE incident_severity AS ENUM ('SEV1', 'SEV2', 'SEV3', 'SEV4')",
            )
            .await?;
            db.execute_unprepared(
                "CREATE TYPE incident_status AS ENUM ('OPEN', 'MITIGATING', 'RESOLVED', 'CLOSED')",
            )
            .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(IncidentRecords::Table)
                    .col(
                        ColumnDef::new(IncidentRecords::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(IncidentRecords::OrganizationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IncidentRecords::Title)
                            .string_len(500)
                            .not_null(),
                    )
                    .col(enum_column(
                        backend,
                        IncidentRecords::Status,
                        "incident_status",
                        &STATUSES,
                        "OPEN",
                    ))
                    .col(enum_column(
                        backend,
                        IncidentRecords::Severity,
                        "incident_severity",
                        &SEVERITIES,
                        "SEV3",
                    ))
                    .col(
                        ColumnDef::new(IncidentRecords::LinkedTicketIds)
                            .json_binary()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IncidentRecords::LinkedProblemId).uuid())
                    .col(timestamptz(IncidentRecords::StartedAt).not_null())
                    .col(timestamptz(IncidentRecords::ResolvedAt))
                    .col(ColumnDef::new(IncidentRecords::CreatedBy).uuid())
                    .col(timestamptz(IncidentRecords::CreatedAt).not_null())
                    .col(timestamptz(IncidentRecords::UpdatedAt).not_null())
                    .check(Expr::cust(
                        "resolved_at IS NULL OR resolved_at >= started_at",
                    ))
                    .to_owned(),
            )
            .await?;

        // Every list is "this organization's, newest first", optionally narrowed by status or severity.
        for (name, cols) in [
            (
                "idx_incident_records_org_created",
                vec![
                    IncidentRecords::OrganizationId,
                    IncidentRecords::CreatedAt,
                    IncidentRecords::Id,
                ],
            ),
            (
                "idx_incident_records_org_status",
                vec![
                    IncidentRecords::OrganizationId,
                    IncidentRecords::Status,
                    IncidentRecords::CreatedAt,
                ],
            ),
            (
                "idx_incident_records_org_severity",
                vec![
                    IncidentRecords::OrganizationId,
                    IncidentRecords::Severity,
                    IncidentRecords::CreatedAt,
                ],
            ),
            (
                "idx_incident_records_org_started",
                vec![IncidentRecords::OrganizationId, IncidentRecords::StartedAt],
            ),
            (
                "idx_incident_records_org_problem",
                vec![
                    IncidentRecords::OrganizationId,
                    IncidentRecords::LinkedProblemId,
                ],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(IncidentRecords::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(IncidentEvents::Table)
                    .col(
                        ColumnDef::new(IncidentEvents::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(IncidentEvents::OrganizationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IncidentEvents::IncidentId).uuid().not_null())
                    .col(
                        ColumnDef::new(IncidentEvents::Sequence)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IncidentEvents::EventType)
                            .string_len(50)
                            .not_null(),
                    )
                    .col(ColumnDef::new(IncidentEvents::Content).text())
                    .col(ColumnDef::new(IncidentEvents::CreatedBy).uuid())
                    .col(timestamptz(IncidentEvents::CreatedAt).not_null())
                    .check(Expr::cust("sequence > 0"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_incident_events_incident")
                            .from(IncidentEvents::Table, IncidentEvents::IncidentId)
                            .to(IncidentRecords::Table, IncidentRecords::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The timeline is read by incident in sequence order; the pair is also the gapless-numbering guard.
        manager
            .create_index(
                Index::create()
                    .name("uq_incident_events_incident_sequence")
                    .table(IncidentEvents::Table)
                    .col(IncidentEvents::IncidentId)
                    .col(IncidentEvents::Sequence)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_incident_events_org_incident")
                    .table(IncidentEvents::Table)
                    .col(IncidentEvents::OrganizationId)
                    .col(IncidentEvents::IncidentId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IncidentPostmortems::Table)
                    .col(
                        ColumnDef::new(IncidentPostmortems::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(IncidentPostmortems::IncidentId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IncidentPostmortems::OrganizationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IncidentPostmortems::ImpactSummary).text())
                    .col(ColumnDef::new(IncidentPostmortems::RootCause).text())
                    .col(ColumnDef::new(IncidentPostmortems::Timeline).text())
                    .col(ColumnDef::new(IncidentPostmortems::WhatWentWell).text())
                    .col(ColumnDef::new(IncidentPostmortems::WhatWentWrong).text())
                    .col(
                        ColumnDef::new(IncidentPostmortems::ActionItems)
                            .json_binary()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IncidentPostmortems::PublicSummary).text())
                    .col(ColumnDef::new(IncidentPostmortems::InternalNotes).text())
                    .col(ColumnDef::new(IncidentPostmortems::CreatedBy).uuid())
                    .col(timestamptz(IncidentPostmortems::CreatedAt).not_null())
                    .col(timestamptz(IncidentPostmortems::UpdatedAt).not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_incident_postmortems_incident")
                            .from(IncidentPostmortems::Table, IncidentPostmortems::IncidentId)
                            .to(IncidentRecords::Table, IncidentRecords::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_incident_postmortems_incident")
                    .table(IncidentPostmortems::Table)
                    .col(IncidentPostmortems::IncidentId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_incident_postmortems_org_created")
                    .table(IncidentPostmortems::Table)
                    .col(IncidentPostmortems::OrganizationId)
                    .col(IncidentPostmortems::CreatedAt)
                    .col(IncidentPostmortems::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IncidentPostmortems::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(IncidentEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(IncidentRecords::Table).to_owned())
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared("DROP TYPE IF EXISTS incident_status")
                .await?;
            db.execute_unprepared("DROP TYPE IF EXISTS incident_severity")
                .await?;
        }
        Ok(())
    }
}
