//! Connecting to PostgreSQL or SQLite, and the write path: one transaction per change, with
//! writers to one database file serialized on SQLite (PostgreSQL serializes them by row locks).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    /// SQLite allows one writer; queueing writers here avoids SQLITE_BUSY under load.
    write_lock: Option<Arc<Mutex<()>>>,
    statements: Arc<AtomicU64>,
    url: String,
}

/// A write transaction. Dropping it without `commit` rolls back.
pub struct WriteTxn {
    pub txn: DatabaseTransaction,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl Db {
    pub async fn connect(opts: &DbOptions) -> Result<Db, DbErr> {
        Db::open(opts, false).await
    }

    /// A pool that connects on first use: start-up succeeds while the database is down.
    pub async fn connect_lazy(opts: &DbOptions) -> Result<Db, DbErr> {
        Db::open(opts, true).await
    }

    async fn open(opts: &DbOptions, lazy: bool) -> Result<Db, DbErr> {
        let url = normalize_url(&opts.url);
        let mut connect = ConnectOptions::new(url.clone());
        connect
            .max_connections(opts.max_connections)
            .min_connections(0)
            .acquire_timeout(opts.acquire_timeout)
            .connect_timeout(opts.acquire_timeout)
            .sqlx_logging(false)
            // A pooled connection the server lost (restart, failover, terminated backend) is
            // found by a ping before use and replaced, instead of failing the request.
            .test_before_acquire(true)
            .connect_lazy(lazy);
        let statement_timeout_ms = opts.statement_timeout.as_millis();
        if url.starts_with("postgres") {
            connect.map_sqlx_postgres_opts(move |o| {
                o.application_name("incidentd")
                    .options([("statement_timeout", format!("{statement_timeout_ms}"))])
            });
        } else {
            connect.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
        }
        let mut conn = Database::connect(connect).await?;
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        conn.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
            crate::monitoring::db_statement();
        });
        let write_lock = match conn.get_database_backend() {
            DatabaseBackend::Sqlite => Some(Arc::new(Mutex::new(()))),
            _ => None,
        };
        Ok(Db {
            conn,
            write_lock,
            statements,
            url,
        })
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// SQL statements run so far on this connection pool (all of them, reads and writes).
    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    pub async fn begin_write(&self) -> Result<WriteTxn, DbErr> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let txn = self.conn.begin().await?;
        Ok(WriteTxn { txn, _guard: guard })
    }

    /// Connection settings for extra PostgreSQL connections (the change listener).
    pub fn pg_connect_options(&self) -> Option<sea_orm::sqlx::postgres::PgConnectOptions> {
        if self.backend() != DatabaseBackend::Postgres {
            return None;
        }
        self.url.parse().ok()
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await
    }
}

/// `sqlite:` URLs create the file when missing, as `cargo run` on a bare machine expects.
fn normalize_url(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") && !url.contains(":memory:") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_string()
    }
}
