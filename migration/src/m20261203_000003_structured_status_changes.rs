//! A status change records its two statuses in columns of its own (`from_status`, `to_status`),
//! so statistics read them instead of the sentence written for people. Existing
//! `status_changed` events are backfilled from that sentence ("OPEN → MITIGATING", then the note
//! after a blank line): this migration is the one place that reads it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IncidentEvents {
    Table,
    FromStatus,
    ToStatus,
}

const STATUSES: [&str; 4] = ["OPEN", "MITIGATING", "RESOLVED", "CLOSED"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        // PostgreSQL stores the workflow's own enum type, SQLite text (as `incident_records.status`).
        let status_column = |name: IncidentEvents| {
            let mut def = ColumnDef::new(name);
            match backend {
                DatabaseBackend::Postgres => def.custom(Alias::new("incident_status")),
                _ => def.string(),
            };
            def.null().to_owned()
        };
        // SQLite adds one column per ALTER TABLE.
        for mut column in [
            status_column(IncidentEvents::FromStatus),
            status_column(IncidentEvents::ToStatus),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(IncidentEvents::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        // The sentence is "{from} → {to}", alone or followed by "\n\n{note}". Statuses are four
        // fixed words without LIKE wildcards, so each pair is matched exactly.
        let db = manager.get_connection();
        for from in STATUSES {
            for to in STATUSES.into_iter().filter(|to| *to != from) {
                db.execute_unprepared(&format!(
                    "UPDATE incident_events SET from_status = '{from}', to_status = '{to}' \
                     WHERE event_type = 'status_changed' AND from_status IS NULL \
                     AND (content = '{from} → {to}' OR content LIKE '{from} → {to}\n%')"
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [IncidentEvents::ToStatus, IncidentEvents::FromStatus] {
            manager
                .alter_table(
                    Table::alter()
                        .table(IncidentEvents::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
