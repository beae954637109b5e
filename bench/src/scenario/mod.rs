//! The scenarios: each runs against the server for a fixed time on a fixed number of
//! connections, then (reads and writes) as its floor, the server's own SQL straight on the
//! database on as many connections.

pub mod fanout;
pub mod peer;
pub mod read;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::client::{Credentials, Gql};
use crate::db::Pool;
use crate::drive::{NoProbe, Probe, ServerUse, drive};
use crate::stats::Summary;
use crate::world::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    List,
    Board,
    Detail,
    Write,
    Fanout,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::List => "list",
            Scenario::Board => "board",
            Scenario::Detail => "detail",
            Scenario::Write => "write",
            Scenario::Fanout => "fanout",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub url: String,
    pub credentials: Credentials,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub server_pid: Option<u32>,
    pub floor: bool,
    pub transition_share: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: Scenario,
    pub connections: usize,
    pub server: Summary,
    pub server_use: ServerUse,
    /// Server CPU milliseconds per request.
    pub server_cpu_ms_per_request: Option<f64>,
    pub statements_per_request: Option<f64>,
    pub floor: Option<Summary>,
    pub floor_statements_per_request: Option<f64>,
    /// Server throughput ÷ floor throughput.
    pub ratio_to_floor: Option<f64>,
}

/// Reads the server's statement counter at the edges of the measured window.
pub(crate) struct MetricsProbe(pub(crate) String);

impl Probe for MetricsProbe {
    async fn statements(&self) -> Option<f64> {
        crate::client::statements_total(&self.0)
            .await
            .ok()
            .flatten()
    }
}

pub async fn run_http(
    scenario: Scenario,
    pool: &Pool,
    opts: &RunOptions,
) -> anyhow::Result<ScenarioReport> {
    // Read the world afresh: an earlier scenario may have moved incidents along.
    let world = World::load(pool, opts.credentials.token_org()).await?;
    let probe = MetricsProbe(opts.url.clone());
    let c = opts.connections;
    let org_of = |w: usize| &world.orgs[w % world.orgs.len()];
    let gql_for = |w: usize| -> anyhow::Result<Gql> {
        let org = org_of(w);
        Gql::new(&opts.url, &opts.credentials.token(org.id, org.user)?)
    };
    let seed = |w: usize| opts.seed.wrapping_mul(1_000_003).wrapping_add(w as u64);
    let (server, floor, floor_statements) = match scenario {
        Scenario::List | Scenario::Board | Scenario::Detail => {
            let page = match scenario {
                Scenario::List => read::Page::List,
                Scenario::Board => read::Page::Board,
                _ => read::Page::Detail,
            };
            let workers = (0..c)
                .map(|w| Ok(read::ServerRead::new(gql_for(w)?, page, org_of(w), seed(w))))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let server = drive(workers, opts.warmup, opts.duration, opts.server_pid, &probe).await;
            let floor = if opts.floor {
                let sql = read::FloorSql::new(pool);
                let workers = (0..c)
                    .map(|w| {
                        read::FloorRead::new(pool.clone(), sql.clone(), page, org_of(w), seed(w))
                    })
                    .collect();
                Some(drive(workers, opts.warmup, opts.duration, None, &NoProbe).await)
            } else {
                None
            };
            (server, floor, f64::from(read::FloorRead::statements(page)))
        }
        Scenario::Write => {
            let share = opts.transition_share;
            let workers = write::assign(&world, c)
                .into_iter()
                .enumerate()
                .map(|(w, (_, owned))| {
                    Ok(write::ServerWrite::new(gql_for(w)?, owned, share, seed(w)))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let server = drive(workers, opts.warmup, opts.duration, opts.server_pid, &probe).await;
            let floor = if opts.floor {
                // The statuses moved on while the server ran: read them again.
                let world = World::load(pool, opts.credentials.token_org()).await?;
                let sql = write::WriteSql::new(pool);
                let lock = (!pool.is_postgres()).then(|| Arc::new(tokio::sync::Mutex::new(())));
                let workers = write::assign(&world, c)
                    .into_iter()
                    .enumerate()
                    .map(|(w, (o, owned))| {
                        let org = &world.orgs[o];
                        write::FloorWrite::new(
                            pool.clone(),
                            sql.clone(),
                            org.id,
                            org.user,
                            owned,
                            share,
                            seed(w) ^ 0xf100,
                            lock.clone(),
                        )
                    })
                    .collect();
                Some(drive(workers, opts.warmup, opts.duration, None, &NoProbe).await)
            } else {
                None
            };
            (
                server,
                floor,
                write::floor_statements(share, pool.is_postgres()),
            )
        }
        Scenario::Fanout => anyhow::bail!("fanout is not an HTTP scenario"),
    };
    let requests = server.summary.requests as f64;
    let per_request = |x: f64| (requests > 0.0).then(|| x / requests);
    Ok(ScenarioReport {
        scenario,
        connections: c,
        server_cpu_ms_per_request: server
            .server
            .cpu_seconds
            .and_then(|s| per_request(s * 1000.0)),
        statements_per_request: server.server.statements.and_then(per_request),
        ratio_to_floor: floor
            .as_ref()
            .filter(|f| f.summary.throughput > 0.0)
            .map(|f| server.summary.throughput / f.summary.throughput),
        floor_statements_per_request: floor.as_ref().map(|_| floor_statements),
        floor: floor.map(|f| f.summary),
        server: server.summary,
        server_use: server.server,
    })
}
