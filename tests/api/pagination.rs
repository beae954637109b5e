//! Relay pagination and filters: incidents and postmortems newest first, events oldest
//! first, keyset cursors that stay correct while rows are added, and every `IncidentFilter` field.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Caller, TestApp, spawn_app};

const INCIDENT_PAGE: &str = "query($first: Int, $after: String, $last: Int, $before: String) { incidents(first: $first, after: $after, last: $last, before: $before) { totalCount edges { cursor node { id } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

/// One page of a connection: node ids and the connection itself.
struct Page {
    ids: Vec<String>,
    connection: Value,
}

impl Page {
    fn info(&self, key: &str) -> &Value {
        &self.connection["pageInfo"][key]
    }
    fn has_next(&self) -> bool {
        self.info("hasNextPage").as_bool().unwrap()
    }
    fn has_previous(&self) -> bool {
        self.info("hasPreviousPage").as_bool().unwrap()
    }
    fn end_cursor(&self) -> String {
        self.info("endCursor").as_str().unwrap().to_string()
    }
    fn start_cursor(&self) -> String {
        self.info("startCursor").as_str().unwrap().to_string()
    }
}

/// Checks what every page must satisfy: `nodes` and `edges` agree, and the page's start and end
/// cursors are its first and last edges' cursors.
fn page_of(connection: &Value) -> Page {
    let edges = connection["edges"].as_array().unwrap();
    let ids: Vec<String> = edges
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_string())
        .collect();
    let nodes: Vec<String> = connection["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, nodes, "edges and nodes agree: {connection}");
    if let (Some(first), Some(last)) = (edges.first(), edges.last()) {
        assert_eq!(
            connection["pageInfo"]["startCursor"], first["cursor"],
            "{connection}"
        );
        assert_eq!(
            connection["pageInfo"]["endCursor"], last["cursor"],
            "{connection}"
        );
    }
    Page {
        ids,
        connection: connection.clone(),
    }
}

async fn incident_page(app: &TestApp, caller: &Caller, variables: Value) -> Page {
    let data = app.ok(caller, INCIDENT_PAGE, variables).await;
    page_of(&data["incidents"])
}

async fn create(app: &TestApp, caller: &Caller, input: Value) -> String {
    app.create_incident(caller, input).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn create_many(app: &TestApp, caller: &Caller, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(create(app, caller, json!({ "title": format!("incident {i}") })).await);
    }
    ids
}

#[tokio::test]
async fn incidents_are_newest_first_and_first_after_visits_each_once_while_others_are_created() {
    let app = spawn_app().await;
    let alice = app.responder();
    let mut created = create_many(&app, &alice, 7).await;
    created.reverse();
    let newest_first = created;

    let all = incident_page(&app, &alice, json!({ "first": 100 })).await;
    assert_eq!(all.ids, newest_first);
    assert_eq!(all.connection["totalCount"], 7);
    assert!(!all.has_next());
    assert!(!all.has_previous());

    // Default page: 20, still newest first.
    let default = incident_page(&app, &alice, json!({})).await;
    assert_eq!(default.ids, newest_first);

    let mut visited = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = incident_page(&app, &alice, json!({ "first": 2, "after": after })).await;
        pages += 1;
        assert!(page.ids.len() <= 2);
        if pages == 1 {
            assert!(!page.has_previous(), "nothing precedes the first page");
        }
        // Someone declares an incident between two page fetches.
        create(
            &app,
            &alice,
            json!({ "title": format!("new during page {pages}") }),
        )
        .await;
        visited.extend(page.ids.clone());
        if !page.has_next() {
            break;
        }
        after = Some(page.end_cursor());
        assert!(pages < 10, "the walk does not end");
    }
    assert_eq!(pages, 4, "7 incidents in pages of 2");
    assert_eq!(
        visited, newest_first,
        "every incident exactly once, in order, none of the newer ones"
    );

    let total = incident_page(&app, &alice, json!({ "first": 1 })).await;
    assert_eq!(total.connection["totalCount"], 11);
    assert!(total.has_next());
}

#[tokio::test]
async fn last_before_walks_backward_and_after_before_bound_a_range() {
    let app = spawn_app().await;
    let alice = app.responder();
    let mut newest_first = create_many(&app, &alice, 7).await;
    newest_first.reverse();

    // The oldest two, still displayed newest first.
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = incident_page(&app, &alice, json!({ "last": 3, "before": before })).await;
        if pages.is_empty() {
            assert!(!page.has_next(), "nothing follows the last page");
            assert_eq!(page.ids, newest_first[4..7]);
        }
        assert_eq!(page.connection["totalCount"], 7);
        let more = page.has_previous();
        before = Some(page.start_cursor());
        pages.push(page.ids);
        if !more {
            break;
        }
        assert!(pages.len() < 10, "the walk does not end");
    }
    assert_eq!(
        pages,
        vec![
            newest_first[4..7].to_vec(),
            newest_first[1..4].to_vec(),
            newest_first[0..1].to_vec(),
        ]
    );

    // A page taken backward from a cursor sees the rows before it, and knows rows follow.
    let all = incident_page(&app, &alice, json!({ "first": 100 })).await;
    let cursors: Vec<String> = all.connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().to_string())
        .collect();
    let page = incident_page(&app, &alice, json!({ "last": 2, "before": cursors[4] })).await;
    assert_eq!(page.ids, newest_first[2..4]);
    assert!(page.has_previous());
    assert!(page.has_next());

    // after and before together: the rows strictly between the two cursors.
    let between = incident_page(
        &app,
        &alice,
        json!({ "first": 10, "after": cursors[1], "before": cursors[5] }),
    )
    .await;
    assert_eq!(between.ids, newest_first[2..5]);
    let between = incident_page(
        &app,
        &alice,
        json!({ "last": 2, "after": cursors[1], "before": cursors[5] }),
    )
    .await;
    assert_eq!(between.ids, newest_first[3..5]);

    // Past the end: an empty page.
    let empty = incident_page(&app, &alice, json!({ "first": 5, "after": cursors[6] })).await;
    assert!(empty.ids.is_empty());
    assert!(!empty.has_next());
}

/// The titles an incident filter selects, newest first, checked against its `totalCount`.
async fn titles(app: &TestApp, caller: &Caller, filter: Value) -> Vec<String> {
    let data = app
        .ok(
            caller,
            "query($f: IncidentFilter) { incidents(filter: $f, first: 100) { totalCount nodes { title } } }",
            json!({ "f": filter }),
        )
        .await;
    let titles: Vec<String> = data["incidents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        data["incidents"]["totalCount"],
        titles.len(),
        "totalCount of {filter}"
    );
    titles
}

#[tokio::test]
async fn every_incident_filter_field_selects_exactly_the_matching_incidents() {
    let app = spawn_app().await;
    let alice = app.responder();
    let now = chrono::Utc::now();
    let hours_ago = |h: f64| (now - chrono::Duration::seconds((h * 3600.0) as i64)).to_rfc3339();
    let (p1, p2) = (Uuid::new_v4(), Uuid::new_v4());

    const A: &str = "Disk 100% full on db-1";
    const B: &str = "Disk 1000 full";
    const C: &str = "db_primary down";
    const D: &str = "dbXprimary DOWN";
    const E: &str = "Checkout latency";
    let a = create(&app, &alice, json!({ "title": A, "severity": "SEV1", "linkedTicketIds": ["OPS-1", "OPS-2"], "linkedProblemId": p1, "startedAt": hours_ago(5.0) })).await;
    let b = create(&app, &alice, json!({ "title": B, "severity": "SEV2", "linkedTicketIds": ["OPS-12"], "linkedProblemId": p2, "startedAt": hours_ago(4.0) })).await;
    create(&app, &alice, json!({ "title": C, "severity": "SEV3", "linkedProblemId": p1, "startedAt": hours_ago(3.0) })).await;
    let d = create(&app, &alice, json!({ "title": D, "severity": "SEV4", "linkedTicketIds": ["OPS-3"], "startedAt": hours_ago(2.0) })).await;
    create(
        &app,
        &alice,
        json!({ "title": E, "severity": "SEV2", "startedAt": hours_ago(1.0) }),
    )
    .await;
    for (id, to) in [
        (&a, "RESOLVED"),
        (&b, "MITIGATING"),
        (&d, "RESOLVED"),
        (&d, "CLOSED"),
    ] {
        let (_, body) = app.transition(&alice, id, to, None).await;
        assert_eq!(body["data"]["transitionIncident"]["status"], to, "{body}");
    }
    // Another organization's incident matches every filter below and is never selected.
    let bob = app.responder();
    create(&app, &bob, json!({ "title": "Disk 100% full db_primary DOWN", "severity": "SEV1", "linkedTicketIds": ["OPS-1"], "linkedProblemId": p1, "startedAt": hours_ago(3.0) })).await;

    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec![E, D, C, B, A]),
        (json!(null), vec![E, D, C, B, A]),
        (json!({ "status": ["OPEN"] }), vec![E, C]),
        (json!({ "status": ["MITIGATING"] }), vec![B]),
        (json!({ "status": ["RESOLVED", "CLOSED"] }), vec![D, A]),
        (json!({ "severity": ["SEV1", "SEV2"] }), vec![E, B, A]),
        (json!({ "severity": ["SEV4"] }), vec![D]),
        (json!({ "search": "disk" }), vec![B, A]),
        (json!({ "search": "DISK 100" }), vec![B, A]),
        (json!({ "search": "100%" }), vec![A]),
        (json!({ "search": "%" }), vec![A]),
        (json!({ "search": "db_" }), vec![C]),
        (json!({ "search": "_" }), vec![C]),
        (json!({ "search": "Down" }), vec![D, C]),
        (json!({ "search": "no such title" }), vec![]),
        (json!({ "startedAfter": hours_ago(3.5) }), vec![E, D, C]),
        (json!({ "startedBefore": hours_ago(3.5) }), vec![B, A]),
        (
            json!({ "startedAfter": hours_ago(4.5), "startedBefore": hours_ago(2.5) }),
            vec![C, B],
        ),
        (json!({ "linkedTicketId": "OPS-1" }), vec![A]),
        (json!({ "linkedTicketId": "OPS-2" }), vec![A]),
        (json!({ "linkedTicketId": "OPS-12" }), vec![B]),
        (json!({ "linkedTicketId": "OPS" }), vec![]),
        (json!({ "linkedProblemId": p1 }), vec![C, A]),
        (json!({ "linkedProblemId": p2 }), vec![B]),
        (json!({ "linkedProblemId": Uuid::new_v4() }), vec![]),
        (
            json!({ "status": ["OPEN", "RESOLVED"], "severity": ["SEV1", "SEV3"], "linkedProblemId": p1 }),
            vec![C, A],
        ),
        (
            json!({ "status": ["OPEN"], "severity": ["SEV1", "SEV3"], "linkedProblemId": p1 }),
            vec![C],
        ),
        (json!({ "search": "disk", "status": ["OPEN"] }), vec![]),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            titles(&app, &alice, filter.clone()).await,
            expected,
            "filter {filter}"
        );
    }

    // A filter and its pages: totalCount counts the filter, the walk sees only its rows.
    let q = "query($after: String) { incidents(filter: { search: \"DISK\" }, first: 1, after: $after) { totalCount nodes { title } pageInfo { hasNextPage endCursor } } }";
    let first = app.ok(&alice, q, json!({})).await;
    assert_eq!(first["incidents"]["totalCount"], 2);
    assert_eq!(first["incidents"]["nodes"], json!([{ "title": B }]));
    assert_eq!(first["incidents"]["pageInfo"]["hasNextPage"], true);
    let second = app
        .ok(
            &alice,
            q,
            json!({ "after": first["incidents"]["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(second["incidents"]["nodes"], json!([{ "title": A }]));
    assert_eq!(second["incidents"]["pageInfo"]["hasNextPage"], false);
}

const EVENT_PAGE: &str = "query($id: UUID!, $first: Int, $after: String, $last: Int, $before: String, $types: [String!]) { incident(id: $id) { events(first: $first, after: $after, last: $last, before: $before, types: $types) { totalCount edges { cursor node { id sequence eventType } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }";

/// A page of an incident's events: the sequences, and the page.
async fn event_page(app: &TestApp, caller: &Caller, variables: Value) -> (Vec<i64>, Page) {
    let data = app.ok(caller, EVENT_PAGE, variables).await;
    let connection = &data["incident"]["events"];
    let sequences = connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["sequence"].as_i64().unwrap())
        .collect();
    (sequences, page_of(connection))
}

#[tokio::test]
async fn events_are_oldest_first_and_page_both_ways_with_a_type_filter() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = create(&app, &alice, json!({ "title": "timeline" })).await;
    let add = |event_type: &'static str| {
        let (app, alice, id) = (&app, &alice, &id);
        async move {
            app.ok(
                alice,
                "mutation($id: UUID!, $t: String!) { addIncidentEvent(incidentId: $id, input: { eventType: $t, content: \"c\" }) { id } }",
                json!({ "id": id, "t": event_type }),
            )
            .await;
        }
    };
    add("note").await; // 1
    add("deploy").await; // 2
    add("note").await; // 3
    app.transition(&alice, &id, "MITIGATING", None).await; // 4: status_changed
    add("note").await; // 5
    add("deploy").await; // 6
    add("note").await; // 7

    let (all, page) = event_page(&app, &alice, json!({ "id": id, "first": 100 })).await;
    assert_eq!(all, [1, 2, 3, 4, 5, 6, 7], "oldest first");
    assert_eq!(page.connection["totalCount"], 7);
    let types: Vec<&str> = page.connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "note",
            "deploy",
            "note",
            "status_changed",
            "note",
            "deploy",
            "note"
        ]
    );

    // Forward with first/after.
    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (sequences, page) = event_page(
            &app,
            &alice,
            json!({ "id": id, "first": 3, "after": after }),
        )
        .await;
        if walked.is_empty() {
            assert!(!page.has_previous());
        }
        walked.push(sequences);
        if !page.has_next() {
            break;
        }
        after = Some(page.end_cursor());
        assert!(walked.len() < 10, "the walk does not end");
    }
    assert_eq!(walked, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]);

    // Backward with last/before.
    let mut walked = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let (sequences, page) = event_page(
            &app,
            &alice,
            json!({ "id": id, "last": 3, "before": before }),
        )
        .await;
        if walked.is_empty() {
            assert!(!page.has_next());
        }
        walked.push(sequences);
        if !page.has_previous() {
            break;
        }
        before = Some(page.start_cursor());
        assert!(walked.len() < 10, "the walk does not end");
    }
    assert_eq!(walked, vec![vec![5, 6, 7], vec![2, 3, 4], vec![1]]);

    // The type filter, alone and with pages.
    let (deploys, page) = event_page(
        &app,
        &alice,
        json!({ "id": id, "first": 100, "types": ["deploy"] }),
    )
    .await;
    assert_eq!(deploys, [2, 6]);
    assert_eq!(page.connection["totalCount"], 2);
    let types = json!(["deploy", "status_changed"]);
    let (first, page) = event_page(
        &app,
        &alice,
        json!({ "id": id, "first": 2, "types": types }),
    )
    .await;
    assert_eq!(first, [2, 4]);
    assert!(page.has_next());
    assert_eq!(page.connection["totalCount"], 3);
    let (rest, page) = event_page(
        &app,
        &alice,
        json!({ "id": id, "first": 2, "types": types, "after": page.end_cursor() }),
    )
    .await;
    assert_eq!(rest, [6]);
    assert!(!page.has_next());
    let (latest_notes, page) = event_page(
        &app,
        &alice,
        json!({ "id": id, "last": 2, "types": ["note"] }),
    )
    .await;
    assert_eq!(latest_notes, [5, 7]);
    assert!(page.has_previous());
    assert_eq!(page.connection["totalCount"], 4);
    let (none, page) = event_page(
        &app,
        &alice,
        json!({ "id": id, "first": 10, "types": ["rollback"] }),
    )
    .await;
    assert!(none.is_empty());
    assert_eq!(page.connection["totalCount"], 0);
}

#[tokio::test]
async fn postmortems_are_newest_first_by_their_own_creation() {
    let app = spawn_app().await;
    let alice = app.responder();
    let incidents = create_many(&app, &alice, 4).await;
    // Postmortems written in an order other than their incidents'.
    let mut written = Vec::new();
    for i in [1, 3, 0] {
        let data = app
            .ok(
                &alice,
                "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: {}) { id } }",
                json!({ "id": incidents[i] }),
            )
            .await;
        written.push(data["createPostmortem"]["id"].as_str().unwrap().to_string());
    }
    written.reverse();
    let newest_first = written;

    let q = "query($first: Int, $after: String, $last: Int, $before: String) { postmortems(first: $first, after: $after, last: $last, before: $before) { totalCount edges { cursor node { id } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
    let page = |variables: Value| {
        let app = &app;
        let alice = &alice;
        async move { page_of(&app.ok(alice, q, variables).await["postmortems"]) }
    };
    let all = page(json!({})).await;
    assert_eq!(all.ids, newest_first);
    assert_eq!(all.connection["totalCount"], 3);

    let first = page(json!({ "first": 2 })).await;
    assert_eq!(first.ids, newest_first[0..2]);
    assert!(first.has_next());
    let second = page(json!({ "first": 2, "after": first.end_cursor() })).await;
    assert_eq!(second.ids, newest_first[2..3]);
    assert!(!second.has_next());

    let oldest = page(json!({ "last": 1 })).await;
    assert_eq!(oldest.ids, newest_first[2..3]);
    assert!(oldest.has_previous());
    let before = page(json!({ "last": 5, "before": oldest.start_cursor() })).await;
    assert_eq!(before.ids, newest_first[0..2]);
    assert!(!before.has_previous());
}
