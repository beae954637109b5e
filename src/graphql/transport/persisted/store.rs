//! The `persisted_queries` table, and the only code that touches it. The table is not tenant
//! data (a document holds text any client may send, no rows), so it is read without an
//! `OrgScope`; `tenancy_is_structural` exempts this file alone. The organization a row names
//! is who registered it, for the per-organization bound, not who may read it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::db::Db;
use crate::entity::persisted_query::{self, Column};
use crate::error::AppError;

/// How many documents one eviction step looks at.
const EVICTION_BATCH: u64 = 64;

/// The store's bounds, in bytes of document text.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub total: u64,
    pub per_organization: u64,
}

pub(super) async fn get(db: &Db, sha256: &str) -> Result<Option<String>, DbErr> {
    let row = persisted_query::Entity::find_by_id(sha256.to_string())
        .one(db)
        .await?;
    Ok(row.map(|r| r.query))
}

/// Marks a document used now: eviction takes the least recently used first.
pub(super) async fn touch(db: &Db, sha256: &str, now: DateTime<Utc>) -> Result<(), DbErr> {
    persisted_query::Entity::update_many()
        .col_expr(Column::LastUsedAt, Expr::value(now))
        .filter(Column::Sha256.eq(sha256))
        .exec(db)
        .await?;
    Ok(())
}

/// Stores `query` under `sha256` for `organization`, unless a replica already did (the text
/// is the same by hash); then evicts the least recently used documents until the
/// organization's share and the total are within `bounds` again. The new document is never
/// the one evicted.
pub(super) async fn put(
    db: &Db,
    organization: Uuid,
    sha256: &str,
    query: &str,
    bounds: Bounds,
) -> Result<(), AppError> {
    let now = Utc::now();
    let row = persisted_query::ActiveModel {
        sha256: Set(sha256.to_string()),
        query: Set(query.to_string()),
        created_at: Set(now),
        organization_id: Set(Some(organization)),
        bytes: Set(query.len() as i64),
        last_used_at: Set(Some(now)),
    };
    let txn = db.begin_write().await?;
    let result = persisted_query::Entity::insert(row)
        .on_conflict_do_nothing()
        .exec_without_returning(&txn.txn)
        .await;
    match result {
        Ok(_) => {
            evict(
                &txn.txn,
                Some(organization),
                bounds.per_organization,
                sha256,
            )
            .await?;
            evict(&txn.txn, None, bounds.total, sha256).await?;
        }
        Err(DbErr::RecordNotInserted) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(txn.commit().await?)
}

/// Deletes the least recently used documents (of `organization`, or of all) until their bytes
/// are at most `max`, sparing `keep`.
async fn evict(
    conn: &impl ConnectionTrait,
    organization: Option<Uuid>,
    max: u64,
    keep: &str,
) -> Result<(), DbErr> {
    let of = |select: sea_orm::Select<persisted_query::Entity>| match organization {
        Some(org) => select.filter(Column::OrganizationId.eq(org)),
        None => select,
    };
    let total: i64 = of(persisted_query::Entity::find())
        .select_only()
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(bytes), 0) AS BIGINT)"),
            "total",
        )
        .into_tuple()
        .one(conn)
        .await?
        .unwrap_or(0);
    let mut excess = total.saturating_sub(max as i64);
    while excess > 0 {
        let oldest: Vec<(String, i64)> = of(persisted_query::Entity::find())
            .select_only()
            .columns([Column::Sha256, Column::Bytes])
            .filter(Column::Sha256.ne(keep))
            .order_by_asc(Expr::cust("COALESCE(last_used_at, created_at)"))
            .limit(EVICTION_BATCH)
            .into_tuple()
            .all(conn)
            .await?;
        if oldest.is_empty() {
            break;
        }
        let mut doomed = vec![];
        for (sha, bytes) in oldest {
            if excess <= 0 {
                break;
            }
            excess -= bytes;
            doomed.push(sha);
        }
        persisted_query::Entity::delete_many()
            .filter(Column::Sha256.is_in(doomed))
            .exec(conn)
            .await?;
    }
    Ok(())
}
