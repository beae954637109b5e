//! The server processes' CPU time and memory, read from /proc around and during the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::report::ServerReport;
use crate::stats::{cpu_seconds, rss_bytes};

/// Readings of every server process given (none when no pid was given).
pub(super) struct Servers {
    pids: Vec<u32>,
    sampler: Option<Sampler>,
    series: Vec<Series>,
    rss_subscribed: Vec<Option<u64>>,
    cpu_before: Vec<Option<f64>>,
    cpu_after: Vec<Option<f64>>,
}

impl Servers {
    /// Starts sampling memory.
    pub fn watch(pids: &[u32]) -> Servers {
        Servers {
            pids: pids.to_vec(),
            sampler: Some(Sampler::start(pids)),
            series: Vec::new(),
            rss_subscribed: Vec::new(),
            cpu_before: Vec::new(),
            cpu_after: Vec::new(),
        }
    }

    /// Every subscriber is connected and the writers are about to start.
    pub fn before_writes(&mut self) {
        if let Some(sampler) = &self.sampler {
            self.rss_subscribed = sampler.latest();
        }
        self.cpu_before = self.pids.iter().map(|p| cpu_seconds(*p)).collect();
    }

    /// The drain is over: CPU time read, memory sampling stopped.
    pub async fn after_drain(&mut self) {
        self.cpu_after = self.pids.iter().map(|p| cpu_seconds(*p)).collect();
        if let Some(sampler) = self.sampler.take() {
            self.series = sampler.finish().await;
        }
    }

    /// One report per process; `stall_window` is when the stalled client stopped reading.
    pub fn reports(&self, stall_window: Option<(Instant, Instant)>) -> Vec<ServerReport> {
        let mut out = Vec::with_capacity(self.pids.len());
        for (k, pid) in self.pids.iter().enumerate() {
            let samples = self.series.get(k).map(Vec::as_slice).unwrap_or(&[]);
            let peak_in = |from: Instant, to: Instant| {
                samples
                    .iter()
                    .filter(|(t, _)| *t >= from && *t <= to)
                    .map(|(_, b)| *b)
                    .max()
            };
            out.push(ServerReport {
                pid: *pid,
                cpu_seconds: self.cpu_before[k]
                    .zip(self.cpu_after[k])
                    .map(|(a, b)| b - a),
                rss_start_bytes: samples.first().map(|s| s.1),
                rss_subscribed_bytes: self.rss_subscribed.get(k).copied().flatten(),
                peak_rss_bytes: samples.iter().map(|s| s.1).max(),
                rss_end_bytes: samples.last().map(|s| s.1),
                rss_before_stall_bytes: stall_window.and_then(|(from, _)| {
                    samples.iter().rev().find(|(t, _)| *t <= from).map(|s| s.1)
                }),
                peak_rss_during_stall_bytes: stall_window.and_then(|(from, to)| peak_in(from, to)),
            });
        }
        out
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
