//! Statements outside transactions, the one place they run: `Db` is a sea-orm connection.
//! On PostgreSQL a connection that has just completed a statement cleanly waits in a small stash
//! for the next statement instead of going back to the pool, whose release pings it (a round
//! trip) before anyone can use it again.
//!
//! sea-orm checks a pool connection out for every statement, and sqlx pings every connection
//! it gets back: the ping flushes what a cancelled statement left half-read. A connection that
//! read its statement to the end (through `ReadyForQuery`) has nothing to flush, so the stash
//! takes only those; any other (an error, a statement dropped mid-flight, a stream stopped
//! early) goes back to the pool and is pinged there, as before.
//!
//! On SQLite statements go to sea-orm: its pool's ping is a message to the connection's
//! worker thread in the same process, not a round trip over the network.
//!
//! The stash never stands between the pool and those waiting for it (transactions, sessions,
//! anything on the pool directly): it holds at most half the pool, each connection for at most
//! `PARK_LIMIT`, and none while the pool has nothing idle and cannot grow.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures_util::{Stream, TryStreamExt};
use sea_orm::sea_query::Values;
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::postgres::{PgPool, Postgres};
use sea_orm::sqlx::{self, Connection as _};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement, StreamTrait,
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Notify;

use super::Db;

/// The longest a connection waits in the stash; then the pool gets it back. Long enough for
/// the statements of one request and the next request's under load, short enough that a
/// burst's connections are soon the pool's again.
const PARK_LIMIT: Duration = Duration::from_millis(50);
/// A connection goes back to the pool at least this often, so the pool's own hygiene (its
/// maximum lifetime, its idle timeout) still sees it.
const LEASE_LIMIT: Duration = Duration::from_secs(10);
/// A connection idle this long is pinged before use, as the pool does for its own
/// (`test_before_acquire_if_idle_for`): the server may have restarted meanwhile.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Connections checked out of sea-orm's pool between statements, the last parked on top.
pub(super) struct Stash {
    pool: PgPool,
    parked: Mutex<Vec<Parked>>,
    capacity: usize,
    /// Wakes the reaper when the stash stops being empty, and when it is dropped.
    reaper: Arc<Notify>,
}

struct Parked {
    lease: Lease,
    since: Instant,
}

/// A connection out of the pool, and since when.
struct Lease {
    conn: PoolConnection<Postgres>,
    out_since: Instant,
}

impl Stash {
    /// A stash over `pool`, with its reaper running until the stash is dropped.
    pub(super) fn new(pool: PgPool, max_connections: u32) -> Arc<Stash> {
        let reaper = Arc::new(Notify::new());
        let stash = Arc::new(Stash {
            pool,
            parked: Mutex::new(Vec::new()),
            capacity: (max_connections as usize / 2).max(1),
            reaper: reaper.clone(),
        });
        tokio::spawn(run_reaper(Arc::downgrade(&stash), reaper));
        stash
    }

    fn parked(&self) -> MutexGuard<'_, Vec<Parked>> {
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool has nothing idle and cannot open more: someone may be waiting for it.
    fn pool_starved(&self) -> bool {
        self.pool.num_idle() == 0 && self.pool.size() >= self.pool.options().get_max_connections()
    }

    /// The last parked connection, else one from the pool.
    async fn take(&self) -> Result<Lease, DbErr> {
        loop {
            let Some(Parked { mut lease, since }) = self.parked().pop() else {
                break;
            };
            if since.elapsed() < PING_AFTER_IDLE || lease.conn.ping().await.is_ok() {
                return Ok(lease);
            }
            // Lost: the pool's release ping fails too, and it closes the connection.
        }
        let conn = self.pool.acquire().await.map_err(acquire_err)?;
        Ok(Lease {
            conn,
            out_since: Instant::now(),
        })
    }

    /// Parks a connection whose statement completed cleanly, or gives it back to the pool.
    fn put(&self, lease: Lease) {
        if self.pool_starved()
            || self.pool.is_closed()
            || lease.out_since.elapsed() > LEASE_LIMIT
            || lease.conn.is_in_transaction()
        {
            return;
        }
        let mut parked = self.parked();
        if parked.len() >= self.capacity {
            drop(parked);
            return;
        }
        let was_empty = parked.is_empty();
        parked.push(Parked {
            lease,
            since: Instant::now(),
        });
        drop(parked);
        if was_empty {
            self.reaper.notify_one();
        }
    }

    /// Gives the oldest parked connection back to the pool when the pool has none to give:
    /// for a transaction about to wait for one.
    pub(super) fn make_room(&self) {
        if !self.pool_starved() {
            return;
        }
        let mut parked = self.parked();
        let oldest = (!parked.is_empty()).then(|| parked.remove(0));
        drop(parked);
        drop(oldest);
    }

    /// Gives back what waited past `PARK_LIMIT`; returns when the next parked one will have.
    fn reap(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut parked = self.parked();
        // Parked in time order: the oldest are at the bottom.
        let stale = parked
            .iter()
            .position(|p| now.duration_since(p.since) < PARK_LIMIT)
            .unwrap_or(parked.len());
        let expired: Vec<Parked> = parked.drain(..stale).collect();
        let next = parked.first().map(|p| p.since + PARK_LIMIT);
        drop(parked);
        drop(expired);
        next
    }
}

impl Drop for Stash {
    fn drop(&mut self) {
        self.reaper.notify_one();
        let parked = std::mem::take(self.parked.get_mut().unwrap_or_else(|e| e.into_inner()));
        if tokio::runtime::Handle::try_current().is_err() {
            // The pool returns a connection from a task; without a runtime, close it here.
            for p in parked {
                drop(p.lease.conn.detach());
            }
        }
    }
}

/// Hands back parked connections as they pass `PARK_LIMIT`; sleeps while none is parked.
async fn run_reaper(stash: Weak<Stash>, wake: Arc<Notify>) {
    loop {
        let next = match stash.upgrade() {
            Some(stash) => stash.reap(),
            None => return,
        };
        match next {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => wake.notified().await,
        }
    }
}

/// The statement as sqlx runs it: taken by value, its text and values move in uncopied.
fn sqlx_query(stmt: Statement) -> sqlx::query::Query<'static, Postgres, SqlxValues> {
    let values = stmt.values.unwrap_or(Values(Vec::new()));
    sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql), SqlxValues(values))
}

// The errors sea-orm's own PostgreSQL driver returns for the same failures, so that callers
// (and the codes clients see) cannot tell the paths apart.
fn acquire_err(err: sqlx::Error) -> DbErr {
    match err {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        err => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))),
    }
}

fn query_err(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
}

fn exec_err(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(err)))
}

impl Db {
    /// A connection for one statement, counted as the statement it is about to run.
    async fn lease(&self, stash: &Stash) -> Result<Lease, DbErr> {
        let lease = stash.take().await?;
        self.count_statement();
        Ok(lease)
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let Some(stash) = &self.stash else {
            return self.conn.execute_raw(stmt).await;
        };
        let mut lease = self.lease(stash).await?;
        let done = sqlx_query(stmt)
            .execute(&mut *lease.conn)
            .await
            .map_err(exec_err)?;
        stash.put(lease);
        Ok(done.into())
    }

    /// Unprepared SQL may change the session (`BEGIN`, `SET`): it runs on sea-orm's path, on a
    /// connection the pool checks on its return.
    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.conn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let Some(stash) = &self.stash else {
            return self.conn.query_one_raw(stmt).await;
        };
        let mut lease = self.lease(stash).await?;
        // Reads every row through `ReadyForQuery`, as sea-orm's `fetch_one` does.
        let row = sqlx_query(stmt)
            .fetch_optional(&mut *lease.conn)
            .await
            .map_err(query_err)?;
        stash.put(lease);
        Ok(row.map(QueryResult::from))
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let Some(stash) = &self.stash else {
            return self.conn.query_all_raw(stmt).await;
        };
        let mut lease = self.lease(stash).await?;
        let rows = sqlx_query(stmt)
            .fetch_all(&mut *lease.conn)
            .await
            .map_err(query_err)?;
        stash.put(lease);
        Ok(rows.into_iter().map(QueryResult::from).collect())
    }
}

/// Rows as they arrive; on PostgreSQL the connection is parked once the last one has been read,
/// and goes back to the pool if the stream is dropped before.
pub type RowStream<'a> = Pin<Box<dyn Stream<Item = Result<QueryResult, DbErr>> + Send + 'a>>;

impl StreamTrait for Db {
    type Stream<'a> = RowStream<'a>;

    fn get_database_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    fn stream_raw<'a>(
        &'a self,
        stmt: Statement,
    ) -> Pin<Box<dyn Future<Output = Result<RowStream<'a>, DbErr>> + Send + 'a>> {
        Box::pin(async move {
            let Some(stash) = &self.stash else {
                let rows = self.conn.stream_raw(stmt).await?;
                return Ok(Box::pin(rows) as RowStream<'a>);
            };
            let mut lease = self.lease(stash).await?;
            let rows = async_stream::try_stream! {
                let mut rows = sqlx_query(stmt).fetch(&mut *lease.conn);
                while let Some(row) = rows.try_next().await.map_err(query_err)? {
                    yield QueryResult::from(row);
                }
                drop(rows);
                stash.put(lease);
            };
            Ok(Box::pin(rows) as RowStream<'a>)
        })
    }
}
