//! Connecting to PostgreSQL or SQLite, and the write path: one transaction per change, with
//! writers to one database file serialized on SQLite (PostgreSQL serializes them by row locks).
//! Statements outside transactions run on `Db` itself (see `statements`).

mod statements;

pub use statements::RowStream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// A database URL whose password `Debug` and `Display` never show.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password (if any) replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return url.clone();
        };
        let authority_end = url[scheme_end..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| scheme_end + i);
        let authority = &url[scheme_end..authority_end];
        match authority.rfind('@') {
            Some(at) => match authority[..at].find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end],
                    &authority[..colon],
                    &url[scheme_end + at..]
                ),
                None => url.clone(),
            },
            None => url.clone(),
        }
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        DatabaseUrl(url.to_string())
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl::from(url))
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub url: DatabaseUrl,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
    /// Longest a writer waits for its turn: the incident's row lock (PostgreSQL), the writer
    /// queue (SQLite).
    pub lock_timeout: Duration,
}

#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    /// SQLite allows one writer; queueing writers here avoids SQLITE_BUSY under load.
    write_lock: Option<Arc<Mutex<()>>>,
    lock_timeout: Duration,
    statements: Arc<AtomicU64>,
    url: String,
    /// PostgreSQL: connections kept between statements outside transactions.
    stash: Option<Arc<statements::Stash>>,
}

/// Every SQL statement the pool runs (Prometheus counter; `/metrics` serves it).
pub const STATEMENTS_METRIC: &str = "incidentd_db_statements_total";

/// The advisory lock key replicas migrate under ("incident" in ASCII).
const MIGRATION_LOCK: i64 = 0x696e_6369_6465_6e74;

/// Why a write could not begin.
#[derive(Debug)]
pub enum BeginError {
    /// The writer queue did not free up within the lock timeout.
    Busy,
    Db(DbErr),
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
        let url = normalize_url(opts.url.expose());
        let mut connect = ConnectOptions::new(url.clone());
        connect
            .max_connections(opts.max_connections)
            .min_connections(0)
            .acquire_timeout(opts.acquire_timeout)
            .connect_timeout(opts.acquire_timeout)
            .sqlx_logging(false)
            // A pooled connection the server lost (restart, failover, terminated backend) is
            // found by a ping before use and replaced, instead of failing the request; only
            // one that sat idle, though. sqlx already pings every connection as it comes back
            // to the pool, so a ping before each statement (a round trip per statement) buys
            // nothing under load; a connection lost in between fails its statement once with
            // DATABASE_UNAVAILABLE and is dropped by the ping on its return.
            .test_before_acquire_if_idle_for(Duration::from_secs(1))
            .connect_lazy(lazy);
        let statement_timeout_ms = opts.statement_timeout.as_millis();
        let lock_timeout_ms = opts.lock_timeout.as_millis().max(1);
        if url.starts_with("postgres") {
            connect.map_sqlx_postgres_opts(move |o| {
                o.application_name("incidentd").options([
                    ("statement_timeout", format!("{statement_timeout_ms}")),
                    // A writer waiting on a hot incident's row gives up (BUSY) instead of
                    // holding its pool connection for as long as the others take.
                    ("lock_timeout", format!("{lock_timeout_ms}")),
                ])
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
        conn.set_metric_callback(move |_| count_statement(&counter));
        let write_lock = match conn.get_database_backend() {
            DatabaseBackend::Sqlite => Some(Arc::new(Mutex::new(()))),
            _ => None,
        };
        let stash = match conn.get_database_backend() {
            DatabaseBackend::Postgres => Some(statements::Stash::new(
                conn.get_postgres_connection_pool().clone(),
                opts.max_connections,
            )),
            _ => None,
        };
        Ok(Db {
            conn,
            write_lock,
            lock_timeout: opts.lock_timeout,
            statements,
            url,
            stash,
        })
    }

    /// Counts one statement run on this pool outside sea-orm (whose callback counts its own).
    fn count_statement(&self) {
        count_statement(&self.statements);
    }

    /// sea-orm's pool itself: for transactions, migrations and unprepared SQL. Statements
    /// outside transactions run on `Db`, which is a connection too.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// The same pool and writer queue for work in the background (the webhook worker): its
    /// statements count in `/metrics` but not in `statement_count`, which tests read to count
    /// what one request costs.
    pub fn background(&self) -> Db {
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        let mut conn = self.conn.clone();
        conn.set_metric_callback(move |_| count_statement(&counter));
        Db {
            conn,
            write_lock: self.write_lock.clone(),
            lock_timeout: self.lock_timeout,
            statements,
            url: self.url.clone(),
            stash: self.stash.clone(),
        }
    }

    /// SQL statements run so far on this connection pool (all of them, reads and writes).
    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Begins a write. On SQLite it first waits for the writer queue, at most `lock_timeout`.
    pub async fn begin_write(&self) -> Result<WriteTxn, BeginError> {
        let guard = match &self.write_lock {
            Some(lock) => Some(
                tokio::time::timeout(self.lock_timeout, lock.clone().lock_owned())
                    .await
                    .map_err(|_| BeginError::Busy)?,
            ),
            None => None,
        };
        if let Some(stash) = &self.stash {
            stash.make_room();
        }
        let txn = self.conn.begin().await.map_err(BeginError::Db)?;
        Ok(WriteTxn { txn, _guard: guard })
    }

    /// How long a writer may wait for its turn.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// Connection settings for extra PostgreSQL connections (the change listener).
    pub fn pg_connect_options(&self) -> Option<sea_orm::sqlx::postgres::PgConnectOptions> {
        if self.backend() != DatabaseBackend::Postgres {
            return None;
        }
        self.url.parse().ok()
    }

    /// Applies pending migrations. On PostgreSQL under an advisory lock held on a connection of
    /// its own, so replicas starting together migrate once: the first applies, the others wait
    /// and then find nothing pending (sea-orm-migration takes no lock itself).
    pub async fn migrate(&self) -> Result<(), DbErr> {
        use sea_orm::sqlx::Connection as _;
        use sea_orm_migration::MigratorTrait;
        let Some(options) = self.pg_connect_options() else {
            return migration::Migrator::up(&self.conn, None).await;
        };
        let sqlx_err = |e: sea_orm::sqlx::Error| DbErr::Custom(format!("migration lock: {e}"));
        let mut lock = sea_orm::sqlx::PgConnection::connect_with(
            &options.application_name("incidentd-migrate"),
        )
        .await
        .map_err(sqlx_err)?;
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut lock)
            .await
            .map_err(sqlx_err)?;
        let migrated = migration::Migrator::up(&self.conn, None).await;
        // Closing the connection releases the lock too; unlocking first says so plainly.
        let _ = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut lock)
            .await;
        let _ = lock.close().await;
        migrated
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await
    }
}

fn count_statement(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(STATEMENTS_METRIC).increment(1);
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

#[cfg(test)]
mod tests {
    use super::DatabaseUrl;

    #[test]
    fn the_password_never_shows() {
        let url =
            DatabaseUrl::from("postgres://app:s3cr%40t@db.internal:5432/incidents?sslmode=require");
        assert_eq!(
            format!("{url:?} {url}"),
            "postgres://app:***@db.internal:5432/incidents?sslmode=require postgres://app:***@db.internal:5432/incidents?sslmode=require"
        );
        assert_eq!(
            DatabaseUrl::from("postgres://postgres@127.0.0.1/x").redacted(),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(
            DatabaseUrl::from("sqlite://incidentd.db").redacted(),
            "sqlite://incidentd.db"
        );
    }
}
