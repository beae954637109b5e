//! Arming the subscribers: every connection opened, then every subscription sent at once and
//! each one seen live (its replay for `incidentEvents`, a canary change for `incidentChanged`),
//! then one event per hot incident received by every `incidentEvents` subscription, so the
//! writers measure delivery, not start-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use super::connection::{self, ConnOptions, ConnResult, Shared, Sub};
use super::plan::Plan;
use super::{ADD_EVENT, FanoutOptions};
use crate::client::Gql;

/// The connections, running; what the writers and the reckoning need of them.
pub(super) struct Armed {
    pub shared: Shared,
    /// Tells every connection to close.
    pub stop: watch::Sender<bool>,
    /// Tells every connection when the writers started.
    pub started: watch::Sender<Option<Instant>>,
    pub tasks: Vec<tokio::task::JoinHandle<ConnResult>>,
    /// Connections opened, the stalled one included.
    pub total_connections: usize,
    /// Connections subscribed in time.
    pub connected: usize,
    pub connect_seconds: f64,
    pub live_seconds: f64,
    /// The writers' client (each adds its organization's token).
    pub gql: Gql,
}

pub(super) async fn subscribers(
    plan: &Plan,
    groups: Vec<Vec<Sub>>,
    opts: &FanoutOptions,
) -> anyhow::Result<Armed> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (started_tx, started_rx) = watch::channel(None::<Instant>);
    let (go_tx, go_rx) = watch::channel(false);
    let shared = Shared {
        opened: Arc::new(AtomicUsize::new(0)),
        ready: Arc::new(AtomicUsize::new(0)),
        go: go_rx,
        armed: Arc::new(AtomicUsize::new(0)),
        replayed: Arc::new(AtomicUsize::new(0)),
        reached: Arc::new(AtomicUsize::new(0)),
        delivered: Arc::new(AtomicU64::new(0)),
        gate: Arc::new(tokio::sync::Semaphore::new(opts.connect_parallelism.max(1))),
        started: started_rx,
    };
    let connect_started = Instant::now();
    let total_connections = groups.len();
    let mut tasks = Vec::with_capacity(total_connections);
    for (c, group) in groups.into_iter().enumerate() {
        let stalled = c >= plan.connections;
        let url = if stalled {
            opts.ws_urls[0].clone()
        } else {
            opts.ws_urls[c % opts.ws_urls.len()].clone()
        };
        let conn = ConnOptions {
            url,
            token: plan.tokens[group[0].org].clone(),
            max_reconnects: opts.max_reconnects,
            max_resubscribes: opts.max_resubscribes,
            stall: if stalled { opts.stall.clone() } else { None },
        };
        let (stop, shared) = (stop_rx.clone(), shared.clone());
        tasks.push(tokio::spawn(connection::connection(
            conn, group, stop, shared,
        )));
    }
    // Bounded wait for every connection to be open, then all subscribe at once: the server
    // starts every subscription together, as after its own restart.
    let deadline = Instant::now() + Duration::from_secs(60 + total_connections as u64 / 50);
    counted(&shared.opened, total_connections, deadline).await;
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let _ = go_tx.send(true);
    counted(
        &shared.ready,
        total_connections,
        Instant::now() + Duration::from_secs(60),
    )
    .await;
    let connected = shared.ready.load(Ordering::Relaxed);

    let gql = Gql::new(&opts.url, "")?;
    let events_total = plan.targets.len() - plan.changed_total;
    // `incidentChanged` has no replay: a change counts only once the subscription is
    // registered with the server's feed. Each organization's canary change proves it. An
    // `incidentEvents` subscription proves itself live by its replay.
    let live_limit = Duration::from_secs(60 + events_total as u64 / 100);
    let (armed_in_time, replayed_in_time) = tokio::join!(
        arm_changed(
            &gql,
            &plan.tokens,
            &plan.canaries,
            &shared.armed,
            plan.changed_total,
            Duration::from_secs(60),
        ),
        counted(&shared.replayed, events_total, Instant::now() + live_limit),
    );
    if !replayed_in_time {
        eprintln!(
            "fanout: {} of {events_total} incidentEvents subscriptions replayed in time",
            shared.replayed.load(Ordering::Relaxed)
        );
    }
    if !armed_in_time {
        eprintln!(
            "fanout: {} of {} incidentChanged subscriptions armed in time",
            shared.armed.load(Ordering::Relaxed),
            plan.changed_total
        );
    }
    let live_seconds = connect_started.elapsed().as_secs_f64();
    // One event on each hot incident, received by every `incidentEvents` subscription, proves
    // the live path behind each replay (a subscription that replayed but missed what followed
    // is counted as missed), and its commit-to-receipt is the first deliveries' latency.
    let reached_in_time = arm_timelines(
        &gql,
        &plan.tokens,
        &plan.hot,
        &shared.reached,
        events_total,
        live_limit,
    )
    .await;
    if !reached_in_time {
        eprintln!(
            "fanout: {} of {events_total} incidentEvents subscriptions received their first event in time",
            shared.reached.load(Ordering::Relaxed)
        );
    }
    Ok(Armed {
        shared,
        stop: stop_tx,
        started: started_tx,
        tasks,
        total_connections,
        connected,
        connect_seconds,
        live_seconds,
        gql,
    })
}

/// The longest wait for a round of canaries before the next is written.
const CANARY_ROUND: Duration = Duration::from_millis(100);

/// Writes each organization's canary event until every `incidentChanged` subscription has seen
/// one (bounded by `limit`). False when some did not in time.
async fn arm_changed(
    gql: &Gql,
    tokens: &[String],
    canaries: &[Option<Uuid>],
    armed: &AtomicUsize,
    wanted: usize,
    limit: Duration,
) -> bool {
    if wanted == 0 {
        return true;
    }
    if canaries.iter().any(Option::is_none) {
        // No spare incident to write to: give the feed a moment instead.
        tokio::time::sleep(Duration::from_millis(500 + wanted as u64 / 10)).await;
        return false;
    }
    // Rounds of one canary per organization, written together, until every subscription saw
    // one: a subscription registered after a round's commit waits for the next, so its time to
    // live is measured to within a round.
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        futures_util::future::join_all(canaries.iter().enumerate().filter_map(|(org, canary)| {
            let id = (*canary)?;
            let vars = json!({ "id": id, "input": { "eventType": "canary", "content": "fan-out canary" } });
            let client = gql.with_token(&tokens[org]);
            Some(async move { client.run(ADD_EVENT, &vars).await })
        }))
        .await;
        let round = Instant::now() + CANARY_ROUND;
        if counted(armed, wanted, round.min(deadline)).await {
            return true;
        }
    }
    armed.load(Ordering::Relaxed) >= wanted
}

/// Waits until `counter` reaches `wanted` or `until` passes; whether it reached it.
async fn counted(counter: &AtomicUsize, wanted: usize, until: Instant) -> bool {
    while counter.load(Ordering::Relaxed) < wanted && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    counter.load(Ordering::Relaxed) >= wanted
}

/// Writes one event to each hot incident, then waits (bounded by `limit`) until `wanted`
/// `incidentEvents` subscriptions received an event. False when some did not in time.
async fn arm_timelines(
    gql: &Gql,
    tokens: &[String],
    hot: &[Vec<(Uuid, i32)>],
    live: &AtomicUsize,
    wanted: usize,
    limit: Duration,
) -> bool {
    if wanted == 0 {
        return true;
    }
    for (org, incidents) in hot.iter().enumerate() {
        let client = gql.with_token(&tokens[org]);
        for (id, _) in incidents {
            let vars = json!({ "id": id, "input": { "eventType": "note", "content": "fan-out: every subscription live" } });
            for _ in 0..5 {
                if client.run(ADD_EVENT, &vars).await.is_ok() {
                    break;
                }
            }
        }
    }
    counted(live, wanted, Instant::now() + limit).await
}
