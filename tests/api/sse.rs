//! GraphQL over Server-Sent Events, spoken raw: both modes of graphql-sse's PROTOCOL.md, its
//! status codes, authentication, keep-alive, resuming from a cursor, and shutdown.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Caller, EVENTS_SUBSCRIPTION, TestApp, TestDb, WAIT, code, spawn_app, spawn_app_with,
    test_config,
};

/// One parsed SSE message: `event` and `data` (JSON, or `Null` when empty), or a comment.
#[derive(Debug, Clone, PartialEq)]
pub enum Sse {
    Event(String, Value),
    Comment,
}

/// Reads an event stream message by message.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
    pub status: u16,
    pub content_type: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> SseReader {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        SseReader {
            response,
            buffer: String::new(),
            status,
            content_type,
        }
    }

    /// The next message, comments included; `None` when the stream ended.
    pub async fn next_any(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut data) = (String::new(), String::new());
                let mut comment = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        comment = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.is_empty() && comment {
                    return Some(Sse::Comment);
                }
                let data = if data.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&data).expect("data is JSON")
                };
                return Some(Sse::Event(event, data));
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("an SSE message within the timeout");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event, skipping keep-alive comments.
    pub async fn next(&mut self) -> (String, Value) {
        loop {
            match self.next_any().await {
                Some(Sse::Event(event, data)) => return (event, data),
                Some(Sse::Comment) => continue,
                None => panic!("the stream ended while an event was expected"),
            }
        }
    }

    /// Waits for the end of the stream; returns the events that came before it.
    pub async fn ended(&mut self) -> Vec<(String, Value)> {
        let mut events = vec![];
        while let Some(message) = self.next_any().await {
            if let Sse::Event(e, d) = message {
                events.push((e, d));
            }
        }
        events
    }
}

async fn distinct(app: &TestApp, token: Option<&str>, query: &str, variables: Value) -> SseReader {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .header("accept", "text/event-stream")
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    SseReader::new(request.send().await.unwrap())
}

fn sequence(data: &Value) -> i64 {
    data["data"]["incidentEvents"]["sequence"]
        .as_i64()
        .unwrap_or_else(|| panic!("an event: {data}"))
}

#[tokio::test]
async fn distinct_connections_stream_replay_then_live_events_and_complete_queries() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app.new_incident(&alice, "over SSE").await.to_string();
    app.add_event(&alice, &id, "one").await;

    let vars = json!({ "id": id, "after": 0 });
    let mut stream = distinct(&app, Some(&alice.token), EVENTS_SUBSCRIPTION, vars).await;
    assert_eq!(stream.status, 200);
    assert!(stream.content_type.starts_with("text/event-stream"));
    let (event, data) = stream.next().await;
    assert_eq!((event.as_str(), sequence(&data)), ("next", 1));
    app.add_event(&alice, &id, "two").await;
    assert_eq!(sequence(&stream.next().await.1), 2);

    // Resuming from the cursor: only what came after it.
    drop(stream);
    app.add_event(&alice, &id, "three").await;
    let vars = json!({ "id": id, "after": 2 });
    let mut resumed = distinct(&app, Some(&alice.token), EVENTS_SUBSCRIPTION, vars).await;
    assert_eq!(sequence(&resumed.next().await.1), 3);

    // A query: one `next`, then `complete` (with an empty data field), then the end.
    let mut query = distinct(&app, Some(&alice.token), "{ viewer { role } }", json!({})).await;
    assert_eq!(
        query.ended().await,
        [
            (
                "next".to_string(),
                json!({ "data": { "viewer": { "role": "responder" } } })
            ),
            ("complete".to_string(), Value::Null)
        ]
    );

    // Validation errors arrive inside the accepted stream, coded.
    let mut invalid = distinct(&app, Some(&alice.token), "{ nope }", json!({})).await;
    assert_eq!(invalid.status, 200);
    let events = invalid.ended().await;
    assert_eq!(events[0].0, "next");
    assert_eq!(code(&events[0].1["errors"][0]), "BAD_USER_INPUT");
    assert_eq!(events[1].0, "complete");

    // No token: refused before any stream.
    let refused = distinct(&app, None, "{ viewer { role } }", json!({})).await;
    assert_eq!(refused.status, 401);

    // A foreign incident is NOT_FOUND, as on every path.
    let bob = app.responder();
    let vars = json!({ "id": id, "after": 0 });
    let mut foreign = distinct(&app, Some(&bob.token), EVENTS_SUBSCRIPTION, vars).await;
    let (_, data) = foreign.next().await;
    assert_eq!(code(&data["errors"][0]), "NOT_FOUND", "{data}");
}

#[tokio::test]
async fn a_get_with_a_query_string_streams_like_eventsource_and_refuses_mutations() {
    let app = spawn_app().await;
    let alice = app.responder();
    let get = |query: &str| {
        app.client
            .get(app.url("/graphql"))
            .query(&[("query", query)])
            .header("accept", "text/event-stream")
            .bearer_auth(&alice.token)
            .send()
    };
    let mut stream = SseReader::new(get("{ viewer { role } }").await.unwrap());
    let (event, data) = stream.next().await;
    assert_eq!(event, "next");
    assert_eq!(data["data"]["viewer"]["role"], "responder");
    let mutation = get("mutation { createIncident(input: { title: \"x\" }) { id } }")
        .await
        .unwrap();
    assert_eq!(mutation.status(), 405);
}

struct Single<'a> {
    app: &'a TestApp,
    caller: &'a Caller,
    token: String,
}

impl Single<'_> {
    async fn reserve<'a>(app: &'a TestApp, caller: &'a Caller) -> Single<'a> {
        let response = app
            .client
            .put(app.url("/graphql"))
            .bearer_auth(&caller.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let token = response.text().await.unwrap();
        assert!(token.len() >= 32, "{token}");
        Single { app, caller, token }
    }

    async fn open(&self) -> reqwest::Response {
        self.app
            .client
            .get(self.app.url("/graphql"))
            .header("accept", "text/event-stream")
            .header("x-graphql-event-stream-token", &self.token)
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, caller: &Caller, op: Option<&str>, query: &str, vars: Value) -> u16 {
        let mut body = json!({ "query": query, "variables": vars });
        if let Some(op) = op {
            body["extensions"] = json!({ "operationId": op });
        }
        self.app
            .client
            .post(self.app.url("/graphql"))
            .header("x-graphql-event-stream-token", &self.token)
            .bearer_auth(&caller.token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// `DELETE` of an operation, as `caller` (or with no token); `op` goes into the query
    /// string percent-encoded.
    async fn stop_as(&self, caller: Option<&Caller>, op: &str) -> u16 {
        let mut request = self
            .app
            .client
            .delete(self.app.url("/graphql"))
            .query(&[("operationId", op)])
            .header("x-graphql-event-stream-token", &self.token);
        if let Some(caller) = caller {
            request = request.bearer_auth(&caller.token);
        }
        request.send().await.unwrap().status().as_u16()
    }

    async fn stop(&self, op: &str) -> u16 {
        self.stop_as(Some(self.caller), op).await
    }
}

#[tokio::test]
async fn single_connection_mode_reserves_streams_runs_and_stops_operations() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app.new_incident(&alice, "one stream").await.to_string();
    app.add_event(&alice, &id, "one").await;
    let single = Single::reserve(&app, &alice).await;

    // An operation may be posted before the stream opens: it waits in the reservation.
    let vars = json!({ "id": id, "after": 0 });
    assert_eq!(
        single
            .post(&alice, Some("tl"), EVENTS_SUBSCRIPTION, vars.clone())
            .await,
        202
    );
    let mut stream = SseReader::new(single.open().await);
    assert_eq!(stream.status, 200);
    let (event, data) = stream.next().await;
    assert_eq!((event.as_str(), data["id"].as_str()), ("next", Some("tl")));
    assert_eq!(data["payload"]["data"]["incidentEvents"]["sequence"], 1);

    // Only one stream per reservation; an id runs once at a time; the id is required.
    assert_eq!(single.open().await.status(), 409);
    let status = single
        .post(&alice, Some("tl"), EVENTS_SUBSCRIPTION, vars.clone())
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        single
            .post(&alice, None, "{ viewer { role } }", json!({}))
            .await,
        400
    );
    // Another caller cannot use the reservation, even with its token.
    let mallory = app.responder();
    assert_eq!(
        single
            .post(&mallory, Some("m"), "{ viewer { role } }", json!({}))
            .await,
        403
    );

    // A query on the same stream: `next` and `complete` with its id.
    assert_eq!(
        single
            .post(&alice, Some("q"), "{ viewer { role } }", json!({}))
            .await,
        202
    );
    let (event, data) = stream.next().await;
    assert_eq!(event, "next");
    assert_eq!(data["id"], "q");
    assert_eq!(
        stream.next().await,
        ("complete".into(), json!({ "id": "q" }))
    );

    // Live, then stopped: after DELETE nothing more arrives for `tl`.
    app.add_event(&alice, &id, "two").await;
    let (_, data) = stream.next().await;
    assert_eq!(
        (
            &data["id"],
            &data["payload"]["data"]["incidentEvents"]["sequence"]
        ),
        (&json!("tl"), &json!(2))
    );
    assert_eq!(single.stop("tl").await, 200);
    app.add_event(&alice, &id, "three").await;
    // A later operation's events prove the stream still flows, and that `tl` sent nothing.
    let vars = json!({ "id": id, "after": 2 });
    assert_eq!(
        single
            .post(&alice, Some("tl2"), EVENTS_SUBSCRIPTION, vars)
            .await,
        202
    );
    let (_, data) = stream.next().await;
    assert_eq!(data["id"], "tl2", "{data}");
    assert_eq!(data["payload"]["data"]["incidentEvents"]["sequence"], 3);

    // The protocol's status codes for requests about unknown reservations.
    let unknown = Single {
        app: &app,
        caller: &alice,
        token: "no-such-token".into(),
    };
    assert_eq!(unknown.open().await.status(), 404);
    assert_eq!(
        unknown
            .post(unknown.caller, Some("x"), "{ viewer { role } }", json!({}))
            .await,
        404
    );
    assert_eq!(unknown.stop("x").await, 404);
    let no_op = app
        .client
        .delete(app.url("/graphql"))
        .header("x-graphql-event-stream-token", &single.token)
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(no_op.status(), 400);
    let anonymous = app.client.put(app.url("/graphql")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // Closing the stream ends the reservation.
    drop(stream);
    let gone = async {
        loop {
            if single.open().await.status() == 404 {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, gone)
        .await
        .expect("the reservation ends with its stream");
}

#[tokio::test]
async fn streams_send_keep_alives_lapse_unopened_reservations_and_end_at_shutdown() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.sse_keep_alive = Duration::from_millis(200);
    config.ws_init_timeout = Duration::from_millis(300);
    config.ws_max_connections = 2;
    config.ws_max_pending_per_peer = 1;
    let mut app = spawn_app_with(db, config).await;
    let alice = app.responder();
    let id = app.new_incident(&alice, "idle").await.to_string();
    let vars = json!({ "id": id, "after": 0 });
    let mut stream = distinct(&app, Some(&alice.token), EVENTS_SUBSCRIPTION, vars.clone()).await;
    // The opening comment, then keep-alives while nothing happens.
    assert_eq!(stream.next_any().await, Some(Sse::Comment));
    assert_eq!(stream.next_any().await, Some(Sse::Comment));
    assert_eq!(stream.next_any().await, Some(Sse::Comment));

    // A reservation nobody opens holds a pending place of its caller's (one here), and lapses
    // after the init timeout, which frees it.
    let single = Single::reserve(&app, &alice).await;
    let full = app
        .client
        .put(app.url("/graphql"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 503, "one unopened reservation at most");
    let lapsed = async {
        while single.open().await.status() != 404 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, lapsed)
        .await
        .expect("the reservation lapses");
    let single = Single::reserve(&app, &alice).await;
    let mut reserved = SseReader::new(single.open().await);

    // Shutdown ends every stream.
    app.shutdown();
    stream.ended().await;
    reserved.ended().await;
}

/// Stopping an operation is authenticated like starting one: only the caller who reserved the
/// stream may, anyone else is told it does not exist; the id is decoded once, and a stop that
/// stops nothing is not a success.
#[tokio::test]
async fn only_the_caller_who_reserved_a_stream_stops_its_operations() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app.new_incident(&alice, "stoppable").await.to_string();
    let single = Single::reserve(&app, &alice).await;
    let mut stream = SseReader::new(single.open().await);
    assert_eq!(stream.status, 200);
    // An id that needs percent-encoding in a query string.
    let op = "tl 1/ü&x=y";
    let vars = json!({ "id": id, "after": 0 });
    assert_eq!(
        single
            .post(&alice, Some(op), EVENTS_SUBSCRIPTION, vars)
            .await,
        202
    );
    app.add_event(&alice, &id, "one").await;
    let (_, data) = stream.next().await;
    assert_eq!(data["id"], op, "{data}");

    // Another organization's caller, with the token: as if nothing were there.
    let mallory = app.responder();
    assert_eq!(single.stop_as(Some(&mallory), op).await, 404);
    // No bearer at all: unauthenticated.
    assert_eq!(single.stop_as(None, op).await, 401);
    // The operation still runs: the next event reaches it.
    app.add_event(&alice, &id, "two").await;
    let (_, data) = stream.next().await;
    assert_eq!(
        (
            &data["id"],
            &data["payload"]["data"]["incidentEvents"]["sequence"]
        ),
        (&json!(op), &json!(2))
    );

    // An id that is not running stops nothing: 404, not 200.
    assert_eq!(single.stop("not-running").await, 404);
    // Its owner stops it, once.
    assert_eq!(single.stop(op).await, 200);
    assert_eq!(single.stop(op).await, 404);
    app.add_event(&alice, &id, "three").await;
    assert_eq!(
        single
            .post(&alice, Some("q"), "{ viewer { role } }", json!({}))
            .await,
        202
    );
    let (_, data) = stream.next().await;
    assert_eq!(
        data["id"], "q",
        "the stopped operation sent nothing more: {data}"
    );
}

/// Unopened reservations cost a pending place of their caller's, not a connection's, and
/// connections are shared out per organization and per caller: one viewer's flood of
/// reservations and sockets leaves another organization able to subscribe over both transports.
#[tokio::test]
async fn one_callers_flood_leaves_other_organizations_their_places() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.ws_max_connections = 30;
    config.ws_max_pending_per_peer = 40;
    config.ws_max_connections_per_org = 12;
    config.ws_max_connections_per_caller = 10;
    let app = spawn_app_with(db, config).await;
    let org = uuid::Uuid::new_v4();
    let viewer = app.caller(org, incidentd::incident::identity::Role::Viewer);
    let reserve = |caller: &Caller| {
        app.client
            .put(app.url("/graphql"))
            .bearer_auth(&caller.token)
            .send()
    };

    // 45 reservations: the first 40 are pending places of the viewer's, the rest refused.
    let mut statuses = vec![];
    for _ in 0..45 {
        statuses.push(reserve(&viewer).await.unwrap().status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        40,
        "{statuses:?}"
    );
    assert!(statuses[40..].iter().all(|s| *s == 503), "{statuses:?}");

    // The viewer's own sockets stop at its share (10), with 1013 at connection_init.
    let mut sockets = vec![];
    for _ in 0..10 {
        sockets.push(crate::helpers::Ws::ready(app.addr, &viewer.token).await);
    }
    let mut extra = crate::helpers::Ws::connect(app.addr, "graphql-transport-ws").await;
    extra
        .send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", viewer.token) } }))
        .await;
    assert_eq!(extra.closed().await, Some(1013));
    // And another caller of the same organization stops at the organization's share (12).
    let colleague = app.caller(org, incidentd::incident::identity::Role::Viewer);
    for _ in 0..2 {
        sockets.push(crate::helpers::Ws::ready(app.addr, &colleague.token).await);
    }
    let mut extra = crate::helpers::Ws::connect(app.addr, "graphql-transport-ws").await;
    extra
        .send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", colleague.token) } }))
        .await;
    assert_eq!(extra.closed().await, Some(1013));

    // Another organization subscribes over WebSocket, SSE on a stream of its own, and SSE's
    // single-connection mode.
    let bob = app.responder();
    let id = app.new_incident(&bob, "still live").await.to_string();
    app.add_event(&bob, &id, "one").await;
    let vars = json!({ "id": id, "after": 0 });
    let mut ws = crate::helpers::Ws::ready(app.addr, &bob.token).await;
    ws.subscribe("tl", EVENTS_SUBSCRIPTION, vars.clone()).await;
    let message = ws.next_message().await;
    assert_eq!(
        message["payload"]["data"]["incidentEvents"]["sequence"], 1,
        "{message}"
    );
    let mut own = distinct(&app, Some(&bob.token), EVENTS_SUBSCRIPTION, vars.clone()).await;
    assert_eq!(own.status, 200);
    assert_eq!(sequence(&own.next().await.1), 1);
    let single = Single::reserve(&app, &bob).await;
    let mut stream = SseReader::new(single.open().await);
    assert_eq!(stream.status, 200);
    assert_eq!(
        single
            .post(&bob, Some("tl"), EVENTS_SUBSCRIPTION, vars)
            .await,
        202
    );
    let (_, data) = stream.next().await;
    assert_eq!(
        data["payload"]["data"]["incidentEvents"]["sequence"], 1,
        "{data}"
    );

    // A reservation the viewer opens takes a connection's place, within its share: full.
    let token = reserve(&colleague).await.unwrap().text().await.unwrap();
    let opened = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/event-stream")
        .header("x-graphql-event-stream-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 503);
}
