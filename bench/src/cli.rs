//! The command line, and what each command does.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::client::Credentials;
use crate::db::Pool;
use crate::report::{Machine, Report, table};
use crate::scenario::fanout::{self, FanoutOptions};
use crate::scenario::peer::{self, PeerOptions};
use crate::scenario::{RunOptions, Scenario, run_http};
use crate::seed::{SeedOptions, seed};
use crate::world::World;

#[derive(Debug, Parser)]
#[command(name = "incidentd-bench", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a reproducible data set straight to the database (after running the migrations).
    Seed(SeedArgs),
    /// Run scenarios against a server, each followed by its SQL floor.
    Run(Box<RunArgs>),
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// `postgres://…` or `sqlite://…`, the server's database.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    #[arg(long, default_value_t = 20)]
    pub organizations: usize,
    /// Incidents per organization.
    #[arg(long, default_value_t = 500)]
    pub incidents: usize,
    /// Timeline events per incident.
    #[arg(long, default_value_t = 30)]
    pub events: usize,
    /// Seed of the random generator: the same seed writes the same rows.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Delete every incident, event, postmortem and audit row first.
    #[arg(long)]
    pub reset: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The server's database, for the world (which incidents exist) and the floors.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// The server's HS256 secret: the bench mints a responder token per organization.
    #[arg(long, env = "INCIDENTD_JWT_SECRET", conflicts_with = "token")]
    pub jwt_secret: Option<String>,
    /// A bearer token to use instead (its organization only).
    #[arg(long)]
    pub token: Option<String>,
    /// Scenarios to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "list,board,detail,write,fanout"
    )]
    pub scenarios: Vec<Scenario>,
    /// Connections (HTTP keep-alive connections to the server; database connections for the floor).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Measured time of each phase.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before each phase.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// The server's process id: its CPU time and memory are read from /proc. Repeat for
    /// several replicas (`fanout` reports each; the other scenarios read the first).
    #[arg(long)]
    pub server_pid: Vec<u32>,
    /// Skip the SQL floors.
    #[arg(long)]
    pub no_floor: bool,
    /// Share of `write` requests that are transitions (the rest add timeline events).
    #[arg(long, default_value_t = 0.2)]
    pub transition_share: f64,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A peer server to measure beside incidentd (PostGraphile 5, `bench/peer/`): `list`,
    /// `board` and `detail` run on each in turn, no floors; other scenarios are skipped.
    #[arg(long)]
    pub peer: Option<String>,
    /// The peer's process id, for its CPU time per request.
    #[arg(long, requires = "peer")]
    pub peer_pid: Option<u32>,
    /// Phases each side runs per page, alternating (incidentd, peer, incidentd, peer, …).
    #[arg(long, default_value_t = 2, requires = "peer")]
    pub peer_rounds: usize,
    #[command(flatten)]
    pub fanout: FanoutArgs,
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Subscriptions held open during `fanout`.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Share of them on `incidentChanged`; the rest on one incident's `incidentEvents`.
    #[arg(long, default_value_t = 0.1)]
    pub changed_share: f64,
    /// Subscriptions per WebSocket connection (1 to 100).
    #[arg(long, default_value_t = 1)]
    pub per_connection: usize,
    /// Incidents per organization written to and subscribed to.
    #[arg(long, default_value_t = 5)]
    pub hot_per_org: usize,
    /// Events written per second, over all writers.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// WebSocket URLs to spread subscribers over (default: the server's, `ws://…/graphql`);
    /// repeat for several replicas.
    #[arg(long)]
    pub ws_url: Vec<String>,
    /// Longest wait for deliveries once the writers stop.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// WebSocket connections opened at once while ramping up.
    #[arg(long, default_value_t = 64)]
    pub connect_parallelism: usize,
    /// Reconnects allowed per connection (each resumes `incidentEvents` from its cursor).
    #[arg(long, default_value_t = 3)]
    pub max_reconnects: u32,
    /// Restarts allowed per subscription the server ends (`SUBSCRIBER_LAGGED`, a database
    /// error): `incidentEvents` resumes from its cursor, `incidentChanged` starts afresh.
    #[arg(long, default_value_t = 50)]
    pub max_resubscribes: u32,
    /// Bytes of content in each written event (0: a short note).
    #[arg(long, default_value_t = 0)]
    pub content_bytes: usize,
    /// One more connection that stops reading its socket for this long (e.g. `60s`) while the
    /// writers run; reported apart from the others.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub stall: Option<Duration>,
    /// When the stalled connection stops reading, after the writers start.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub stall_at: Duration,
    /// Subscriptions on the stalled connection (one `incidentChanged`, the rest `incidentEvents`).
    #[arg(long, default_value_t = 10)]
    pub stall_subscriptions: usize,
    /// SO_RCVBUF of the stalled connection's socket until its stall is over (0: the system's
    /// autotuned default), so the server's writes block sooner.
    #[arg(long, default_value_t = 0)]
    pub stall_recv_buffer: usize,
    /// Terminate the servers' LISTEN connections (`pg_terminate_backend` of the
    /// `incidentd-listener` sessions on this database) this long after the writers start.
    /// Repeatable. PostgreSQL only.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub terminate_listener_at: Vec<Duration>,
    /// Run `--restart-command` this long after the writers start.
    #[arg(long, value_parser = humantime::parse_duration, requires = "restart_command")]
    pub restart_postgres_at: Option<Duration>,
    /// A shell command that restarts PostgreSQL (e.g.
    /// `pg_ctlcluster --skip-systemctl-redirect 15 main restart`).
    #[arg(long, requires = "restart_postgres_at")]
    pub restart_command: Option<String>,
}

impl FanoutArgs {
    fn faults(&self) -> anyhow::Result<Vec<fanout::Fault>> {
        let mut faults: Vec<fanout::Fault> = self
            .terminate_listener_at
            .iter()
            .map(|at| fanout::Fault {
                at: *at,
                kind: fanout::FaultKind::TerminateListener,
            })
            .collect();
        if let (Some(at), Some(command)) = (self.restart_postgres_at, &self.restart_command) {
            anyhow::ensure!(!command.trim().is_empty(), "--restart-command is empty");
            faults.push(fanout::Fault {
                at,
                kind: fanout::FaultKind::Command(command.clone()),
            });
        }
        Ok(faults)
    }
}

pub async fn main_with(cli: Cli) -> anyhow::Result<Option<Report>> {
    match cli.command {
        Command::Seed(args) => {
            let opts = SeedOptions {
                organizations: args.organizations,
                incidents: args.incidents,
                events: args.events,
                seed: args.seed,
                reset: args.reset,
                ..SeedOptions::default()
            };
            let report = seed(&args.database_url, &opts).await?;
            println!(
                "seeded {} organizations, {} incidents, {} events, {} postmortems, {} audit rows in {:.1} s",
                report.organizations,
                report.incidents,
                report.events,
                report.postmortems,
                report.audit_events,
                report.seconds
            );
            Ok(None)
        }
        Command::Run(args) => {
            let report = run(*args).await?;
            Ok(Some(report))
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<Report> {
    let credentials = match (&args.token, &args.jwt_secret) {
        (Some(t), _) => Credentials::Token(t.clone()),
        (None, Some(s)) => Credentials::Secret(s.clone()),
        (None, None) => anyhow::bail!("give --jwt-secret (or INCIDENTD_JWT_SECRET) or --token"),
    };
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    let url = args.url.trim_end_matches('/').to_string();
    // The floors' connections, plus a spare for the bench's own reads.
    let pool = Pool::connect(&args.database_url, args.connections as u32 + 1).await?;
    let opts = RunOptions {
        url: url.clone(),
        credentials: credentials.clone(),
        connections: args.connections,
        duration: args.duration,
        warmup: args.warmup,
        server_pid: args.server_pid.first().copied(),
        floor: !args.no_floor,
        transition_share: args.transition_share.clamp(0.0, 1.0),
        seed: args.seed,
    };
    let mut report = Report {
        backend: if pool.is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        url: url.clone(),
        connections: args.connections,
        duration_seconds: args.duration.as_secs_f64(),
        machine: Machine::read(),
        scenarios: Vec::new(),
        fanout: None,
        peer: Vec::new(),
    };
    let peer = args.peer.as_ref().map(|url| PeerOptions {
        url: url.trim_end_matches('/').to_string(),
        pid: args.peer_pid,
        rounds: args.peer_rounds,
    });
    for scenario in &args.scenarios {
        if let Some(peer) = &peer {
            if matches!(scenario, Scenario::Write | Scenario::Fanout) {
                eprintln!(
                    "skipping {}: --peer runs the read pages only",
                    scenario.name()
                );
                continue;
            }
            eprintln!("running {} on incidentd and the peer …", scenario.name());
            report
                .peer
                .push(peer::run(*scenario, &pool, &opts, peer).await?);
            continue;
        }
        eprintln!("running {} …", scenario.name());
        if *scenario == Scenario::Fanout {
            let world = World::load(&pool, credentials.token_org()).await?;
            let ws_urls = if args.fanout.ws_url.is_empty() {
                vec![format!(
                    "{}/graphql",
                    url.replacen("http://", "ws://", 1)
                        .replacen("https://", "wss://", 1)
                )]
            } else {
                args.fanout.ws_url.clone()
            };
            let opts = FanoutOptions {
                ws_urls,
                url: url.clone(),
                subscribers: args.fanout.subscribers,
                changed_share: args.fanout.changed_share.clamp(0.0, 1.0),
                per_connection: args.fanout.per_connection,
                hot_per_org: args.fanout.hot_per_org,
                rate: args.fanout.rate,
                writers: args.fanout.writers,
                duration: args.duration,
                drain: args.fanout.drain,
                connect_parallelism: args.fanout.connect_parallelism,
                max_reconnects: args.fanout.max_reconnects,
                server_pids: args.server_pid.clone(),
                content_bytes: args.fanout.content_bytes,
                max_resubscribes: args.fanout.max_resubscribes,
                stall: args.fanout.stall.map(|length| fanout::Stall {
                    at: args.fanout.stall_at,
                    length,
                    recv_buffer: args.fanout.stall_recv_buffer,
                }),
                stall_subscriptions: args.fanout.stall_subscriptions,
                faults: args.fanout.faults()?,
                seed: args.seed,
            };
            report.fanout = Some(fanout::run(&pool, &world, &credentials, &opts).await?);
        } else {
            report
                .scenarios
                .push(run_http(*scenario, &pool, &opts).await?);
        }
    }
    pool.close().await;
    print!("{}", table(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}
