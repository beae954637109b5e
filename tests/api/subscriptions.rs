//! Live timeline over WebSocket: replay then live with no gap and no duplicate, the protocol's
//! close codes, auth on the socket, and what slow or stalled subscribers do to the server.

use std::time::Duration;

use futures_util::future::join_all;
use incidentd::incident::identity::Role;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    Caller, EVENTS_SUBSCRIPTION, TestApp, TestDb, Ws, WsEvent, spawn_app, spawn_app_with,
    test_config,
};

pub fn writer_for(caller: &Caller) -> incidentd::incident::identity::Writer {
    incidentd_test_support::writer(caller.org, caller.user)
}

/// Adds an event through the service layer (the same code path as the mutation, minus HTTP).
pub async fn write_event(app: &TestApp, caller: &Caller, incident: Uuid, content: &str) -> i64 {
    incidentd_test_support::write_event(&app.state, &writer_for(caller), incident, content).await
}

/// Reads `next` messages of operation `id` until `count` events arrived; returns their sequences.
pub async fn receive_sequences(ws: &mut Ws, id: &str, count: usize) -> Vec<i64> {
    ws.sequences(id, count).await
}

#[tokio::test]
async fn replay_after_a_cursor_then_live() {
    let app = spawn_app().await;
    let alice = app.responder();
    let incident = app.new_incident(&alice, "live").await;
    for i in 0..3 {
        write_event(&app, &alice, incident, &format!("before {i}")).await;
    }
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe(
        "s",
        EVENTS_SUBSCRIPTION,
        json!({ "id": incident, "after": 1 }),
    )
    .await;
    assert_eq!(receive_sequences(&mut ws, "s", 2).await, [2, 3]);
    // Live events arrive through the mutation path too, with the payload the query would give.
    app.add_event(&alice, &incident.to_string(), "live one")
        .await;
    let message = ws.next_message().await;
    assert_eq!(
        message["payload"]["data"]["incidentEvents"],
        json!({ "sequence": 4, "eventType": "note", "content": "live one", "incidentId": incident })
    );
    // A status change is a timeline event as well.
    app.transition(&alice, &incident.to_string(), "MITIGATING", None)
        .await;
    let message = ws.next_message().await;
    assert_eq!(
        message["payload"]["data"]["incidentEvents"]["eventType"],
        "status_changed"
    );
    // Completing the operation stops it; the connection stays usable.
    ws.send(json!({ "type": "complete", "id": "s" })).await;
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next_message().await["type"], "pong");
}

#[tokio::test]
async fn a_foreign_or_unknown_incident_is_not_found_and_nothing_leaks() {
    let app = spawn_app().await;
    let (alice, bob) = (app.responder(), app.responder());
    let incident = app.new_incident(&alice, "live").await;
    write_event(&app, &alice, incident, "A's secret").await;
    let mut ws = Ws::ready(app.addr, &bob.token).await;
    for (id, target) in [("foreign", incident), ("unknown", Uuid::new_v4())] {
        ws.subscribe(id, EVENTS_SUBSCRIPTION, json!({ "id": target }))
            .await;
        let message = ws.next_message().await;
        assert_eq!(message["id"], id);
        if message["type"] == "next" {
            assert_eq!(
                ws.next_message().await,
                json!({ "type": "complete", "id": id })
            );
        }
        let errors = if message["type"] == "error" {
            &message["payload"]
        } else {
            &message["payload"]["errors"]
        };
        assert_eq!(errors[0]["extensions"]["code"], "NOT_FOUND", "{message}");
        assert!(!message.to_string().contains("secret"));
    }
    // B's org-wide feed never carries A's changes: B sees only its own incident.
    ws.subscribe(
        "feed",
        "subscription { incidentChanged { kind incident { id title } } }",
        json!({}),
    )
    .await;
    app.add_event(&alice, &incident.to_string(), "A again")
        .await;
    let mine = app.create_incident(&bob, json!({ "title": "B's" })).await;
    let message = ws.next_message().await;
    assert_eq!(message["id"], "feed");
    assert_eq!(
        message["payload"]["data"]["incidentChanged"],
        json!({ "kind": "CREATED", "incident": { "id": mine["id"], "title": "B's" } })
    );
}

#[tokio::test]
async fn the_change_feed_honours_the_filter_and_carries_the_incident_as_delivered() {
    let app = spawn_app().await;
    let alice = app.responder();
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe(
        "feed",
        "subscription { incidentChanged(filter: { severity: [SEV1] }) { kind incident { title status severity } } }",
        json!({}),
    )
    .await;
    app.create_incident(&alice, json!({ "title": "minor", "severity": "SEV4" }))
        .await;
    let big = app
        .create_incident(&alice, json!({ "title": "major", "severity": "SEV1" }))
        .await;
    let id = big["id"].as_str().unwrap();
    app.transition(&alice, id, "MITIGATING", None).await;
    app.ok(
        &alice,
        "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: {}) { id } }",
        json!({ "id": id }),
    )
    .await;
    // The incident is delivered as the dispatcher read it after each commit: never older than
    // the change, possibly newer (a fast transition may already show on the CREATED change).
    let mut kinds = vec![];
    let mut statuses = vec![];
    for _ in 0..4 {
        let m = ws.next_message().await;
        let change = &m["payload"]["data"]["incidentChanged"];
        assert_eq!(
            change["incident"]["title"], "major",
            "the SEV4 incident is filtered out: {m}"
        );
        kinds.push(change["kind"].as_str().unwrap().to_string());
        statuses.push(change["incident"]["status"].as_str().unwrap().to_string());
    }
    assert_eq!(
        kinds,
        [
            "CREATED",
            "EVENT_ADDED",
            "STATUS_CHANGED",
            "POSTMORTEM_UPDATED"
        ]
    );
    let first_mitigating = statuses.iter().position(|s| s == "MITIGATING");
    assert!(
        first_mitigating.is_some_and(|i| i <= 2)
            && statuses[..first_mitigating.unwrap()]
                .iter()
                .all(|s| s == "OPEN")
            && statuses[first_mitigating.unwrap()..]
                .iter()
                .all(|s| s == "MITIGATING"),
        "OPEN until the transition shows, then MITIGATING: {statuses:?}"
    );
}

/// 20 runs: 5 writers add 200 events each while the subscriber connects mid-stream; it must see
/// 1..1000 exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_then_live_under_racing_writers_never_misses_or_repeats() {
    let app = spawn_app().await;
    let alice = app.responder();
    for _run in 0..20 {
        let incident = app.new_incident(&alice, "live").await;
        let (started_tx, started_rx) = tokio::sync::watch::channel(0usize);
        let writers = (0..5).map(|w| {
            let (app, alice, started_tx) = (&app, &alice, started_tx.clone());
            async move {
                for i in 0..200 {
                    write_event(app, alice, incident, &format!("w{w} e{i}")).await;
                    started_tx.send_modify(|n| *n += 1);
                }
            }
        });
        let subscriber = async {
            let mut started = started_rx.clone();
            // Connect once writing is well under way.
            started.wait_for(|n| *n >= 150).await.unwrap();
            let mut ws = Ws::ready(app.addr, &alice.token).await;
            ws.subscribe("s", EVENTS_SUBSCRIPTION, json!({ "id": incident }))
                .await;
            receive_sequences(&mut ws, "s", 1000).await
        };
        let (_, seen) = tokio::join!(join_all(writers), subscriber);
        assert_eq!(seen, (1..=1000).collect::<Vec<i64>>());
    }
}

async fn expect_close(ws: &mut Ws, code: u16) {
    assert_eq!(ws.closed().await, Some(code));
}

#[tokio::test]
async fn graphql_transport_ws_close_codes_follow_the_protocol() {
    let mut config_app = None;
    {
        let (db, url) = TestDb::create().await;
        let mut config = test_config(&url);
        config.ws_init_timeout = Duration::from_millis(300);
        config_app.replace(spawn_app_with(db, config).await);
    }
    let app = config_app.unwrap();
    let alice = app.responder();

    // 4400: not JSON, and a message of no known type.
    let mut ws = Ws::connect(app.addr, "graphql-transport-ws").await;
    ws.send_text("{not json".into()).await;
    expect_close(&mut ws, 4400).await;
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.send(json!({ "type": "start", "id": "1", "payload": { "query": "{ viewer { role } }" } }))
        .await;
    expect_close(&mut ws, 4400).await;

    // 4401: subscribe before the ack.
    let mut ws = Ws::connect(app.addr, "graphql-transport-ws").await;
    ws.subscribe("1", "{ viewer { role } }", json!({})).await;
    expect_close(&mut ws, 4401).await;

    // 4403: a bad token, and no token.
    let mut ws = Ws::connect(app.addr, "graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": { "Authorization": "Bearer nope" } }))
        .await;
    expect_close(&mut ws, 4403).await;
    let mut ws = Ws::connect(app.addr, "graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init" })).await;
    expect_close(&mut ws, 4403).await;

    // 4408: no connection_init in time.
    let mut ws = Ws::connect(app.addr, "graphql-transport-ws").await;
    expect_close(&mut ws, 4408).await;

    // 4409: a second operation with an id in use.
    let incident = app.new_incident(&alice, "live").await;
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe("dup", EVENTS_SUBSCRIPTION, json!({ "id": incident }))
        .await;
    ws.subscribe("dup", EVENTS_SUBSCRIPTION, json!({ "id": incident }))
        .await;
    expect_close(&mut ws, 4409).await;

    // 4429: a second connection_init.
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.send(json!({ "type": "connection_init", "payload": { "token": alice.token } }))
        .await;
    expect_close(&mut ws, 4429).await;

    // ping → pong with the payload; a query over the socket gives next then complete;
    // a validation failure gives a single error message.
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.send(json!({ "type": "ping", "payload": { "t": 1 } }))
        .await;
    assert_eq!(
        ws.next_message().await,
        json!({ "type": "pong", "payload": { "t": 1 } })
    );
    ws.subscribe("q", "{ viewer { role } }", json!({})).await;
    assert_eq!(
        ws.next_message().await,
        json!({ "type": "next", "id": "q", "payload": { "data": { "viewer": { "role": "responder" } } } })
    );
    assert_eq!(
        ws.next_message().await,
        json!({ "type": "complete", "id": "q" })
    );
    ws.subscribe("bad", "{ nope }", json!({})).await;
    let error = ws.next_message().await;
    assert_eq!(error["type"], "error");
    assert!(error["payload"].is_array());
}

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_works() {
    let app = spawn_app().await;
    let alice = app.responder();
    let incident = app.new_incident(&alice, "live").await;
    write_event(&app, &alice, incident, "one").await;
    let mut ws = Ws::connect(app.addr, "graphql-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", alice.token) } })).await;
    assert_eq!(ws.next_message().await["type"], "connection_ack");
    ws.send(json!({ "type": "start", "id": "1", "payload": { "query": EVENTS_SUBSCRIPTION, "variables": { "id": incident } } })).await;
    let data = ws.next_message().await;
    assert_eq!(data["type"], "data");
    assert_eq!(data["payload"]["data"]["incidentEvents"]["sequence"], 1);
    ws.send(json!({ "type": "stop", "id": "1" })).await;
    ws.send(json!({ "type": "connection_terminate" })).await;
    assert_eq!(ws.closed().await, Some(1000));
}

#[tokio::test]
async fn the_socket_closes_when_the_token_expires() {
    let app = spawn_app().await;
    let org = Uuid::new_v4();
    let token = app
        .state
        .graphql
        .auth
        .mint(org, Uuid::new_v4(), Role::Viewer, Duration::from_secs(2))
        .unwrap();
    let mut ws = Ws::ready(app.addr, &token).await;
    let started = std::time::Instant::now();
    expect_close(&mut ws, 4403).await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn subscriptions_per_connection_are_limited() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.ws_max_subscriptions = 2;
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    let incident = app.new_incident(&alice, "live").await;
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    for id in ["a", "b", "c"] {
        ws.subscribe(id, EVENTS_SUBSCRIPTION, json!({ "id": incident }))
            .await;
    }
    let refused = ws.next_message().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["id"], "c");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "FORBIDDEN");
}

#[tokio::test]
async fn graceful_shutdown_closes_sockets_with_going_away() {
    let mut app = spawn_app().await;
    let alice = app.responder();
    let incident = app.new_incident(&alice, "live").await;
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe("s", EVENTS_SUBSCRIPTION, json!({ "id": incident }))
        .await;
    app.shutdown();
    expect_close(&mut ws, 1001).await;
}

#[tokio::test]
async fn an_oversized_message_is_refused() {
    let app = spawn_app().await;
    let alice = app.responder();
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    let huge = "x".repeat(70 * 1024);
    ws.send(json!({ "type": "subscribe", "id": "1", "payload": { "query": huge } }))
        .await;
    match ws.next().await {
        WsEvent::Closed(code, _) => assert_ne!(code, Some(1000)),
        WsEvent::Message(m) => panic!("expected the connection to close, got {m}"),
    }
}

/// Only committed changes are announced: a rolled-back transaction (even one that already
/// queued its NOTIFY) and refused mutations reach no subscriber.
#[tokio::test]
async fn rolled_back_writes_announce_nothing() {
    use incidentd::incident::changes::{Announcement, ChangeKind, ChangeSink};
    use sea_orm::ActiveValue::Set;

    let app = spawn_app().await;
    let alice = app.responder();
    // The feed listens from before the incident exists, so what it sees first is known.
    let mut feed = Ws::ready(app.addr, &alice.token).await;
    feed.subscribe("f", "subscription { incidentChanged { kind } }", json!({}))
        .await;
    let incident = app
        .create_incident(&alice, json!({ "title": "t", "severity": "SEV1" }))
        .await["id"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    assert_eq!(
        feed.next_message().await["payload"]["data"]["incidentChanged"]["kind"],
        "CREATED"
    );
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe("s", EVENTS_SUBSCRIPTION, json!({ "id": incident }))
        .await;

    // A transaction that writes an event and queues its announcement, then rolls back.
    let writer = writer_for(&alice);
    let txn = app.state.graphql.domain.db.begin_write().await.unwrap();
    let row = incidentd::entity::incident_event::ActiveModel {
        id: Set(Uuid::new_v4()),
        organization_id: Set(alice.org),
        incident_id: Set(incident),
        sequence: Set(1),
        event_type: Set("note".into()),
        content: Set(Some("rolled back".into())),
        created_by: Set(None),
        created_at: Set(chrono::Utc::now()),
        from_status: Set(None),
        to_status: Set(None),
    };
    assert!(writer.scope.try_insert_event(&*txn, row).await.unwrap());
    // The sink's in-transaction step (a NOTIFY on PostgreSQL): it must die with the rollback.
    let announcement = Announcement {
        org_id: alice.org,
        incident_id: incident,
        kind: ChangeKind::EventAdded,
        sequence: Some(1),
        audit: None,
    };
    app.state
        .graphql
        .hub
        .within(&txn, &[announcement])
        .await
        .unwrap();
    drop(txn);

    // Refused mutations write and announce nothing either.
    let (_, body) = app
        .transition(&alice, &incident.to_string(), "CLOSED", None)
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "INVALID_TRANSITION"
    );
    app.transition(&alice, &incident.to_string(), "RESOLVED", None)
        .await;
    let (_, body) = app
        .transition(&alice, &incident.to_string(), "CLOSED", None)
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "POSTMORTEM_REQUIRED"
    );

    // The first thing each subscriber sees is the committed resolve.
    let first = ws.next_message().await;
    assert_eq!(first["payload"]["data"]["incidentEvents"]["sequence"], 1);
    assert_eq!(
        first["payload"]["data"]["incidentEvents"]["eventType"], "status_changed",
        "{first}"
    );
    let kinds: Vec<String> = [feed.next_message().await, feed.next_message().await]
        .iter()
        .map(|m| {
            m["payload"]["data"]["incidentChanged"]["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["EVENT_ADDED", "STATUS_CHANGED"]);
}

#[tokio::test]
async fn connections_per_server_are_limited() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.ws_max_connections = 1;
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    let first = Ws::ready(app.addr, &alice.token).await;
    match tokio_tungstenite::connect_async(Ws::request(app.addr, "graphql-transport-ws")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected 503, got {:?}", other.map(|(_, r)| r.status())),
    }
    // Closing the first frees its place.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if tokio_tungstenite::connect_async(Ws::request(app.addr, "graphql-transport-ws"))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the freed place was never reused"
        );
        tokio::task::yield_now().await;
    }
}

/// The `incidentEvents` subscriptions of one incident that start together check the incident
/// (their tenancy read) once between them, as they share their catch-up read: thousands of
/// subscribers starting at once otherwise queue one read each. Another organization's
/// subscriptions to the same incident still each get `NOT_FOUND`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_of_one_incident_starting_together_share_their_tenancy_read() {
    use futures_util::StreamExt;
    use incidentd::error::AppError;

    const N: usize = 50;
    let app = crate::helpers::spawn_counting_app().await;
    let alice = app.responder();
    let id: Uuid = app
        .create_incident(&alice, json!({ "title": "shared" }))
        .await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let hub = &app.state.graphql.hub;
    let db = &app.state.graphql.domain.db;
    let scope = writer_for(&alice).scope;
    // Only the subscriptions' own reads may be counted, so the change feed must be done with
    // the writes first (on PostgreSQL it reads each one after its NOTIFY): a watcher reads the
    // first event (replayed or live), and the second arrives live, after the feed's reads.
    let mut watcher = Box::pin(
        hub.timeline(scope, id, 0)
            .await
            .unwrap_or_else(|_| panic!("the incident is found")),
    );
    for (n, content) in [(1, "first"), (2, "second")] {
        write_event(&app, &alice, id, content).await;
        let event = tokio::time::timeout(Duration::from_secs(10), watcher.next())
            .await
            .expect("the watcher hears of the write")
            .expect("a stream item")
            .unwrap_or_else(|_| panic!("the event is read"));
        assert_eq!(event.sequence, n);
    }

    let before = db.statement_count();
    let streams = join_all((0..N).map(|_| hub.timeline(scope, id, 0))).await;
    let checks = db.statement_count() - before;
    assert_eq!(
        checks, 1,
        "{N} subscriptions starting together ran {checks} tenancy reads"
    );
    for stream in streams {
        let mut stream = Box::pin(stream.unwrap_or_else(|_| panic!("the incident is found")));
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the replay arrives")
            .expect("a stream item")
            .unwrap_or_else(|_| panic!("the replay is read"));
        assert_eq!(first.sequence, 1);
        assert_eq!(first.organization_id, alice.org);
    }

    let mallory = app.responder();
    let foreign = join_all((0..N).map(|_| hub.timeline(writer_for(&mallory).scope, id, 0))).await;
    for result in foreign {
        assert!(matches!(result, Err(AppError::NotFound(_))));
    }
}
