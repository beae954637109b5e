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

/// 50 incidents with `events` events each, and a postmortem on every other one when asked.
async fn seed(app: &TestApp, alice: &crate::helpers::Caller, events: usize, postmortems: bool) {
    for i in 0..50 {
        let id = app
            .create_incident(alice, json!({ "title": format!("incident {i}") }))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        for e in 0..events {
            app.add_event(alice, &id, &format!("e{e}")).await;
        }
        if postmortems && i % 2 == 0 {
            app.ok(
                alice,
                "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: {}) { id } }",
                json!({ "id": id }),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn the_nested_incident_page_takes_at_most_four_statements_at_any_size() {
    let app = spawn_app().await;
    let alice = app.responder();
    seed(&app, &alice, 25, true).await;
    let small = statements_for(&app, &alice, 5).await;
    let large = statements_for(&app, &alice, 50).await;
    println!("nested query statements: first 5 → {small}, first 50 → {large}");
    assert!(large <= 4, "{large} statements for 50 incidents");
    assert_eq!(small, large, "the count must not grow with the page size");
}

/// Under load a DataLoader's time window closes before all of a page's incidents have
/// registered their keys, and the page is read in several partial batches (the bench measured
/// 20 statements per page on two busy cores). A listed page reads each relation once for all of
/// its incidents, whatever the timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_nested_pages_each_take_three_statements() {
    let app = spawn_app().await;
    let alice = app.responder();
    seed(&app, &alice, 21, false).await;
    const PAGES: u64 = 32;
    let before = app.state.graphql.domain.db.statement_count();
    let pages = futures_util::future::join_all(
        (0..PAGES).map(|_| app.ok(&alice, NESTED, json!({ "n": 50 }))),
    )
    .await;
    let after = app.state.graphql.domain.db.statement_count();
    for data in &pages {
        let nodes = data["incidents"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 50);
        for node in nodes {
            assert_eq!(node["events"]["nodes"].as_array().unwrap().len(), 20);
        }
    }
    // The page, its events window, its postmortems.
    assert_eq!(
        after - before,
        PAGES * 3,
        "statements for {PAGES} pages at once"
    );
}
