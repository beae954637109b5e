//! Benchmark, not a check (ignored by default): the `webhooks` scenario. What an endpoint adds
//! to each write (latency, statements), and how fast the worker delivers to a receiver on
//! loopback, on one server in this process (port 0). Run:
//!   cargo test --release -p incidentd-bench --test webhooks -- --ignored --nocapture
//! (add TEST_DATABASE_URL=postgres://… for PostgreSQL).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use incidentd::incident::identity::Role;
use incidentd_bench::client::Gql;
use incidentd_test_support::{TestDb, TestServer};
use serde_json::json;
use uuid::Uuid;

const SECRET: &str = "bench-webhooks-secret-long-enough-for-hs256!";
const WRITERS: usize = 8;
const WRITES_PER_WRITER: usize = 100;

struct Phase {
    seconds: f64,
    latencies_ms: Vec<f64>,
    statements: u64,
}

impl Phase {
    fn writes(&self) -> usize {
        self.latencies_ms.len()
    }
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    }
    fn line(&self, label: &str) -> String {
        format!(
            "{label:<16} {:>6} writes  {:>7.0} writes/s  p50 {:>6.2} ms  p99 {:>6.2} ms  {:.2} statements/write",
            self.writes(),
            self.writes() as f64 / self.seconds,
            self.percentile(0.5),
            self.percentile(0.99),
            self.statements as f64 / self.writes() as f64,
        )
    }
}

/// `WRITERS` writers, each renaming its own incident `WRITES_PER_WRITER` times.
async fn writes(server: &TestServer, gql: &[Gql], incidents: &[Uuid], round: &str) -> Phase {
    let before = server.state.graphql.domain.db.statement_count();
    let started = Instant::now();
    let per_writer = join_all(gql.iter().zip(incidents).map(|(gql, id)| async move {
        let mut latencies = Vec::with_capacity(WRITES_PER_WRITER);
        for n in 0..WRITES_PER_WRITER {
            let at = Instant::now();
            gql.run(
                "mutation($id: UUID!, $t: String!) { updateIncident(id: $id, input: { title: $t }) { id } }",
                &json!({ "id": id, "t": format!("{round} {n}") }),
            )
            .await
            .expect("the write succeeds");
            latencies.push(at.elapsed().as_secs_f64() * 1000.0);
        }
        latencies
    }))
    .await;
    Phase {
        seconds: started.elapsed().as_secs_f64(),
        latencies_ms: per_writer.into_iter().flatten().collect(),
        statements: server.state.graphql.domain.db.statement_count() - before,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly with --ignored"]
async fn bench_webhooks() {
    let (_db, url) = TestDb::create().await;
    let mut config = incidentd_test_support::config(&url, SECRET);
    config.db_max_connections = 10;
    config.db_lock_timeout = Duration::from_secs(20);
    config.webhook_allow_hosts = vec!["127.0.0.0/8".parse().unwrap()];
    let server = TestServer::start(config).await;
    let (org, user) = (Uuid::new_v4(), Uuid::new_v4());
    let mint = |role| {
        server
            .state
            .graphql
            .auth
            .mint(org, user, role, Duration::from_secs(3600))
            .unwrap()
    };
    let responder = mint(Role::Responder);
    let admin = Gql::new(&server.http(), &mint(Role::Admin)).unwrap();
    let gql: Vec<Gql> = (0..WRITERS)
        .map(|_| Gql::new(&server.http(), &responder).unwrap())
        .collect();
    let mut incidents = vec![];
    for (w, gql) in gql.iter().enumerate() {
        let created = gql
            .run(
                "mutation($t: String!) { createIncident(input: { title: $t }) { id } }",
                &json!({ "t": format!("bench {w}") }),
            )
            .await
            .unwrap();
        incidents.push(
            created["createIncident"]["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }

    // A receiver on loopback that answers 200 and counts.
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/hooks", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(axum::routing::post(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            ""
        }
    }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    writes(&server, &gql, &incidents, "warm-up").await;
    let without = writes(&server, &gql, &incidents, "without").await;
    admin
        .run(
            "mutation($url: String!) { createWebhookEndpoint(input: { url: $url }) { secret } }",
            &json!({ "url": receiver }),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let with = writes(&server, &gql, &incidents, "with").await;
    let expected = with.writes();
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.load(Ordering::SeqCst) < expected {
        assert!(Instant::now() < deadline, "deliveries stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_delivered = started.elapsed().as_secs_f64();

    println!(
        "webhooks on {}:",
        if url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!("{}", without.line("no endpoint"));
    println!("{}", with.line("one endpoint"));
    println!(
        "added per write: {:+.2} ms at p50, {:+.2} statements",
        with.percentile(0.5) - without.percentile(0.5),
        (with.statements as f64 - without.statements as f64) / expected as f64
    );
    println!(
        "{expected} messages delivered {all_delivered:.2} s after the first write: {:.0} deliveries/s (writes done at {:.2} s)",
        expected as f64 / all_delivered,
        with.seconds
    );
}
