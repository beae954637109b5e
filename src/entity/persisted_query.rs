//! A document registered by automatic persisted queries, keyed by the SHA-256 of its text.
//! Not tenant data (see the migration); only `graphql::transport::persisted::store` queries it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "persisted_queries")]
pub struct Model {
    /// Lowercase hex of the SHA-256 of `query`, checked before the row is written.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sha256: String,
    #[sea_orm(column_type = "Text")]
    pub query: String,
    pub created_at: DateTimeUtc,
    /// The organization whose caller registered it: the per-organization bound counts it there.
    /// None for documents registered before the bounds existed.
    pub organization_id: Option<Uuid>,
    /// Bytes of `query`.
    pub bytes: i64,
    /// When a request last ran it (to within the store's touch interval); eviction takes the
    /// least recently used first.
    pub last_used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
