//! Nested relations are batched: the statement count of a nested page does not grow with it.

use serde_json::{Value, json};

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

const PEOPLE: &str = "query($n: Int!) { incidents(first: $n) { nodes { id creator { name } roles { role assignedAt person { id name } } events(first: 5) { nodes { author { name } } } postmortem { author { name } } } } }";

/// The people of a page (creators, role holders, authors of events and postmortems) are read
/// in batches: a page of 50 costs what a page of 5 does.
#[tokio::test]
async fn the_people_of_a_page_are_read_in_batches() {
    use incidentd::incident::identity::Role;
    let app = spawn_app().await;
    let org = uuid::Uuid::new_v4();
    let alice = app.named(org, Role::Responder, "Alice", None);
    let bob = app.named(org, Role::Responder, "Bob", None);
    app.ok(&bob, "{ viewer { userId } }", json!({})).await;
    for i in 0..50 {
        let id = app.new_incident(&alice, &format!("incident {i}")).await;
        app.add_event(&bob, &id.to_string(), "note").await;
        app.ok(
            &alice,
            "mutation($id: UUID!, $bob: UUID!) { assignIncidentRole(incidentId: $id, role: SCRIBE, personId: $bob) { id } }",
            json!({ "id": id, "bob": bob.user }),
        )
        .await;
        if i % 2 == 0 {
            app.ok(
                &bob,
                "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: {}) { id } }",
                json!({ "id": id }),
            )
            .await;
        }
    }
    let mut counts = Vec::new();
    for n in [5, 50] {
        let before = app.state.graphql.domain.db.statement_count();
        let data = app.ok(&alice, PEOPLE, json!({ "n": n })).await;
        counts.push(app.state.graphql.domain.db.statement_count() - before);
        let nodes = data["incidents"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), n);
        for node in nodes {
            assert_eq!(node["creator"]["name"], "Alice");
            assert_eq!(node["roles"][0]["person"]["name"], "Alice");
            assert_eq!(node["roles"][1]["person"]["name"], "Bob");
            let authors: Vec<&Value> = node["events"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| &e["author"]["name"])
                .collect();
            assert_eq!(authors, [&json!("Bob"), &json!("Alice")], "{node}");
            if !node["postmortem"].is_null() {
                assert_eq!(node["postmortem"]["author"]["name"], "Bob");
            }
        }
    }
    println!(
        "people of a page: first 5 → {}, first 50 → {}",
        counts[0], counts[1]
    );
    // The page, its events, postmortems and roles, and the people they name: at most three
    // rounds of people (the creators at once, the role holders and the authors once their rows
    // are read), whether they meet in one DataLoader batch depends on timing; a statement per
    // incident would be 50 more.
    for (n, count) in [5, 50].into_iter().zip(&counts) {
        assert!(*count <= 7, "{count} statements for {n} incidents");
    }
}
