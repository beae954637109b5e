//! Arming the subscribers: every connection opened and subscribed, then each subscription proven
//! able to receive (a canary change for `incidentChanged`, one event per hot incident for
//! `incidentEvents`), so the writers measure delivery, not start-up.

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
    let shared = Shared {
        ready: Arc::new(AtomicUsize::new(0)),
        armed: Arc::new(AtomicUsize::new(0)),
        live: Arc::new(AtomicUsize::new(0)),
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
    // Bounded wait for every connection to be subscribed.
    let deadline = Instant::now() + Duration::from_secs(60 + total_connections as u64 / 50);
    while shared.ready.load(Ordering::Relaxed) < total_connections && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected = shared.ready.load(Ordering::Relaxed);
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let total_subscriptions = opts.subscribers + plan.stalled_subs;
    let metrics_urls: Vec<String> = opts.ws_urls.iter().map(|u| http_base(u)).collect();
    wait_for_server_subscriptions(&metrics_urls, total_subscriptions, Duration::from_secs(60))
        .await;

    let gql = Gql::new(&opts.url, "")?;
    // `incidentChanged` has no replay: a change counts only once the subscription is
    // registered with the server's feed. Each organization's canary change proves it.
    let armed_in_time = arm_changed(
        &gql,
        &plan.tokens,
        &plan.canaries,
        &shared.armed,
        plan.changed_total,
        Duration::from_secs(60),
    )
    .await;
    if !armed_in_time {
        eprintln!(
            "fanout: {} of {} incidentChanged subscriptions armed in time",
            shared.armed.load(Ordering::Relaxed),
            plan.changed_total
        );
    }
    // An `incidentEvents` subscription is live once its catch-up read is done; until then an
    // event reaches it only after that read. One event on each hot incident, received by every
    // subscription, proves them all live, so the writers measure delivery, not start-up.
    let events_total = plan.targets.len() - plan.changed_total;
    let live_in_time = arm_timelines(
        &gql,
        &plan.tokens,
        &plan.hot,
        &shared.live,
        events_total,
        Duration::from_secs(60 + events_total as u64 / 100),
    )
    .await;
    if !live_in_time {
        eprintln!(
            "fanout: {} of {events_total} incidentEvents subscriptions live in time",
            shared.live.load(Ordering::Relaxed)
        );
    }
    let live_seconds = connect_started.elapsed().as_secs_f64();
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
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        for (org, canary) in canaries.iter().enumerate() {
            let Some(id) = canary else { continue };
            let vars = json!({ "id": id, "input": { "eventType": "canary", "content": "fan-out canary" } });
            let _ = gql.with_token(&tokens[org]).run(ADD_EVENT, &vars).await;
        }
        let round = Instant::now() + Duration::from_secs(3);
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

/// Waits (bounded) until the servers report at least `n` subscriptions together, when they
/// export them.
async fn wait_for_server_subscriptions(urls: &[String], n: usize, limit: Duration) {
    let mut urls = urls.to_vec();
    urls.sort();
    urls.dedup();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let mut total = 0.0;
        for url in &urls {
            let Ok(text) = crate::client::metrics_text(url).await else {
                return;
            };
            match crate::client::metric(&text, "incidentd_ws_subscriptions") {
                Some(v) => total += v,
                None => return,
            }
        }
        if total as usize >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `ws://host:port/graphql` → `http://host:port`.
fn http_base(ws_url: &str) -> String {
    let url = ws_url
        .replacen("ws://", "http://", 1)
        .replacen("wss://", "https://", 1);
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => url[..after_scheme + slash].to_string(),
        None => url,
    }
}
