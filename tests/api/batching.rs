//! Nested relations are batched: the statement count of a nested page does not grow with it.

use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

const NESTED: &str = "query($n: Int!) { incidents(first: $n) { nodes { id events(first: 20) { nodes { id } } postmortem { id } } } }";

async fn statements_for(app: &TestApp, caller: &crate::helpers::Caller, n: usize) -> u64 {
    let before = app.state.graphql.domain.db.statement_count();
    let data = app.ok(caller, NESTED, json!({ "n": n })).await;
    let after = app.state.graphql.domain.db.statement_count();
    let nodes = data["incidents"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), n);
    for node in nodes {
        assert_eq!(
            node["events"]["nodes"].as_array().unwrap().len(),
            20,
            "per-parent pagination"
        );
    }
    after - before
}

#[tokio::test]
async fn the_nested_incident_page_takes_at_most_four_statements_at_any_size() {
    let app = spawn_app().await;
    let alice = app.responder();
    for i in 0..50 {
        let id = app
            .create_incident(&alice, json!({ "title": format!("incident {i}") }))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        for e in 0..25 {
            app.add_event(&alice, &id, &format!("e{e}")).await;
        }
        if i % 2 == 0 {
            app.ok(
                &alice,
                "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: {}) { id } }",
                json!({ "id": id }),
            )
            .await;
        }
    }
    let small = statements_for(&app, &alice, 5).await;
    let large = statements_for(&app, &alice, 50).await;
    println!("nested query statements: first 5 → {small}, first 50 → {large}");
    assert!(large <= 4, "{large} statements for 50 incidents");
    assert_eq!(small, large, "the count must not grow with the page size");
}
