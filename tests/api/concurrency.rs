//! Concurrent writers on one incident serialize: one transition wins, events number gaplessly,
//! and a retried create returns the first one's incident.

use futures_util::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{code, spawn_app};

#[tokio::test]
async fn fifty_simultaneous_resolves_leave_one_event_and_one_audit_row() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app
        .create_incident(&alice, json!({ "title": "race" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let results = join_all((0..50).map(|_| app.transition(&alice, &id, "RESOLVED", None))).await;
    for (status, body) in &results {
        assert_eq!(*status, 200);
        assert_eq!(
            body["data"]["transitionIncident"]["status"], "RESOLVED",
            "{body}"
        );
    }
    let status_events = app
        .events(&alice, &id)
        .await
        .into_iter()
        .filter(|(_, t)| t == "status_changed")
        .count();
    assert_eq!(status_events, 1);
    let updates = app
        .audit(alice.org, &id)
        .await
        .into_iter()
        .filter(|a| a["action"] == "incident_updated")
        .count();
    assert_eq!(updates, 1);
}

#[tokio::test]
async fn fifty_simultaneous_events_get_sequences_one_to_fifty() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app
        .create_incident(&alice, json!({ "title": "busy" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let added = join_all((0..50).map(|i| {
        let (app, alice, id) = (&app, &alice, &id);
        async move { app.add_event(alice, id, &format!("event {i}")).await }
    }))
    .await;
    let mut returned: Vec<i64> = added
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    returned.sort();
    assert_eq!(returned, (1..=50).collect::<Vec<_>>());
    let stored: Vec<i64> = app
        .events(&alice, &id)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(stored, (1..=50).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_retried_create_returns_the_same_incident_once() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = Uuid::new_v4();
    let input =
        json!({ "id": id, "title": "retry me", "severity": "SEV2", "linkedTicketIds": ["A-1"] });
    let created = join_all((0..10).map(|_| app.create_incident(&alice, input.clone()))).await;
    for incident in &created {
        assert_eq!(incident["id"], id.to_string());
        assert_eq!(incident["startedAt"], created[0]["startedAt"]);
    }
    let data = app
        .ok(&alice, "{ incidents { totalCount } }", json!({}))
        .await;
    assert_eq!(data["incidents"]["totalCount"], 1);
    let audit = app.audit(alice.org, &id.to_string()).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["action"], "incident_created");

    let mut different = input.clone();
    different["title"] = json!("something else");
    let error = app
        .err(
            &alice,
            "mutation($input: CreateIncidentInput!) { createIncident(input: $input) { id } }",
            json!({ "input": different }),
        )
        .await;
    assert_eq!(code(&error), "CONFLICT");
}

#[tokio::test]
async fn an_id_taken_in_another_organization_conflicts_and_reveals_nothing() {
    let app = spawn_app().await;
    let (alice, mallory) = (app.responder(), app.responder());
    let id = Uuid::new_v4();
    app.create_incident(&alice, json!({ "id": id, "title": "secret outage name" }))
        .await;
    let (_, body) = app
        .post(
            Some(&mallory.token),
            "mutation($input: CreateIncidentInput!) { createIncident(input: $input) { id title } }",
            json!({ "input": { "id": id, "title": "secret outage name" } }),
        )
        .await;
    assert_eq!(code(&body["errors"][0]), "CONFLICT");
    assert!(body["data"].is_null());
    assert!(!body.to_string().contains("secret"), "{body}");
    let data = app
        .ok(&mallory, "{ incidents { totalCount } }", json!({}))
        .await;
    assert_eq!(data["incidents"]["totalCount"], 0);
}

#[tokio::test]
async fn a_retried_event_with_its_id_is_stored_once() {
    let app = spawn_app().await;
    let alice = app.responder();
    let incident = app.create_incident(&alice, json!({ "title": "t" })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let event_id = Uuid::new_v4();
    let q = "mutation($i: UUID!, $input: AddIncidentEventInput!) { addIncidentEvent(incidentId: $i, input: $input) { id sequence } }";
    let vars = json!({ "i": incident, "input": { "id": event_id, "content": "once" } });
    let first = app.ok(&alice, q, vars.clone()).await;
    let second = app.ok(&alice, q, vars).await;
    assert_eq!(first, second);
    let error = app
        .err(
            &alice,
            q,
            json!({ "i": incident, "input": { "id": event_id, "content": "twice" } }),
        )
        .await;
    assert_eq!(code(&error), "CONFLICT");
    assert_eq!(app.events(&alice, &incident).await.len(), 1);
}
