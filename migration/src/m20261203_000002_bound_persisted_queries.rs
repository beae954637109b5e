//! Persisted queries get what their bounds need: the organization that registered each one,
//! its size in bytes, and when it was last used (least recently used documents are evicted
//! first). Existing rows are backfilled: their size from their text, last used at creation,
//! and no organization (they count towards the total only).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PersistedQueries {
    Table,
    OrganizationId,
    Bytes,
    LastUsedAt,
}

const BY_ORG: &str = "ix_persisted_queries_org_last_used";
const BY_USE: &str = "ix_persisted_queries_last_used";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            ColumnDef::new(PersistedQueries::OrganizationId)
                .uuid()
                .null()
                .to_owned(),
            ColumnDef::new(PersistedQueries::Bytes)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(PersistedQueries::LastUsedAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(PersistedQueries::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        let backfill = match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                "UPDATE persisted_queries SET bytes = octet_length(query), last_used_at = created_at"
            }
            _ => {
                "UPDATE persisted_queries SET bytes = length(CAST(query AS BLOB)), last_used_at = created_at"
            }
        };
        manager
            .get_connection()
            .execute_unprepared(backfill)
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(BY_ORG)
                    .table(PersistedQueries::Table)
                    .col(PersistedQueries::OrganizationId)
                    .col(PersistedQueries::LastUsedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(BY_USE)
                    .table(PersistedQueries::Table)
                    .col(PersistedQueries::LastUsedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [BY_ORG, BY_USE] {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(PersistedQueries::Table)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            PersistedQueries::OrganizationId,
            PersistedQueries::Bytes,
            PersistedQueries::LastUsedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(PersistedQueries::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
