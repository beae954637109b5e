//! The listed page's bytes: its rows, read by column index, are the rows the entities read by
//! name, and its JSON is what serde_json would write for the same answer, byte for byte.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::spawn_app;
use incidentd::entity::{incident, incident_event, postmortem};
use incidentd::incident::identity::{Principal, Role};
use incidentd::incident::input::IncidentFilter;
use incidentd::incident::page::{Page, SeqCursor, TimeCursor};
use incidentd::incident::read::{self, EventWindow};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};

/// The bench's `list` page: every incident field, `allowedTransitions`, 20 events of six
/// fields and the whole postmortem on each of 50 incidents.
const LIST: &str = "query List { incidents(first: 50) { pageInfo { hasNextPage endCursor } nodes { \
     id title status severity linkedTicketIds linkedProblemId startedAt resolvedAt createdBy \
     createdAt updatedAt allowedTransitions \
     events(first: 20) { nodes { id sequence eventType content createdBy createdAt } } \
     postmortem { id impactSummary rootCause timeline whatWentWell whatWentWrong \
     actionItems { title owner dueDate done ticketId } publicSummary internalNotes createdBy \
     createdAt updatedAt } } } }";

/// Text with what JSON must escape, at every offset of an eight-byte chunk, and what it must not.
fn awkward(i: usize) -> String {
    format!(
        "{}\"quoted\" back\\slash\ttab\nline\r\u{1}\u{1f}\u{7f} é 🔥 中文 {i}",
        "x".repeat(i % 9)
    )
}

#[tokio::test]
async fn the_list_page_reads_every_column_and_is_written_as_serde_json_writes_it() {
    let app = spawn_app().await;
    let alice = app.responder();
    let problem = uuid::Uuid::new_v4();
    let mut ids = Vec::new();
    for i in 0..4 {
        let created = app
            .create_incident(
                &alice,
                json!({ "title": awkward(i), "severity": "SEV3",
                        "linkedTicketIds": [awkward(i + 1), "OPS-1"], "linkedProblemId": problem }),
            )
            .await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    // Every column of each table holds a value: the highest severity, a resolution time, the
    // statuses of a status change, every text of a postmortem and its action items.
    let upd = "mutation($id: UUID!) { updateIncident(id: $id, input: { severity: SEV1 }) { id } }";
    let pm = "mutation($id: UUID!, $t: String!) { createPostmortem(incidentId: $id, input: { \
              impactSummary: $t, rootCause: $t, timeline: $t, whatWentWell: $t, whatWentWrong: $t, \
              publicSummary: $t, internalNotes: $t, actionItems: [ \
              { title: $t, owner: $t, dueDate: \"2026-12-24\", done: true, ticketId: $t }, \
              { title: \"second\" } ] }) { id } }";
    join_all(ids.iter().enumerate().map(|(i, id)| {
        let (app, alice) = (&app, &alice);
        async move {
            app.ok(alice, upd, json!({ "id": id })).await;
            for n in 0..3 {
                app.add_event(alice, id, &awkward(i * 3 + n)).await;
            }
            app.transition(alice, id, "RESOLVED", None).await;
            app.ok(alice, pm, json!({ "id": id, "t": awkward(i + 7) }))
                .await;
        }
    }))
    .await;
    // One incident left open, without a postmortem: the nulls of a page.
    app.new_incident(&alice, "open").await;

    // The page's bytes are serde_json's for the same answer (read back in its order).
    let body = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&alice.token)
        .json(&json!({ "query": LIST }))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let answer: async_graphql::Response = serde_json::from_slice(&body).unwrap();
    assert!(
        answer.errors.is_empty(),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&serde_json::to_vec(&answer).unwrap()),
        "the page's JSON is not serde_json's"
    );

    // What the page shows is what was written.
    let page: Value = serde_json::from_slice(&body).unwrap();
    let nodes = page["data"]["incidents"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5);
    let first = nodes.iter().find(|n| n["id"] == ids[3].as_str()).unwrap();
    assert_eq!(first["title"], awkward(3));
    assert_eq!(first["linkedTicketIds"], json!([awkward(4), "OPS-1"]));
    assert_eq!(first["linkedProblemId"], problem.to_string());
    assert_eq!(first["severity"], "SEV1");
    assert_eq!(first["status"], "RESOLVED");
    assert_eq!(
        first["allowedTransitions"],
        json!(["CLOSED", "OPEN", "MITIGATING"])
    );
    let contents: Vec<&Value> = first["events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["content"])
        .collect();
    assert!(contents.contains(&&json!(awkward(9))), "{contents:?}");
    assert_eq!(first["postmortem"]["whatWentWrong"], awkward(10));
    assert_eq!(
        first["postmortem"]["actionItems"][0],
        json!({ "title": awkward(10), "owner": awkward(10), "dueDate": "2026-12-24",
                "done": true, "ticketId": awkward(10) })
    );

    // The list's statements, decoded by index, give the models the entities decode by name.
    let db = &app.state.graphql.domain.db;
    let scope = Principal {
        user_id: alice.user,
        org_id: alice.org,
        role: Role::Responder,
        expires_at: u64::MAX,
        person: None,
    }
    .scope();
    let page = Page::<TimeCursor>::parse(Some(50), None, None, None).unwrap();
    let listed = read::incidents(db, scope, &IncidentFilter::default(), &page, false)
        .await
        .unwrap()
        .0
        .rows;
    let by_name = scope
        .incidents()
        .order_by_desc(incident::Column::CreatedAt)
        .order_by_desc(incident::Column::Id)
        .all(db.conn())
        .await
        .unwrap();
    assert_eq!(listed, by_name);
    assert!(listed.iter().any(|i| i.highest_severity.is_some()
        && i.resolved_at.is_some()
        && i.linked_problem_id.is_some()
        && i.created_by.is_some()));

    let incident_ids: Vec<uuid::Uuid> = listed.iter().map(|i| i.id).collect();
    let events = Page::<SeqCursor>::parse(Some(20), None, None, None).unwrap();
    let window = EventWindow {
        after: None,
        before: None,
        types: None,
        backward: false,
        fetch: events.fetch(),
    };
    let mut windows = read::event_windows(db, scope, &incident_ids, &window, None)
        .await
        .unwrap();
    for id in &incident_ids {
        let by_index: Vec<incident_event::Model> = windows
            .remove(id)
            .unwrap_or_default()
            .into_iter()
            .map(|e| (*e).clone())
            .collect();
        let by_name = scope
            .events()
            .filter(incident_event::Column::IncidentId.eq(*id))
            .order_by_asc(incident_event::Column::Sequence)
            .all(db.conn())
            .await
            .unwrap();
        assert_eq!(by_index, by_name);
    }
    assert!(windows.is_empty());

    let mut postmortems = read::postmortems_by_incident(db, scope, &incident_ids)
        .await
        .unwrap();
    postmortems.sort_by_key(|p| p.id);
    let by_name = scope
        .postmortems()
        .order_by_asc(postmortem::Column::Id)
        .all(db.conn())
        .await
        .unwrap();
    assert_eq!(postmortems.len(), 4);
    assert_eq!(postmortems, by_name);
}
