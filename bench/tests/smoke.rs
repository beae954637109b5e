//! CI smoke: a real server (in-process, port 0) on a fresh database, a tiny seeded data set, and
//! every scenario for a couple of seconds. Fails on errors, missed or duplicated deliveries, and
//! scenarios that did nothing; never on speed. SQLite by default; PostgreSQL with
//! TEST_DATABASE_URL=postgres://… (a new database per run, dropped at the end).

use std::time::Duration;

use clap::Parser;
use incidentd_bench::cli::{Cli, Command};
use incidentd_bench::seed::{SeedOptions, seed};
use incidentd_test_support::{TestDb, TestServer};

const SECRET: &str = "bench-smoke-secret-long-enough-for-hs256!";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_without_errors() {
    let (_db, url) = TestDb::create().await;
    let mut config = incidentd_test_support::config(&url, SECRET);
    config.db_max_connections = 8;
    let server = TestServer::start(config).await;

    let seeded = seed(
        &url,
        &SeedOptions {
            organizations: 2,
            incidents: 8,
            events: 6,
            ..SeedOptions::default()
        },
    )
    .await
    .expect("seed");
    assert_eq!(seeded.incidents, 16);
    assert_eq!(seeded.events, 16 * 6);

    let base = server.http();
    let cli = Cli::try_parse_from([
        "incidentd-bench",
        "run",
        "--url",
        &base,
        "--database-url",
        &url,
        "--jwt-secret",
        SECRET,
        "--connections",
        "4",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--subscribers",
        "40",
        "--hot-per-org",
        "2",
        "--rate",
        "20",
        "--writers",
        "2",
        "--drain",
        "10s",
    ])
    .expect("the arguments parse");
    let Command::Run(args) = cli.command else {
        unreachable!("a run command")
    };
    let report = tokio::time::timeout(Duration::from_secs(120), incidentd_bench::cli::run(*args))
        .await
        .expect("the bench finishes in time")
        .expect("the bench runs");

    let json = serde_json::to_string_pretty(&report).unwrap();
    assert_eq!(report.errors(), 0, "errors: {json}");
    assert_eq!(report.scenarios.len(), 4, "{json}");
    for s in &report.scenarios {
        assert!(
            s.server.requests > 0,
            "{} made no request: {json}",
            s.scenario.name()
        );
        let floor = s.floor.as_ref().expect("a floor");
        assert!(
            floor.requests > 0,
            "{} floor ran nothing: {json}",
            s.scenario.name()
        );
        assert!(
            s.statements_per_request.is_some_and(|n| n > 0.0),
            "{}: the server's statement counter is exported: {json}",
            s.scenario.name()
        );
    }
    let fanout = report.fanout.as_ref().expect("a fan-out report");
    assert!(fanout.events_written > 0, "{json}");
    assert!(fanout.deliveries > 0, "{json}");
    assert_eq!(fanout.deliveries, fanout.expected_deliveries, "{json}");

    server.stop().await;
}
