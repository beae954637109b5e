//! Runs workers for a fixed time: each owns one connection and issues one request at a time.
//! Only requests started inside the measured window count; a warm-up before it is discarded.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::stats::{RssSampler, Summary, Tally, cpu_seconds};

pub trait Worker: Send + 'static {
    /// One request (or, for a floor, the SQL of one request): the bytes it returned, or an error.
    fn step(&mut self) -> impl Future<Output = Result<u64, String>> + Send;
}

/// What the server process did while a phase ran.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ServerUse {
    pub cpu_seconds: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    pub statements: Option<f64>,
}

pub struct Phase {
    pub summary: Summary,
    pub server: ServerUse,
}

/// Hooks read at the window's edges (the `/metrics` statement counter).
pub trait Probe {
    fn statements(&self) -> impl Future<Output = Option<f64>> + Send;
}

pub struct NoProbe;

impl Probe for NoProbe {
    async fn statements(&self) -> Option<f64> {
        None
    }
}

pub async fn drive<W: Worker>(
    workers: Vec<W>,
    warmup: Duration,
    duration: Duration,
    server_pid: Option<u32>,
    probe: &impl Probe,
) -> Phase {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            tokio::spawn(async move {
                let mut tally = Tally::default();
                // Bounded by time; a request that hangs is cut by the client's own timeout.
                loop {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    let result = worker.step().await;
                    if began >= start {
                        tally.record(began.elapsed(), result);
                    }
                }
                tally
            })
        })
        .collect();
    tokio::time::sleep_until(start.into()).await;
    let cpu_before = server_pid.and_then(cpu_seconds);
    let statements_before = probe.statements().await;
    let rss = RssSampler::start(server_pid);
    tokio::time::sleep_until(end.into()).await;
    let cpu_after = server_pid.and_then(cpu_seconds);
    let statements_after = probe.statements().await;
    let peak_rss = rss.finish().await;
    let mut total = Tally::default();
    for task in tasks {
        match task.await {
            Ok(tally) => total.merge(&tally),
            Err(e) => total.error(format!("worker panicked: {e}")),
        }
    }
    Phase {
        summary: total.summary(duration),
        server: ServerUse {
            cpu_seconds: cpu_before.zip(cpu_after).map(|(a, b)| b - a),
            peak_rss_bytes: peak_rss,
            statements: statements_before.zip(statements_after).map(|(a, b)| b - a),
        },
    }
}
