//! Schema migrations for incidentd, applied at start-up or by `incidentd migrate`.
//! Each migration runs on PostgreSQL and SQLite and has a working `down`.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_create_incident_tables;
mod m20261126_000002_create_audit_events;
mod m20261127_000001_harden_schema;
mod m20261201_000001_create_persisted_queries;
mod m20261203_000002_bound_persisted_queries;
mod m20261203_000003_structured_status_changes;
mod m20261203_000004_create_people;
mod m20261203_000005_create_incident_roles;
mod m20261203_000006_create_webhooks;
mod m20261203_000007_create_sessions;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_incident_tables::Migration),
            Box::new(m20261126_000002_create_audit_events::Migration),
            Box::new(m20261127_000001_harden_schema::Migration),
            Box::new(m20261201_000001_create_persisted_queries::Migration),
            Box::new(m20261203_000002_bound_persisted_queries::Migration),
            Box::new(m20261203_000003_structured_status_changes::Migration),
            Box::new(m20261203_000004_create_people::Migration),
            Box::new(m20261203_000005_create_incident_roles::Migration),
            Box::new(m20261203_000006_create_webhooks::Migration),
            Box::new(m20261203_000007_create_sessions::Migration),
        ]
    }
}
