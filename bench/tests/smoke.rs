//! CI smoke: a real server (in-process, port 0) on a fresh database, a tiny seeded data set, and
//! every scenario for a couple of seconds. Fails on errors, missed or duplicated deliveries, and
//! scenarios that did nothing; never on speed. SQLite by default; PostgreSQL with
//! TEST_DATABASE_URL=postgres://… (a new database per run, dropped at the end).

use std::time::Duration;

use clap::Parser;
use incidentd::app::Application;
use incidentd::config::Config;
use incidentd_bench::cli::{Cli, Command};
use incidentd_bench::seed::{SeedOptions, seed};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

const SECRET: &str = "bench-smoke-secret-long-enough-for-hs256!";

enum TestDb {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

async fn test_db() -> (TestDb, String) {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            let name = format!("incidentd_bench_{}", Uuid::new_v4().simple());
            let admin = sea_orm::Database::connect(&admin_url)
                .await
                .expect("TEST_DATABASE_URL is reachable");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create the test database");
            admin.close().await.ok();
            let url = with_database(&admin_url, &name);
            (TestDb::Postgres { admin_url, name }, url)
        }
        _ => {
            let dir = tempfile::tempdir().expect("a temp dir");
            let url = format!("sqlite://{}/bench.db", dir.path().display());
            (TestDb::Sqlite(dir), url)
        }
    }
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Async work cannot run in Drop on the test's runtime; a short-lived one can.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                rt.block_on(async {
                    if let Ok(admin) = sea_orm::Database::connect(&admin_url).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                        admin.close().await.ok();
                    }
                });
            })
            .join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_without_errors() {
    let (_db, url) = test_db().await;
    let mut config = Config::for_database(&url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.jwt_secret = Some(SECRET.to_string().into());
    config.db_max_connections = 8;
    let app = Application::build(config).await.expect("the server builds");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

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

    let base = format!("http://{addr}");
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

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
}
