//! The `persisted_queries` table, and the only code that touches it. The table is not tenant
//! data (a document holds text any client may send, no rows), so it is read without an
//! `OrgScope`; `tenancy_is_structural` exempts this file alone.

use sea_orm::{ActiveValue::Set, DbErr, EntityTrait};

use crate::db::Db;
use crate::entity::persisted_query;
use crate::error::AppError;

pub(super) async fn get(db: &Db, sha256: &str) -> Result<Option<String>, DbErr> {
    let row = persisted_query::Entity::find_by_id(sha256.to_string())
        .one(db.conn())
        .await?;
    Ok(row.map(|r| r.query))
}

/// Stores `query` under `sha256` unless a replica already did (the text is the same by hash).
pub(super) async fn put(db: &Db, sha256: &str, query: &str) -> Result<(), AppError> {
    let row = persisted_query::ActiveModel {
        sha256: Set(sha256.to_string()),
        query: Set(query.to_string()),
        created_at: Set(chrono::Utc::now()),
    };
    let txn = db.begin_write().await?;
    let result = persisted_query::Entity::insert(row)
        .on_conflict_do_nothing()
        .exec_without_returning(&txn.txn)
        .await;
    match result {
        Ok(_) | Err(DbErr::RecordNotInserted) => Ok(txn.commit().await?),
        Err(e) => Err(e.into()),
    }
}
