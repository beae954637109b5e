//! Separate `incidentd` processes: replicas sharing one PostgreSQL database, a lost change
//! listener, and a stalled subscriber measured from outside the server process.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

use crate::helpers::{
    EVENTS_SUBSCRIPTION, TEST_SECRET, TestDb, Ws, spawn_app, terminate_backends, test_config,
};
use crate::subscriptions::{receive_sequences, write_event};

/// An `incidentd serve` child process on port 0; killed when dropped.
pub struct Replica {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// Every line the server logged so far (JSON).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Replica {
    pub async fn start(database_url: &str, extra_env: &[(&str, &str)]) -> Replica {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_incidentd"));
        command
            .env("DATABASE_URL", database_url)
            .env("INCIDENTD_LISTEN", "127.0.0.1:0")
            .env("INCIDENTD_JWT_SECRET", TEST_SECRET)
            .env("INCIDENTD_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            // These tests load one machine with many writers; the lock timeout is tested alone.
            .env("INCIDENTD_DB_LOCK_TIMEOUT", "30s")
            // The tests read every message; server pings are tested on their own.
            .env("INCIDENTD_WS_PING_INTERVAL", "0s")
            .envs(extra_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("incidentd starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if log["fields"]["message"] == "incidentd listening" {
                    return log["fields"]["addr"]
                        .as_str()
                        .unwrap()
                        .parse::<SocketAddr>()
                        .unwrap();
                }
            }
            panic!("incidentd exited before listening");
        })
        .await
        .expect("incidentd listens within 30 s");
        // Keep draining the log so the child never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Replica { child, addr, log }
    }

    /// The most resident memory the process has had (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

/// Writes on one replica reach subscribers on another, through every listener failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_one_timeline_even_when_the_listener_is_killed() {
    let writer = spawn_app().await;
    if !writer.db.is_postgres() {
        eprintln!("replicas need PostgreSQL (TEST_DATABASE_URL); SQLite is one process by design");
        return;
    }
    let reader = Replica::start(&writer.database_url, &[]).await;
    let alice = writer.responder();
    for run in 0..3 {
        let incident = writer.new_incident(&alice, &format!("run {run}")).await;
        let mut ws = Ws::ready(reader.addr, &alice.token).await;
        ws.subscribe("s", EVENTS_SUBSCRIPTION, json!({ "id": incident }))
            .await;
        let (progress_tx, progress_rx) = tokio::sync::watch::channel(0usize);
        let writers = (0..5).map(|w| {
            let (writer, alice, progress_tx) = (&writer, &alice, progress_tx.clone());
            async move {
                for i in 0..200 {
                    write_event(writer, alice, incident, &format!("w{w} e{i}")).await;
                    progress_tx.send_modify(|n| *n += 1);
                }
            }
        });
        let killer = async {
            let mut progress = progress_rx.clone();
            progress.wait_for(|n| *n >= 300).await.unwrap();
            let killed = terminate_backends(&writer.database_url, "incidentd-listener").await;
            assert!(killed >= 1, "a listener connection was terminated");
        };
        let (seen, _, _) = tokio::join!(
            receive_sequences(&mut ws, "s", 1000),
            join_all(writers),
            killer
        );
        assert_eq!(seen, (1..=1000).collect::<Vec<i64>>(), "run {run}");
    }

    // With no writes racing it, a killed listener still resyncs: the next write arrives.
    let incident = writer.new_incident(&alice, "quiet").await;
    let mut ws = Ws::ready(reader.addr, &alice.token).await;
    ws.subscribe("s", EVENTS_SUBSCRIPTION, json!({ "id": incident }))
        .await;
    terminate_backends(&writer.database_url, "incidentd-listener").await;
    write_event(&writer, &alice, incident, "after the outage").await;
    assert_eq!(receive_sequences(&mut ws, "s", 1).await, [1]);
}

/// A client that stops reading neither slows the others nor grows the server without bound;
/// it is dropped after the write timeout and resumes from its cursor.
///
/// It measures the server's memory, which the rest of the suite running beside it distorts (a
/// slower machine queues more for the healthy subscriber: growth measured 20 MiB alone and
/// 95 MiB under the whole suite, for 24 MiB published). So it is ignored in the parallel suite
/// and `.ci/run` runs it on its own, on both databases:
/// `cargo test --test api -- --ignored --exact replicas::a_stalled_subscriber_costs_bounded_memory_and_catches_up_after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn a_stalled_subscriber_costs_bounded_memory_and_catches_up_after() {
    let (db, url) = TestDb::create().await;
    // The server under test is a separate process, so its memory is its own.
    let server = Replica::start(&url, &[("INCIDENTD_WS_WRITE_TIMEOUT", "1s")]).await;
    let _db = db;
    let auth = incidentd::auth::Authenticator::new(&test_config(&url).auth()).unwrap();
    let org = Uuid::new_v4();
    let token = auth
        .mint(
            org,
            Uuid::new_v4(),
            incidentd::incident::identity::Role::Responder,
            Duration::from_secs(3600),
        )
        .unwrap();
    let alice = crate::helpers::Caller {
        org,
        user: Uuid::new_v4(),
        token,
    };
    let client = reqwest::Client::new();
    let gql = |query: &'static str, variables: serde_json::Value| {
        let (client, token, addr) = (client.clone(), alice.token.clone(), server.addr);
        async move {
            let body: serde_json::Value = client
                .post(format!("http://{addr}/graphql"))
                .bearer_auth(token)
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(body.get("errors").is_none(), "{body}");
            body
        }
    };
    let created = gql(
        "mutation { createIncident(input: { title: \"firehose\" }) { id } }",
        json!({}),
    )
    .await;
    let incident = created["data"]["createIncident"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut healthy = Ws::ready(server.addr, &alice.token).await;
    healthy
        .subscribe("h", EVENTS_SUBSCRIPTION, json!({ "id": incident }))
        .await;
    let mut stalled = Ws::ready(server.addr, &alice.token).await;
    stalled
        .subscribe("s", EVENTS_SUBSCRIPTION, json!({ "id": incident }))
        .await;
    // From here on `stalled` is never read.

    let before = server.rss_kib();
    let content = "x".repeat(8 * 1024);
    const EVENTS: usize = 3000;
    let reader = tokio::spawn(async move {
        let seen = receive_sequences(&mut healthy, "h", EVENTS).await;
        (healthy, seen)
    });
    for _ in 0..(EVENTS / 10) {
        join_all((0..10).map(|_| {
            gql(
                "mutation($id: UUID!, $c: String!) { addIncidentEvent(incidentId: $id, input: { content: $c }) { sequence } }",
                json!({ "id": incident, "c": content }),
            )
        }))
        .await;
    }
    let (_, seen) = reader.await.unwrap();
    assert_eq!(
        seen,
        (1..=EVENTS as i64).collect::<Vec<_>>(),
        "the healthy subscriber got everything"
    );
    let after = server.rss_kib();
    let pushed_kib = (EVENTS * content.len() / 1024) as u64;
    println!(
        "stalled subscriber: server RSS {before} KiB → {after} KiB while {pushed_kib} KiB of events were published"
    );
    assert!(
        after.saturating_sub(before) < 48 * 1024,
        "server memory grew by {} KiB",
        after - before
    );

    // The server cut the stalled client off instead of queueing for it: reading now yields
    // what the socket buffers held, then the end, well short of everything.
    let mut buffered = 0;
    while let crate::helpers::WsEvent::Message(_) = stalled.next().await {
        buffered += 1;
    }
    println!(
        "stalled subscriber: {buffered} of {EVENTS} events were in flight when it was dropped"
    );
    assert!(buffered < EVENTS, "the stalled connection was dropped");

    // The stalled client resumes from its cursor on a new connection and misses nothing.
    let mut resumed = Ws::ready(server.addr, &alice.token).await;
    resumed
        .subscribe(
            "r",
            EVENTS_SUBSCRIPTION,
            json!({ "id": incident, "after": buffered }),
        )
        .await;
    let rest = receive_sequences(&mut resumed, "r", EVENTS - buffered).await;
    assert_eq!(
        rest,
        ((buffered as i64 + 1)..=EVENTS as i64).collect::<Vec<_>>()
    );
}

/// JSON logs: the request id a client sends (or one made up) is in every log line of the
/// request and in the response.
#[tokio::test]
async fn every_log_line_of_a_request_carries_its_id() {
    let (_db, url) = TestDb::create().await;
    let server = Replica::start(&url, &[]).await;
    let client = reqwest::Client::new();
    let request_id = format!("trace-{}", Uuid::new_v4().simple());
    let response = client
        .post(format!("http://{}/graphql", server.addr))
        .header("x-request-id", &request_id)
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-request-id"], request_id.as_str());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<serde_json::Value> = server
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&request_id))
            .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
            .collect();
        if lines
            .iter()
            .any(|l| l["fields"]["message"] == "finished processing request")
        {
            for line in &lines {
                assert_eq!(line["span"]["request_id"], request_id.as_str(), "{line}");
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line for the request"
        );
        tokio::task::yield_now().await;
    }
}
