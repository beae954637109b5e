//! The schema held to the original design and to tenancy, on databases that already hold data:
//! - `incident_records.highest_severity`: the most severe level an incident ever had (NULL means
//!   its current one), backfilled from the timeline's `severity_changed` events, so the
//!   postmortem rule cannot be side-stepped by lowering the severity before closing;
//! - an index on `audit_events.incident_id`, which `auditEvents(entityId:)` filters on;
//! - PostgreSQL: `incident_events.sequence` widened to BIGINT; `DEFAULT '[]'` on the two JSONB
//!   columns, so writers that follow the original DDL can omit them; and events and postmortems
//!   tied to `(organization_id, id)` of their incident, so the database itself refuses a row
//!   that names another organization's incident.
//!
//! SQLite: its INTEGER is 64-bit already; column defaults and foreign keys cannot be altered
//! there without rebuilding the tables, and every SQLite database has one writer, this server,
//! whose scope sets both columns on every insert.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IncidentRecords {
    Table,
    HighestSeverity,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    IncidentId,
}

const AUDIT_INDEX: &str = "idx_audit_events_incident";

/// The most severe of the current severity and every level the timeline says it left.
/// `severity_changed` events are written by the server alone ("SEV1 → SEV3"), and the levels
/// order as their names do.
const LEVELS: &str = r#"
    SELECT MIN(level) FROM (
        SELECT CAST(incident_records.severity AS TEXT) AS level
        UNION ALL
        SELECT SUBSTR(e.content, 1, 4) FROM incident_events e
        WHERE e.incident_id = incident_records.id AND e.event_type = 'severity_changed'
          AND SUBSTR(e.content, 1, 4) IN ('SEV1', 'SEV2', 'SEV3', 'SEV4')
    ) AS levels"#;

const POSTGRES_UP: &[&str] = &[
    "ALTER TABLE incident_events ALTER COLUMN sequence TYPE BIGINT",
    "ALTER TABLE incident_records ALTER COLUMN linked_ticket_ids SET DEFAULT '[]'::jsonb",
    "ALTER TABLE incident_postmortems ALTER COLUMN action_items SET DEFAULT '[]'::jsonb",
    "ALTER TABLE incident_records ADD CONSTRAINT uq_incident_records_org_id UNIQUE (organization_id, id)",
    "ALTER TABLE incident_events DROP CONSTRAINT fk_incident_events_incident",
    "ALTER TABLE incident_events ADD CONSTRAINT fk_incident_events_incident \
     FOREIGN KEY (organization_id, incident_id) \
     REFERENCES incident_records (organization_id, id) ON DELETE CASCADE",
    "ALTER TABLE incident_postmortems DROP CONSTRAINT fk_incident_postmortems_incident",
    "ALTER TABLE incident_postmortems ADD CONSTRAINT fk_incident_postmortems_incident \
     FOREIGN KEY (organization_id, incident_id) \
     REFERENCES incident_records (organization_id, id) ON DELETE CASCADE",
];

const POSTGRES_DOWN: &[&str] = &[
    "ALTER TABLE incident_postmortems DROP CONSTRAINT fk_incident_postmortems_incident",
    "ALTER TABLE incident_postmortems ADD CONSTRAINT fk_incident_postmortems_incident \
     FOREIGN KEY (incident_id) REFERENCES incident_records (id) ON DELETE CASCADE",
    "ALTER TABLE incident_events DROP CONSTRAINT fk_incident_events_incident",
    "ALTER TABLE incident_events ADD CONSTRAINT fk_incident_events_incident \
     FOREIGN KEY (incident_id) REFERENCES incident_records (id) ON DELETE CASCADE",
    "ALTER TABLE incident_records DROP CONSTRAINT uq_incident_records_org_id",
    "ALTER TABLE incident_postmortems ALTER COLUMN action_items DROP DEFAULT",
    "ALTER TABLE incident_records ALTER COLUMN linked_ticket_ids DROP DEFAULT",
    "ALTER TABLE incident_events ALTER COLUMN sequence TYPE INTEGER",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let postgres = manager.get_database_backend() == DatabaseBackend::Postgres;
        let mut column = ColumnDef::new(IncidentRecords::HighestSeverity);
        if postgres {
            column.custom(Alias::new("incident_severity"));
        } else {
            column.string_len(4).check(Expr::cust(
                "highest_severity IN ('SEV1', 'SEV2', 'SEV3', 'SEV4')",
            ));
        }
        manager
            .alter_table(
                Table::alter()
                    .table(IncidentRecords::Table)
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        let backfill = if postgres {
            format!(
                "UPDATE incident_records SET highest_severity = CAST(({LEVELS}) AS incident_severity)"
            )
        } else {
            format!("UPDATE incident_records SET highest_severity = ({LEVELS})")
        };
        let db = manager.get_connection();
        db.execute_unprepared(&backfill).await?;
        manager
            .create_index(
                Index::create()
                    .name(AUDIT_INDEX)
                    .table(AuditEvents::Table)
                    .col(AuditEvents::IncidentId)
                    .to_owned(),
            )
            .await?;
        if postgres {
            for statement in POSTGRES_UP {
                db.execute_unprepared(statement).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            let db = manager.get_connection();
            for statement in POSTGRES_DOWN {
                db.execute_unprepared(statement).await?;
            }
        }
        manager
            .drop_index(
                Index::drop()
                    .name(AUDIT_INDEX)
                    .table(AuditEvents::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(IncidentRecords::Table)
                    .drop_column(IncidentRecords::HighestSeverity)
                    .to_owned(),
            )
            .await
    }
}
