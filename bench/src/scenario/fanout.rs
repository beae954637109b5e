//! `fanout`: N WebSocket subscribers (graphql-transport-ws), `incidentEvents` and
//! `incidentChanged` mixed, spread over the organizations' hot incidents, while writers add
//! events at a fixed rate; optionally a stalled client and faults (the server's LISTEN
//! connection terminated, PostgreSQL restarted) during the run. Measures commit-to-receipt
//! latency (receipt − the event's own `createdAt`) and counts missed and duplicated deliveries
//! against what the database holds.
//!
//! Correctness is judged against the database, not against the writers' answers: the hot
//! incidents' last sequences are read before the subscribers connect and after the writers stop,
//! so an `incidentEvents` subscriber must receive exactly the sequences in between, once each.
//! Subscribers behave as careful clients: a lost socket is reopened and a subscription the server
//! ends is started again, `incidentEvents` from the last sequence received, so "missed" means
//! lost. An `incidentChanged` subscriber must receive exactly one `EVENT_ADDED` change per event
//! written to its organization's hot incidents, as long as its stream never ended; one whose
//! stream ended once the writers ran (`SUBSCRIBER_LAGGED` after a resync, a lost socket) starts
//! again as the schema tells clients to, and is counted as *resynced*: the feed cannot replay,
//! so it is held only to "never more changes than events" (duplicates), not to missed ones.
//! Latency of a change (which carries no sequence) pairs the k-th change received for an
//! incident with the k-th event written to it: per incident, changes arrive in commit order.

mod connection;
pub mod faults;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use crate::client::{Credentials, Gql};
use crate::db::Pool;
use crate::stats::{cpu_seconds, histogram, rss_bytes};
use crate::world::World;
use connection::{ConnOptions, ConnResult, Seen, Shared, Sub, Target};
pub use connection::{Stall, StallOutcome};
pub use faults::{Fault, FaultKind, FaultReport};

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
    /// Bytes of each written event's content (0: a short note).
    pub content_bytes: usize,
    pub duration: Duration,
    /// Longest wait, after the writers stop, for deliveries still on their way.
    pub drain: Duration,
    /// Connections being opened at once while ramping up.
    pub connect_parallelism: usize,
    /// Reconnects allowed per connection (resuming `incidentEvents` from its cursor).
    pub max_reconnects: u32,
    /// Restarts allowed per subscription the server ended (lag, errors).
    pub max_resubscribes: u32,
    /// Server processes whose CPU time and memory are read from /proc (one per replica).
    pub server_pids: Vec<u32>,
    /// One more connection, on the first organization and the first URL, that stops reading.
    pub stall: Option<Stall>,
    /// Subscriptions the stalled connection carries (one `incidentChanged`, the rest
    /// `incidentEvents` on its organization's hot incidents).
    pub stall_subscriptions: usize,
    pub faults: Vec<Fault>,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub subscribers: usize,
    pub events_subscribers: usize,
    pub changed_subscribers: usize,
    pub connections: usize,
    pub connect_seconds: f64,
    /// From the first connection until every subscription was live (each `incidentEvents`
    /// one received an event written to its incident for that, each `incidentChanged` one its
    /// canary). The writers start then.
    pub live_seconds: f64,
    /// The `incidentEvents` deliveries of those first events, received while thousands of
    /// subscriptions were still starting: commit-to-receipt apart from the run's.
    pub startup_deliveries: u64,
    pub startup_latency_p99_ms: f64,
    pub startup_latency_max_ms: f64,
    pub writes_ok: u64,
    pub write_errors: u64,
    pub write_error_kinds: BTreeMap<String, u64>,
    pub write_rate: f64,
    pub events_written: u64,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub missed: u64,
    pub duplicated: u64,
    /// `incidentChanged` subscribers whose stream ended while the writers ran and that started
    /// again: held to duplicates only (see the module's comment).
    pub changed_resynced: u64,
    pub subscription_errors: u64,
    pub subscription_error_kinds: BTreeMap<String, u64>,
    pub reconnects: u64,
    /// Subscriptions started again after the server ended them.
    pub resubscribes: u64,
    pub latency_p50_ms: f64,
    pub latency_p90_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Latency by receipt time, between the run's events (faults, the stall, the writers' end).
    pub phases: Vec<PhaseReport>,
    /// Over every server process given.
    pub server_cpu_seconds: Option<f64>,
    /// The largest of the servers' peaks.
    pub server_peak_rss_bytes: Option<u64>,
    pub servers: Vec<ServerReport>,
    pub faults: Vec<FaultReport>,
    /// The stalled connection, counted apart from everything above.
    pub stalled: Option<StalledReport>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    /// Seconds after the writers started.
    pub from_seconds: f64,
    pub to_seconds: f64,
    pub deliveries: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub pid: u32,
    /// From the writers' start to the end of the drain.
    pub cpu_seconds: Option<f64>,
    /// Before the subscribers connected.
    pub rss_start_bytes: Option<u64>,
    /// Once every subscriber was connected, before the writers started.
    pub rss_subscribed_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
    pub rss_end_bytes: Option<u64>,
    pub rss_before_stall_bytes: Option<u64>,
    pub peak_rss_during_stall_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StalledReport {
    pub subscriptions: usize,
    #[serde(flatten)]
    pub outcome: StallOutcome,
    pub reconnects: u64,
    pub resubscribes: u64,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub missed: u64,
    pub duplicated: u64,
    pub changed_resynced: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
}

pub async fn run(
    pool: &Pool,
    world: &World,
    credentials: &Credentials,
    opts: &FanoutOptions,
) -> anyhow::Result<FanoutReport> {
    raise_fd_limit(opts.subscribers / opts.per_connection.max(1) + 1024);
    let sampler = Sampler::start(&opts.server_pids);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    // Hot incidents: the newest `hot_per_org` of each organization that are not closed; the
    // next one is the organization's canary, written only to arm `incidentChanged`.
    let open: Vec<Vec<(Uuid, i32)>> = world
        .orgs
        .iter()
        .map(|o| {
            o.incidents
                .iter()
                .filter(|i| i.status != "CLOSED")
                .take(opts.hot_per_org.max(1) + 1)
                .map(|i| (i.id, i.last_sequence))
                .collect()
        })
        .collect();
    let hot: Vec<Vec<(Uuid, i32)>> = open
        .iter()
        .map(|l| l.iter().take(opts.hot_per_org.max(1)).copied().collect())
        .collect();
    let canaries: Vec<Option<Uuid>> = open
        .iter()
        .map(|l| l.get(opts.hot_per_org.max(1)).map(|(id, _)| *id))
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
        subs.push(Sub {
            org,
            target,
            canary: canaries[org],
        });
    }
    let tokens: Vec<String> = world
        .orgs
        .iter()
        .map(|o| credentials.token(o.id, o.user))
        .collect::<anyhow::Result<_>>()?;

    let per = opts.per_connection.clamp(1, 100);
    let mut groups: Vec<Vec<Sub>> = group_by_org(subs, per);
    let connections = groups.len();
    // The stalled connection comes last, on the first organization.
    let stalled_subs = match &opts.stall {
        Some(_) => opts.stall_subscriptions.clamp(1, 100),
        None => 0,
    };
    if stalled_subs > 0 {
        groups.push(
            (0..stalled_subs)
                .map(|k| Sub {
                    org: 0,
                    target: if k == 0 {
                        Target::Changed
                    } else {
                        let (incident, cursor) = hot[0][(k - 1) % hot[0].len()];
                        Target::Events { incident, cursor }
                    },
                    canary: canaries[0],
                })
                .collect(),
        );
    }
    let targets: Vec<(usize, Target)> = groups
        .iter()
        .flatten()
        .map(|s| (s.org, s.target.clone()))
        .collect();
    let changed_total = targets
        .iter()
        .filter(|(_, t)| matches!(t, Target::Changed))
        .count();

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
        let stalled = c >= connections;
        let url = if stalled {
            opts.ws_urls[0].clone()
        } else {
            opts.ws_urls[c % opts.ws_urls.len()].clone()
        };
        let conn = ConnOptions {
            url,
            token: tokens[group[0].org].clone(),
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
    let total_subscriptions = opts.subscribers + stalled_subs;
    let metrics_urls: Vec<String> = opts.ws_urls.iter().map(|u| http_base(u)).collect();
    wait_for_server_subscriptions(&metrics_urls, total_subscriptions, Duration::from_secs(60))
        .await;

    let base_gql = Gql::new(&opts.url, "")?;
    let content = |k: usize| {
        let note = format!("fan-out event {k}");
        if opts.content_bytes > note.len() {
            format!("{note} {}", "x".repeat(opts.content_bytes - note.len() - 1))
        } else {
            note
        }
    };
    // `incidentChanged` has no replay: a change counts only once the subscription is
    // registered with the server's feed. Each organization's canary change proves it.
    let armed_in_time = arm_changed(
        &base_gql,
        &tokens,
        &canaries,
        &shared.armed,
        changed_total,
        Duration::from_secs(60),
    )
    .await;
    if !armed_in_time {
        eprintln!(
            "fanout: {} of {changed_total} incidentChanged subscriptions armed in time",
            shared.armed.load(Ordering::Relaxed)
        );
    }
    // An `incidentEvents` subscription is live once its catch-up read is done; until then an
    // event reaches it only after that read. One event on each hot incident, received by every
    // subscription, proves them all live, so the writers measure delivery, not start-up.
    let events_total = targets.len() - changed_total;
    let live_in_time = arm_timelines(
        &base_gql,
        &tokens,
        &hot,
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
    let rss_subscribed = sampler.latest();

    // Writers: each owns a share of the hot incidents and writes them in turn at its rate.
    let cpu_before: Vec<Option<f64>> = opts.server_pids.iter().map(|p| cpu_seconds(*p)).collect();
    let run_started = Instant::now();
    let run_started_utc = Utc::now();
    let _ = started_tx.send(Some(run_started));
    let end = run_started + opts.duration;
    let fault_task = tokio::spawn(faults::run(
        pool.clone(),
        opts.faults.clone(),
        run_started,
        end,
    ));
    let hot_flat: Vec<(usize, Uuid)> = hot
        .iter()
        .enumerate()
        .flat_map(|(o, list)| list.iter().map(move |(id, _)| (o, *id)))
        .collect();
    let writers = opts.writers.clamp(1, hot_flat.len());
    let mut writer_tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let mine: Vec<(usize, Uuid)> = hot_flat.iter().copied().skip(w).step_by(writers).collect();
        let clients: HashMap<usize, Gql> = mine
            .iter()
            .map(|(o, _)| (*o, base_gql.with_token(&tokens[*o])))
            .collect();
        let interval = Duration::from_secs_f64(writers as f64 / opts.rate.max(0.001));
        let contents: Vec<String> = (0..16).map(content).collect();
        writer_tasks.push(tokio::spawn(async move {
            write_loop(mine, clients, interval, end, contents).await
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
    let fault_reports = fault_task.await.context("the fault task panicked")?;

    // What the database holds now: the truth every subscriber is held to. After a restart
    // the database may take a moment to come back.
    let hot_ids: Vec<Uuid> = start_seq.keys().copied().collect();
    let end_seq = read_with_retry(pool, &hot_ids, Duration::from_secs(60)).await?;
    let truth = Truth {
        hot: &hot,
        end_seq: &end_seq,
        written: &written,
    };
    let expected_total: u64 = truth.expected_over_all(&targets);
    // Drain: a bounded wait until every expected delivery arrived, or none arrives for 5 s
    // (long enough for a subscription's back-off after a database outage).
    let drain_deadline = Instant::now() + opts.drain;
    let mut last = (shared.delivered.load(Ordering::Relaxed), Instant::now());
    while Instant::now() < drain_deadline {
        let now = shared.delivered.load(Ordering::Relaxed);
        if now >= expected_total {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_seconds = run_started.elapsed().as_secs_f64();
    let cpu_after: Vec<Option<f64>> = opts.server_pids.iter().map(|p| cpu_seconds(*p)).collect();
    let series = sampler.finish().await;
    let _ = stop_tx.send(true);

    // Phases: between the run's events, by receipt time.
    let mut marks: Vec<(f64, String)> = vec![(0.0, "steady".into())];
    for f in &fault_reports {
        if !f.outcome.starts_with("skipped") {
            marks.push((f.at_seconds, format!("after {}", f.what)));
        }
    }
    if let Some(s) = &opts.stall {
        marks.push((s.at.as_secs_f64(), "stall".into()));
        marks.push(((s.at + s.length).as_secs_f64(), "after the stall".into()));
    }
    marks.push((write_seconds, "drain".into()));
    marks.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut phase_hists: Vec<Histogram<u64>> = marks.iter().map(|_| histogram()).collect();
    let phase_of = |at: DateTime<Utc>| -> Option<usize> {
        let t = (at - run_started_utc).num_microseconds()? as f64 / 1e6;
        if t < 0.0 {
            return None;
        }
        Some(marks.iter().rposition(|(from, _)| *from <= t).unwrap_or(0))
    };

    let mut latency = histogram();
    let mut startup_latency = histogram();
    let mut stalled_latency = histogram();
    let mut report = FanoutReport {
        subscribers: opts.subscribers,
        events_subscribers: opts.subscribers - n_changed,
        changed_subscribers: n_changed,
        connections,
        connect_seconds,
        live_seconds,
        startup_deliveries: 0,
        startup_latency_p99_ms: 0.0,
        startup_latency_max_ms: 0.0,
        writes_ok: write_tally.ok,
        write_errors: write_tally.errors,
        write_error_kinds: write_tally.error_kinds.clone(),
        write_rate: write_tally.ok as f64 / write_seconds.max(1e-9),
        events_written: hot
            .iter()
            .flatten()
            .map(|(id, s)| truth.expected_events(id, *s))
            .sum(),
        expected_deliveries: 0,
        deliveries: 0,
        missed: 0,
        duplicated: 0,
        changed_resynced: 0,
        subscription_errors: 0,
        subscription_error_kinds: BTreeMap::new(),
        reconnects: 0,
        resubscribes: 0,
        latency_p50_ms: 0.0,
        latency_p90_ms: 0.0,
        latency_p99_ms: 0.0,
        latency_max_ms: 0.0,
        phases: Vec::new(),
        server_cpu_seconds: None,
        server_peak_rss_bytes: None,
        servers: Vec::new(),
        faults: fault_reports,
        stalled: None,
        seconds: write_seconds,
    };
    if connected < total_connections {
        *report
            .subscription_error_kinds
            .entry("connection not ready in time".into())
            .or_default() += (total_connections - connected) as u64;
        report.subscription_errors += (total_connections - connected) as u64;
    }
    let mut stalled_report: Option<StalledReport> = None;
    for (c, task) in tasks.into_iter().enumerate() {
        let result: ConnResult = match tokio::time::timeout(Duration::from_secs(30), task).await {
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
        let is_stalled = c >= connections;
        let mut acc = Account::default();
        for (sub, seen) in &result.subs {
            truth.account(sub, seen, &mut acc);
        }
        if is_stalled {
            for (_, us) in &acc.latencies {
                stalled_latency.saturating_record((*us).max(1));
            }
            let mut error_kinds = BTreeMap::new();
            for (_, seen) in &result.subs {
                for (kind, n) in &seen.errors {
                    *error_kinds.entry(kind.clone()).or_default() += n;
                }
            }
            stalled_report = Some(StalledReport {
                subscriptions: result.subs.len(),
                outcome: result.stall.clone().unwrap_or_default(),
                reconnects: result.reconnects,
                resubscribes: acc.resubscribes,
                expected_deliveries: acc.expected,
                deliveries: acc.deliveries,
                missed: acc.missed,
                duplicated: acc.duplicated,
                changed_resynced: acc.resynced,
                error_kinds,
                latency_p99_ms: 0.0,
                latency_max_ms: 0.0,
            });
            continue;
        }
        report.reconnects += result.reconnects;
        report.resubscribes += acc.resubscribes;
        report.expected_deliveries += acc.expected;
        report.deliveries += acc.deliveries;
        report.missed += acc.missed;
        report.duplicated += acc.duplicated;
        report.changed_resynced += acc.resynced;
        for (_, seen) in &result.subs {
            for (kind, n) in &seen.errors {
                report.subscription_errors += n;
                *report
                    .subscription_error_kinds
                    .entry(kind.clone())
                    .or_default() += n;
            }
        }
        for (at, us) in &acc.latencies {
            match phase_of(*at) {
                Some(p) => {
                    latency.saturating_record((*us).max(1));
                    phase_hists[p].saturating_record((*us).max(1));
                }
                // The first events, received before the writers started.
                None => startup_latency.saturating_record((*us).max(1)),
            }
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    if !latency.is_empty() {
        report.latency_p50_ms = ms(&latency, 0.50);
        report.latency_p90_ms = ms(&latency, 0.90);
        report.latency_p99_ms = ms(&latency, 0.99);
        report.latency_max_ms = latency.max() as f64 / 1000.0;
    }
    if !startup_latency.is_empty() {
        report.startup_deliveries = startup_latency.len();
        report.startup_latency_p99_ms = ms(&startup_latency, 0.99);
        report.startup_latency_max_ms = startup_latency.max() as f64 / 1000.0;
    }
    if let Some(s) = stalled_report.as_mut()
        && !stalled_latency.is_empty()
    {
        s.latency_p99_ms = ms(&stalled_latency, 0.99);
        s.latency_max_ms = stalled_latency.max() as f64 / 1000.0;
    }
    report.stalled = stalled_report;
    for (i, (from, name)) in marks.iter().enumerate() {
        let h = &phase_hists[i];
        let to = marks.get(i + 1).map_or(drain_seconds, |m| m.0);
        report.phases.push(PhaseReport {
            name: name.clone(),
            from_seconds: *from,
            to_seconds: to,
            deliveries: h.len(),
            p50_ms: if h.is_empty() { 0.0 } else { ms(h, 0.50) },
            p99_ms: if h.is_empty() { 0.0 } else { ms(h, 0.99) },
            max_ms: h.max() as f64 / 1000.0,
        });
    }
    let stall_window = opts
        .stall
        .as_ref()
        .map(|s| (run_started + s.at, run_started + s.at + s.length));
    for (k, pid) in opts.server_pids.iter().enumerate() {
        let samples = series.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let peak_in = |from: Instant, to: Instant| {
            samples
                .iter()
                .filter(|(t, _)| *t >= from && *t <= to)
                .map(|(_, b)| *b)
                .max()
        };
        report.servers.push(ServerReport {
            pid: *pid,
            cpu_seconds: cpu_before[k].zip(cpu_after[k]).map(|(a, b)| b - a),
            rss_start_bytes: samples.first().map(|s| s.1),
            rss_subscribed_bytes: rss_subscribed.get(k).copied().flatten(),
            peak_rss_bytes: samples.iter().map(|s| s.1).max(),
            rss_end_bytes: samples.last().map(|s| s.1),
            rss_before_stall_bytes: stall_window
                .and_then(|(from, _)| samples.iter().rev().find(|(t, _)| *t <= from).map(|s| s.1)),
            peak_rss_during_stall_bytes: stall_window.and_then(|(from, to)| peak_in(from, to)),
        });
    }
    let cpus: Vec<f64> = report
        .servers
        .iter()
        .filter_map(|s| s.cpu_seconds)
        .collect();
    if !cpus.is_empty() {
        report.server_cpu_seconds = Some(cpus.iter().sum());
    }
    report.server_peak_rss_bytes = report.servers.iter().filter_map(|s| s.peak_rss_bytes).max();
    Ok(report)
}

/// What every subscription was held to, read from the database.
struct Truth<'a> {
    hot: &'a [Vec<(Uuid, i32)>],
    end_seq: &'a HashMap<Uuid, i32>,
    written: &'a HashMap<Uuid, BTreeMap<i32, DateTime<Utc>>>,
}

#[derive(Default)]
struct Account {
    expected: u64,
    deliveries: u64,
    missed: u64,
    duplicated: u64,
    resynced: u64,
    resubscribes: u64,
    /// (receipt, commit-to-receipt µs)
    latencies: Vec<(DateTime<Utc>, u64)>,
}

impl Truth<'_> {
    fn expected_events(&self, incident: &Uuid, cursor: i32) -> u64 {
        i64::from(self.end_seq.get(incident).copied().unwrap_or(cursor) - cursor).max(0) as u64
    }

    fn expected_for(&self, org: usize, target: &Target) -> u64 {
        match target {
            Target::Events { incident, cursor } => self.expected_events(incident, *cursor),
            Target::Changed => self.hot[org]
                .iter()
                .map(|(id, s)| self.expected_events(id, *s))
                .sum(),
        }
    }

    fn expected_over_all(&self, targets: &[(usize, Target)]) -> u64 {
        targets.iter().map(|(o, t)| self.expected_for(*o, t)).sum()
    }

    fn account(&self, sub: &Sub, seen: &Seen, acc: &mut Account) {
        acc.resubscribes += u64::from(seen.resubscribes);
        acc.expected += self.expected_for(sub.org, &sub.target);
        match sub.target {
            Target::Events { incident, cursor } => {
                let expected = self.expected_events(&incident, cursor);
                let mut got: Vec<i32> = seen.sequences.iter().map(|d| d.sequence).collect();
                got.sort_unstable();
                let total = got.len() as u64;
                got.dedup();
                let in_range = got
                    .iter()
                    .filter(|s| **s > cursor && **s <= cursor + expected as i32)
                    .count() as u64;
                acc.deliveries += total;
                acc.duplicated += total - got.len() as u64;
                // Outside the range: replays of what was there before, or events never written.
                acc.duplicated += got.len() as u64 - in_range;
                acc.missed += expected - in_range;
                for d in &seen.sequences {
                    if let Some(us) = d.latency_us {
                        acc.latencies.push((d.received, us));
                    }
                }
            }
            Target::Changed => {
                if seen.resynced {
                    acc.resynced += 1;
                }
                for (incident, cursor) in &self.hot[sub.org] {
                    let expected = self.expected_events(incident, *cursor);
                    let receipts = seen.changes.get(incident).map(Vec::as_slice).unwrap_or(&[]);
                    let got = receipts.len() as u64;
                    acc.deliveries += got;
                    acc.duplicated += got.saturating_sub(expected);
                    if seen.resynced {
                        // Which changes it missed while it was away is unknowable: its k-th
                        // change is no longer the k-th event.
                        continue;
                    }
                    acc.missed += expected.saturating_sub(got);
                    if let Some(times) = self.written.get(incident) {
                        for (k, at) in receipts.iter().enumerate() {
                            if let Some(committed) = times.get(&(cursor + 1 + k as i32))
                                && let Ok(d) = (*at - *committed).to_std()
                            {
                                acc.latencies.push((*at, (d.as_micros() as u64).max(1)));
                            }
                        }
                    }
                }
                // Changes to incidents nobody wrote: not expected at all.
                for (incident, receipts) in &seen.changes {
                    if !self.hot[sub.org].iter().any(|(id, _)| id == incident) {
                        acc.deliveries += receipts.len() as u64;
                        acc.duplicated += receipts.len() as u64;
                    }
                }
            }
        }
    }
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

async fn read_with_retry(
    pool: &Pool,
    ids: &[Uuid],
    limit: Duration,
) -> anyhow::Result<HashMap<Uuid, i32>> {
    let deadline = Instant::now() + limit;
    loop {
        match crate::world::last_sequences(pool, ids).await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
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

/// One process's RSS readings: (when, bytes).
type Series = Vec<(Instant, u64)>;

/// RSS of each server process every 200 ms, with the time it was read.
struct Sampler {
    series: Arc<std::sync::Mutex<Vec<Series>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pids: &[u32]) -> Sampler {
        let series = Arc::new(std::sync::Mutex::new(vec![Vec::new(); pids.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let (pids, s, st) = (pids.to_vec(), series.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                let now = Instant::now();
                let read: Vec<Option<u64>> = pids.iter().map(|p| rss_bytes(*p, "VmRSS:")).collect();
                if let Ok(mut series) = s.lock() {
                    for (k, rss) in read.into_iter().enumerate() {
                        if let Some(rss) = rss {
                            series[k].push((now, rss));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Sampler { series, stop, task }
    }

    fn latest(&self) -> Vec<Option<u64>> {
        self.series
            .lock()
            .map(|s| s.iter().map(|v| v.last().map(|x| x.1)).collect())
            .unwrap_or_default()
    }

    async fn finish(self) -> Vec<Series> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.series.lock().map(|s| s.clone()).unwrap_or_default()
    }
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
    contents: Vec<String>,
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
        let vars = json!({ "id": incident, "input": { "content": contents[k % contents.len()] } });
        k += 1;
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

fn raise_fd_limit(wanted: usize) {
    let wanted = (wanted as u64).max(1024);
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < wanted
    {
        let _ = rlimit::Resource::NOFILE.set(wanted.min(hard), hard);
    }
}
