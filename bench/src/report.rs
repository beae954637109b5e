//! The table printed on stdout and the JSON written with `--json`.

use serde::Serialize;

use crate::scenario::ScenarioReport;
use crate::scenario::fanout::FanoutReport;
use crate::scenario::peer::PeerReport;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backend: &'static str,
    pub url: String,
    pub connections: usize,
    pub duration_seconds: f64,
    pub machine: Machine,
    pub scenarios: Vec<ScenarioReport>,
    pub fanout: Option<FanoutReport>,
    /// `--peer`: each read page on incidentd and on the peer, alternating.
    pub peer: Vec<PeerReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory_bytes: Option<u64>,
}

impl Machine {
    pub fn read() -> Machine {
        let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

pub fn table(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "incidentd-bench on {} ({} connections, {:.0} s per phase, {} CPUs)\n\n",
        report.backend, report.connections, report.duration_seconds, report.machine.cpus
    ));
    if !report.scenarios.is_empty() {
        out.push_str(
            "| scenario | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | KB/resp | server CPU ms/req | peak RSS MB | SQL/req | floor req/s | floor p99 ms | floor SQL/req | server ÷ floor |\n",
        );
        out.push_str(
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for s in &report.scenarios {
            let floor = s.floor.as_ref();
            out.push_str(&format!(
                "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |\n",
                s.scenario.name(),
                s.server.throughput,
                s.server.p50_ms,
                s.server.p90_ms,
                s.server.p99_ms,
                s.server.max_ms,
                s.server.errors,
                s.server.mean_bytes / 1024.0,
                opt(s.server_cpu_ms_per_request, 2),
                opt(s.server_use.peak_rss_bytes.map(|b| b as f64 / 1048576.0), 0),
                opt(s.statements_per_request, 2),
                opt(floor.map(|f| f.throughput), 0),
                opt(floor.map(|f| f.p99_ms), 1),
                opt(s.floor_statements_per_request, 1),
                s.ratio_to_floor
                    .map_or_else(|| "-".into(), |r| format!("{:.0}%", r * 100.0)),
            ));
        }
        for s in &report.scenarios {
            for (kind, n) in &s.server.error_kinds {
                out.push_str(&format!(
                    "  {} server error ×{n}: {kind}\n",
                    s.scenario.name()
                ));
            }
            if let Some(f) = &s.floor {
                for (kind, n) in &f.error_kinds {
                    out.push_str(&format!(
                        "  {} floor error ×{n}: {kind}\n",
                        s.scenario.name()
                    ));
                }
            }
        }
    }
    if !report.peer.is_empty() {
        out.push_str(&peer_table(&report.peer));
    }
    if let Some(f) = &report.fanout {
        out.push_str(&format!(
            "\nfanout: {} subscribers ({} incidentEvents, {} incidentChanged) on {} connections, opened in {:.1} s, all live {:.1} s after the first connect\n",
            f.subscribers, f.events_subscribers, f.changed_subscribers, f.connections, f.connect_seconds, f.live_seconds
        ));
        let st = &f.startup;
        out.push_str(&format!(
            "  start-up: every subscription sent together (first to last sent in {:.1} ms); last subscribe sent → every subscription live {:.1} ms\n",
            st.sending_ms, st.all.after_last_subscribe_ms
        ));
        for (what, s) in [
            ("all", &st.all),
            ("incidentEvents (replay)", &st.timelines),
            ("incidentChanged (canary)", &st.changed),
        ] {
            out.push_str(&format!(
                "    {what}: {} of {} live, {:.1} ms after the last subscribe sent; per subscription subscribe → live p50 {:.1}, p99 {:.1}, max {:.1} ms\n",
                s.live, s.subscriptions, s.after_last_subscribe_ms, s.p50_ms, s.p99_ms, s.max_ms
            ));
        }
        out.push_str(&format!(
            "  first events (before the writers): {} deliveries, commit-to-receipt p99 {:.1} ms, max {:.1} ms\n",
            f.startup_deliveries, f.startup_latency_p99_ms, f.startup_latency_max_ms
        ));
        out.push_str(&format!(
            "  writes: {} ok, {} errors, {:.1}/s; events written {}\n",
            f.writes_ok, f.write_errors, f.write_rate, f.events_written
        ));
        out.push_str(&format!(
            "  deliveries: {} of {} expected; missed {}, duplicated {}; incidentChanged resynced {}; subscription errors {}; reconnects {}; resubscribes {}\n",
            f.deliveries, f.expected_deliveries, f.missed, f.duplicated, f.changed_resynced, f.subscription_errors, f.reconnects, f.resubscribes
        ));
        out.push_str(&format!(
            "  commit-to-receipt ms: p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}\n",
            f.latency_p50_ms, f.latency_p90_ms, f.latency_p99_ms, f.latency_max_ms
        ));
        for p in &f.phases {
            out.push_str(&format!(
                "    {:>6.1}–{:<6.1} s {}: {} deliveries, p50 {:.1}, p99 {:.1}, max {:.1}\n",
                p.from_seconds, p.to_seconds, p.name, p.deliveries, p.p50_ms, p.p99_ms, p.max_ms
            ));
        }
        let mb = |b: Option<u64>| opt(b.map(|b| b as f64 / 1048576.0), 0);
        out.push_str(&format!(
            "  server: CPU {} s, peak RSS {} MB\n",
            opt(f.server_cpu_seconds, 1),
            mb(f.server_peak_rss_bytes)
        ));
        for s in &f.servers {
            out.push_str(&format!(
                "    pid {}: CPU {} s; RSS MB: start {}, subscribed {}, peak {}, end {}{}\n",
                s.pid,
                opt(s.cpu_seconds, 1),
                mb(s.rss_start_bytes),
                mb(s.rss_subscribed_bytes),
                mb(s.peak_rss_bytes),
                mb(s.rss_end_bytes),
                match (s.rss_before_stall_bytes, s.peak_rss_during_stall_bytes) {
                    (None, None) => String::new(),
                    (b, d) => format!("; before the stall {}, peak during it {}", mb(b), mb(d)),
                }
            ));
        }
        for fault in &f.faults {
            out.push_str(&format!(
                "  fault at {:.1} s: {} ({:.1} s): {}\n",
                fault.at_seconds, fault.what, fault.took_seconds, fault.outcome
            ));
        }
        if let Some(s) = &f.stalled {
            out.push_str(&format!(
                "  stalled client ({} subscriptions): stalled {}–{} s; cut off: {}{}; drained {} messages; resumed at {} s; reconnects {}, resubscribes {}\n",
                s.subscriptions,
                opt(s.outcome.started_at_seconds, 1),
                opt(s.outcome.ended_at_seconds, 1),
                s.outcome.cut_off.as_deref().unwrap_or("no"),
                s.outcome
                    .cut_off_noticed_at_seconds
                    .map_or_else(String::new, |t| format!(" (noticed at {t:.1} s)")),
                s.outcome.drained_messages,
                opt(s.outcome.resumed_at_seconds, 1),
                s.reconnects,
                s.resubscribes
            ));
            out.push_str(&format!(
                "    deliveries {} of {} expected; missed {}, duplicated {}; incidentChanged resynced {}; p99 {:.1} ms, max {:.1} ms\n",
                s.deliveries, s.expected_deliveries, s.missed, s.duplicated, s.changed_resynced, s.latency_p99_ms, s.latency_max_ms
            ));
            for (kind, n) in &s.error_kinds {
                out.push_str(&format!("    stalled client ×{n}: {kind}\n"));
            }
        }
        for (kind, n) in f
            .write_error_kinds
            .iter()
            .chain(&f.subscription_error_kinds)
        {
            out.push_str(&format!("  fanout error ×{n}: {kind}\n"));
        }
    }
    out
}

fn peer_table(pages: &[PeerReport]) -> String {
    let mut out = String::from(
        "| page | incidentd req/s | p50 ms | p99 ms | CPU ms/req | KB/resp | errors | peer req/s | p50 ms | p99 ms | CPU ms/req | KB/resp | errors | incidentd ÷ peer |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in pages {
        let side = |s: &crate::scenario::peer::SideTotal| {
            format!(
                "{:.0} | {:.1} | {:.1} | {} | {:.1} | {}",
                s.throughput,
                s.p50_ms,
                s.p99_ms,
                opt(s.cpu_ms_per_request, 2),
                s.mean_bytes / 1024.0,
                s.errors
            )
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            p.scenario.name(),
            side(&p.incidentd),
            side(&p.peer),
            p.ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}×"))
        ));
    }
    for p in pages {
        for phase in &p.phases {
            out.push_str(&format!(
                "  {} {:?}: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, CPU {} ms/req, {} errors\n",
                p.scenario.name(),
                phase.side,
                phase.summary.throughput,
                phase.summary.p50_ms,
                phase.summary.p99_ms,
                opt(phase.cpu_ms_per_request, 2),
                phase.summary.errors
            ));
            for (kind, n) in &phase.summary.error_kinds {
                out.push_str(&format!("    error ×{n}: {kind}\n"));
            }
        }
    }
    out
}

impl Report {
    /// Errors of every kind, over all scenarios: what CI's smoke fails on.
    pub fn errors(&self) -> u64 {
        let http: u64 = self
            .scenarios
            .iter()
            .map(|s| s.server.errors + s.floor.as_ref().map_or(0, |f| f.errors))
            .sum();
        let fanout = self.fanout.as_ref().map_or(0, |f| {
            f.write_errors + f.subscription_errors + f.missed + f.duplicated
        });
        let peer: u64 = self
            .peer
            .iter()
            .map(|p| p.incidentd.errors + p.peer.errors)
            .sum();
        http + fanout + peer
    }
}
