//! Short versions of the fan-out runs of BENCHMARKS.md: real servers (in-process, port 0) on a
//! fresh database each, a few hundred subscribers for a few seconds, driven by the bench's own
//! `fanout` scenario. Every test fails on a missed or duplicated delivery. SQLite by default;
//! PostgreSQL with TEST_DATABASE_URL=postgres://… (a new database per test, dropped at the end);
//! the replica and listener tests need PostgreSQL and say so on SQLite. The PostgreSQL restart
//! disrupts every other test of the cluster, so it is ignored here and run alone by .ci/run.

use std::time::Duration;

use clap::Parser;
use incidentd::config::Config;
use incidentd_bench::cli::{Cli, Command};
use incidentd_bench::report::Report;
use incidentd_bench::scenario::fanout::FanoutReport;
use incidentd_bench::seed::{SeedOptions, seed};
use incidentd_test_support::{TestDb, TestServer};

const SECRET: &str = "bench-fanout-secret-long-enough-for-hs256!";

/// A server for the fan-out runs; `tune` changes its configuration further.
async fn start_server(url: &str, tune: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = incidentd_test_support::config(url, SECRET);
    config.db_max_connections = 16;
    // The subscribers read every message; server pings are tested on their own.
    config.ws_ping_interval = Duration::ZERO;
    tune(&mut config);
    TestServer::start(config).await
}

/// Four organizations of twelve incidents with three events each.
async fn seed_small(url: &str) {
    let seeded = seed(
        url,
        &SeedOptions {
            organizations: 4,
            incidents: 12,
            events: 3,
            ..SeedOptions::default()
        },
    )
    .await
    .expect("seed");
    assert_eq!(seeded.incidents, 48);
}

/// `incidentd-bench run --scenarios fanout` with `extra` arguments, bounded in time.
async fn fanout(url: &str, server: &TestServer, extra: &[&str]) -> (FanoutReport, String) {
    let base = server.http();
    let mut args = vec![
        "incidentd-bench",
        "run",
        "--scenarios",
        "fanout",
        "--url",
        &base,
        "--database-url",
        url,
        "--jwt-secret",
        SECRET,
        "--connections",
        "2",
        "--writers",
        "4",
        "--drain",
        "20s",
    ];
    if !extra.contains(&"--hot-per-org") {
        args.extend_from_slice(&["--hot-per-org", "3"]);
    }
    args.extend_from_slice(extra);
    let cli = Cli::try_parse_from(args).expect("the arguments parse");
    let Command::Run(args) = cli.command else {
        unreachable!("a run command")
    };
    let report: Report =
        tokio::time::timeout(Duration::from_secs(240), incidentd_bench::cli::run(*args))
            .await
            .expect("the bench finishes in time")
            .expect("the bench runs");
    let json = serde_json::to_string_pretty(&report).unwrap();
    (report.fanout.expect("a fan-out report"), json)
}

/// Nothing lost, nothing twice, and the run did something.
fn assert_complete(f: &FanoutReport, json: &str) {
    assert!(f.events_written > 0, "nothing was written: {json}");
    assert!(f.deliveries > 0, "nothing was delivered: {json}");
    assert_eq!(f.missed, 0, "missed deliveries: {json}");
    assert_eq!(f.duplicated, 0, "duplicated deliveries: {json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_subscribers_receive_every_event_once() {
    let (_db, url) = TestDb::create().await;
    let server = start_server(&url, |_| {}).await;
    seed_small(&url).await;
    let (f, json) = fanout(
        &url,
        &server,
        &[
            "--subscribers",
            "300",
            "--per-connection",
            "5",
            "--changed-share",
            "0.2",
            "--rate",
            "60",
            "--duration",
            "3s",
        ],
    )
    .await;
    assert_complete(&f, &json);
    assert_eq!(f.deliveries, f.expected_deliveries, "{json}");
    assert_eq!(f.subscription_errors, 0, "{json}");
    assert_eq!(f.write_errors, 0, "{json}");
    // No stream ended, so every incidentChanged subscriber was held to missed changes too.
    assert_eq!(f.changed_resynced, 0, "{json}");
    assert_eq!(f.changed_subscribers, 60, "{json}");
    // Every subscription was seen live (by its replay or its canary) after it was sent.
    let startup = &f.startup;
    assert_eq!(
        (startup.all.subscriptions, startup.all.live),
        (300, 300),
        "{json}"
    );
    assert_eq!(
        (startup.timelines.live, startup.changed.live),
        (240, 60),
        "{json}"
    );
    assert!(startup.all.max_ms > 0.0, "{json}");
    assert!(startup.all.p50_ms <= startup.all.max_ms, "{json}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_deliver_every_event_once() {
    let (db, url) = TestDb::create().await;
    if !db.is_postgres() {
        eprintln!("replicas share a PostgreSQL database: set TEST_DATABASE_URL to run this test");
        return;
    }
    let a = start_server(&url, |_| {}).await;
    let b = start_server(&url, |_| {}).await;
    seed_small(&url).await;
    let (ws_a, ws_b) = (a.ws(), b.ws());
    // The writers post to `a`; half the connections are on `b`, which hears of the writes
    // only through PostgreSQL.
    let (f, json) = fanout(
        &url,
        &a,
        &[
            "--subscribers",
            "300",
            "--per-connection",
            "5",
            "--changed-share",
            "0.2",
            "--rate",
            "60",
            "--duration",
            "3s",
            "--ws-url",
            &ws_a,
            "--ws-url",
            &ws_b,
        ],
    )
    .await;
    assert_complete(&f, &json);
    assert_eq!(f.deliveries, f.expected_deliveries, "{json}");
    assert_eq!(f.subscription_errors, 0, "{json}");
    assert_eq!(f.changed_resynced, 0, "{json}");
    a.stop().await;
    b.stop().await;
}

/// A client that stops reading is cut off by the server's write timeout (pings are off, so
/// nothing else would end it), then reconnects and resumes from its cursors: nothing missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_cut_off_and_resumes_from_its_cursor() {
    let (_db, url) = TestDb::create().await;
    let server = start_server(&url, |c| {
        c.ws_write_timeout = Duration::from_secs(1);
    })
    .await;
    seed_small(&url).await;
    // One hot incident per organization, so all 19 of the stalled client's timelines follow
    // the same one: each event written there (a quarter of the writes, ten or more a second
    // even on a loaded machine) puts 19 × 32 KiB on its socket, against a 4 KiB receive
    // buffer. The server's writes to it block within a second of the stall's start.
    let (f, json) = fanout(
        &url,
        &server,
        &[
            "--subscribers",
            "40",
            "--per-connection",
            "5",
            "--hot-per-org",
            "1",
            "--rate",
            "100",
            "--content-bytes",
            "32768",
            "--duration",
            "9s",
            "--stall",
            "6s",
            "--stall-at",
            "1s",
            "--stall-subscriptions",
            "20",
            "--stall-recv-buffer",
            "4096",
            "--max-reconnects",
            "5",
        ],
    )
    .await;
    assert_complete(&f, &json);
    assert_eq!(f.deliveries, f.expected_deliveries, "{json}");
    let s = f.stalled.as_ref().expect("a stalled client");
    assert!(
        s.outcome.cut_off.is_some(),
        "the server never cut the stalled client off: {json}"
    );
    assert!(
        s.reconnects >= 1,
        "the stalled client never reconnected: {json}"
    );
    assert!(
        s.outcome.resumed_at_seconds.is_some(),
        "the stalled client did not resubscribe: {json}"
    );
    assert!(s.expected_deliveries > 0, "{json}");
    assert_eq!(s.missed, 0, "the stalled client missed events: {json}");
    assert_eq!(s.duplicated, 0, "the stalled client got duplicates: {json}");
    server.stop().await;
}

/// The server's LISTEN connection terminated from the database side mid-run: it listens again
/// and every `incidentEvents` subscriber re-reads from its cursor, so nothing is missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_listener_mid_run_loses_nothing() {
    let (db, url) = TestDb::create().await;
    if !db.is_postgres() {
        eprintln!("the LISTEN connection is PostgreSQL's: set TEST_DATABASE_URL to run this test");
        return;
    }
    let server = start_server(&url, |_| {}).await;
    seed_small(&url).await;
    let (f, json) = fanout(
        &url,
        &server,
        &[
            "--subscribers",
            "300",
            "--per-connection",
            "5",
            "--changed-share",
            "0.1",
            "--rate",
            "60",
            "--duration",
            "4s",
            "--terminate-listener-at",
            "1500ms",
        ],
    )
    .await;
    assert_complete(&f, &json);
    assert_eq!(f.faults.len(), 1, "{json}");
    assert!(
        f.faults[0].outcome.starts_with("terminated 1 of 1"),
        "the listener was not terminated: {json}"
    );
    // Events written after the fault reached the subscribers.
    let after = f
        .phases
        .iter()
        .find(|p| p.name.starts_with("after listener"))
        .expect("a phase after the fault");
    assert!(
        after.deliveries > 0,
        "nothing delivered after the fault: {json}"
    );
    server.stop().await;
}

/// PostgreSQL restarted mid-run: writes fail while it is away, every subscription is started
/// again (from its cursor) once it is back, and nothing committed is missed. It stops the shared
/// PostgreSQL server, so it is ignored in the parallel suite; .ci/run runs it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn a_postgres_restart_mid_run_loses_nothing() {
    let (db, url) = TestDb::create().await;
    if !db.is_postgres() {
        eprintln!("this drill restarts PostgreSQL: set TEST_DATABASE_URL");
        return;
    }
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster")
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let restart = format!("pg_ctlcluster --skip-systemctl-redirect {version} main restart");
    let server = start_server(&url, |c| {
        c.db_acquire_timeout = Duration::from_secs(1);
    })
    .await;
    seed_small(&url).await;
    let (f, json) = fanout(
        &url,
        &server,
        &[
            "--subscribers",
            "200",
            "--per-connection",
            "5",
            "--changed-share",
            "0.1",
            "--rate",
            "40",
            "--duration",
            "8s",
            "--restart-postgres-at",
            "2s",
            "--restart-command",
            &restart,
            "--max-resubscribes",
            "200",
        ],
    )
    .await;
    assert_complete(&f, &json);
    assert_eq!(f.faults.len(), 1, "{json}");
    assert_eq!(f.faults[0].outcome, "exit 0", "{json}");
    let after = f
        .phases
        .iter()
        .find(|p| p.name.starts_with("after `pg_ctlcluster"))
        .expect("a phase after the restart");
    assert!(
        after.deliveries > 0,
        "nothing delivered after the restart: {json}"
    );
    server.stop().await;
}
