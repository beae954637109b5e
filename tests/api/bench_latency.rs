//! Benchmark, not a check (ignored by default): commit-to-receipt latency of timeline events
//! for 1,000 subscribers on one server. Run:
//!   cargo test --release --test api -- --ignored --nocapture bench_delivery_latency
//! (add TEST_DATABASE_URL=postgres://… for PostgreSQL, where delivery goes through NOTIFY).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{EVENTS_SUBSCRIPTION, Ws, spawn_app};
use crate::subscriptions::{receive_sequences, write_event};

const SUBSCRIBERS: usize = 1000;
const EVENTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly with --ignored"]
async fn bench_delivery_latency_for_1000_subscribers() {
    let app = spawn_app().await;
    let alice = app.responder();
    let incident: Uuid = app
        .create_incident(&alice, json!({ "title": "bench" }))
        .await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    write_event(&app, &alice, incident, "warm-up").await;

    // Connect everyone; each is live once it has received the warm-up event (replay).
    let received: Arc<Mutex<Vec<(i64, Instant)>>> =
        Arc::new(Mutex::new(Vec::with_capacity(SUBSCRIBERS * EVENTS)));
    let mut sockets = Vec::with_capacity(SUBSCRIBERS);
    for chunk in 0..(SUBSCRIBERS / 100) {
        let batch = join_all((0..100).map(|i| {
            let token = alice.token.clone();
            let addr = app.addr;
            async move {
                let mut ws = Ws::ready(addr, &token).await;
                let id = format!("s{}", chunk * 100 + i);
                ws.subscribe(&id, EVENTS_SUBSCRIPTION, json!({ "id": incident }))
                    .await;
                assert_eq!(receive_sequences(&mut ws, &id, 1).await, [1]);
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
                    let seq = receive_sequences(&mut ws, &id, 1).await[0];
                    received.lock().unwrap().push((seq, Instant::now()));
                }
            })
        })
        .collect();

    // One event at a time, so each latency is one commit's fan-out.
    let mut committed = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let seq = write_event(&app, &alice, incident, &format!("event {i}")).await;
        committed.push((seq as i64, Instant::now()));
        // Let this event's fan-out finish before the next commit.
        let deadline = Instant::now() + Duration::from_secs(30);
        while received
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| *s == seq as i64)
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
        if app.db.is_postgres() {
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
}
