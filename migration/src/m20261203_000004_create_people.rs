//! The people directory: one row per person an organization has seen, filled and refreshed at
//! sign-in and from bearer tokens that carry a name or an email. A person's id is the one their
//! token's subject gives (or UUIDv5 of issuer and subject for sign-in), so `created_by` columns
//! stay plain UUIDs and need no foreign key.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum People {
    Table,
    OrganizationId,
    Id,
    Issuer,
    Subject,
    Name,
    Email,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(People::Table)
                    .col(ColumnDef::new(People::OrganizationId).uuid().not_null())
                    .col(ColumnDef::new(People::Id).uuid().not_null())
                    // Where the identity came from: the provider's issuer and subject for
                    // sign-in, the token's issuer (if any) for bearer tokens.
                    .col(ColumnDef::new(People::Issuer).string_len(500))
                    .col(ColumnDef::new(People::Subject).string_len(500))
                    .col(ColumnDef::new(People::Name).string_len(200))
                    .col(ColumnDef::new(People::Email).string_len(320))
                    .col(
                        ColumnDef::new(People::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(People::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(People::OrganizationId).col(People::Id))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(People::Table).to_owned())
            .await
    }
}
