//! The PostgreSQL bridge between replicas: writers NOTIFY inside their transaction (delivered
//! only on commit), every replica LISTENs and feeds its hub. When the listening connection is
//! lost, the replica reconnects, LISTENs again, and only then tells subscribers to re-read
//! from their cursors, so nothing committed during the outage is missed.

use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sea_orm::{ConnectionTrait, DbErr, Statement};

use super::Hub;
use crate::db::Db;
use crate::incident::changes::Announcement;

pub const CHANNEL: &str = "incidentd_changes";
pub const LISTENER_APPLICATION_NAME: &str = "incidentd-listener";

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

/// Runs for the life of the process.
pub(super) async fn listen(db: Db, hub: Hub, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let Some(options) = db.pg_connect_options() else {
        return;
    };
    let options = options.application_name(LISTENER_APPLICATION_NAME);
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut listener = match connect(&options).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for changes; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(());
            }
            None => {
                tracing::info!(
                    "change listener reconnected; subscribers re-read from their cursors"
                );
                hub.resync();
            }
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    match serde_json::from_str::<Vec<Announcement>>(notification.payload()) {
                        Ok(list) => hub.publish(list),
                        Err(e) => {
                            tracing::warn!(error = %e, "ignoring a malformed change notification")
                        }
                    }
                }
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
