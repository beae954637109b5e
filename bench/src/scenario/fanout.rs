//! `fanout`: N WebSocket subscribers (graphql-transport-ws), `incidentEvents` and
//! `incidentChanged` mixed, spread over the organizations' hot incidents, while writers add
//! events at a fixed rate. Measures commit-to-receipt latency (receipt − the event's own
//! `createdAt`) and counts missed and duplicated deliveries against what the database holds.
//!
//! Correctness is judged against the database, not against the writers' answers: the hot
//! incidents' last sequences are read before the writers start and after they stop, so an
//! `incidentEvents` subscriber must receive exactly the sequences in between, once each, and an
//! `incidentChanged` subscriber exactly that many `EVENT_ADDED` changes per incident of its
//! organization. Latency of a change (which carries no sequence) pairs the k-th change received
//! for an incident with the k-th event written to it: per incident, changes arrive in commit order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

use crate::client::{Credentials, Gql};
use crate::db::Pool;
use crate::stats::{RssSampler, cpu_seconds, histogram};
use crate::world::World;

pub const EVENTS_SUBSCRIPTION: &str = "subscription Timeline($id: UUID!, $after: Int) { \
     incidentEvents(incidentId: $id, afterSequence: $after) { id sequence eventType content createdAt } }";
pub const CHANGES_SUBSCRIPTION: &str =
    "subscription Dashboard { incidentChanged { kind incident { id status severity updatedAt } } }";
const ADD_EVENT: &str = "mutation AddEvent($id: UUID!, $input: AddIncidentEventInput!) { \
     addIncidentEvent(incidentId: $id, input: $input) { sequence createdAt } }";

#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// WebSocket URLs (`ws://host:port/graphql`); subscribers are spread over them in turn.
    pub ws_urls: Vec<String>,
    /// HTTP base URL the writers post to.
    pub url: String,
    pub subscribers: usize,
    /// Share of subscribers on `incidentChanged` (the rest follow one incident's timeline).
    pub changed_share: f64,
    /// Subscriptions carried by one WebSocket (1: a connection per subscriber; at most the
    /// server's 100).
    pub per_connection: usize,
    /// Incidents per organization that receive events and `incidentEvents` subscribers.
    pub hot_per_org: usize,
    /// Events per second over all writers.
    pub rate: f64,
    pub writers: usize,
    pub duration: Duration,
    /// Longest wait, after the writers stop, for deliveries still on their way.
    pub drain: Duration,
    /// Connections being opened at once while ramping up.
    pub connect_parallelism: usize,
    /// Reconnects allowed per connection (resuming `incidentEvents` from its cursor).
    pub max_reconnects: u32,
    pub server_pid: Option<u32>,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub subscribers: usize,
    pub events_subscribers: usize,
    pub changed_subscribers: usize,
    pub connections: usize,
    pub connect_seconds: f64,
    pub writes_ok: u64,
    pub write_errors: u64,
    pub write_error_kinds: BTreeMap<String, u64>,
    pub write_rate: f64,
    pub events_written: u64,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub missed: u64,
    pub duplicated: u64,
    pub subscription_errors: u64,
    pub subscription_error_kinds: BTreeMap<String, u64>,
    pub reconnects: u64,
    pub latency_p50_ms: f64,
    pub latency_p90_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub server_cpu_seconds: Option<f64>,
    pub server_peak_rss_bytes: Option<u64>,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
enum Target {
    Events { incident: Uuid, cursor: i32 },
    Changed,
}

#[derive(Debug, Clone)]
struct Sub {
    org: usize,
    target: Target,
}

/// What one subscription saw.
#[derive(Debug, Default)]
struct Seen {
    /// `incidentEvents`: every sequence received, with its latency in µs.
    sequences: Vec<(i32, Option<u64>)>,
    /// `incidentChanged`: receipt times of `EVENT_ADDED` changes, per incident.
    changes: HashMap<Uuid, Vec<DateTime<Utc>>>,
    errors: BTreeMap<String, u64>,
}

struct ConnResult {
    subs: Vec<(Sub, Seen)>,
    reconnects: u64,
}

pub async fn run(
    pool: &Pool,
    world: &World,
    credentials: &Credentials,
    opts: &FanoutOptions,
) -> anyhow::Result<FanoutReport> {
    raise_fd_limit(opts.subscribers / opts.per_connection.max(1) + 1024);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    // Hot incidents: the newest `hot_per_org` of each organization that are not closed.
    let hot: Vec<Vec<(Uuid, i32)>> = world
        .orgs
        .iter()
        .map(|o| {
            o.incidents
                .iter()
                .filter(|i| i.status != "CLOSED")
                .take(opts.hot_per_org.max(1))
                .map(|i| (i.id, i.last_sequence))
                .collect()
        })
        .collect();
    anyhow::ensure!(
        hot.iter().all(|h| !h.is_empty()),
        "every organization needs an incident that is not closed"
    );
    let start_seq: HashMap<Uuid, i32> = hot.iter().flatten().copied().collect();

    // Subscriber i: organization i mod n; a changed subscriber every 1/share, the rest on a
    // hot incident of their organization in turn.
    let n_changed = (opts.subscribers as f64 * opts.changed_share).round() as usize;
    let mut subs = Vec::with_capacity(opts.subscribers);
    for i in 0..opts.subscribers {
        let org = i % world.orgs.len();
        let changed = n_changed > 0
            && (i * n_changed) / opts.subscribers != ((i + 1) * n_changed) / opts.subscribers;
        let target = if changed {
            Target::Changed
        } else {
            let (incident, cursor) = hot[org][rng.random_range(0..hot[org].len())];
            Target::Events { incident, cursor }
        };
        subs.push(Sub { org, target });
    }
    let tokens: Vec<String> = world
        .orgs
        .iter()
        .map(|o| credentials.token(o.id, o.user))
        .collect::<anyhow::Result<_>>()?;

    let targets: Vec<(usize, Target)> = subs.iter().map(|s| (s.org, s.target.clone())).collect();
    let delivered = Arc::new(AtomicU64::new(0));
    // Connect everyone, a bounded number at a time.
    let per = opts.per_connection.clamp(1, 100);
    let groups: Vec<Vec<Sub>> = group_by_org(subs, per);
    let connections = groups.len();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ready = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(opts.connect_parallelism.max(1)));
    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for (c, group) in groups.into_iter().enumerate() {
        let url = opts.ws_urls[c % opts.ws_urls.len()].clone();
        let token = tokens[group[0].org].clone();
        let counters = Counters {
            ready: ready.clone(),
            delivered: delivered.clone(),
            gate: gate.clone(),
        };
        let (stop, max_reconnects) = (stop_rx.clone(), opts.max_reconnects);
        tasks.push(tokio::spawn(async move {
            connection(url, token, group, stop, counters, max_reconnects).await
        }));
    }
    // Bounded wait for every connection to be subscribed.
    let deadline = Instant::now() + Duration::from_secs(60 + connections as u64 / 50);
    while ready.load(Ordering::Relaxed) < connections {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected = ready.load(Ordering::Relaxed);
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    // The server counts a subscription before its stream first runs; give the last ones time
    // to register with the change feed before anything is written.
    wait_for_server_subscriptions(&opts.url, opts.subscribers, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500 + opts.subscribers as u64 / 10)).await;

    // Writers: each owns a share of the hot incidents and writes them in turn at its rate.
    let cpu_before = opts.server_pid.and_then(cpu_seconds);
    let rss = RssSampler::start(opts.server_pid);
    let run_started = Instant::now();
    let hot_flat: Vec<(usize, Uuid)> = hot
        .iter()
        .enumerate()
        .flat_map(|(o, list)| list.iter().map(move |(id, _)| (o, *id)))
        .collect();
    let writers = opts.writers.clamp(1, hot_flat.len());
    let mut writer_tasks = Vec::with_capacity(writers);
    let base_gql = Gql::new(&opts.url, "")?;
    for w in 0..writers {
        let mine: Vec<(usize, Uuid)> = hot_flat.iter().copied().skip(w).step_by(writers).collect();
        let clients: HashMap<usize, Gql> = mine
            .iter()
            .map(|(o, _)| (*o, base_gql.with_token(&tokens[*o])))
            .collect();
        let interval = Duration::from_secs_f64(writers as f64 / opts.rate.max(0.001));
        let end = run_started + opts.duration;
        writer_tasks.push(tokio::spawn(async move {
            write_loop(mine, clients, interval, end).await
        }));
    }
    let mut written: HashMap<Uuid, BTreeMap<i32, DateTime<Utc>>> = HashMap::new();
    let mut write_tally = crate::stats::Tally::default();
    for task in writer_tasks {
        let (records, tally) = task.await.context("a writer panicked")?;
        write_tally.merge(&tally);
        for (incident, seq, at) in records {
            written.entry(incident).or_default().insert(seq, at);
        }
    }
    let write_seconds = run_started.elapsed().as_secs_f64();
    let cpu_write_phase = opts.server_pid.and_then(cpu_seconds);

    // What the database holds now: the truth every subscriber is held to.
    let hot_ids: Vec<Uuid> = start_seq.keys().copied().collect();
    let end_seq: HashMap<Uuid, i32> = crate::world::last_sequences(pool, &hot_ids).await?;
    let expected_events = |incident: &Uuid, cursor: i32| -> i64 {
        i64::from(end_seq.get(incident).copied().unwrap_or(cursor) - cursor).max(0)
    };
    let org_written: Vec<i64> = hot
        .iter()
        .map(|list| {
            list.iter()
                .map(|(id, s)| expected_events(id, *s))
                .sum::<i64>()
        })
        .collect();
    let expected_total: u64 = targets
        .iter()
        .map(|(org, t)| match t {
            Target::Events { incident, cursor } => expected_events(incident, *cursor) as u64,
            Target::Changed => org_written[*org] as u64,
        })
        .sum();
    // Drain: a bounded wait until every expected delivery arrived, or none arrives for 2 s.
    let drain_deadline = Instant::now() + opts.drain;
    let mut last = (delivered.load(Ordering::Relaxed), Instant::now());
    while Instant::now() < drain_deadline {
        let now = delivered.load(Ordering::Relaxed);
        if now >= expected_total {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_after = opts.server_pid.and_then(cpu_seconds).or(cpu_write_phase);
    let peak_rss = rss.finish().await;
    let _ = stop_tx.send(true);

    let mut latency = histogram();
    let mut report = FanoutReport {
        subscribers: opts.subscribers,
        events_subscribers: opts.subscribers - n_changed,
        changed_subscribers: n_changed,
        connections,
        connect_seconds,
        writes_ok: write_tally.ok,
        write_errors: write_tally.errors,
        write_error_kinds: write_tally.error_kinds.clone(),
        write_rate: write_tally.ok as f64 / write_seconds.max(1e-9),
        events_written: org_written.iter().sum::<i64>() as u64,
        expected_deliveries: 0,
        deliveries: 0,
        missed: 0,
        duplicated: 0,
        subscription_errors: 0,
        subscription_error_kinds: BTreeMap::new(),
        reconnects: 0,
        latency_p50_ms: 0.0,
        latency_p90_ms: 0.0,
        latency_p99_ms: 0.0,
        latency_max_ms: 0.0,
        server_cpu_seconds: cpu_before.zip(cpu_after).map(|(a, b)| b - a),
        server_peak_rss_bytes: peak_rss,
        seconds: write_seconds,
    };
    if connected < connections {
        *report
            .subscription_error_kinds
            .entry("connection not ready in time".into())
            .or_default() += (connections - connected) as u64;
        report.subscription_errors += (connections - connected) as u64;
    }
    for task in tasks {
        let result = match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(r)) => r,
            _ => {
                report.subscription_errors += 1;
                *report
                    .subscription_error_kinds
                    .entry("connection task did not finish".into())
                    .or_default() += 1;
                continue;
            }
        };
        report.reconnects += result.reconnects;
        for (sub, seen) in result.subs {
            for (kind, n) in seen.errors {
                report.subscription_errors += n;
                *report.subscription_error_kinds.entry(kind).or_default() += n;
            }
            match sub.target {
                Target::Events { incident, cursor } => {
                    let expected = expected_events(&incident, cursor) as u64;
                    let mut got: Vec<i32> = seen.sequences.iter().map(|(s, _)| *s).collect();
                    got.sort_unstable();
                    let total = got.len() as u64;
                    got.dedup();
                    let in_range = got
                        .iter()
                        .filter(|s| **s > cursor && **s <= cursor + expected as i32)
                        .count() as u64;
                    report.deliveries += total;
                    report.duplicated += total - got.len() as u64;
                    // Outside the range: replays of what was there before, or events never written.
                    report.duplicated += got.len() as u64 - in_range;
                    report.missed += expected - in_range;
                    for (_, us) in seen.sequences {
                        if let Some(us) = us {
                            latency.saturating_record(us.max(1));
                        }
                    }
                }
                Target::Changed => {
                    for (incident, cursor) in &hot[sub.org] {
                        let expected = expected_events(incident, *cursor) as u64;
                        let receipts = seen.changes.get(incident).map(Vec::as_slice).unwrap_or(&[]);
                        let got = receipts.len() as u64;
                        report.deliveries += got;
                        report.missed += expected.saturating_sub(got);
                        report.duplicated += got.saturating_sub(expected);
                        if let Some(times) = written.get(incident) {
                            for (k, at) in receipts.iter().enumerate() {
                                if let Some(committed) = times.get(&(cursor + 1 + k as i32))
                                    && let Ok(d) = (*at - *committed).to_std()
                                {
                                    latency.saturating_record((d.as_micros() as u64).max(1));
                                }
                            }
                        }
                    }
                    // Changes to incidents nobody wrote: not expected at all.
                    for (incident, receipts) in &seen.changes {
                        if !hot[sub.org].iter().any(|(id, _)| id == incident) {
                            report.deliveries += receipts.len() as u64;
                            report.duplicated += receipts.len() as u64;
                        }
                    }
                }
            }
        }
    }
    report.expected_deliveries = expected_total;
    if !latency.is_empty() {
        report.latency_p50_ms = latency.value_at_quantile(0.50) as f64 / 1000.0;
        report.latency_p90_ms = latency.value_at_quantile(0.90) as f64 / 1000.0;
        report.latency_p99_ms = latency.value_at_quantile(0.99) as f64 / 1000.0;
        report.latency_max_ms = latency.max() as f64 / 1000.0;
    }
    Ok(report)
}

/// Groups subscribers onto connections: a connection carries one organization's subscribers
/// (its token is that organization's), at most `per` of them.
fn group_by_org(subs: Vec<Sub>, per: usize) -> Vec<Vec<Sub>> {
    let mut by_org: BTreeMap<usize, Vec<Sub>> = BTreeMap::new();
    for s in subs {
        by_org.entry(s.org).or_default().push(s);
    }
    let mut out = Vec::new();
    for (_, list) in by_org {
        let mut list = list.into_iter().peekable();
        while list.peek().is_some() {
            out.push(list.by_ref().take(per).collect());
        }
    }
    out
}

async fn write_loop(
    mine: Vec<(usize, Uuid)>,
    clients: HashMap<usize, Gql>,
    interval: Duration,
    end: Instant,
) -> (Vec<(Uuid, i32, DateTime<Utc>)>, crate::stats::Tally) {
    let mut records = Vec::new();
    let mut tally = crate::stats::Tally::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut k = 0usize;
    // Bounded by time: the loop ends at `end`.
    while Instant::now() < end {
        ticker.tick().await;
        if Instant::now() >= end {
            break;
        }
        let (org, incident) = mine[k % mine.len()];
        k += 1;
        let vars = json!({ "id": incident, "input": { "content": format!("fan-out event {k}") } });
        let began = Instant::now();
        let result = clients[&org].run(ADD_EVENT, &vars).await;
        let result = result.and_then(|data| {
            let e = &data["addIncidentEvent"];
            let seq = e["sequence"].as_i64().ok_or("no sequence")? as i32;
            let at = e["createdAt"]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .ok_or("no createdAt")?
                .with_timezone(&Utc);
            records.push((incident, seq, at));
            Ok(0)
        });
        tally.record(began.elapsed(), result);
    }
    (records, tally)
}

/// Waits (bounded) until the server reports at least `n` subscriptions, when it exports them.
async fn wait_for_server_subscriptions(url: &str, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let Ok(text) = crate::client::metrics_text(url).await else {
            return;
        };
        match crate::client::metric(&text, "incidentd_ws_subscriptions") {
            Some(v) if v as usize >= n => return,
            None => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn raise_fd_limit(wanted: usize) {
    let wanted = (wanted as u64).max(1024);
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < wanted
    {
        let _ = rlimit::Resource::NOFILE.set(wanted.min(hard), hard);
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One WebSocket carrying `subs`: connect, init, subscribe, read until told to stop.
/// A socket lost before the end is reopened (at most `max_reconnects` times) and every
/// `incidentEvents` subscription resumes after the last sequence it received.
/// Shared with every connection task.
struct Counters {
    /// Connections subscribed (counted once, at the first success).
    ready: Arc<AtomicUsize>,
    /// Deliveries received so far, over all connections.
    delivered: Arc<AtomicU64>,
    /// Bounds the connections being opened at once.
    gate: Arc<tokio::sync::Semaphore>,
}

async fn connection(
    url: String,
    token: String,
    subs: Vec<Sub>,
    mut stop: watch::Receiver<bool>,
    counters: Counters,
    max_reconnects: u32,
) -> ConnResult {
    let mut seen: Vec<Seen> = subs.iter().map(|_| Seen::default()).collect();
    let mut cursors: Vec<Option<i32>> = subs
        .iter()
        .map(|s| match s.target {
            Target::Events { cursor, .. } => Some(cursor),
            Target::Changed => None,
        })
        .collect();
    let mut reconnects = 0u64;
    let mut counted_ready = false;
    let mut attempt = 0u32;
    loop {
        let opened = {
            let _permit = counters.gate.acquire().await;
            open(&url, &token, &subs, &cursors).await
        };
        let mut ws = match opened {
            Ok(ws) => ws,
            Err(e) => {
                *seen[0].errors.entry(format!("connect: {e}")).or_default() += 1;
                attempt += 1;
                if attempt > max_reconnects || *stop.borrow() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                continue;
            }
        };
        if !counted_ready {
            counted_ready = true;
            counters.ready.fetch_add(1, Ordering::Relaxed);
        }
        let lost = read_until_stopped(
            &mut ws,
            &subs,
            &mut seen,
            &mut cursors,
            &mut stop,
            &counters.delivered,
        )
        .await;
        if !lost {
            let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(None)).await;
            break;
        }
        attempt += 1;
        reconnects += 1;
        if attempt > max_reconnects || *stop.borrow() {
            break;
        }
    }
    ConnResult {
        subs: subs.into_iter().zip(seen).collect(),
        reconnects,
    }
}

async fn open(url: &str, token: &str, subs: &[Sub], cursors: &[Option<i32>]) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws"
            .parse()
            .expect("a valid header value"),
    );
    // Small buffers: ten thousand of these share the machine with the server.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async_with_config(request, Some(config), true),
    )
    .await
    .context("connect timed out")??;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    ws.send(Message::text(init.to_string())).await?;
    let ack = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(msg) = ws.next().await {
            if let Message::Text(t) = msg? {
                let v: Value = serde_json::from_str(&t)?;
                match v["type"].as_str() {
                    Some("connection_ack") => return Ok(()),
                    Some("ping") => {}
                    other => anyhow::bail!("expected connection_ack, got {other:?}"),
                }
            }
        }
        anyhow::bail!("closed before connection_ack")
    })
    .await
    .context("no connection_ack in time")?;
    ack?;
    for (i, (sub, cursor)) in subs.iter().zip(cursors).enumerate() {
        let payload = match sub.target {
            Target::Events { incident, .. } => json!({
                "query": EVENTS_SUBSCRIPTION,
                "variables": { "id": incident, "after": cursor },
            }),
            Target::Changed => json!({ "query": CHANGES_SUBSCRIPTION }),
        };
        let msg = json!({ "id": i.to_string(), "type": "subscribe", "payload": payload });
        ws.send(Message::text(msg.to_string())).await?;
    }
    Ok(ws)
}

/// Reads deliveries until `stop`; true when the socket was lost first.
async fn read_until_stopped(
    ws: &mut Ws,
    subs: &[Sub],
    seen: &mut [Seen],
    cursors: &mut [Option<i32>],
    stop: &mut watch::Receiver<bool>,
    delivered: &AtomicU64,
) -> bool {
    loop {
        if *stop.borrow() {
            return false;
        }
        let msg = tokio::select! {
            _ = stop.changed() => return false,
            msg = ws.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(p))) => {
                let _ = ws.send(Message::Pong(p)).await;
                continue;
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code)).unwrap_or(0);
                *seen[0]
                    .errors
                    .entry(format!("closed by server ({code})"))
                    .or_default() += 1;
                return true;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                *seen[0].errors.entry(format!("socket: {e}")).or_default() += 1;
                return true;
            }
            None => {
                *seen[0].errors.entry("socket ended".into()).or_default() += 1;
                return true;
            }
        };
        let received = Utc::now();
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            *seen[0]
                .errors
                .entry("unparsable message".into())
                .or_default() += 1;
            continue;
        };
        let kind = v["type"].as_str().unwrap_or("");
        if kind == "ping" {
            let _ = ws.send(Message::text(r#"{"type":"pong"}"#)).await;
            continue;
        }
        if kind == "pong" {
            continue;
        }
        let Some(i) = v["id"].as_str().and_then(|s| s.parse::<usize>().ok()) else {
            continue;
        };
        if i >= subs.len() {
            continue;
        }
        match kind {
            "next" => {
                if let Some(errors) = v["payload"]["errors"].as_array()
                    && !errors.is_empty()
                {
                    let code = errors[0]["extensions"]["code"]
                        .as_str()
                        .unwrap_or("no code");
                    *seen[i].errors.entry(format!("GraphQL {code}")).or_default() += 1;
                    continue;
                }
                let data = &v["payload"]["data"];
                match subs[i].target {
                    Target::Events { .. } => {
                        let e = &data["incidentEvents"];
                        let Some(seq) = e["sequence"].as_i64() else {
                            *seen[i]
                                .errors
                                .entry("event without sequence".into())
                                .or_default() += 1;
                            continue;
                        };
                        let latency = e["createdAt"]
                            .as_str()
                            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                            .and_then(|at| (received - at.with_timezone(&Utc)).to_std().ok())
                            .map(|d| d.as_micros() as u64);
                        seen[i].sequences.push((seq as i32, latency));
                        delivered.fetch_add(1, Ordering::Relaxed);
                        cursors[i] = Some(cursors[i].unwrap_or(0).max(seq as i32));
                    }
                    Target::Changed => {
                        let c = &data["incidentChanged"];
                        if c["kind"] == "EVENT_ADDED"
                            && let Some(id) =
                                c["incident"]["id"].as_str().and_then(|s| s.parse().ok())
                        {
                            seen[i].changes.entry(id).or_default().push(received);
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            "error" => {
                let code = v["payload"][0]["extensions"]["code"]
                    .as_str()
                    .unwrap_or("no code");
                *seen[i]
                    .errors
                    .entry(format!("subscription error {code}"))
                    .or_default() += 1;
            }
            "complete" => {
                *seen[i]
                    .errors
                    .entry("completed by server".into())
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}
