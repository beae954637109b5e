//! The PostgreSQL bridge between replicas: writers NOTIFY inside their transaction (delivered
//! only on commit), every replica LISTENs and feeds its hub. When the listening connection is
//! lost, the replica reconnects, LISTENs again, and only then tells subscribers to re-read
//! from their cursors, so nothing committed during the outage is missed.

use std::time::Duration;

use sea_orm::sqlx::Executor;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sea_orm::{ConnectionTrait, DbErr, Statement};

use super::{Hub, LiveOptions};
use crate::db::Db;
use crate::incident::changes::Announcement;

pub const CHANNEL: &str = "incidentd_changes";
pub const LISTENER_APPLICATION_NAME: &str = "incidentd-listener";
pub const MALFORMED_METRIC: &str = "incidentd_live_malformed_notifications_total";

/// Queues the announcements of the current transaction; PostgreSQL delivers them at commit.
pub(super) async fn notify<C: ConnectionTrait>(
    txn: &C,
    announcements: &[Announcement],
) -> Result<(), DbErr> {
    if announcements.is_empty() {
        return Ok(());
    }
    // ~120 bytes per announcement; a write announces at most a handful, far under the 8000-byte cap.
    let payload = serde_json::to_string(announcements).map_err(|e| DbErr::Custom(e.to_string()))?;
    txn.execute_raw(Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANNEL.into(), payload.into()],
    ))
    .await?;
    Ok(())
}

async fn connect(options: &PgConnectOptions) -> Result<PgListener, sea_orm::sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// The listener's connection settings: its own URL when one is given, the pool's otherwise.
/// TCP keepalives (sent by the server, which sqlx cannot ask of its side) keep NAT and load
/// balancer entries of an idle connection fresh and let the server drop a dead client.
fn options(db: &Db, live: &LiveOptions) -> Option<PgConnectOptions> {
    let options: PgConnectOptions = match &live.listen_url {
        Some(url) => match url.expose().parse() {
            Ok(options) => options,
            Err(e) => {
                tracing::error!(error = %e, url = %url, "the listener URL does not parse");
                return None;
            }
        },
        None => db.pg_connect_options()?,
    };
    Some(
        options
            .application_name(LISTENER_APPLICATION_NAME)
            .options([
                ("tcp_keepalives_idle", "30"),
                ("tcp_keepalives_interval", "10"),
                ("tcp_keepalives_count", "3"),
            ]),
    )
}

/// Runs for the life of the process: listens, proves the connection alive every heartbeat
/// (a round trip that must answer within the heartbeat), and on any failure reconnects. After
/// every successful LISTEN, the first one included, subscribers re-read from their cursors:
/// whatever committed while nobody listened is found in the database.
pub(super) async fn listen(
    db: Db,
    live: LiveOptions,
    hub: Hub,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let Some(options) = options(&db, &live) else {
        return;
    };
    let heartbeat = live.heartbeat.max(Duration::from_millis(100));
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut listener = match tokio::time::timeout(heartbeat * 2, connect(&options)).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot LISTEN for changes; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(_) => {
                tracing::warn!("LISTEN did not answer in time; retrying");
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        hub.resync();
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(());
            }
            None => {
                tracing::info!(
                    "change listener reconnected; subscribers re-read from their cursors"
                );
            }
        }
        let mut beats = tokio::time::interval(heartbeat);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beats.reset();
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                _ = beats.tick() => {
                    // Notifications that arrive meanwhile are buffered by the listener.
                    let alive = tokio::time::timeout(heartbeat, (&mut listener).execute("SELECT 1")).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        tracing::warn!("change listener missed its heartbeat; reconnecting");
                        break;
                    }
                    continue;
                }
            };
            match received {
                Ok(Some(notification)) => publish(&hub, notification.payload()),
                Ok(None) => {
                    tracing::warn!("change listener lost its connection");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change listener failed");
                    break;
                }
            }
        }
    }
}

/// Publishes one notification's announcements. A payload that is not ours as a whole is read
/// one announcement at a time: the organizations of the unreadable ones re-read, and one that
/// names no organization cannot concern a subscriber of ours (only a foreign NOTIFY on our
/// channel looks like that), so it is counted and dropped.
fn publish(hub: &Hub, payload: &str) {
    if let Ok(list) = serde_json::from_str::<Vec<Announcement>>(payload) {
        hub.publish(list);
        return;
    }
    metrics::counter!(MALFORMED_METRIC).increment(1);
    tracing::warn!("a change notification did not parse");
    let items = serde_json::from_str::<Vec<serde_json::Value>>(payload).unwrap_or_default();
    let mut list = Vec::new();
    let mut orgs = std::collections::HashSet::new();
    for item in items {
        match serde_json::from_value::<Announcement>(item.clone()) {
            Ok(a) => list.push(a),
            Err(_) => {
                if let Some(org) = item
                    .get("o")
                    .and_then(|o| o.as_str())
                    .and_then(|o| o.parse().ok())
                {
                    orgs.insert(org);
                }
            }
        }
    }
    hub.publish(list);
    if !orgs.is_empty() {
        hub.resync_affected(super::Affected::Orgs(orgs));
    }
}
