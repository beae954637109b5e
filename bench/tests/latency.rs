//! Benchmark, not a check (ignored by default): commit-to-receipt latency of timeline events
//! for 1,000 subscribers on one server (in-process, port 0). Run:
//!   cargo test --release -p incidentd-bench --test latency -- --ignored --nocapture
//! (add TEST_DATABASE_URL=postgres://… for PostgreSQL, where delivery goes through NOTIFY).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use incidentd::incident::identity::Role;
use incidentd_bench::client::Gql;
use incidentd_test_support::ws::{EVENTS_SUBSCRIPTION, Ws};
use incidentd_test_support::{TestDb, TestServer, write_event, writer};
use serde_json::json;
use uuid::Uuid;

const SECRET: &str = "bench-latency-secret-long-enough-for-hs256!";
const SUBSCRIBERS: usize = 1000;
const EVENTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly with --ignored"]
async fn bench_delivery_latency_for_1000_subscribers() {
    let (db, url) = TestDb::create().await;
    let mut config = incidentd_test_support::config(&url, SECRET);
    config.db_max_connections = 10;
    config.db_lock_timeout = Duration::from_secs(20);
    // The subscribers read every message; server pings would come between them.
    config.ws_ping_interval = Duration::ZERO;
    // One caller opens every socket, a hundred at a time from one address; the per-caller and
    // per-peer limits are not what is measured here.
    config.ws_max_connections_per_caller = SUBSCRIBERS;
    config.ws_max_pending_per_peer = 100;
    let server = TestServer::start(config).await;
    let (org, user) = (Uuid::new_v4(), Uuid::new_v4());
    let token = server
        .state
        .graphql
        .auth
        .mint(org, user, Role::Responder, Duration::from_secs(3600))
        .unwrap();
    let writer = writer(org, user);
    let created = Gql::new(&server.http(), &token)
        .unwrap()
        .run(
            "mutation { createIncident(input: { title: \"bench\" }) { id } }",
            &json!({}),
        )
        .await
        .expect("the incident is declared");
    let incident: Uuid = created["createIncident"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    write_event(&server.state, &writer, incident, "warm-up").await;

    // Connect everyone; each is live once it has received the warm-up event (replay).
    let received: Arc<Mutex<Vec<(i64, Instant)>>> =
        Arc::new(Mutex::new(Vec::with_capacity(SUBSCRIBERS * EVENTS)));
    let mut sockets = Vec::with_capacity(SUBSCRIBERS);
    for chunk in 0..(SUBSCRIBERS / 100) {
        let batch = join_all((0..100).map(|i| {
            let token = token.clone();
            let addr = server.addr;
            async move {
                let mut ws = Ws::ready(addr, &token).await;
                let id = format!("s{}", chunk * 100 + i);
                ws.subscribe(&id, EVENTS_SUBSCRIPTION, json!({ "id": incident }))
                    .await;
                assert_eq!(ws.sequences(&id, 1).await, [1]);
                (ws, id)
            }
        }))
        .await;
        sockets.extend(batch);
    }
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|(mut ws, id)| {
            let received = received.clone();
            tokio::spawn(async move {
                for _ in 0..EVENTS {
                    let seq = ws.sequences(&id, 1).await[0];
                    received.lock().unwrap().push((seq, Instant::now()));
                }
            })
        })
        .collect();

    // One event at a time, so each latency is one commit's fan-out.
    let mut committed = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let seq = write_event(&server.state, &writer, incident, &format!("event {i}")).await;
        committed.push((seq, Instant::now()));
        // Let this event's fan-out finish before the next commit.
        let deadline = Instant::now() + Duration::from_secs(30);
        while received
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| *s == seq)
            .count()
            < SUBSCRIBERS
        {
            assert!(
                Instant::now() < deadline,
                "event {seq} not delivered to everyone"
            );
            tokio::task::yield_now().await;
        }
    }
    join_all(readers).await;

    let mut latencies: Vec<Duration> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(seq, at)| {
            let (_, commit) = committed.iter().find(|(s, _)| s == seq).unwrap();
            at.saturating_duration_since(*commit)
        })
        .collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "delivery latency, {SUBSCRIBERS} subscribers × {EVENTS} events on {}: p50 {:?}, p99 {:?}, max {:?} ({} deliveries)",
        if db.is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        pct(0.50),
        pct(0.99),
        latencies[latencies.len() - 1],
        latencies.len()
    );
    assert_eq!(latencies.len(), SUBSCRIBERS * EVENTS);
    server.stop().await;
}
