//! Driving the writers: each owns a share of the hot incidents and adds events to them in turn
//! at its rate until the run's end, while the faults fire on their schedule.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::arm::Armed;
use super::faults::{self, FaultReport};
use super::plan::Plan;
use super::{ADD_EVENT, FanoutOptions};
use crate::client::Gql;
use crate::db::Pool;
use crate::stats::Tally;

/// What the writers did.
pub(super) struct Driven {
    pub run_started: Instant,
    pub run_started_utc: DateTime<Utc>,
    /// Per incident, the commit time of each sequence a writer was told of.
    pub written: HashMap<Uuid, BTreeMap<i32, DateTime<Utc>>>,
    pub tally: Tally,
    /// From the writers' start until the last one stopped.
    pub write_seconds: f64,
    pub faults: Vec<FaultReport>,
}

pub(super) async fn writers(
    pool: &Pool,
    plan: &Plan,
    armed: &Armed,
    opts: &FanoutOptions,
) -> anyhow::Result<Driven> {
    let content = |k: usize| {
        let note = format!("fan-out event {k}");
        if opts.content_bytes > note.len() {
            format!("{note} {}", "x".repeat(opts.content_bytes - note.len() - 1))
        } else {
            note
        }
    };
    let run_started = Instant::now();
    let run_started_utc = Utc::now();
    let _ = armed.started.send(Some(run_started));
    let end = run_started + opts.duration;
    let fault_task = tokio::spawn(faults::run(
        pool.clone(),
        opts.faults.clone(),
        run_started,
        end,
    ));
    let hot_flat: Vec<(usize, Uuid)> = plan
        .hot
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
            .map(|(o, _)| (*o, armed.gql.with_token(&plan.tokens[*o])))
            .collect();
        let interval = Duration::from_secs_f64(writers as f64 / opts.rate.max(0.001));
        let contents: Vec<String> = (0..16).map(content).collect();
        writer_tasks.push(tokio::spawn(async move {
            write_loop(mine, clients, interval, end, contents).await
        }));
    }
    let mut written: HashMap<Uuid, BTreeMap<i32, DateTime<Utc>>> = HashMap::new();
    let mut write_tally = Tally::default();
    for task in writer_tasks {
        let (records, tally) = task.await.context("a writer panicked")?;
        write_tally.merge(&tally);
        for (incident, seq, at) in records {
            written.entry(incident).or_default().insert(seq, at);
        }
    }
    let write_seconds = run_started.elapsed().as_secs_f64();
    let fault_reports = fault_task.await.context("the fault task panicked")?;
    Ok(Driven {
        run_started,
        run_started_utc,
        written,
        tally: write_tally,
        write_seconds,
        faults: fault_reports,
    })
}

async fn write_loop(
    mine: Vec<(usize, Uuid)>,
    clients: HashMap<usize, Gql>,
    interval: Duration,
    end: Instant,
    contents: Vec<String>,
) -> (Vec<(Uuid, i32, DateTime<Utc>)>, Tally) {
    let mut records = Vec::new();
    let mut tally = Tally::default();
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
