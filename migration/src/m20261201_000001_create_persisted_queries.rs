//! Automatic persisted queries (APQ): the documents clients registered by their SHA-256 hash,
//! shared by every replica on one database. Not tenant data: a document holds no rows, only text
//! any client may send, so the table has no organization.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PersistedQueries {
    Table,
    Sha256,
    Query,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PersistedQueries::Table)
                    .col(
                        // 64 lowercase hex digits.
                        ColumnDef::new(PersistedQueries::Sha256)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(PersistedQueries::Query).text().not_null())
                    .col(
                        ColumnDef::new(PersistedQueries::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PersistedQueries::Table).to_owned())
            .await
    }
}
