//! Day-2 operations: metrics, readiness, database outages, the configuration reference and
//! graceful shutdown. Process-wide behaviour (gauges, signals) is measured on a child process.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use sea_orm_migration::MigratorTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Caller, EVENTS_SUBSCRIPTION, TestApp, TestDb, Ws, code, gql, replica_caller, spawn_app,
    terminate_backends, test_config,
};
use crate::replicas::Replica;
use incidentd::incident::identity::Role;

/// The value of one sample of `name` whose labels include `labels`; summed when several match.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, found) = match head.split_once('{') {
            Some((metric, rest)) => (metric, parse_labels(rest.strip_suffix('}').unwrap_or(rest))),
            None => (head, BTreeMap::new()),
        };
        if metric != name
            || !labels
                .iter()
                .all(|(k, v)| found.get(*k).map(String::as_str) == Some(*v))
        {
            continue;
        }
        let value: f64 = value.parse().expect("a numeric sample");
        total = Some(total.unwrap_or(0.0) + value);
    }
    total
}

fn parse_labels(raw: &str) -> BTreeMap<String, String> {
    raw.split("\",")
        .filter_map(|pair| pair.split_once("=\""))
        .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
        .collect()
}

async fn scrape(client: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

/// Scrapes until `check` holds, for at most `WAIT_FOR`; returns the last scrape either way.
async fn scrape_until(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + WAIT_FOR;
    loop {
        let text = scrape(client, addr).await;
        if check(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const WAIT_FOR: Duration = Duration::from_secs(10);

/// Requests are counted by matched route and status, GraphQL operations by name and outcome
/// with a latency histogram, and the pool is sampled at scrape time.
#[tokio::test]
async fn metrics_count_requests_operations_and_the_pool() {
    let app = spawn_app().await;
    let alice = app.responder();
    // A name no other test uses, so its counts are exact in the shared recorder.
    let name = format!("OpsProbe{}", Uuid::new_v4().simple());
    let query = format!("query {name} {{ viewer {{ userId }} }}");
    for _ in 0..2 {
        app.ok(&alice, &query, json!({})).await;
    }
    let failing = format!("query {name} {{ noSuchField }}");
    app.err(&alice, &failing, json!({})).await;
    let not_found = format!(
        "mutation {name}Fail {{ transitionIncident(id: \"{}\", to: RESOLVED) {{ id }} }}",
        Uuid::new_v4()
    );
    assert_eq!(
        code(&app.err(&alice, &not_found, json!({})).await),
        "NOT_FOUND"
    );
    let mutation =
        format!("mutation {name}Create {{ createIncident(input: {{ title: \"m\" }}) {{ id }} }}");
    app.ok(&alice, &mutation, json!({})).await;
    app.client
        .get(app.url("/api/v1/nowhere/at/all"))
        .send()
        .await
        .unwrap();

    let text = scrape(&app.client, app.addr).await;
    let ops = "incidentd_graphql_operations_total";
    assert_eq!(
        sample(
            &text,
            ops,
            &[("operation", &name), ("type", "query"), ("outcome", "ok")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            ops,
            &[
                ("operation", &format!("{name}Fail")),
                ("type", "mutation"),
                ("outcome", "error")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    // An unknown field fails validation, before an operation is chosen; it still counts.
    assert!(
        sample(&text, ops, &[("type", "invalid"), ("outcome", "error")]).is_some_and(|v| v >= 1.0)
    );
    assert_eq!(
        sample(
            &text,
            ops,
            &[
                ("operation", &format!("{name}Create")),
                ("type", "mutation"),
                ("outcome", "ok")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "incidentd_graphql_operation_duration_seconds_count",
            &[("operation", &name), ("type", "query")]
        ),
        Some(2.0)
    );
    assert!(
        text.contains("incidentd_graphql_operation_duration_seconds_bucket{"),
        "a histogram, not a summary"
    );
    let http = "incidentd_http_requests_total";
    assert!(
        sample(
            &text,
            http,
            &[("method", "POST"), ("route", "/graphql"), ("status", "200")]
        )
        .is_some_and(|v| v >= 5.0)
    );
    // Unmatched paths share one label value: a scanner cannot blow up the series count.
    assert!(sample(&text, http, &[("route", "unmatched"), ("status", "404")]).is_some());
    assert!(!text.contains("/api/v1/nowhere"));
    for gauge in [
        "incidentd_db_pool_connections_in_use",
        "incidentd_db_pool_connections_idle",
    ] {
        assert!(sample(&text, gauge, &[]).is_some(), "{gauge} missing");
    }
    assert_eq!(
        sample(&text, "incidentd_db_pool_connections_max", &[]),
        Some(10.0),
        "sampled from this app's pool (test_config sets 10)"
    );
    // The scrape itself is counted, on the next scrape.
    let text = scrape(&app.client, app.addr).await;
    assert!(sample(&text, http, &[("route", "/metrics"), ("status", "200")]).is_some());
}

/// WebSocket gauges follow connections and subscriptions up and back down on every exit
/// path, and the change feed counts what it published and delivered. A child process has a
/// recorder of its own, so the values are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_gauges_and_change_counters_follow_the_connections() {
    let (db, url) = TestDb::create().await;
    let server = Replica::start(&url, &[]).await;
    let _db = db;
    let alice = replica_caller(&url, Role::Responder);
    let client = reqwest::Client::new();
    let gauges = |text: &str| {
        (
            sample(text, "incidentd_ws_connections", &[]).unwrap_or(0.0),
            sample(text, "incidentd_ws_subscriptions", &[]).unwrap_or(0.0),
        )
    };
    assert_eq!(gauges(&scrape(&client, server.addr).await), (0.0, 0.0));

    let (_, created) = gql(
        &client,
        server.addr,
        &alice.token,
        "mutation { createIncident(input: { title: \"watched\" }) { id } }",
        json!({}),
    )
    .await
    .unwrap();
    let incident = created["data"]["createIncident"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut first = Ws::ready(server.addr, &alice.token).await;
    let mut second = Ws::ready(server.addr, &alice.token).await;
    first
        .subscribe("a", EVENTS_SUBSCRIPTION, json!({ "id": incident }))
        .await;
    second
        .subscribe("b", EVENTS_SUBSCRIPTION, json!({ "id": incident }))
        .await;
    let text = scrape_until(&client, server.addr, |t| gauges(t) == (2.0, 2.0)).await;
    assert_eq!(gauges(&text), (2.0, 2.0), "{text}");

    let (_, added) = gql(
        &client,
        server.addr,
        &alice.token,
        "mutation($id: UUID!) { addIncidentEvent(incidentId: $id, input: { content: \"x\" }) { sequence } }",
        json!({ "id": incident }),
    )
    .await
    .unwrap();
    assert!(added.get("errors").is_none(), "{added}");
    assert_eq!(
        first.next_message().await["payload"]["data"]["incidentEvents"]["sequence"],
        1
    );
    assert_eq!(
        second.next_message().await["payload"]["data"]["incidentEvents"]["sequence"],
        1
    );
    let text = scrape_until(&client, server.addr, |t| {
        sample(t, "incidentd_changes_delivered_total", &[]) >= Some(2.0)
    })
    .await;
    assert!(
        sample(&text, "incidentd_changes_published_total", &[]) >= Some(2.0),
        "{text}"
    );
    assert!(
        sample(&text, "incidentd_changes_delivered_total", &[]) >= Some(2.0),
        "{text}"
    );

    // Exit paths: a completed subscription, then a client that vanishes without a close frame.
    first.send(json!({ "type": "complete", "id": "a" })).await;
    let text = scrape_until(&client, server.addr, |t| gauges(t) == (2.0, 1.0)).await;
    assert_eq!(gauges(&text), (2.0, 1.0), "{text}");
    drop(second);
    let text = scrape_until(&client, server.addr, |t| gauges(t) == (1.0, 0.0)).await;
    assert_eq!(gauges(&text), (1.0, 0.0), "{text}");
    first.stream.close(None).await.unwrap();
    let text = scrape_until(&client, server.addr, |t| gauges(t) == (0.0, 0.0)).await;
    assert_eq!(gauges(&text), (0.0, 0.0), "{text}");
}

#[tokio::test]
async fn readyz_is_ready_on_a_fresh_app() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn readyz_is_503_while_a_migration_is_pending_and_recovers_after() {
    let app = spawn_app().await;
    let conn = app.state.graphql.domain.db.conn();
    migration::Migrator::down(conn, Some(1)).await.unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.unwrap(), "1 migrations pending");
    migration::Migrator::up(conn, None).await.unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// With `--no-migrate`, a database that is down at start-up does not keep the server down:
/// it is live, not ready, and answers `DATABASE_UNAVAILABLE` within the acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_starts_and_fails_fast_while_the_database_is_unreachable() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/incidentd");
    let mut server = Replica::start(
        &url,
        &[
            ("INCIDENTD_NO_MIGRATE", "true"),
            ("INCIDENTD_DB_ACQUIRE_TIMEOUT", "1s"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("http://{}{path}", server.addr)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 503);

    let alice = replica_caller(&url, Role::Responder);
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = gql(
            &client,
            server.addr,
            &alice.token,
            "{ incidents(first: 5) { totalCount } }",
            json!({}),
        )
        .await
        .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(status, 200, "{body}");
        assert_eq!(code(&body["errors"][0]), "DATABASE_UNAVAILABLE", "{body}");
        assert!(elapsed < Duration::from_secs(5), "answered in {elapsed:?}");
    }
    // Metrics still render without a database.
    assert!(
        scrape(&client, server.addr)
            .await
            .contains("incidentd_db_pool_connections_in_use")
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server is still up"
    );
}

/// Every server-side connection is terminated (a failover, a restart): requests keep working,
/// and the ones caught in the cut fail as `DATABASE_UNAVAILABLE`, never `INTERNAL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_recover_by_themselves_after_the_database_drops_every_connection() {
    let app = spawn_app().await;
    if !app.db.is_postgres() {
        eprintln!("terminating server connections needs PostgreSQL (TEST_DATABASE_URL)");
        return;
    }
    let alice = app.responder();
    let create = "mutation($t: String!) { createIncident(input: { title: $t }) { id } }";
    // Warm the pool with several connections.
    join_all((0..8).map(|i| app.ok(&alice, create, json!({ "t": format!("warm {i}") })))).await;

    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let writers = async {
        let mut kill_tx = Some(kill_tx);
        let mut outcomes = Vec::new();
        for round in 0..10 {
            let results = join_all((0..8).map(|i| {
                app.post(
                    Some(&alice.token),
                    create,
                    json!({ "t": format!("r{round} w{i}") }),
                )
            }))
            .await;
            outcomes.extend(results);
            if round == 2 {
                let _ = kill_tx.take().map(|tx| tx.send(()));
            }
        }
        outcomes
    };
    let killer = async {
        let _ = kill_rx.await;
        terminate_backends(&app.database_url, "incidentd").await
    };
    let (outcomes, killed) = tokio::join!(writers, killer);
    assert!(killed >= 1, "no server connection was terminated");
    for (status, body) in &outcomes {
        assert_eq!(*status, 200, "{body}");
        if let Some(errors) = body.get("errors") {
            assert_eq!(code(&errors[0]), "DATABASE_UNAVAILABLE", "{body}");
        }
    }

    // Fill the pool again (the cut may have left it empty), then kill every connection in it:
    // the pool now holds only dead connections, and the next requests succeed anyway.
    // A connection killed while it sat in the pool for less than the idle-ping threshold fails
    // its next statement once, so the refill may meet one from the first cut.
    join_all((0..8).map(|i| {
        ok_despite_lost_connections(&app, &alice, create, json!({ "t": format!("refill {i}") }))
    }))
    .await;
    let killed = terminate_backends(&app.database_url, "incidentd").await;
    assert!(killed >= 1, "no server connection was terminated");
    for _ in 0..5 {
        let count = "{ incidents(first: 1) { totalCount } }";
        ok_despite_lost_connections(&app, &alice, count, json!({})).await;
    }
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

/// Runs an operation until it succeeds, within 5 s: every failure on the way must be
/// `DATABASE_UNAVAILABLE` (a statement that met a connection the database had dropped).
async fn ok_despite_lost_connections(
    app: &TestApp,
    caller: &Caller,
    query: &str,
    variables: Value,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = app
            .post(Some(&caller.token), query, variables.clone())
            .await;
        assert_eq!(status, 200, "{body}");
        match body.get("errors") {
            None => return body["data"].clone(),
            Some(errors) => {
                assert_eq!(code(&errors[0]), "DATABASE_UNAVAILABLE", "{body}");
                assert!(Instant::now() < deadline, "still failing after 5 s: {body}");
            }
        }
    }
}

/// `incidentd --help` and the README's configuration table list the same flags, environment
/// variables and defaults.
#[test]
fn the_readme_documents_every_flag_the_binary_accepts() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let from_help = flags_in_help(&help);
    assert!(from_help.len() >= 10, "parsed too little of --help: {help}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let from_readme = flags_in_readme(&readme);

    let help_names: BTreeSet<_> = from_help.keys().collect();
    let readme_names: BTreeSet<_> = from_readme.keys().collect();
    assert_eq!(
        help_names, readme_names,
        "flags in --help (left) and README.md (right) differ"
    );
    for (flag, (env, default)) in &from_help {
        let (readme_env, readme_default) = &from_readme[flag];
        assert_eq!(env, readme_env, "environment variable of {flag}");
        if let Some(default) = default {
            assert_eq!(default, readme_default, "default of {flag}");
        }
    }
}

/// flag → (environment variable, default) from clap's help.
fn flags_in_help(help: &str) -> BTreeMap<String, (String, Option<String>)> {
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let option = trimmed.strip_prefix("--").or_else(|| {
            trimmed
                .split_once(", --")
                .map(|(_, rest)| rest)
                .filter(|_| trimmed.starts_with('-'))
        });
        if let Some(rest) = option {
            let name = rest.split([' ', '<']).next().unwrap();
            current = Some(format!("--{name}"));
        }
        let Some(flag) = &current else { continue };
        if matches!(flag.as_str(), "--help" | "--version") {
            continue;
        }
        if let Some((_, env)) = line.split_once("[env: ") {
            let env = env.split(['=', ']']).next().unwrap().to_string();
            let default = line
                .split_once("[default: ")
                .map(|(_, d)| d.split(']').next().unwrap().to_string());
            flags.insert(flag.clone(), (env, default));
        }
    }
    flags
}

/// flag → (environment variable, default) from the README's `| `--flag` | `ENV` | default |` rows.
fn flags_in_readme(readme: &str) -> BTreeMap<String, (String, String)> {
    readme
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(|c| c.trim().trim_matches('`')).collect();
            (
                cells[1].to_string(),
                (cells[2].to_string(), cells[3].to_string()),
            )
        })
        .collect()
}

/// SIGTERM with requests in flight: each request that gets an answer gets a whole one, an open
/// WebSocket is told 1001 (going away), and the process exits 0 within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_requests_and_closes_websockets_with_1001() {
    let (db, url) = TestDb::create().await;
    let mut server = Replica::start(&url, &[("INCIDENTD_SHUTDOWN_TIMEOUT", "10s")]).await;
    let _db = db;
    let alice = replica_caller(&url, Role::Responder);
    let mut ws = Ws::ready(server.addr, &alice.token).await;

    let client = reqwest::Client::new();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let first_tx = std::sync::Mutex::new(Some(first_tx));
    let requests = join_all((0..20).map(|i| {
        let (client, token, addr, first_tx) =
            (client.clone(), alice.token.clone(), server.addr, &first_tx);
        async move {
            let result = gql(
                &client,
                addr,
                &token,
                "mutation($t: String!) { createIncident(input: { title: $t }) { id title } }",
                json!({ "t": format!("in flight {i}") }),
            )
            .await;
            if let Some(tx) = first_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            (i, result)
        }
    }));
    let terminate = async {
        // Once one answer is back the rest are queued behind it in the server.
        first_rx.await.unwrap();
        let pid = server.child.id().unwrap().to_string();
        let status = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(&pid)
            .status()
            .await
            .unwrap();
        assert!(status.success());
    };
    let (results, ()) = tokio::join!(requests, terminate);

    let mut answered = 0;
    for (i, result) in results {
        // A request the closing listener never accepted has no answer; that is allowed.
        let Ok((status, body)) = result else { continue };
        answered += 1;
        assert_eq!(status, 200, "request {i}: {body}");
        assert!(body.get("errors").is_none(), "request {i}: {body}");
        assert_eq!(
            body["data"]["createIncident"]["title"],
            format!("in flight {i}")
        );
    }
    assert!(answered >= 1);
    assert_eq!(ws.closed().await, Some(1001));
    let exit = tokio::time::timeout(Duration::from_secs(15), server.child.wait())
        .await
        .expect("the server exits within the shutdown deadline")
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
}

/// Five replicas starting at once on an empty database all start, and the schema is migrated
/// once (sea-orm-migration takes no lock of its own: without ours, the second `CREATE TYPE`
/// fails and that replica exits).
#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    use sea_orm::{ConnectionTrait, Statement};
    let (db, url) = TestDb::create().await;
    if !db.is_postgres() {
        eprintln!("one process owns a SQLite file; the race is PostgreSQL's");
        return;
    }
    let builds = futures_util::future::join_all(
        (0..5).map(|_| incidentd::app::Application::build(test_config(&url))),
    )
    .await;
    for built in &builds {
        if let Err(e) = built {
            panic!("a replica failed to start: {e:#}");
        }
    }
    let conn = sea_orm::Database::connect(&url).await.unwrap();
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n, COUNT(DISTINCT version) AS d FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap();
    let (n, d): (i64, i64) = (row.try_get("", "n").unwrap(), row.try_get("", "d").unwrap());
    assert_eq!(n, d, "each migration recorded once");
    assert!(n >= 2);
    conn.close().await.ok();
}

/// Operation names become metric labels only as admitted (here: the first two seen); the rest
/// are counted as `other`. With `--metrics-listen`, `/metrics` moves to its own address and the
/// public listener no longer serves it.
#[tokio::test]
async fn metric_labels_are_bounded_and_metrics_can_listen_apart() {
    let (_db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.metrics_max_operation_names = 2;
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = incidentd::app::Application::build(config).await.unwrap();
    let (addr, metrics_addr) = (app.local_addr(), app.metrics_addr().unwrap());
    let token = app
        .state()
        .graphql
        .auth
        .mint(
            Uuid::new_v4(),
            Uuid::new_v4(),
            incidentd::incident::identity::Role::Viewer,
            Duration::from_secs(600),
        )
        .unwrap();
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::new();

    let public = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        public.status(),
        404,
        "/metrics is not on the public listener"
    );

    let ops = "incidentd_graphql_operations_total";
    let other = |text: &str| {
        sample(
            text,
            ops,
            &[("operation", "other"), ("type", "query"), ("outcome", "ok")],
        )
        .unwrap_or(0.0)
    };
    let before = other(&scrape(&client, metrics_addr).await);
    let prefix = format!("Label{}", Uuid::new_v4().simple());
    for i in 0..4 {
        let (status, body) = gql(
            &client,
            addr,
            &token,
            &format!("query {prefix}N{i} {{ viewer {{ role }} }}"),
            json!({}),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let text = scrape(&client, metrics_addr).await;
    for (i, admitted) in [(0, true), (1, true), (2, false), (3, false)] {
        let name = format!("{prefix}N{i}");
        let labelled = sample(&text, ops, &[("operation", &name), ("type", "query")]).is_some();
        assert_eq!(labelled, admitted, "{name}");
    }
    assert!(other(&text) - before >= 2.0, "{text}");
}
