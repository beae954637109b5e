//! Nested relations are batched: the statement count of a nested page does not grow with it.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_counting_app};

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
    let app = spawn_counting_app().await;
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
    let app = spawn_counting_app().await;
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
    let app = spawn_counting_app().await;
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

/// The bench's detail page (`detail_query` in the bench's read scenario).
const DETAIL: &str = "query($id: UUID!) { incident(id: $id) { id title status severity linkedTicketIds \
     linkedProblemId startedAt resolvedAt createdBy createdAt updatedAt allowedTransitions \
     events(first: 50) { nodes { id sequence eventType content createdBy createdAt } } \
     postmortem { id impactSummary rootCause timeline whatWentWell whatWentWrong \
     actionItems { title owner dueDate done ticketId } publicSummary internalNotes createdBy createdAt updatedAt } } }";

/// The bench's board page (`board_query`).
const BOARD: &str = "{ incidents(first: 50) { totalCount pageInfo { hasNextPage endCursor } nodes { \
     id title status severity linkedTicketIds startedAt resolvedAt updatedAt } } }";

/// The data of a query that must succeed, and the statements it cost.
async fn counted(
    app: &TestApp,
    caller: &crate::helpers::Caller,
    query: &str,
    variables: Value,
) -> (Value, u64) {
    let db = &app.state.graphql.domain.db;
    let before = db.statement_count();
    let data = app.ok(caller, query, variables).await;
    (data, db.statement_count() - before)
}

/// `selection` of incident `id` as the list answers it: the listed page reads the events and
/// postmortems of all its incidents at once, without the detail's read-ahead.
async fn as_listed(
    app: &TestApp,
    caller: &crate::helpers::Caller,
    selection: &str,
    id: &str,
) -> Value {
    let data = app
        .ok(
            caller,
            &format!("{{ incidents(first: 5) {{ nodes {{ id {selection} }} }} }}"),
            json!({}),
        )
        .await;
    let mut node = data["incidents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("{id} listed"))
        .clone();
    node.as_object_mut().unwrap().remove("id");
    node
}

/// Three incidents: `busy` with 30 notes, a status change and a postmortem; `quiet` with no
/// event and no postmortem; and one more, so the list is a page.
async fn seed_details(app: &TestApp, alice: &crate::helpers::Caller) -> (String, String) {
    let busy = app.new_incident(alice, "busy").await.to_string();
    for e in 0..30 {
        app.add_event(alice, &busy, &format!("note {e}\nwith \"quotes\""))
            .await;
    }
    let (status, body) = app.transition(alice, &busy, "MITIGATING", None).await;
    assert_eq!(status, 200, "{body}");
    app.ok(
        alice,
        "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { impactSummary: \"4% of checkouts\", \
         actionItems: [{ title: \"alert\", owner: \"sre\", dueDate: \"2026-12-24\" }, { title: \"retry\", done: true }] }) { id } }",
        json!({ "id": busy }),
    )
    .await;
    let quiet = app.new_incident(alice, "quiet").await.to_string();
    app.new_incident(alice, "another").await;
    (busy, quiet)
}

/// The detail page reads the incident, its events and its postmortem in one statement, and
/// answers as the list (which reads them apart) does.
#[tokio::test]
async fn a_detail_page_is_one_statement() {
    let app = spawn_counting_app().await;
    let alice = app.responder();
    let (busy, quiet) = seed_details(&app, &alice).await;
    for id in [&busy, &quiet] {
        let (data, statements) = counted(&app, &alice, DETAIL, json!({ "id": id })).await;
        assert_eq!(statements, 1, "statements for the detail page");
        let selection = &DETAIL[DETAIL.find("{ id title").unwrap() + 5..DETAIL.len() - 4];
        let mut detail = data["incident"].clone();
        detail.as_object_mut().unwrap().remove("id");
        assert_eq!(detail, as_listed(&app, &alice, selection, id).await);
    }
    let (data, _) = counted(&app, &alice, DETAIL, json!({ "id": busy })).await;
    assert_eq!(
        data["incident"]["events"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        31,
        "30 notes, the status change"
    );
    assert_eq!(
        data["incident"]["postmortem"]["impactSummary"],
        "4% of checkouts"
    );
    let (data, _) = counted(&app, &alice, DETAIL, json!({ "id": quiet })).await;
    assert!(data["incident"]["postmortem"].is_null());
}

/// Another organization's incident, or none at all, is NOT_FOUND, in that one statement.
#[tokio::test]
async fn a_detail_page_of_another_organization_is_not_found_in_one_statement() {
    let app = spawn_counting_app().await;
    let alice = app.responder();
    let (busy, _) = seed_details(&app, &alice).await;
    let mallory = app.responder();
    app.ok(&mallory, "{ viewer { userId } }", json!({})).await;
    for id in [busy, uuid::Uuid::new_v4().to_string()] {
        let db = &app.state.graphql.domain.db;
        let before = db.statement_count();
        let error = app.err(&mallory, DETAIL, json!({ "id": id })).await;
        assert_eq!(db.statement_count() - before, 1);
        assert_eq!(crate::helpers::code(&error), "NOT_FOUND", "{error}");
    }
}

/// Every kind of events window (forward, backward, after and before a cursor, past the end,
/// filtered by type, empty, a second window under an alias) answers on the detail page as on
/// the list; one window and the postmortem cost the detail's one statement, each further
/// window one more.
#[tokio::test]
async fn a_detail_page_answers_every_events_window_as_the_list_does() {
    let app = spawn_counting_app().await;
    let alice = app.responder();
    let (busy, quiet) = seed_details(&app, &alice).await;
    let data = app
        .ok(
            &alice,
            "query($id: UUID!) { incident(id: $id) { events(first: 100) { edges { cursor } } } }",
            json!({ "id": busy }),
        )
        .await;
    let cursor = |i: usize| {
        data["incident"]["events"]["edges"][i]["cursor"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (c3, c10, last) = (cursor(2), cursor(9), cursor(30));
    let window = "{ pageInfo { hasNextPage hasPreviousPage startCursor endCursor } \
                  edges { cursor node { sequence eventType content } } }";
    let cases = [
        ("events(first: 5)".to_string(), 1),
        (format!("events(first: 5, after: \"{c3}\")"), 1),
        ("events(last: 4)".to_string(), 1),
        (format!("events(last: 4, before: \"{c10}\")"), 1),
        (format!("events(after: \"{c3}\", before: \"{c10}\")"), 1),
        (format!("events(first: 3, after: \"{last}\")"), 1),
        ("events(first: 0)".to_string(), 1),
        ("events(last: 100)".to_string(), 1),
        (
            "events(types: [\"status_changed\", \"note\"], last: 3)".to_string(),
            1,
        ),
        ("events(types: [\"status_changed\"])".to_string(), 1),
        (
            "events(first: 2, types: [\"nothing_of_that_type\"])".to_string(),
            1,
        ),
        (
            format!("... on Incident {{ events(first: 2, after: \"{c3}\") {window} }}"),
            1,
        ),
        ("a: events(first: 2) b: events(last: 2)".to_string(), 2),
    ];
    for id in [&busy, &quiet] {
        for (events, statements) in &cases {
            let events = if events.contains('{') && !events.starts_with("a:") {
                events.clone()
            } else {
                events
                    .replace(") b:", &format!(") {window} b:"))
                    .replace("events(last: 2)", &format!("events(last: 2) {window}"))
                    + if events.starts_with("a:") { "" } else { window }
            };
            let selection = format!("{events} postmortem {{ id }}");
            let (data, counted_statements) = counted(
                &app,
                &alice,
                &format!("query($id: UUID!) {{ incident(id: $id) {{ {selection} }} }}"),
                json!({ "id": id }),
            )
            .await;
            assert_eq!(counted_statements, *statements, "{selection}");
            assert_eq!(
                data["incident"],
                as_listed(&app, &alice, &selection, id).await,
                "{selection}"
            );
        }
    }
}

/// The board reads its page and `totalCount` in one statement, an empty page included, and
/// its page is the one the list without `totalCount` reads.
#[tokio::test]
async fn a_board_page_is_one_statement() {
    let app = spawn_counting_app().await;
    let alice = app.responder();
    let bob = app.responder();
    for i in 0..7 {
        let title = if i % 2 == 0 { "even" } else { "odd" };
        app.new_incident(&alice, &format!("{title} {i}")).await;
    }
    app.new_incident(&bob, "another organization's").await;
    let (data, statements) = counted(&app, &alice, BOARD, json!({})).await;
    assert_eq!(statements, 1, "statements for the board page");
    assert_eq!(data["incidents"]["totalCount"], 7);
    assert_eq!(data["incidents"]["nodes"].as_array().unwrap().len(), 7);

    let page = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor } nodes { id title }";
    let end_cursor = |arguments: String| {
        let query = format!("{{ incidents({arguments}) {{ {page} }} }}");
        let app = &app;
        let alice = &alice;
        async move {
            let data = app.ok(alice, &query, json!({})).await;
            data["incidents"]["pageInfo"]["endCursor"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let end = end_cursor("first: 5".into()).await;
    let last_end = end_cursor(format!("first: 5, after: \"{end}\"")).await;
    for (arguments, total, rows) in [
        ("first: 5".to_string(), 7, 5),
        (format!("first: 5, after: \"{end}\""), 7, 2),
        (format!("first: 5, after: \"{last_end}\""), 7, 0),
        ("last: 3".to_string(), 7, 3),
        (format!("last: 3, before: \"{end}\""), 7, 3),
        ("first: 5, filter: { search: \"EVEN\" }".to_string(), 4, 4),
        (
            "first: 5, filter: { search: \"none such\" }".to_string(),
            0,
            0,
        ),
        ("first: 5, filter: { status: [RESOLVED] }".to_string(), 0, 0),
    ] {
        let board = with_total(&app, &alice, "incidents", &arguments, page).await;
        assert_eq!(board["totalCount"], total, "{arguments}");
        assert_eq!(
            board["nodes"].as_array().unwrap().len(),
            rows,
            "{arguments}"
        );
    }
}

/// `list(arguments)` with its `totalCount`, which must cost one statement and give the page
/// `page` selects as it is without `totalCount`.
async fn with_total(
    app: &TestApp,
    caller: &crate::helpers::Caller,
    list: &str,
    arguments: &str,
    page: &str,
) -> Value {
    let (data, statements) = counted(
        app,
        caller,
        &format!("{{ {list}({arguments}) {{ totalCount {page} }} }}"),
        json!({}),
    )
    .await;
    assert_eq!(statements, 1, "{list}({arguments})");
    let mut without = data[list].clone();
    without.as_object_mut().unwrap().remove("totalCount");
    let plain = app
        .ok(
            caller,
            &format!("{{ {list}({arguments}) {{ {page} }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(without, plain[list], "{list}({arguments})");
    data[list].clone()
}

/// The other connections read `totalCount` with their page too: one statement each, an empty
/// page included, the page as without `totalCount`, and the total the list's length.
#[tokio::test]
async fn every_list_reads_its_total_with_its_page() {
    use incidentd::incident::identity::Role;
    let app = spawn_counting_app().await;
    let org = uuid::Uuid::new_v4();
    let admin = app.named(org, Role::Admin, "Ada", Some("ada@example.com"));
    let bob = app.named(org, Role::Responder, "Bob", None);
    app.ok(&bob, "{ viewer { userId } }", json!({})).await;
    let mut first = None;
    for i in 0..3 {
        let id = app.new_incident(&admin, &format!("incident {i}")).await;
        first.get_or_insert(id);
        if i < 2 {
            app.ok(
                &bob,
                "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: {}) { id } }",
                json!({ "id": id }),
            )
            .await;
        }
    }
    let first = first.unwrap();
    let page =
        "pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { __typename } }";
    let lists = [
        ("postmortems", String::new()),
        ("auditEvents", String::new()),
        ("auditEvents", format!("entityId: \"{first}\"")),
        ("people", String::new()),
        ("people", "search: \"BO\"".to_string()),
        ("people", "search: \"nobody\"".to_string()),
    ];
    for (list, filter) in &lists {
        let all = app
            .ok(
                &admin,
                &format!("{{ {list}({filter} first: 100) {{ {page} }} }}"),
                json!({}),
            )
            .await;
        let length = all[list]["edges"].as_array().unwrap().len();
        let end = all[list]["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_owned);
        let mut pages = vec![format!("{filter} first: 1"), format!("{filter} first: 100")];
        if let Some(end) = end {
            pages.push(format!("{filter} first: 2, after: \"{end}\""));
        }
        for arguments in pages {
            let connection = with_total(&app, &admin, list, &arguments, page).await;
            assert_eq!(connection["totalCount"], length, "{list}({arguments})");
        }
    }
}
