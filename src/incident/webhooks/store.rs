//! The only code that names the webhook tables, with `OrgScope`'s discipline: every function
//! that serves a request takes the caller's scope and filters (and inserts) by its
//! organization. The delivery worker's functions (`due`, `claim`, `queue_stats`) read across
//! organizations by design; every row they hand back names its organization, and what follows
//! runs in that organization's scope.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::entity::{
    WebhookDeliveryStatus as Status, audit_event, webhook_attempt, webhook_delivery,
    webhook_endpoint,
};
use crate::incident::OrgScope;

use webhook_delivery::Column as D;
use webhook_endpoint::Column as E;

pub async fn endpoints<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
) -> Result<Vec<webhook_endpoint::Model>, DbErr> {
    webhook_endpoint::Entity::find()
        .filter(E::OrganizationId.eq(scope.org_id()))
        .order_by_asc(E::CreatedAt)
        .order_by_asc(E::Id)
        .all(db)
        .await
}

pub async fn enabled_endpoints<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
) -> Result<Vec<webhook_endpoint::Model>, DbErr> {
    webhook_endpoint::Entity::find()
        .filter(E::OrganizationId.eq(scope.org_id()))
        .filter(E::Enabled.eq(true))
        .all(db)
        .await
}

pub async fn endpoint<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
    id: Uuid,
) -> Result<Option<webhook_endpoint::Model>, DbErr> {
    webhook_endpoint::Entity::find()
        .filter(E::OrganizationId.eq(scope.org_id()))
        .filter(E::Id.eq(id))
        .one(db)
        .await
}

pub async fn insert_endpoint<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
    mut row: webhook_endpoint::ActiveModel,
) -> Result<(), DbErr> {
    row.organization_id = Set(scope.org_id());
    webhook_endpoint::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// `false` when no such endpoint is in the scope.
pub async fn update_endpoint<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
    id: Uuid,
    row: webhook_endpoint::ActiveModel,
) -> Result<bool, DbErr> {
    let result = webhook_endpoint::Entity::update_many()
        .set(row)
        .filter(E::OrganizationId.eq(scope.org_id()))
        .filter(E::Id.eq(id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Deletes the endpoint with its deliveries and their attempts; `false` when not in the scope.
pub async fn delete_endpoint<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
    id: Uuid,
) -> Result<bool, DbErr> {
    let deliveries = Query::select()
        .column(D::Id)
        .from(webhook_delivery::Entity)
        .and_where(D::OrganizationId.eq(scope.org_id()))
        .and_where(D::EndpointId.eq(id))
        .to_owned();
    webhook_attempt::Entity::delete_many()
        .filter(webhook_attempt::Column::OrganizationId.eq(scope.org_id()))
        .filter(webhook_attempt::Column::DeliveryId.in_subquery(deliveries))
        .exec(db)
        .await?;
    webhook_delivery::Entity::delete_many()
        .filter(D::OrganizationId.eq(scope.org_id()))
        .filter(D::EndpointId.eq(id))
        .exec(db)
        .await?;
    let result = webhook_endpoint::Entity::delete_many()
        .filter(E::OrganizationId.eq(scope.org_id()))
        .filter(E::Id.eq(id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn insert_deliveries<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
    rows: Vec<webhook_delivery::ActiveModel>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows = rows.into_iter().map(|mut row| {
        row.organization_id = Set(scope.org_id());
        row
    });
    webhook_delivery::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn delivery<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
    id: Uuid,
) -> Result<Option<webhook_delivery::Model>, DbErr> {
    webhook_delivery::Entity::find()
        .filter(D::OrganizationId.eq(scope.org_id()))
        .filter(D::Id.eq(id))
        .one(db)
        .await
}

/// An endpoint's deliveries, newest first, after the cursor (a delivery id: ids grow with time).
pub async fn deliveries<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
    endpoint_id: Uuid,
    after: Option<Uuid>,
    status: Option<Status>,
    limit: u64,
) -> Result<Vec<webhook_delivery::Model>, DbErr> {
    let mut select = webhook_delivery::Entity::find()
        .filter(D::OrganizationId.eq(scope.org_id()))
        .filter(D::EndpointId.eq(endpoint_id));
    if let Some(after) = after {
        select = select.filter(D::Id.lt(after));
    }
    if let Some(status) = status {
        select = select.filter(D::Status.eq(status));
    }
    select.order_by_desc(D::Id).limit(limit).all(db).await
}

pub async fn attempts<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
    delivery_ids: &[Uuid],
) -> Result<Vec<webhook_attempt::Model>, DbErr> {
    webhook_attempt::Entity::find()
        .filter(webhook_attempt::Column::OrganizationId.eq(scope.org_id()))
        .filter(webhook_attempt::Column::DeliveryId.is_in(delivery_ids.iter().copied()))
        .order_by_asc(webhook_attempt::Column::At)
        .order_by_asc(webhook_attempt::Column::Id)
        .all(db)
        .await
}

/// Queues deliveries again, due `now`; how many. `ids` or `(endpoint, since)` select them.
pub async fn requeue<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
    selection: Requeue,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let mut update = webhook_delivery::Entity::update_many()
        .col_expr(D::Status, Expr::value(Status::Pending.as_str()))
        .col_expr(D::AttemptCount, Expr::value(0))
        .col_expr(D::NextAttemptAt, Expr::value(now))
        .filter(D::OrganizationId.eq(scope.org_id()));
    update = match selection {
        Requeue::One(id) => update.filter(D::Id.eq(id)),
        Requeue::Since { endpoint_id, since } => update
            .filter(D::EndpointId.eq(endpoint_id))
            .filter(D::CreatedAt.gte(since))
            .filter(D::Status.is_in([Status::Failed.as_str(), Status::Dead.as_str()])),
    };
    Ok(update.exec(db).await?.rows_affected)
}

pub enum Requeue {
    One(Uuid),
    Since {
        endpoint_id: Uuid,
        since: DateTime<Utc>,
    },
}

pub async fn insert_audit<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
    row: audit_event::ActiveModel,
) -> Result<(), DbErr> {
    scope.insert_audit(db, row).await
}

// --- The delivery worker's side ---------------------------------------------------------

/// The worker's bookkeeping (a claim, an attempt's record) need not wait for PostgreSQL to
/// flush its log: a commit lost in a crash only sends a message again, which at-least-once
/// delivery allows. Call first in the transaction; nothing on SQLite.
pub async fn without_flush_wait<C: ConnectionTrait>(txn: &C) -> Result<(), DbErr> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared("SET LOCAL synchronous_commit = off")
            .await?;
    }
    Ok(())
}

fn open_statuses() -> [&'static str; 2] {
    [Status::Pending.as_str(), Status::Failed.as_str()]
}

/// Claims up to `limit` due deliveries for `owner` until `lease_until`: due, not leased (or the
/// lease ran out), their endpoint enabled, and no earlier open message to the same endpoint
/// about the same incident. On PostgreSQL the rows are locked with `SKIP LOCKED`, so replicas
/// claiming at once take different rows; the lease then keeps them while they are sent.
pub async fn claim<C: ConnectionTrait>(
    txn: &C,
    now: DateTime<Utc>,
    owner: Uuid,
    lease_until: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<webhook_delivery::Model>, DbErr> {
    let earlier = Alias::new("earlier");
    let table = Alias::new("webhook_deliveries");
    let col = |c: D| Expr::col((earlier.clone(), c));
    let outer = |c: D| Expr::col((table.clone(), c));
    let blocked = Query::select()
        .expr(Expr::val(1))
        .from_as(webhook_delivery::Entity, earlier.clone())
        .and_where(col(D::OrganizationId).equals((table.clone(), D::OrganizationId)))
        .and_where(col(D::EndpointId).equals((table.clone(), D::EndpointId)))
        .and_where(col(D::IncidentId).equals((table.clone(), D::IncidentId)))
        .and_where(col(D::Status).is_in(open_statuses()))
        .and_where(
            col(D::CreatedAt)
                .lt(outer(D::CreatedAt))
                .or(col(D::CreatedAt)
                    .eq(outer(D::CreatedAt))
                    .and(col(D::Id).lt(outer(D::Id)))),
        )
        .to_owned();
    let enabled = Query::select()
        .expr(Expr::val(1))
        .from(webhook_endpoint::Entity)
        .and_where(
            Expr::col((webhook_endpoint::Entity, E::Id)).equals((table.clone(), D::EndpointId)),
        )
        .and_where(
            Expr::col((webhook_endpoint::Entity, E::OrganizationId))
                .equals((table.clone(), D::OrganizationId)),
        )
        .and_where(Expr::col((webhook_endpoint::Entity, E::Enabled)).eq(true))
        .to_owned();
    let mut select = webhook_delivery::Entity::find()
        .filter(D::Status.is_in(open_statuses()))
        .filter(D::NextAttemptAt.lte(now))
        .filter(D::LeaseExpiresAt.is_null().or(D::LeaseExpiresAt.lt(now)))
        .filter(Expr::exists(enabled))
        .filter(Expr::exists(blocked).not())
        .order_by_asc(D::NextAttemptAt)
        .limit(limit);
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let rows = select.all(txn).await?;
    if rows.is_empty() {
        return Ok(rows);
    }
    webhook_delivery::Entity::update_many()
        .col_expr(D::LeaseOwner, Expr::value(owner))
        .col_expr(D::LeaseExpiresAt, Expr::value(lease_until))
        .filter(D::Id.is_in(rows.iter().map(|r| r.id)))
        .exec(txn)
        .await?;
    Ok(rows)
}

/// Records what an attempt did, if `owner` still holds the lease; `false` when it lost it.
pub async fn finish<C: ConnectionTrait>(
    txn: &C,
    delivery: &webhook_delivery::Model,
    owner: Uuid,
    status: Status,
    attempt_count: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    attempt: webhook_attempt::Model,
) -> Result<bool, DbErr> {
    let result = webhook_delivery::Entity::update_many()
        .col_expr(D::Status, Expr::value(status.as_str()))
        .col_expr(D::AttemptCount, Expr::value(attempt_count))
        .col_expr(D::NextAttemptAt, Expr::value(next_attempt_at))
        .col_expr(D::LeaseOwner, Expr::value(Option::<Uuid>::None))
        .col_expr(
            D::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(D::OrganizationId.eq(delivery.organization_id))
        .filter(D::Id.eq(delivery.id))
        .filter(D::LeaseOwner.eq(owner))
        .exec(txn)
        .await?;
    if result.rows_affected != 1 {
        return Ok(false);
    }
    let mut row: webhook_attempt::ActiveModel = attempt.into();
    row.organization_id = Set(delivery.organization_id);
    webhook_attempt::Entity::insert(row)
        .exec_without_returning(txn)
        .await?;
    Ok(true)
}

/// Gives a claimed delivery back untouched (its endpoint was disabled meanwhile).
pub async fn release<C: ConnectionTrait>(
    db: &C,
    delivery: &webhook_delivery::Model,
    owner: Uuid,
) -> Result<(), DbErr> {
    webhook_delivery::Entity::update_many()
        .col_expr(D::LeaseOwner, Expr::value(Option::<Uuid>::None))
        .col_expr(
            D::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(D::OrganizationId.eq(delivery.organization_id))
        .filter(D::Id.eq(delivery.id))
        .filter(D::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(())
}

/// Open deliveries over every organization, and the oldest one's creation time.
pub async fn queue_stats<C: ConnectionTrait>(
    db: &C,
) -> Result<(i64, Option<DateTime<Utc>>), DbErr> {
    let row: Option<(i64, Option<DateTime<Utc>>)> = webhook_delivery::Entity::find()
        .select_only()
        .column_as(D::Id.count(), "n")
        .column_as(D::CreatedAt.min(), "oldest")
        .filter(D::Status.is_in(open_statuses()))
        .into_tuple()
        .one(db)
        .await?;
    Ok(row.unwrap_or((0, None)))
}
