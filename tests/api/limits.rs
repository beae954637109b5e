//! Hard limits on shared resources: a hot incident's writers wait their turn without taking
//! the pool from everyone else and give up with `BUSY`, and the times they stamp follow the
//! order they commit in.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{TestDb, code, spawn_app, spawn_app_with, test_config};

const ADD_EVENT: &str = "mutation($id: UUID!, $c: String!) { addIncidentEvent(incidentId: $id, input: { content: $c }) { sequence } }";

/// 50 writers at one incident while its row is held: each gives up with BUSY after the lock
/// timeout, REST says so with 503 and `Retry-After`, another organization's reads go on
/// meanwhile, and once the row is free writes succeed again.
#[tokio::test]
async fn a_held_incident_answers_busy_and_starves_no_one_else() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.db_lock_timeout = Duration::from_millis(500);
    config.db_max_connections = 10;
    config.db_acquire_timeout = Duration::from_secs(2);
    let app = spawn_app_with(db, config).await;
    let (alice, bob) = (app.responder(), app.responder());
    let incident = app.new_incident(&alice, "hot").await;
    app.new_incident(&bob, "bob's").await;

    // Hold the incident as a writer elsewhere would (the row lock; on SQLite the writer queue).
    let writer = crate::subscriptions::writer_for(&alice);
    let txn = app.state.graphql.domain.db.begin_write().await.unwrap();
    writer
        .scope
        .lock_incident(&*txn, incident)
        .await
        .unwrap()
        .expect("the incident exists");

    let writes = join_all((0..50).map(|i| {
        app.post(
            Some(&alice.token),
            ADD_EVENT,
            json!({ "id": incident, "c": format!("note {i}") }),
        )
    }));
    let reads = async {
        let mut answers = vec![];
        for _ in 0..20 {
            answers.push(
                app.post(Some(&bob.token), "{ incidents { totalCount } }", json!({}))
                    .await,
            );
        }
        answers
    };
    let rest = app
        .client
        .post(app.url(&format!("/api/v1/incidents/{incident}/events")))
        .bearer_auth(&alice.token)
        .json(&json!({ "content": "over REST" }))
        .send();
    let (writes, reads, rest) = tokio::join!(writes, reads, rest);

    for (status, body) in &writes {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(code(&body["errors"][0]), "BUSY", "{body}");
    }
    for (_, body) in &reads {
        assert_eq!(body["data"]["incidents"]["totalCount"], 1, "{body}");
    }
    let rest = rest.unwrap();
    assert_eq!(rest.status(), 503);
    assert_eq!(rest.headers()["retry-after"], "1");
    let body: Value = rest.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BUSY", "{body}");

    drop(txn);
    let (_, body) = app
        .post(
            Some(&alice.token),
            ADD_EVENT,
            json!({ "id": incident, "c": "now" }),
        )
        .await;
    assert_eq!(body["data"]["addIncidentEvent"]["sequence"], 1, "{body}");
}

/// 50 concurrent writers at one incident (events and title changes): each event's `createdAt`
/// is no earlier than the one before it in the timeline, and the audit log lists the changes
/// in the order they committed.
#[tokio::test]
async fn times_follow_the_order_writes_commit_in() {
    let app = spawn_app().await;
    let alice = app.responder();
    let incident = app.new_incident(&alice, "t").await;
    let writes = join_all((0..50).map(|i| {
        let (query, variables) = if i % 2 == 0 {
            (ADD_EVENT, json!({ "id": incident, "c": format!("note {i}") }))
        } else {
            (
                "mutation($id: UUID!, $t: String!) { updateIncident(id: $id, input: { title: $t }) { updatedAt } }",
                json!({ "id": incident, "t": format!("t{i}") }),
            )
        };
        app.post(Some(&alice.token), query, variables)
    }))
    .await;
    for (_, body) in &writes {
        assert!(body.get("errors").is_none(), "{body}");
    }

    let data = app
        .ok(
            &alice,
            "query($id: UUID!) { incident(id: $id) { updatedAt events(first: 100) { nodes { sequence createdAt } } } }",
            json!({ "id": incident }),
        )
        .await;
    let events = data["incident"]["events"]["nodes"].as_array().unwrap();
    assert_eq!(events.len(), 25);
    let times: Vec<&str> = events
        .iter()
        .map(|e| e["createdAt"].as_str().unwrap())
        .collect();
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    for pair in times.windows(2) {
        assert!(at(pair[0]) <= at(pair[1]), "createdAt goes back: {times:?}");
    }

    // Oldest first, the audit log must be the commit order: each title change starts from the
    // title the previous one left, and event sequences rise.
    let admin = app.caller(alice.org, incidentd::incident::identity::Role::Admin);
    let audit = app
        .ok(
            &admin,
            "query($id: UUID) { auditEvents(entityId: $id, first: 100) { nodes { action changes createdAt } } }",
            json!({ "id": incident }),
        )
        .await;
    let mut rows: Vec<&Value> = audit["auditEvents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    rows.reverse();
    assert_eq!(rows.len(), 51, "a creation and 50 changes");
    let (mut title, mut sequence) = ("t".to_string(), 0);
    let mut last_at = at(rows[0]["createdAt"].as_str().unwrap());
    let mut last_update_at = last_at;
    for row in &rows[1..] {
        let changes = &row["changes"];
        match row["action"].as_str().unwrap() {
            "incident_updated" => {
                assert_eq!(changes["before"]["title"], title.as_str(), "{row}");
                title = changes["after"]["title"].as_str().unwrap().to_string();
                last_update_at = at(row["createdAt"].as_str().unwrap());
            }
            "incident_event_added" => {
                let next = changes["after"]["sequence"].as_i64().unwrap();
                assert_eq!(next, sequence + 1, "{row}");
                sequence = next;
            }
            other => panic!("unexpected {other}"),
        }
        let row_at = at(row["createdAt"].as_str().unwrap());
        assert!(row_at >= last_at, "audit time goes back: {row}");
        last_at = row_at;
    }
    // updatedAt is the last change's time: it never went back.
    assert_eq!(
        at(data["incident"]["updatedAt"].as_str().unwrap()),
        last_update_at
    );
}
