//! What a phase measured: a latency histogram, counts, errors by kind, and the server process's
//! CPU time and memory read from `/proc/<pid>` while it ran.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, up to an hour.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug, Clone)]
pub struct Tally {
    pub ok: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub latency: Histogram<u64>,
    pub bytes: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            ok: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            latency: histogram(),
            bytes: 0,
        }
    }
}

/// Error kinds kept apart in the report; beyond this many, the rest are "other".
const MAX_ERROR_KINDS: usize = 20;

impl Tally {
    pub fn record(&mut self, latency: Duration, result: Result<u64, String>) {
        self.latency
            .saturating_record(latency.as_micros().max(1) as u64);
        match result {
            Ok(bytes) => {
                self.ok += 1;
                self.bytes += bytes;
            }
            Err(kind) => self.error(kind),
        }
    }

    pub fn error(&mut self, kind: String) {
        self.errors += 1;
        let kind: String = kind.chars().take(160).collect();
        if self.error_kinds.len() < MAX_ERROR_KINDS || self.error_kinds.contains_key(&kind) {
            *self.error_kinds.entry(kind).or_default() += 1;
        } else {
            *self.error_kinds.entry("other".into()).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.bytes += other.bytes;
        for (k, v) in &other.error_kinds {
            *self.error_kinds.entry(k.clone()).or_default() += v;
        }
        self.latency
            .add(&other.latency)
            .expect("histograms of equal bounds");
    }

    pub fn summary(&self, elapsed: Duration) -> Summary {
        let total = self.ok + self.errors;
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        Summary {
            requests: total,
            errors: self.errors,
            error_kinds: self.error_kinds.clone(),
            seconds: elapsed.as_secs_f64(),
            throughput: total as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            max_ms: self.latency.max() as f64 / 1000.0,
            mean_bytes: if self.ok > 0 {
                self.bytes as f64 / self.ok as f64
            } else {
                0.0
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub seconds: f64,
    /// Requests (or rounds of SQL, for a floor) per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_bytes: f64,
}

/// CPU seconds (user + system, all threads) of a process.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks.max(1.0))
}

/// Resident set size in bytes (`VmRSS`), or the process's lifetime peak (`VmHWM`).
pub fn rss_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples a process's RSS every 100 ms until dropped; `peak()` is the largest seen.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: Option<u32>) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = pid.map(|pid| {
            let (peak, stop) = (peak.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_bytes(pid, "VmRSS:") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        RssSampler { peak, stop, task }
    }

    pub async fn finish(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            let _ = task.await;
            Some(self.peak.load(Ordering::Relaxed))
        } else {
            None
        }
    }
}
