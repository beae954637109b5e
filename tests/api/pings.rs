//! Statements outside transactions reuse a connection that has just completed a statement
//! without pinging it first, never hand on a connection a cancelled statement left behind, and
//! never keep connections from the pool's other users. PostgreSQL only: there the ping is a
//! round trip, which a proxy between the server and the database can see.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use incidentd::error::AppError;
use sea_orm::{ConnectionTrait, DbBackend, Statement, StreamTrait};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{TestApp, TestDb, spawn_app_with, test_config};

/// What the server sent PostgreSQL, counted by message (frontend protocol, after start-up).
#[derive(Default)]
struct Sent {
    /// `Sync`s that end a statement's `Bind`/`Execute`: one per statement run.
    statements: AtomicU64,
    /// `Sync`s with nothing before them since the last: pings.
    pings: AtomicU64,
}

/// A loopback TCP proxy in front of `upstream` that counts the server's `Sync` messages.
async fn proxy(upstream: SocketAddr) -> (SocketAddr, Arc<Sent>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(Sent::default());
    let counts = sent.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                    let _ = to_client.shutdown().await;
                });
                let mut frontend = Frontend::default();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match from_client.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    // Counted before PostgreSQL sees them, so before any answer comes back.
                    frontend.feed(&buf[..n], &counts);
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = to_server.shutdown().await;
            });
        }
    });
    (addr, sent)
}

/// The frontend protocol: a start-up message without a type byte, then messages of one type
/// byte and a four-byte length that counts itself.
#[derive(Default)]
struct Frontend {
    pending: Vec<u8>,
    started: bool,
    since_sync: u32,
    executed: bool,
}

impl Frontend {
    fn feed(&mut self, bytes: &[u8], sent: &Sent) {
        self.pending.extend_from_slice(bytes);
        loop {
            let (kind, header) = if self.started {
                match self.pending.first() {
                    Some(&kind) => (Some(kind), 1),
                    None => return,
                }
            } else {
                (None, 0)
            };
            let Some(length) = self.pending.get(header..header + 4) else {
                return;
            };
            let total = header + u32::from_be_bytes(length.try_into().unwrap()) as usize;
            if self.pending.len() < total {
                return;
            }
            self.pending.drain(..total);
            match kind {
                None => self.started = true,
                Some(b'S') => {
                    if self.executed {
                        sent.statements.fetch_add(1, Ordering::Relaxed);
                    } else if self.since_sync == 0 {
                        sent.pings.fetch_add(1, Ordering::Relaxed);
                    }
                    self.since_sync = 0;
                    self.executed = false;
                }
                Some(kind) => {
                    self.since_sync += 1;
                    self.executed |= kind == b'E';
                }
            }
        }
    }
}

/// A server whose pool reaches PostgreSQL through the counting proxy, or `None` on SQLite. The
/// change listener connects directly and the webhook worker is stopped: only requests' traffic
/// crosses the proxy.
async fn proxied_app(max_connections: u32) -> Option<(TestApp, Arc<Sent>)> {
    let (db, url) = TestDb::create().await;
    if !db.is_postgres() {
        eprintln!("skipping: the ping on release is a PostgreSQL round trip");
        return None;
    }
    let direct: url::Url = url.parse().unwrap();
    let upstream =
        tokio::net::lookup_host((direct.host_str().unwrap(), direct.port().unwrap_or(5432)))
            .await
            .unwrap()
            .next()
            .unwrap();
    let (addr, sent) = proxy(upstream).await;
    let mut proxied = direct.clone();
    proxied.set_host(Some("127.0.0.1")).unwrap();
    proxied.set_port(Some(addr.port())).unwrap();
    proxied.query_pairs_mut().append_pair("sslmode", "disable");
    let mut config = test_config(proxied.as_str());
    config.listen_database_url = Some(url.as_str().into());
    config.db_max_connections = max_connections;
    let app = spawn_app_with(db, config).await;
    app.state.webhooks.stop();
    Some((app, sent))
}

/// A server on PostgreSQL configured by `tune`, or `None` on SQLite.
async fn postgres_app(tune: impl FnOnce(&mut incidentd::config::Config)) -> Option<TestApp> {
    let (db, url) = TestDb::create().await;
    if !db.is_postgres() {
        eprintln!("skipping: statements outside transactions go to sea-orm on SQLite");
        return None;
    }
    let mut config = test_config(&url);
    tune(&mut config);
    Some(spawn_app_with(db, config).await)
}

fn sql(sql: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, sql)
}

const DETAIL: &str = "query($id: UUID!) { incident(id: $id) { id title status severity allowedTransitions events(first: 30) { nodes { id sequence eventType content createdAt } } postmortem { id impactSummary actionItems { title } } } }";
const BOARD: &str =
    "query { incidents(first: 50) { totalCount nodes { id title status severity startedAt } } }";

/// Detail and board pages, one after the other: every statement is one `Sync` (its own), and
/// connections are not pinged between statements. Before, each statement's connection was
/// pinged on its way back to the pool: as many pings as statements.
#[tokio::test]
async fn a_connection_that_just_ran_a_statement_runs_the_next_without_a_ping() {
    let Some((app, sent)) = proxied_app(10).await else {
        return;
    };
    let alice = app.responder();
    let id = app.new_incident(&alice, "disk full").await;
    for i in 0..30 {
        app.add_event(&alice, &id.to_string(), &format!("note {i}"))
            .await;
    }
    app.ok(
        &alice,
        "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { impactSummary: \"x\", actionItems: [{ title: \"fix\" }] }) { id } }",
        json!({ "id": id }),
    )
    .await;
    // Warm: each connection prepares a statement the first time it runs it.
    for _ in 0..10 {
        app.ok(&alice, DETAIL, json!({ "id": id })).await;
        app.ok(&alice, BOARD, json!({})).await;
    }
    let db = &app.state.graphql.domain.db;
    let (statements, syncs, pings) = (
        db.statement_count(),
        sent.statements.load(Ordering::Relaxed),
        sent.pings.load(Ordering::Relaxed),
    );
    const PAGES: u64 = 30;
    for _ in 0..PAGES {
        let page = app.ok(&alice, DETAIL, json!({ "id": id })).await;
        assert_eq!(
            page["incident"]["events"]["nodes"]
                .as_array()
                .unwrap()
                .len(),
            30
        );
        let board = app.ok(&alice, BOARD, json!({})).await;
        assert_eq!(board["incidents"]["totalCount"], 1);
    }
    let statements = db.statement_count() - statements;
    let syncs = sent.statements.load(Ordering::Relaxed) - syncs;
    let pings = sent.pings.load(Ordering::Relaxed) - pings;
    println!(
        "{PAGES} detail and board pages: {statements} statements, {syncs} syncs, {pings} pings"
    );
    assert!(statements >= PAGES * 2, "{statements} statements");
    assert_eq!(syncs, statements, "one Sync per statement counted");
    // A connection parked past its time goes back to the pool with a ping, which a busy
    // machine can cause now and then; a ping per statement is what this rules out.
    assert!(
        pings * 5 <= statements,
        "{pings} pings for {statements} statements"
    );
    crate::helpers::assert_no_panic(&app).await;
}

/// A statement dropped before its end (a timed-out request, a stream stopped early) leaves its
/// connection to the pool, which waits out the abandoned statement; the next statements get
/// their own answers on other connections, without waiting behind it.
#[tokio::test]
async fn a_statement_dropped_midway_leaves_no_connection_behind_it() {
    let Some(app) = postgres_app(|config| {
        config.db_max_connections = 4;
        config.db_statement_timeout = Duration::from_secs(3);
    })
    .await
    else {
        return;
    };
    let db = &app.state.graphql.domain.db;
    let n = |row: &sea_orm::QueryResult| row.try_get::<i32>("", "n").unwrap();
    for round in 0..3 {
        // Cut off while PostgreSQL still sleeps.
        let slow = db.query_all_raw(sql("SELECT pg_sleep(10), 1 AS n"));
        assert!(
            tokio::time::timeout(Duration::from_millis(100), slow)
                .await
                .is_err()
        );
        // Stopped after its first row of many.
        let mut rows = db
            .stream_raw(sql("SELECT g AS n FROM generate_series(1, 100000) AS g"))
            .await
            .unwrap();
        assert_eq!(n(&rows.try_next().await.unwrap().unwrap()), 1);
        drop(rows);
        let started = Instant::now();
        for i in 0..20 {
            let query = format!("SELECT {i} + {round} AS n");
            let rows = db.query_all_raw(sql(&query)).await.unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(n(&rows[0]), i + round);
            let row = db.query_one_raw(sql(&query)).await.unwrap().unwrap();
            assert_eq!(n(&row), i + round);
            let mut rows = db.stream_raw(sql(&query)).await.unwrap();
            assert_eq!(n(&rows.try_next().await.unwrap().unwrap()), i + round);
            assert!(rows.try_next().await.unwrap().is_none());
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the reads waited {:?} behind an abandoned statement",
            started.elapsed()
        );
    }
    // Errors map as on sea-orm's path: a statement past the statement timeout is BUSY.
    let err = db
        .query_all_raw(sql("SELECT pg_sleep(10)"))
        .await
        .expect_err("cancelled by the statement timeout");
    assert_eq!(AppError::from(err).code(), "BUSY");
}

/// With the pool at two connections, parked connections go back to it when transactions need
/// them, reads and writes interleaved all complete, and a read that cannot get a connection
/// fails as sea-orm's reads do (DATABASE_UNAVAILABLE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connections_never_keep_the_pool_from_its_other_users() {
    let Some(app) = postgres_app(|config| {
        config.db_max_connections = 2;
        config.db_acquire_timeout = Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let db = &app.state.graphql.domain.db;
    let one = || sql("SELECT 1 AS n");
    for round in 0..20 {
        // Both connections out for reads; at least one is parked afterwards.
        let (a, b) = tokio::join!(db.query_all_raw(one()), db.query_all_raw(one()));
        a.unwrap();
        b.unwrap();
        // Two transactions open at once need both.
        let first = db.begin_write().await.expect("a connection");
        let second = db.begin_write().await.expect("a second connection");
        if round == 0 {
            // None is left: a read fails as it would on sea-orm's path.
            let err = db.query_all_raw(one()).await.expect_err("no connection");
            assert_eq!(AppError::from(err).code(), "DATABASE_UNAVAILABLE");
        }
        first.commit().await.unwrap();
        second.commit().await.unwrap();
    }
    // Reads and writes interleaved, on a pool of two.
    let alice = app.responder();
    let id = app.new_incident(&alice, "interleaved").await.to_string();
    let started = Instant::now();
    let (writes, reads) = tokio::join!(
        futures_util::future::join_all((0..20).map(|i| {
            let (app, alice, id) = (&app, &alice, &id);
            async move { app.add_event(alice, id, &format!("e{i}")).await }
        })),
        futures_util::future::join_all((0..40).map(|_| app.ok(
            &alice,
            DETAIL,
            json!({ "id": id })
        ))),
    );
    assert_eq!(writes.len(), 20);
    assert_eq!(reads.len(), 40);
    println!(
        "20 writes and 40 reads on 2 connections: {:?}",
        started.elapsed()
    );
    let notes = app.events(&alice, &id).await;
    assert_eq!(notes.iter().filter(|(_, kind)| kind == "note").count(), 20);
}
