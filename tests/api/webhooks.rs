//! Outbound webhooks end to end: real receivers on 127.0.0.1 (port 0) that verify every
//! signature with the reference library, a clock the test moves instead of sleeping, and the
//! delivery log read back through GraphQL. Every address these tests connect to is loopback.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use incidentd::incident::identity::Role;
use incidentd::webhook::ManualClock;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::{Caller, TestApp, TestDb, code, spawn_app_with_clock, test_config};

const WAIT: Duration = Duration::from_secs(30);

/// What a receiver answers, in order; once the plan is spent, 200.
#[derive(Clone)]
enum Reply {
    Status(u16),
    Slow(Duration),
    Redirect,
    RetryAfter(u16, u64),
}

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    /// Whether the receiver failed this attempt on purpose (`fail_every`).
    failed: bool,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }
    /// Checks the signature with the reference library, with `secret`.
    fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&self.body, &self.headers)
            .is_ok()
    }
}

#[derive(Clone)]
struct ReceiverState {
    plan: Arc<Mutex<VecDeque<Reply>>>,
    seen: mpsc::UnboundedSender<Received>,
    /// Fails the first attempt of every n-th new message id with 500.
    fail_every: Option<usize>,
    ids: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Every request takes this long (so attempts in flight overlap if they can).
    delay: Duration,
    /// Requests per message id being answered now, and how often one came while another of
    /// its id was in flight.
    in_flight: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    overlaps: Arc<std::sync::atomic::AtomicUsize>,
}

struct Receiver {
    url: String,
    plan: Arc<Mutex<VecDeque<Reply>>>,
    seen: mpsc::UnboundedReceiver<Received>,
    overlaps: Arc<std::sync::atomic::AtomicUsize>,
}

async fn receive(
    State(state): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut reply = state.plan.lock().unwrap().pop_front();
    let mut failed = false;
    if let (Some(every), Some(id)) = (state.fail_every, headers.get("webhook-id")) {
        let mut ids = state.ids.lock().unwrap();
        if ids.insert(id.to_str().unwrap().to_string()) && ids.len() % every == 0 {
            reply = Some(Reply::Status(500));
            failed = true;
        }
    }
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    {
        let mut in_flight = state.in_flight.lock().unwrap();
        let n = in_flight.entry(id.clone()).or_default();
        if *n > 0 {
            state
                .overlaps
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        *n += 1;
    }
    let _ = state.seen.send(Received {
        path: uri.path().to_string(),
        headers,
        body,
        failed,
    });
    tokio::time::sleep(state.delay).await;
    let response = answer(reply).await;
    *state.in_flight.lock().unwrap().get_mut(&id).unwrap() -= 1;
    response
}

async fn answer(reply: Option<Reply>) -> Response {
    match reply {
        None => StatusCode::OK.into_response(),
        Some(Reply::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
        Some(Reply::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            StatusCode::OK.into_response()
        }
        Some(Reply::Redirect) => (StatusCode::FOUND, [("location", "/elsewhere")]).into_response(),
        Some(Reply::RetryAfter(code, seconds)) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", seconds.to_string())],
        )
            .into_response(),
    }
}

impl Receiver {
    async fn start(plan: Vec<Reply>) -> Receiver {
        Receiver::start_with(plan, None).await
    }

    async fn start_with(plan: Vec<Reply>, fail_every: Option<usize>) -> Receiver {
        Receiver::start_full(plan, fail_every, Duration::ZERO).await
    }

    async fn start_full(plan: Vec<Reply>, fail_every: Option<usize>, delay: Duration) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let plan = Arc::new(Mutex::new(VecDeque::from(plan)));
        let overlaps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let state = ReceiverState {
            plan: plan.clone(),
            seen: tx,
            fail_every,
            ids: Default::default(),
            delay,
            in_flight: Default::default(),
            overlaps: overlaps.clone(),
        };
        let app = axum::Router::new()
            .fallback(axum::routing::any(receive))
            .with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hooks"),
            plan,
            seen: rx,
            overlaps,
        }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("a delivery arrives in time")
            .expect("the receiver runs")
    }

    fn then(&self, reply: Reply) {
        self.plan.lock().unwrap().push_back(reply);
    }
}

struct Setup {
    app: TestApp,
    clock: Arc<ManualClock>,
    admin: Caller,
    responder: Caller,
}

async fn setup_with(tune: impl FnOnce(&mut incidentd::config::Config)) -> Setup {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.webhook_allow_hosts = vec!["127.0.0.0/8".parse().unwrap()];
    config.webhook_timeout = Duration::from_secs(5);
    config.public_url = Some("https://desk.example".parse().unwrap());
    tune(&mut config);
    let clock = Arc::new(ManualClock::default());
    let app = spawn_app_with_clock(db, config, clock.clone()).await;
    let admin = app.caller(uuid::Uuid::new_v4(), Role::Admin);
    let responder = app.caller(admin.org, Role::Responder);
    Setup {
        app,
        clock,
        admin,
        responder,
    }
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

const CREATE: &str = "mutation($input: WebhookEndpointInput!) { createWebhookEndpoint(input: $input) { secret endpoint { id url eventTypes format enabled } } }";
const ENDPOINT: &str = "query($id: UUID!) { webhookEndpoint(id: $id) { id enabled disabledReason deliveries(first: 50) { nodes { id messageId eventType incidentId status nextAttemptAt payload attempts { at responseStatus durationMs error } } } } }";

impl Setup {
    /// Registers `url`; the endpoint's id and secret.
    async fn endpoint(&self, url: &str, extra: Value) -> (String, String) {
        let mut input = json!({ "url": url });
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let data = self
            .app
            .ok(&self.admin, CREATE, json!({ "input": input }))
            .await;
        let created = &data["createWebhookEndpoint"];
        (
            created["endpoint"]["id"].as_str().unwrap().to_string(),
            created["secret"].as_str().unwrap().to_string(),
        )
    }

    async fn read(&self, id: &str) -> Value {
        self.app
            .ok(&self.admin, ENDPOINT, json!({ "id": id }))
            .await["webhookEndpoint"]
            .clone()
    }

    /// Reads the endpoint until `done` holds (the worker records after the receiver answered).
    async fn read_until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let endpoint = self.read(id).await;
            if done(&endpoint) {
                return endpoint;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the endpoint never reached the state: {endpoint}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Moves the worker's clock and wakes it.
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.app.state.webhooks.wake();
    }
}

/// Milliseconds from a delivery's last attempt to its next.
fn scheduled_after(delivery: &Value) -> i64 {
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let attempts = delivery["attempts"].as_array().unwrap();
    let last = time(&attempts[attempts.len() - 1]["at"]);
    time(&delivery["nextAttemptAt"])
        .signed_duration_since(last)
        .num_milliseconds()
}

fn deliveries(endpoint: &Value) -> &Vec<Value> {
    endpoint["deliveries"]["nodes"].as_array().unwrap()
}

#[tokio::test]
async fn every_event_type_arrives_signed_once_per_change_in_order() {
    let s = setup().await;
    let mut receiver = Receiver::start(vec![]).await;
    let (_, secret) = s.endpoint(&receiver.url, json!({})).await;
    let id = s
        .app
        .new_incident(&s.responder, "Checkout is down")
        .await
        .to_string();
    let update = "mutation($id: UUID!) { updateIncident(id: $id, input: { title: \"Checkout down\", severity: SEV1 }) { id } }";
    s.app.ok(&s.responder, update, json!({ "id": id })).await;
    let (status, body) = s
        .app
        .transition(&s.responder, &id, "MITIGATING", None)
        .await;
    assert_eq!(status, 200, "{body}");
    // The same transition again changes nothing and sends nothing.
    s.app
        .transition(&s.responder, &id, "MITIGATING", None)
        .await;
    s.app
        .add_event(&s.responder, &id, "rolled back the deploy")
        .await;
    let create_pm = "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { rootCause: \"a bad deploy\", internalNotes: \"secret\" }) { id } }";
    s.app.ok(&s.responder, create_pm, json!({ "id": id })).await;
    let update_pm = "mutation($id: UUID!) { updatePostmortem(incidentId: $id, input: { impactSummary: \"20 minutes\" }) { id } }";
    s.app.ok(&s.responder, update_pm, json!({ "id": id })).await;

    let expected = [
        ("incident.created", 0),
        ("incident.updated", 1), // the severity change appended an event
        ("incident.status_changed", 2),
        ("incident.timeline_event_added", 3),
        ("postmortem.created", 3),
        ("postmortem.updated", 3),
    ];
    let mut ids = vec![];
    for (event_type, sequence) in expected {
        let got = receiver.next().await;
        assert!(got.verifies_with(&secret), "signature of {event_type}");
        assert_eq!(got.header("content-type"), "application/json");
        assert!(got.header("webhook-id").starts_with("msg_"));
        ids.push(got.header("webhook-id").to_string());
        let body = got.json();
        assert_eq!(body["type"], event_type, "{body}");
        assert_eq!(body["data"]["sequence"], sequence, "{body}");
        assert_eq!(body["data"]["organization_id"], s.admin.org.to_string());
        assert_eq!(body["data"]["incident"]["id"], id);
        assert_eq!(
            body["data"]["incident"]["url"],
            format!("https://desk.example/desk/incidents/{id}")
        );
        assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
        match event_type {
            "incident.status_changed" => {
                assert_eq!(body["data"]["incident"]["status"], "MITIGATING");
                assert_eq!(body["data"]["event"]["to_status"], "MITIGATING");
            }
            "incident.timeline_event_added" => {
                assert_eq!(body["data"]["event"]["content"], "rolled back the deploy")
            }
            "postmortem.created" => {
                assert_eq!(body["data"]["postmortem"]["root_cause"], "a bad deploy");
                assert!(body["data"]["postmortem"].get("internal_notes").is_none());
            }
            "postmortem.updated" => {
                assert_eq!(body["data"]["postmortem"]["impact_summary"], "20 minutes")
            }
            "incident.updated" => {
                assert_eq!(body["data"]["incident"]["title"], "Checkout down");
                assert_eq!(body["data"]["incident"]["severity"], "SEV1");
            }
            _ => {}
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "one message id per change");

    // Nothing else was queued: the next message is the test message sent now.
    let endpoint_id = s.read_endpoints().await;
    let sent = s
        .app
        .ok(
            &s.admin,
            "mutation($id: UUID!) { sendTestWebhook(id: $id) { eventType status } }",
            json!({ "id": endpoint_id }),
        )
        .await;
    assert_eq!(sent["sendTestWebhook"]["eventType"], "webhook.test");
    let got = receiver.next().await;
    assert_eq!(got.json()["type"], "webhook.test");
    assert!(got.verifies_with(&secret));
}

impl Setup {
    async fn read_endpoints(&self) -> String {
        let data = self
            .app
            .ok(&self.admin, "{ webhookEndpoints { id } }", json!({}))
            .await;
        data["webhookEndpoints"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

#[tokio::test]
async fn only_the_event_types_asked_for_are_sent() {
    let s = setup().await;
    let mut receiver = Receiver::start(vec![]).await;
    let (_, secret) = s
        .endpoint(
            &receiver.url,
            json!({ "eventTypes": ["incident.status_changed"] }),
        )
        .await;
    let id = s
        .app
        .new_incident(&s.responder, "Queue backlog")
        .await
        .to_string();
    s.app.add_event(&s.responder, &id, "looking").await;
    s.app.transition(&s.responder, &id, "RESOLVED", None).await;
    let got = receiver.next().await;
    assert!(got.verifies_with(&secret));
    assert_eq!(got.json()["type"], "incident.status_changed");
    assert_eq!(got.json()["data"]["sequence"], 2);
}

#[tokio::test]
async fn unknown_event_types_and_forbidden_urls_are_refused_at_registration() {
    // No allowed hosts here: nothing below may be reached, and nothing is connected to.
    let s = setup_with(|c| c.webhook_allow_hosts = vec![]).await;
    let refused = [
        "http://127.0.0.1:9/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/",
        "https://100.64.0.1/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:a9fe:a9fe]/",
        "https://[fd00::1]/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "ftp://hooks.example/",
        "not a url",
    ];
    for url in refused {
        let error = s
            .app
            .err(&s.admin, CREATE, json!({ "input": { "url": url } }))
            .await;
        assert_eq!(code(&error), "BAD_USER_INPUT", "{url}: {error}");
        assert_eq!(error["extensions"]["field"], "url", "{url}: {error}");
    }
    let error = s
        .app
        .err(
            &s.admin,
            CREATE,
            json!({ "input": { "url": "https://hooks.example/", "eventTypes": ["incident.exploded"] } }),
        )
        .await;
    assert_eq!(code(&error), "BAD_USER_INPUT", "{error}");
    assert_eq!(error["extensions"]["field"], "eventTypes");
    let data = s
        .app
        .ok(&s.admin, "{ webhookEndpoints { id } }", json!({}))
        .await;
    assert_eq!(data["webhookEndpoints"], json!([]));
}

#[tokio::test]
async fn a_receiver_failing_twice_then_succeeding_gets_one_webhook_id() {
    let s = setup().await;
    let mut receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(503)]).await;
    let (endpoint, secret) = s.endpoint(&receiver.url, json!({})).await;
    s.app.new_incident(&s.responder, "Flaky receiver").await;

    let first = receiver.next().await;
    // A delivery and its attempts are read by two statements: the attempt may show before the
    // status written with it in one transaction, so wait for both.
    let failed = s
        .read_until(&endpoint, |e| {
            let delivery = &deliveries(e)[0];
            delivery["status"] == "FAILED" && delivery["attempts"].as_array().unwrap().len() == 1
        })
        .await;
    let delivery = &deliveries(&failed)[0];
    assert_eq!(delivery["status"], "FAILED");
    assert_eq!(delivery["attempts"][0]["responseStatus"], 500);
    // The next attempt is 5 s after this one on the schedule (±10 %).
    let wait = scheduled_after(delivery);
    assert!((4_500..=5_500).contains(&wait), "{wait} ms");

    s.advance(Duration::from_secs(6));
    let second = receiver.next().await;
    s.read_until(&endpoint, |e| {
        deliveries(e)[0]["attempts"].as_array().unwrap().len() == 2
    })
    .await;
    // Then 5 minutes.
    s.advance(Duration::from_secs(6 * 60));
    let third = receiver.next().await;
    let done = s
        .read_until(&endpoint, |e| deliveries(e)[0]["status"] == "DELIVERED")
        .await;
    for got in [&first, &second, &third] {
        assert_eq!(got.header("webhook-id"), first.header("webhook-id"));
        assert_eq!(got.body, first.body);
        assert!(got.verifies_with(&secret));
    }
    let statuses: Vec<_> = deliveries(&done)[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["responseStatus"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(500), json!(503), json!(200)]);
    assert_eq!(
        deliveries(&done)[0]["messageId"],
        first.header("webhook-id")
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let s = setup().await;
    let mut receiver = Receiver::start(vec![Reply::RetryAfter(429, 120)]).await;
    let (endpoint, _) = s.endpoint(&receiver.url, json!({})).await;
    s.app.new_incident(&s.responder, "Rate limited").await;
    receiver.next().await;
    let failed = s
        .read_until(&endpoint, |e| deliveries(e)[0]["status"] == "FAILED")
        .await;
    let wait = scheduled_after(&deliveries(&failed)[0]);
    assert_eq!(wait, 120_000, "{wait} ms");
    // 5 s (the schedule) is not enough; 2 minutes is.
    s.advance(Duration::from_secs(121));
    receiver.next().await;
    s.read_until(&endpoint, |e| deliveries(e)[0]["status"] == "DELIVERED")
        .await;
}

#[tokio::test]
async fn gone_disables_the_endpoint_with_a_reason_and_an_audit_row() {
    let s = setup().await;
    let mut receiver = Receiver::start(vec![Reply::Status(410)]).await;
    let (endpoint, _) = s.endpoint(&receiver.url, json!({})).await;
    s.app.new_incident(&s.responder, "Receiver retired").await;
    receiver.next().await;
    let disabled = s.read_until(&endpoint, |e| e["enabled"] == false).await;
    assert!(
        disabled["disabledReason"].as_str().unwrap().contains("410"),
        "{disabled}"
    );
    let audit = s.app.audit(s.admin.org, &endpoint).await;
    assert!(
        audit
            .iter()
            .any(|a| a["action"] == "webhook_endpoint_disabled"),
        "{audit:?}"
    );
    // Disabled: new changes queue nothing, and nothing is sent.
    s.app.new_incident(&s.responder, "After").await;
    let after = s.read(&endpoint).await;
    assert_eq!(deliveries(&after).len(), 1);
}

#[tokio::test]
async fn a_slow_receiver_meets_the_timeout_and_a_redirect_is_not_followed() {
    let s = setup_with(|c| c.webhook_timeout = Duration::from_secs(1)).await;
    let mut slow = Receiver::start(vec![Reply::Slow(Duration::from_secs(10))]).await;
    let (slow_endpoint, _) = s.endpoint(&slow.url, json!({})).await;
    let mut moved = Receiver::start(vec![Reply::Redirect]).await;
    let (moved_endpoint, _) = s.endpoint(&moved.url, json!({})).await;
    s.app.new_incident(&s.responder, "Slow and moved").await;

    slow.next().await;
    let timed_out = s
        .read_until(&slow_endpoint, |e| deliveries(e)[0]["status"] == "FAILED")
        .await;
    let attempt = &deliveries(&timed_out)[0]["attempts"][0];
    assert!(
        attempt["error"].as_str().unwrap().contains("timed out"),
        "{attempt}"
    );
    assert_eq!(attempt["responseStatus"], Value::Null);
    assert!(attempt["durationMs"].as_i64().unwrap() < 5_000, "{attempt}");

    let first = moved.next().await;
    assert_eq!(first.path, "/hooks");
    let redirected = s
        .read_until(&moved_endpoint, |e| deliveries(e)[0]["status"] == "FAILED")
        .await;
    let attempt = &deliveries(&redirected)[0]["attempts"][0];
    assert_eq!(attempt["responseStatus"], 302);
    assert!(
        attempt["error"].as_str().unwrap().contains("redirect"),
        "{attempt}"
    );
    // The next request it sees is the retry, to the same path: /elsewhere was never asked for.
    s.advance(Duration::from_secs(6));
    assert_eq!(moved.next().await.path, "/hooks");
}

#[tokio::test]
async fn replay_sends_the_same_message_again() {
    let s = setup().await;
    let mut receiver = Receiver::start(vec![Reply::Status(500)]).await;
    let (endpoint, secret) = s.endpoint(&receiver.url, json!({})).await;
    s.app.new_incident(&s.responder, "Replay me").await;
    let first = receiver.next().await;
    let failed = s
        .read_until(&endpoint, |e| deliveries(e)[0]["status"] == "FAILED")
        .await;
    let delivery_id = deliveries(&failed)[0]["id"].as_str().unwrap().to_string();

    // A failed delivery is sent now, not in 5 s.
    let replayed = s
        .app
        .ok(
            &s.admin,
            "mutation($id: UUID!) { replayWebhookMessage(deliveryId: $id) { id status messageId } }",
            json!({ "id": delivery_id }),
        )
        .await;
    assert_eq!(replayed["replayWebhookMessage"]["status"], "PENDING");
    let second = receiver.next().await;
    assert_eq!(second.header("webhook-id"), first.header("webhook-id"));
    assert_eq!(second.body, first.body);
    assert!(second.verifies_with(&secret));
    s.read_until(&endpoint, |e| deliveries(e)[0]["status"] == "DELIVERED")
        .await;

    // The endpoint's failed and dead deliveries since a time are queued again, and counted.
    receiver.then(Reply::Status(500));
    s.app.new_incident(&s.responder, "Another").await;
    receiver.next().await;
    s.read_until(&endpoint, |e| deliveries(e)[0]["status"] == "FAILED")
        .await;
    let since = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let n = s
        .app
        .ok(
            &s.admin,
            "mutation($id: UUID!, $since: DateTime!) { replayWebhookEndpoint(id: $id, since: $since) }",
            json!({ "id": endpoint, "since": since }),
        )
        .await;
    assert_eq!(n["replayWebhookEndpoint"], 1);
    assert_eq!(
        receiver.next().await.json()["data"]["incident"]["title"],
        "Another"
    );
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_then_only_the_new_one() {
    let s = setup().await;
    let mut receiver = Receiver::start(vec![]).await;
    let (endpoint, old) = s.endpoint(&receiver.url, json!({})).await;
    let rotate = "mutation($id: UUID!, $keep: Int) { rotateWebhookSecret(id: $id, keepOldFor: $keep) { secret endpoint { id } } }";
    let new = s
        .app
        .ok(&s.admin, rotate, json!({ "id": endpoint, "keep": 3600 }))
        .await["rotateWebhookSecret"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    s.app.new_incident(&s.responder, "Rotating").await;
    let got = receiver.next().await;
    assert_eq!(got.header("webhook-signature").split(' ').count(), 2);
    assert!(got.verifies_with(&old) && got.verifies_with(&new));

    let newest = s
        .app
        .ok(&s.admin, rotate, json!({ "id": endpoint, "keep": 0 }))
        .await["rotateWebhookSecret"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    s.app.new_incident(&s.responder, "Rotated").await;
    let got = receiver.next().await;
    assert_eq!(got.header("webhook-signature").split(' ').count(), 1);
    assert!(got.verifies_with(&newest));
    assert!(!got.verifies_with(&new) && !got.verifies_with(&old));
}

#[tokio::test]
async fn secrets_sealed_with_a_key_still_sign() {
    let s =
        setup_with(|c| c.webhook_secret_key = Some("a key for the tests".to_string().into())).await;
    let mut receiver = Receiver::start(vec![]).await;
    let (_, secret) = s.endpoint(&receiver.url, json!({})).await;
    s.app.new_incident(&s.responder, "Sealed").await;
    assert!(receiver.next().await.verifies_with(&secret));
}

#[tokio::test]
async fn slack_and_teams_bodies_are_signed_too() {
    let s = setup().await;
    let mut slack = Receiver::start(vec![]).await;
    let (_, slack_secret) = s.endpoint(&slack.url, json!({ "format": "SLACK" })).await;
    let mut teams = Receiver::start(vec![]).await;
    let (_, teams_secret) = s.endpoint(&teams.url, json!({ "format": "TEAMS" })).await;
    s.create_sev1("Payments failing").await;

    let got = slack.next().await;
    assert!(got.verifies_with(&slack_secret));
    let body = got.json();
    let text = body.to_string();
    assert!(
        body["text"].as_str().unwrap().contains("Payments failing"),
        "{body}"
    );
    assert!(body["blocks"].is_array());
    for needle in ["SEV1", "OPEN", "https://desk.example/desk/incidents/"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }

    let got = teams.next().await;
    assert!(got.verifies_with(&teams_secret));
    let body = got.json();
    assert_eq!(body["type"], "message");
    assert_eq!(
        body["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert!(body.to_string().contains("Payments failing"));
}

impl Setup {
    async fn create_sev1(&self, title: &str) -> String {
        self.app
            .create_incident(
                &self.responder,
                json!({ "title": title, "severity": "SEV1" }),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

#[tokio::test]
async fn only_admins_of_the_organization_see_and_replay() {
    let s = setup().await;
    let mut receiver = Receiver::start(vec![]).await;
    let (endpoint, _) = s.endpoint(&receiver.url, json!({})).await;
    s.app.new_incident(&s.responder, "Ours").await;
    receiver.next().await;
    let ours = s
        .read_until(&endpoint, |e| deliveries(e)[0]["status"] == "DELIVERED")
        .await;
    let delivery = deliveries(&ours)[0]["id"].as_str().unwrap().to_string();

    let stranger = s.app.caller(uuid::Uuid::new_v4(), Role::Admin);
    let data = s
        .app
        .ok(
            &stranger,
            "query($id: UUID!) { webhookEndpoints { id } webhookEndpoint(id: $id) { id } }",
            json!({ "id": endpoint }),
        )
        .await;
    assert_eq!(
        data,
        json!({ "webhookEndpoints": [], "webhookEndpoint": null })
    );
    for (mutation, vars) in [
        (
            "mutation($id: UUID!) { replayWebhookMessage(deliveryId: $id) { id } }",
            json!({ "id": delivery }),
        ),
        (
            "mutation($id: UUID!) { sendTestWebhook(id: $id) { id } }",
            json!({ "id": endpoint }),
        ),
        (
            "mutation($id: UUID!) { deleteWebhookEndpoint(id: $id) }",
            json!({ "id": endpoint }),
        ),
        (
            "mutation($id: UUID!) { rotateWebhookSecret(id: $id) { secret } }",
            json!({ "id": endpoint }),
        ),
        (
            "mutation($id: UUID!) { updateWebhookEndpoint(id: $id, input: { enabled: false }) { id } }",
            json!({ "id": endpoint }),
        ),
    ] {
        let error = s.app.err(&stranger, mutation, vars.clone()).await;
        assert_eq!(code(&error), "NOT_FOUND", "{mutation}: {error}");
        let error = s.app.err(&s.responder, mutation, vars).await;
        assert_eq!(code(&error), "FORBIDDEN", "{mutation}: {error}");
    }
    let error = s
        .app
        .err(&s.responder, "{ webhookEndpoints { id } }", json!({}))
        .await;
    assert_eq!(code(&error), "FORBIDDEN");
    let error = s
        .app
        .err(
            &s.responder,
            CREATE,
            json!({ "input": { "url": receiver.url } }),
        )
        .await;
    assert_eq!(code(&error), "FORBIDDEN");
    // Another organization's changes reach none of our endpoints.
    let theirs = s.app.caller(stranger.org, Role::Responder);
    s.app.new_incident(&theirs, "Theirs").await;
    s.app.new_incident(&s.responder, "Ours again").await;
    assert_eq!(
        receiver.next().await.json()["data"]["incident"]["title"],
        "Ours again"
    );
}

/// Many changes on several incidents at once: each incident's messages arrive in the order of
/// its changes, although the receiver fails some attempts and deliveries run concurrently.
#[tokio::test]
async fn messages_arrive_in_order_per_incident() {
    const INCIDENTS: usize = 20;
    const CHANGES: usize = 50;
    let s = setup().await;
    let mut receiver = Receiver::start_with(vec![], Some(7)).await;
    let (_, secret) = s.endpoint(&receiver.url, json!({})).await;
    let mut ids = vec![];
    for i in 0..INCIDENTS {
        ids.push(
            s.app
                .new_incident(&s.responder, &format!("{i}-0"))
                .await
                .to_string(),
        );
    }
    let started = std::time::Instant::now();
    let writers = ids.iter().cloned().enumerate().map(|(i, id)| {
        let app = &s.app;
        let caller = &s.responder;
        async move {
            for n in 1..CHANGES {
                let update = "mutation($id: UUID!, $t: String!) { updateIncident(id: $id, input: { title: $t }) { id } }";
                app.ok(caller, update, json!({ "id": id, "t": format!("{i}-{n}") })).await;
            }
        }
    });
    futures_util::future::join_all(writers).await;
    let mut last = [-1i64; INCIDENTS];
    let (mut delivered, mut failures) = (0, 0);
    while delivered < INCIDENTS * CHANGES {
        let got = receiver.next().await;
        assert!(got.verifies_with(&secret));
        let title = got.json()["data"]["incident"]["title"]
            .as_str()
            .unwrap()
            .to_string();
        let (i, n) = title.split_once('-').unwrap();
        let (i, n): (usize, i64) = (i.parse().unwrap(), n.parse().unwrap());
        assert_eq!(n, last[i] + 1, "incident {i}: {n} after {}", last[i]);
        if got.failed {
            // Its retry comes before anything behind it, once the schedule's 5 s have passed.
            failures += 1;
            s.advance(Duration::from_secs(6));
        } else {
            last[i] = n;
            delivered += 1;
        }
    }
    assert!(failures > 0);
    eprintln!(
        "{} changes on {INCIDENTS} incidents delivered in order in {:?}",
        INCIDENTS * CHANGES,
        started.elapsed()
    );
}

#[tokio::test]
async fn deliveries_are_counted_in_metrics() {
    let s = setup().await;
    let mut receiver = Receiver::start(vec![]).await;
    s.endpoint(&receiver.url, json!({})).await;
    s.app.new_incident(&s.responder, "Counted").await;
    receiver.next().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = s
            .app
            .client
            .get(s.app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("incidentd_webhook_deliveries_total{outcome=\"delivered\"}")
            && text.contains("incidentd_webhook_delivery_seconds")
            && text.contains("incidentd_webhook_queue_depth")
            && text.contains("incidentd_webhook_oldest_pending_seconds")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A change that rolls back after its messages were written sends nothing: the outbox rows go
/// with it. (A trigger refuses the audit row of incidents titled "ROLLBACK-ME", which the
/// service writes after the outbox rows, in the same transaction.)
#[tokio::test]
async fn a_rolled_back_change_sends_nothing() {
    use sea_orm::ConnectionTrait;
    let s = setup().await;
    let mut receiver = Receiver::start(vec![]).await;
    let (endpoint, _) = s.endpoint(&receiver.url, json!({})).await;
    let db = sea_orm::Database::connect(&s.app.database_url)
        .await
        .unwrap();
    let statements: &[&str] = if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        &[
            "CREATE FUNCTION refuse_marked() RETURNS trigger AS $$ BEGIN \
             IF NEW.changes::text LIKE '%ROLLBACK-ME%' THEN RAISE EXCEPTION 'refused by the test'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_marked BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_marked()",
        ]
    } else {
        &[
            "CREATE TRIGGER refuse_marked BEFORE INSERT ON audit_events \
           WHEN NEW.changes LIKE '%ROLLBACK-ME%' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ]
    };
    for sql in statements {
        db.execute_unprepared(sql).await.unwrap();
    }
    db.close().await.ok();

    let error = s
        .app
        .err(
            &s.responder,
            "mutation { createIncident(input: { title: \"ROLLBACK-ME\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&error), "INTERNAL", "{error}");
    s.app.new_incident(&s.responder, "Kept").await;
    let got = receiver.next().await;
    assert_eq!(got.json()["data"]["incident"]["title"], "Kept");
    let endpoint = s.read(&endpoint).await;
    assert_eq!(deliveries(&endpoint).len(), 1, "{endpoint}");
}

/// An endpoint failing without a single success for five days is disabled, with the reason.
#[tokio::test]
async fn five_days_of_failures_disable_the_endpoint() {
    let s = setup().await;
    let failing: Vec<Reply> = (0..10).map(|_| Reply::Status(500)).collect();
    let mut receiver = Receiver::start(failing).await;
    let (endpoint, _) = s.endpoint(&receiver.url, json!({})).await;
    s.app.new_incident(&s.responder, "Never answered").await;
    receiver.next().await;
    s.read_until(&endpoint, |e| deliveries(e)[0]["status"] == "FAILED")
        .await;
    // Four days later it still tries.
    s.advance(Duration::from_secs(4 * 86_400));
    receiver.next().await;
    let still = s
        .read_until(&endpoint, |e| {
            deliveries(e)[0]["attempts"].as_array().unwrap().len() == 2
        })
        .await;
    assert_eq!(still["enabled"], true);
    // A day and a bit more: disabled.
    s.advance(Duration::from_secs(26 * 3600));
    receiver.next().await;
    let disabled = s.read_until(&endpoint, |e| e["enabled"] == false).await;
    assert!(
        disabled["disabledReason"]
            .as_str()
            .unwrap()
            .contains("5 days"),
        "{disabled}"
    );
    let audit = s.app.audit(s.admin.org, &endpoint).await;
    assert!(
        audit
            .iter()
            .any(|a| a["action"] == "webhook_endpoint_disabled")
    );
}

fn webhook_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("INCIDENTD_WEBHOOK_ALLOW_HOSTS", "127.0.0.0/8"),
        ("INCIDENTD_WEBHOOK_TIMEOUT", "5s"),
    ]
}

/// Two replicas on one PostgreSQL share the work: every message is sent once, and never while
/// another replica sends it.
#[tokio::test]
async fn two_replicas_never_send_one_message_at_once() {
    let (db, url) = TestDb::create().await;
    if !db.is_postgres() {
        return; // one in-process worker on SQLite
    }
    let mut config = test_config(&url);
    config.webhook_allow_hosts = vec!["127.0.0.0/8".parse().unwrap()];
    let one = crate::helpers::spawn_app_with(db, config.clone()).await;
    let two = incidentd_test_support::TestServer::start(config).await;
    let admin = one.caller(uuid::Uuid::new_v4(), Role::Admin);
    let responder = one.caller(admin.org, Role::Responder);
    let mut receiver = Receiver::start_full(vec![], None, Duration::from_millis(20)).await;
    one.ok(&admin, CREATE, json!({ "input": { "url": receiver.url } }))
        .await;
    const MESSAGES: usize = 120;
    let writes = (0..MESSAGES).map(|i| {
        let (one, responder) = (&one, &responder);
        let addr = if i % 2 == 0 { one.addr } else { two.addr };
        async move {
            let (status, body) = crate::helpers::gql(
                &one.client,
                addr,
                &responder.token,
                "mutation($t: String!) { createIncident(input: { title: $t }) { id } }",
                json!({ "t": format!("n{i}") }),
            )
            .await
            .unwrap();
            assert_eq!(status, 200, "{body}");
        }
    });
    futures_util::future::join_all(writes).await;
    let mut ids = std::collections::HashSet::new();
    let mut requests = 0;
    while ids.len() < MESSAGES {
        let got = receiver.next().await;
        requests += 1;
        ids.insert(got.header("webhook-id").to_string());
    }
    assert_eq!(
        receiver.overlaps.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a message was in flight on two replicas at once"
    );
    assert_eq!(requests, MESSAGES, "every message was sent once");
}

/// A replica killed (SIGKILL) while the receiver holds its request: another replica sends the
/// message once the lease has run out, with the same `webhook-id`.
#[tokio::test]
async fn a_killed_replicas_message_is_sent_by_another_after_the_lease() {
    let (db, url) = TestDb::create().await;
    if !db.is_postgres() {
        return; // one in-process worker on SQLite
    }
    let mut first = crate::replicas::Replica::start(&url, &webhook_env()).await;
    let client = reqwest::Client::new();
    let auth = incidentd::auth::Authenticator::new(&test_config(&url).auth()).unwrap();
    let org = uuid::Uuid::new_v4();
    let caller = |role| {
        let user = uuid::Uuid::new_v4();
        let token = auth
            .mint(org, user, role, Duration::from_secs(3600))
            .unwrap();
        Caller { org, user, token }
    };
    let (admin, responder) = (caller(Role::Admin), caller(Role::Responder));
    // The first attempt is held until its sender dies; the next one is answered.
    let mut receiver = Receiver::start(vec![Reply::Slow(Duration::from_secs(3600))]).await;
    let (status, body) = crate::helpers::gql(
        &client,
        first.addr,
        &admin.token,
        CREATE,
        json!({ "input": { "url": receiver.url } }),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let endpoint = body["data"]["createWebhookEndpoint"]["endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = crate::helpers::gql(
        &client,
        first.addr,
        &responder.token,
        "mutation { createIncident(input: { title: \"Killed mid-delivery\" }) { id } }",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let held = receiver.next().await;
    first.child.kill().await.unwrap();

    // The other replica's clock is past the lease (twice the timeout and 10 s).
    let mut config = test_config(&url);
    config.webhook_allow_hosts = vec!["127.0.0.0/8".parse().unwrap()];
    let clock = Arc::new(ManualClock::default());
    let second = spawn_app_with_clock(db, config, clock.clone()).await;
    let again = receiver
        .next_after(|| {
            clock.advance(Duration::from_secs(60));
            second.state.webhooks.wake();
        })
        .await;
    assert_eq!(again.header("webhook-id"), held.header("webhook-id"));
    assert_eq!(again.body, held.body);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let data = second.ok(&admin, ENDPOINT, json!({ "id": endpoint })).await;
        let delivery = &data["webhookEndpoint"]["deliveries"]["nodes"][0];
        if delivery["status"] == "DELIVERED" {
            // The dead replica recorded nothing; the survivor's attempt is the only one.
            assert_eq!(
                delivery["attempts"].as_array().unwrap().len(),
                1,
                "{delivery}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{data}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Receiver {
    /// Runs `nudge` until a request arrives (the worker may be between polls).
    async fn next_after(&mut self, nudge: impl Fn()) -> Received {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            nudge();
            if let Ok(Some(got)) =
                tokio::time::timeout(Duration::from_millis(500), self.seen.recv()).await
            {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no delivery arrived"
            );
        }
    }
}

/// The desk's webhooks screen in a real headless Chromium (tests/desk/webhooks.mjs): an admin
/// adds an endpoint, reads its secret, sends a test message and sends it again; the receiver
/// verifies both with that secret.
#[tokio::test]
async fn the_desk_screen_manages_endpoints_in_a_real_browser() {
    let s = setup().await;
    let mut receiver = Receiver::start(vec![]).await;
    let base = format!("http://{}", s.app.addr);
    let args = [
        base.as_str(),
        &s.admin.token,
        &s.responder.token,
        &receiver.url,
    ];
    let Some((stdout, shots)) = crate::desk::browser_script("webhooks.mjs", &args, &[]).await
    else {
        return;
    };
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("the secret was shown");
    let first = receiver.next().await;
    let again = receiver.next().await;
    assert_eq!(first.json()["type"], "webhook.test");
    assert_eq!(again.header("webhook-id"), first.header("webhook-id"));
    assert!(first.verifies_with(secret) && again.verifies_with(secret));
    for shot in ["webhooks-1280.png", "webhooks-390.png"] {
        let meta = std::fs::metadata(shots.join(shot)).expect(shot);
        assert!(meta.len() > 10_000, "{shot} is nearly empty");
    }
}

#[tokio::test]
async fn role_changes_are_sent_with_the_timeline_event_that_names_the_person() {
    let s = setup().await;
    let mut receiver = Receiver::start(vec![]).await;
    let (_, secret) = s
        .endpoint(
            &receiver.url,
            json!({ "eventTypes": ["incident.role_assigned", "incident.role_unassigned"] }),
        )
        .await;
    let dana = s.app.named(s.admin.org, Role::Responder, "Dana Diaz", None);
    s.app.ok(&dana, "{ viewer { userId } }", json!({})).await;
    let id = s.app.new_incident(&s.responder, "Login fails").await;
    let assign = "mutation($id: UUID!, $person: UUID!) { assignIncidentRole(incidentId: $id, role: SCRIBE, personId: $person) { id } }";
    s.app
        .ok(
            &s.responder,
            assign,
            json!({ "id": id, "person": dana.user }),
        )
        .await;
    // The same holder again changes nothing and sends nothing.
    s.app
        .ok(
            &s.responder,
            assign,
            json!({ "id": id, "person": dana.user }),
        )
        .await;
    let unassign =
        "mutation($id: UUID!) { unassignIncidentRole(incidentId: $id, role: SCRIBE) { id } }";
    s.app.ok(&s.responder, unassign, json!({ "id": id })).await;

    for (event_type, timeline_type) in [
        ("incident.role_assigned", "role_assigned"),
        ("incident.role_unassigned", "role_unassigned"),
    ] {
        let got = receiver.next().await;
        assert!(got.verifies_with(&secret), "signature of {event_type}");
        let body = got.json();
        assert_eq!(body["type"], event_type, "{body}");
        assert_eq!(body["data"]["incident"]["id"], id.to_string());
        assert_eq!(body["data"]["event"]["event_type"], timeline_type, "{body}");
        assert!(
            body["data"]["event"]["content"]
                .as_str()
                .unwrap()
                .contains("Dana Diaz"),
            "{body}"
        );
        assert_eq!(body["data"]["sequence"], body["data"]["event"]["sequence"]);
    }
    // Nothing else was queued: the next message is the test message sent now.
    let endpoint_id = s.read_endpoints().await;
    s.app
        .ok(
            &s.admin,
            "mutation($id: UUID!) { sendTestWebhook(id: $id) { id } }",
            json!({ "id": endpoint_id }),
        )
        .await;
    assert_eq!(receiver.next().await.json()["type"], "webhook.test");
}
