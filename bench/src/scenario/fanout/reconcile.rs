//! Reconciling: once the writers stop, the hot incidents' last sequences are read from the
//! database (the truth every subscriber is held to), the deliveries still on their way are
//! awaited, the connections are closed, and each one's receipts are counted against the truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::FanoutOptions;
use super::arm::Armed;
use super::connection::{ConnResult, Seen, Sub, Target};
use super::drive::Driven;
use super::plan::Plan;
use super::report::{Latencies, StalledReport};
use super::startup::Start;
use crate::db::Pool;

/// The truth, and when the drain ended (seconds after the writers started).
pub(super) struct Drained<'a> {
    pub truth: Truth<'a>,
    pub drain_seconds: f64,
}

/// Reads the truth, then waits (bounded by `opts.drain`) until every expected delivery
/// arrived, or none arrived for 5 s (long enough for a subscription's back-off after a
/// database outage).
pub(super) async fn drain<'a>(
    pool: &Pool,
    plan: &'a Plan,
    armed: &Armed,
    driven: &'a Driven,
    opts: &FanoutOptions,
) -> anyhow::Result<Drained<'a>> {
    // What the database holds now: the truth every subscriber is held to. After a restart
    // the database may take a moment to come back.
    let hot_ids: Vec<Uuid> = plan.hot.iter().flatten().map(|(id, _)| *id).collect();
    let end_seq = read_with_retry(pool, &hot_ids, Duration::from_secs(60)).await?;
    let truth = Truth {
        hot: &plan.hot,
        end_seq,
        written: &driven.written,
    };
    let expected_total: u64 = truth.expected_over_all(&plan.targets);
    let delivered = &armed.shared.delivered;
    let drain_deadline = Instant::now() + opts.drain;
    let mut last = (delivered.load(Ordering::Relaxed), Instant::now());
    while Instant::now() < drain_deadline {
        let now = delivered.load(Ordering::Relaxed);
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
    Ok(Drained {
        truth,
        drain_seconds: driven.run_started.elapsed().as_secs_f64(),
    })
}

/// Every connection's receipts held to the truth; the stalled connection's apart.
pub(super) struct Accounted {
    /// Every connection but the stalled one, summed; its latencies are in `latencies`.
    pub total: Account,
    pub reconnects: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// Without its latencies, which are in `latencies`.
    pub stalled: Option<StalledReport>,
    pub latencies: Latencies,
    /// Every subscription's start, the stalled connection's included (it stalls only later).
    pub starts: Vec<Start>,
}

/// Closes every connection and counts what each received.
pub(super) async fn collect(
    armed: &mut Armed,
    plan: &Plan,
    truth: &Truth<'_>,
    mut latencies: Latencies,
) -> Accounted {
    let _ = armed.stop.send(true);
    let mut total = Account::default();
    let (mut reconnects, mut errors) = (0, 0);
    let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut stalled = None;
    let mut starts = Vec::with_capacity(plan.targets.len());
    for (c, task) in std::mem::take(&mut armed.tasks).into_iter().enumerate() {
        let result: ConnResult = match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(r)) => r,
            _ => {
                errors += 1;
                *error_kinds
                    .entry("connection task did not finish".into())
                    .or_default() += 1;
                continue;
            }
        };
        starts.extend(result.subs.iter().map(|(sub, seen)| Start {
            timeline: matches!(sub.target, Target::Events { .. }),
            subscribed: seen.subscribed_at,
            live: seen.live_at,
        }));
        if c >= plan.connections {
            let mut acc = Account::default();
            for (sub, seen) in &result.subs {
                truth.account(sub, seen, &mut acc);
            }
            for (_, us) in &acc.latencies {
                latencies.record_stalled(*us);
            }
            let mut stalled_kinds = BTreeMap::new();
            for (_, seen) in &result.subs {
                for (kind, n) in &seen.errors {
                    *stalled_kinds.entry(kind.clone()).or_default() += n;
                }
            }
            stalled = Some(StalledReport {
                subscriptions: result.subs.len(),
                outcome: result.stall.clone().unwrap_or_default(),
                reconnects: result.reconnects,
                resubscribes: acc.resubscribes,
                expected_deliveries: acc.expected,
                deliveries: acc.deliveries,
                missed: acc.missed,
                duplicated: acc.duplicated,
                changed_resynced: acc.resynced,
                error_kinds: stalled_kinds,
                latency_p99_ms: 0.0,
                latency_max_ms: 0.0,
            });
            continue;
        }
        reconnects += result.reconnects;
        for (sub, seen) in &result.subs {
            truth.account(sub, seen, &mut total);
        }
        for (_, seen) in &result.subs {
            for (kind, n) in &seen.errors {
                errors += n;
                *error_kinds.entry(kind.clone()).or_default() += n;
            }
        }
        // Recorded connection by connection, so the receipts of a large run are never all held.
        for (at, us) in total.latencies.drain(..) {
            latencies.record(at, us);
        }
    }
    Accounted {
        total,
        reconnects,
        errors,
        error_kinds,
        stalled,
        latencies,
        starts,
    }
}

/// What every subscription was held to, read from the database.
pub(super) struct Truth<'a> {
    hot: &'a [Vec<(Uuid, i32)>],
    end_seq: HashMap<Uuid, i32>,
    written: &'a HashMap<Uuid, BTreeMap<i32, DateTime<Utc>>>,
}

#[derive(Default)]
pub(super) struct Account {
    pub expected: u64,
    pub deliveries: u64,
    pub missed: u64,
    pub duplicated: u64,
    pub resynced: u64,
    pub resubscribes: u64,
    /// (receipt, commit-to-receipt µs)
    latencies: Vec<(DateTime<Utc>, u64)>,
}

impl Truth<'_> {
    pub(super) fn expected_events(&self, incident: &Uuid, cursor: i32) -> u64 {
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
