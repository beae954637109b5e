//! The report: latencies by phase of the run (between faults, the stall and the writers' end),
//! the counts against the truth, and what the servers used.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::arm::Armed;
use super::connection::StallOutcome;
use super::drive::Driven;
use super::plan::Plan;
use super::reconcile::{Accounted, Drained};
use super::servers::Servers;
use super::startup::{self, StartupReport};
use super::{FanoutOptions, FaultReport};
use crate::stats::histogram;

#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub subscribers: usize,
    pub events_subscribers: usize,
    pub changed_subscribers: usize,
    pub connections: usize,
    /// From the first connection until every connection was open (before any subscription
    /// was sent).
    pub connect_seconds: f64,
    /// From the first connection until every subscription was live.
    pub live_seconds: f64,
    /// From the subscriptions sent to each one live; the server's part is
    /// `startup.all.after_last_subscribe_ms`.
    pub startup: StartupReport,
    /// The `incidentEvents` deliveries of the one event written to each hot incident once
    /// every subscription was live, before the writers: commit-to-receipt apart from the run's.
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

/// Commit-to-receipt latencies (µs): the run's, by phase, the start-up's and the stalled
/// connection's.
pub(super) struct Latencies {
    /// Where each phase starts (seconds after the writers started), in order, and its name.
    marks: Vec<(f64, String)>,
    run_started_utc: DateTime<Utc>,
    run: Histogram<u64>,
    phases: Vec<Histogram<u64>>,
    startup: Histogram<u64>,
    stalled: Histogram<u64>,
}

impl Latencies {
    /// Phases: between the run's events, by receipt time.
    pub fn new(driven: &Driven, opts: &FanoutOptions) -> Latencies {
        let mut marks: Vec<(f64, String)> = vec![(0.0, "steady".into())];
        for f in &driven.faults {
            if !f.outcome.starts_with("skipped") {
                marks.push((f.at_seconds, format!("after {}", f.what)));
            }
        }
        if let Some(s) = &opts.stall {
            marks.push((s.at.as_secs_f64(), "stall".into()));
            marks.push(((s.at + s.length).as_secs_f64(), "after the stall".into()));
        }
        marks.push((driven.write_seconds, "drain".into()));
        marks.sort_by(|a, b| a.0.total_cmp(&b.0));
        Latencies {
            phases: marks.iter().map(|_| histogram()).collect(),
            marks,
            run_started_utc: driven.run_started_utc,
            run: histogram(),
            startup: histogram(),
            stalled: histogram(),
        }
    }

    /// A delivery received `at`, `us` after its commit.
    pub fn record(&mut self, at: DateTime<Utc>, us: u64) {
        match self.phase_of(at) {
            Some(p) => {
                self.run.saturating_record(us.max(1));
                self.phases[p].saturating_record(us.max(1));
            }
            // The first events, received before the writers started.
            None => self.startup.saturating_record(us.max(1)),
        }
    }

    /// A delivery to the stalled connection.
    pub fn record_stalled(&mut self, us: u64) {
        self.stalled.saturating_record(us.max(1));
    }

    fn phase_of(&self, at: DateTime<Utc>) -> Option<usize> {
        let t = (at - self.run_started_utc).num_microseconds()? as f64 / 1e6;
        if t < 0.0 {
            return None;
        }
        Some(
            self.marks
                .iter()
                .rposition(|(from, _)| *from <= t)
                .unwrap_or(0),
        )
    }
}

/// The report from each phase's results.
pub(super) fn build(
    opts: &FanoutOptions,
    plan: &Plan,
    armed: &Armed,
    driven: &Driven,
    drained: &Drained<'_>,
    accounted: Accounted,
    servers: &Servers,
) -> FanoutReport {
    let Accounted {
        total,
        reconnects,
        errors,
        mut error_kinds,
        mut stalled,
        latencies,
        starts,
    } = accounted;
    let mut subscription_errors = errors;
    if armed.connected < armed.total_connections {
        *error_kinds
            .entry("connection not ready in time".into())
            .or_default() += (armed.total_connections - armed.connected) as u64;
        subscription_errors += (armed.total_connections - armed.connected) as u64;
    }
    let write_tally = &driven.tally;
    let mut report = FanoutReport {
        subscribers: opts.subscribers,
        events_subscribers: opts.subscribers - plan.n_changed,
        changed_subscribers: plan.n_changed,
        connections: plan.connections,
        connect_seconds: armed.connect_seconds,
        live_seconds: armed.live_seconds,
        startup: startup::summarize(&starts),
        startup_deliveries: 0,
        startup_latency_p99_ms: 0.0,
        startup_latency_max_ms: 0.0,
        writes_ok: write_tally.ok,
        write_errors: write_tally.errors,
        write_error_kinds: write_tally.error_kinds.clone(),
        write_rate: write_tally.ok as f64 / driven.write_seconds.max(1e-9),
        events_written: plan
            .hot
            .iter()
            .flatten()
            .map(|(id, s)| drained.truth.expected_events(id, *s))
            .sum(),
        expected_deliveries: total.expected,
        deliveries: total.deliveries,
        missed: total.missed,
        duplicated: total.duplicated,
        changed_resynced: total.resynced,
        subscription_errors,
        subscription_error_kinds: error_kinds,
        reconnects,
        resubscribes: total.resubscribes,
        latency_p50_ms: 0.0,
        latency_p90_ms: 0.0,
        latency_p99_ms: 0.0,
        latency_max_ms: 0.0,
        phases: Vec::new(),
        server_cpu_seconds: None,
        server_peak_rss_bytes: None,
        servers: Vec::new(),
        faults: driven.faults.clone(),
        stalled: None,
        seconds: driven.write_seconds,
    };
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let Latencies {
        marks,
        run: latency,
        phases: phase_hists,
        startup: startup_latency,
        stalled: stalled_latency,
        ..
    } = latencies;
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
    if let Some(s) = stalled.as_mut()
        && !stalled_latency.is_empty()
    {
        s.latency_p99_ms = ms(&stalled_latency, 0.99);
        s.latency_max_ms = stalled_latency.max() as f64 / 1000.0;
    }
    report.stalled = stalled;
    for (i, (from, name)) in marks.iter().enumerate() {
        let h = &phase_hists[i];
        let to = marks.get(i + 1).map_or(drained.drain_seconds, |m| m.0);
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
    let stall_window = opts.stall.as_ref().map(|s| {
        (
            driven.run_started + s.at,
            driven.run_started + s.at + s.length,
        )
    });
    report.servers = servers.reports(stall_window);
    let cpus: Vec<f64> = report
        .servers
        .iter()
        .filter_map(|s| s.cpu_seconds)
        .collect();
    if !cpus.is_empty() {
        report.server_cpu_seconds = Some(cpus.iter().sum());
    }
    report.server_peak_rss_bytes = report.servers.iter().filter_map(|s| s.peak_rss_bytes).max();
    report
}
