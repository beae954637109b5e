//! Input validation: every bad input is `BAD_USER_INPUT` naming the field at
//! fault, and nothing is written.

use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, code, spawn_app};

const CREATE: &str =
    "mutation($input: CreateIncidentInput!) { createIncident(input: $input) { id title } }";
const UPDATE: &str = "mutation($id: UUID!, $input: UpdateIncidentInput!) { updateIncident(id: $id, input: $input) { id title } }";
const ADD_EVENT: &str = "mutation($id: UUID!, $input: AddIncidentEventInput!) { addIncidentEvent(incidentId: $id, input: $input) { id } }";
const CREATE_PM: &str = "mutation($id: UUID!, $input: PostmortemInput!) { createPostmortem(incidentId: $id, input: $input) { id } }";
const UPDATE_PM: &str = "mutation($id: UUID!, $input: PostmortemInput!) { updatePostmortem(incidentId: $id, input: $input) { id } }";

/// Everything the caller's organization holds, audit log included: compared before and after.
async fn state(app: &TestApp, caller: &Caller) -> Value {
    let admin = app.caller(caller.org, incidentd::incident::identity::Role::Admin);
    app.ok(
        &admin,
        "{ incidents(first: 100) { totalCount nodes { id title severity linkedTicketIds startedAt updatedAt events(first: 100) { totalCount } postmortem { rootCause actionItems { title } updatedAt } } } auditEvents(first: 100) { totalCount } }",
        json!({}),
    )
    .await
}

/// Asserts `BAD_USER_INPUT` on `field` and that the organization's data did not change.
async fn assert_bad_input(
    app: &TestApp,
    caller: &Caller,
    what: &str,
    query: &str,
    variables: Value,
    field: &str,
) {
    let before = state(app, caller).await;
    let (status, body) = app.post(Some(&caller.token), query, variables).await;
    assert_eq!(status, 200, "{what}: {body}");
    let error = &body["errors"][0];
    assert_eq!(code(error), "BAD_USER_INPUT", "{what}: {body}");
    assert_eq!(error["extensions"]["field"], field, "{what}: {body}");
    assert!(body["data"].is_null(), "{what}: {body}");
    assert_eq!(state(app, caller).await, before, "{what} wrote something");
}

async fn incident(app: &TestApp, caller: &Caller) -> String {
    app.create_incident(caller, json!({ "title": "existing" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn titles_must_be_non_empty_at_most_500_characters_and_free_of_nul() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = incident(&app, &alice).await;

    let bad = [
        ("empty", String::new()),
        ("whitespace only", " \t\n ".to_string()),
        ("501 characters", "€".repeat(501)),
        ("a NUL character", "before\0after".to_string()),
    ];
    for (what, title) in &bad {
        assert_bad_input(
            &app,
            &alice,
            &format!("create: {what}"),
            CREATE,
            json!({ "input": { "title": title } }),
            "title",
        )
        .await;
        assert_bad_input(
            &app,
            &alice,
            &format!("update: {what}"),
            UPDATE,
            json!({ "id": id, "input": { "title": title } }),
            "title",
        )
        .await;
    }

    // 500 characters of a 3-byte character (1500 bytes) are fine: the limit counts characters.
    let longest = "€".repeat(500);
    let created = app
        .create_incident(&alice, json!({ "title": longest }))
        .await;
    assert_eq!(created["title"], longest.as_str());
    let emoji = "🔥".repeat(500);
    let data = app
        .ok(
            &alice,
            UPDATE,
            json!({ "id": id, "input": { "title": emoji } }),
        )
        .await;
    assert_eq!(data["updateIncident"]["title"], emoji.as_str());
}

#[tokio::test]
async fn event_types_must_match_the_pattern_and_not_be_reserved() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = incident(&app, &alice).await;
    let bad = [
        "Note".to_string(),
        "NOTE".to_string(),
        "1note".to_string(),
        "_note".to_string(),
        "no-te".to_string(),
        "no te".to_string(),
        String::new(),
        "é".to_string(),
        format!("a{}", "b".repeat(50)),
        "status_changed".to_string(),
        "severity_changed".to_string(),
    ];
    for event_type in &bad {
        assert_bad_input(
            &app,
            &alice,
            &format!("eventType {event_type:?}"),
            ADD_EVENT,
            json!({ "id": id, "input": { "eventType": event_type, "content": "c" } }),
            "eventType",
        )
        .await;
    }
    for good in ["a", "deploy", "rollback_2", &format!("a{}", "b".repeat(49))] {
        let data = app
            .ok(
                &alice,
                "mutation($id: UUID!, $input: AddIncidentEventInput!) { addIncidentEvent(incidentId: $id, input: $input) { eventType } }",
                json!({ "id": id, "input": { "eventType": good, "content": "c" } }),
            )
            .await;
        assert_eq!(data["addIncidentEvent"]["eventType"], good);
    }
}

#[tokio::test]
async fn event_content_is_at_most_64_kib() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = incident(&app, &alice).await;
    assert_bad_input(
        &app,
        &alice,
        "65537 bytes",
        ADD_EVENT,
        json!({ "id": id, "input": { "content": "x".repeat(65_537) } }),
        "content",
    )
    .await;
    // 65 535 bytes of ASCII plus one 2-byte character: 65 536 characters, 65 537 bytes.
    assert_bad_input(
        &app,
        &alice,
        "65537 bytes in fewer characters",
        ADD_EVENT,
        json!({ "id": id, "input": { "content": format!("{}é", "x".repeat(65_535)) } }),
        "content",
    )
    .await;
    assert_bad_input(
        &app,
        &alice,
        "NUL in content",
        ADD_EVENT,
        json!({ "id": id, "input": { "content": "a\0b" } }),
        "content",
    )
    .await;
    let content = "x".repeat(65_536);
    let data = app
        .ok(
            &alice,
            "mutation($id: UUID!, $input: AddIncidentEventInput!) { addIncidentEvent(incidentId: $id, input: $input) { content } }",
            json!({ "id": id, "input": { "content": content } }),
        )
        .await;
    assert_eq!(
        data["addIncidentEvent"]["content"].as_str().unwrap().len(),
        65_536
    );
}

#[tokio::test]
async fn linked_tickets_are_at_most_50_of_at_most_100_characters() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = incident(&app, &alice).await;
    let tickets = |n: usize| (0..n).map(|i| format!("OPS-{i}")).collect::<Vec<_>>();
    let too_many = tickets(51);
    let too_long = vec!["T".repeat(101)];
    for (what, ids) in [("51 ids", &too_many), ("a 101-character id", &too_long)] {
        assert_bad_input(
            &app,
            &alice,
            &format!("create: {what}"),
            CREATE,
            json!({ "input": { "title": "t", "linkedTicketIds": ids } }),
            "linkedTicketIds",
        )
        .await;
        assert_bad_input(
            &app,
            &alice,
            &format!("update: {what}"),
            UPDATE,
            json!({ "id": id, "input": { "linkedTicketIds": ids } }),
            "linkedTicketIds",
        )
        .await;
    }
    let most = tickets(50);
    let created = app
        .create_incident(&alice, json!({ "title": "t", "linkedTicketIds": most }))
        .await;
    assert_eq!(created["linkedTicketIds"], json!(most));
    let longest = vec!["T".repeat(100)];
    let created = app
        .create_incident(&alice, json!({ "title": "t", "linkedTicketIds": longest }))
        .await;
    assert_eq!(created["linkedTicketIds"], json!(longest));
}

#[tokio::test]
async fn started_at_must_not_be_in_the_future() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = incident(&app, &alice).await;
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert_bad_input(
        &app,
        &alice,
        "create in an hour",
        CREATE,
        json!({ "input": { "title": "t", "startedAt": in_an_hour } }),
        "startedAt",
    )
    .await;
    assert_bad_input(
        &app,
        &alice,
        "update in an hour",
        UPDATE,
        json!({ "id": id, "input": { "startedAt": in_an_hour } }),
        "startedAt",
    )
    .await;
    let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    app.create_incident(&alice, json!({ "title": "t", "startedAt": an_hour_ago }))
        .await;
}

#[tokio::test]
async fn page_arguments_are_bounded_on_incidents_and_on_events() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = incident(&app, &alice).await;
    let incidents = |args: &str| format!("{{ incidents({args}) {{ totalCount }} }}");
    let events = |args: &str| {
        format!("query($id: UUID!) {{ incident(id: $id) {{ events({args}) {{ totalCount }} }} }}")
    };
    let bad = [
        ("first: 101", "first"),
        ("last: 101", "last"),
        ("first: -1", "first"),
        ("last: -1", "last"),
        ("after: \"not-a-cursor\"", "after"),
        ("before: \"not-a-cursor\"", "before"),
    ];
    for (args, field) in bad {
        for (what, query) in [("incidents", incidents(args)), ("events", events(args))] {
            let error = app.err(&alice, &query, json!({ "id": id })).await;
            assert_eq!(code(&error), "BAD_USER_INPUT", "{what}({args}): {error}");
            assert_eq!(
                error["extensions"]["field"], field,
                "{what}({args}): {error}"
            );
        }
    }
    for query in [incidents("first: 1, last: 1"), events("first: 1, last: 1")] {
        let error = app.err(&alice, &query, json!({ "id": id })).await;
        assert_eq!(code(&error), "BAD_USER_INPUT", "{query}: {error}");
    }
    // A cursor of one list is not a cursor of another.
    let data = app
        .ok(
            &alice,
            "query($id: UUID!) { incidents(first: 1) { pageInfo { endCursor } } incident(id: $id) { events(first: 1) { pageInfo { endCursor } } } }",
            json!({ "id": id }),
        )
        .await;
    app.add_event(&alice, &id, "an event").await;
    let data2 = app
        .ok(
            &alice,
            "query($id: UUID!) { incident(id: $id) { events(first: 1) { pageInfo { endCursor } } } }",
            json!({ "id": id }),
        )
        .await;
    let incident_cursor = data["incidents"]["pageInfo"]["endCursor"].as_str().unwrap();
    let event_cursor = data2["incident"]["events"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap();
    let error = app
        .err(
            &alice,
            "query($id: UUID!, $c: String) { incident(id: $id) { events(after: $c) { totalCount } } }",
            json!({ "id": id, "c": incident_cursor }),
        )
        .await;
    assert_eq!(error["extensions"]["field"], "after", "{error}");
    let error = app
        .err(
            &alice,
            "query($c: String) { incidents(after: $c) { totalCount } }",
            json!({ "c": event_cursor }),
        )
        .await;
    assert_eq!(error["extensions"]["field"], "after", "{error}");
    // The bounds themselves are fine.
    app.ok(
        &alice,
        "query($id: UUID!) { a: incidents(first: 100) { totalCount } b: incidents(last: 0) { totalCount } incident(id: $id) { c: events(first: 100) { totalCount } d: events(last: 100) { totalCount } } }",
        json!({ "id": id }),
    )
    .await;
}

#[tokio::test]
async fn action_items_are_at_most_100_with_non_empty_titles() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = incident(&app, &alice).await;
    let items = |n: usize| {
        (0..n)
            .map(|i| json!({ "title": format!("item {i}") }))
            .collect::<Vec<_>>()
    };
    let cases = [
        (
            "101 items",
            json!({ "actionItems": items(101) }),
            "actionItems",
        ),
        (
            "an empty title",
            json!({ "actionItems": [{ "title": "fine" }, { "title": "  " }] }),
            "actionItems.1.title",
        ),
        (
            "a 501-character title",
            json!({ "actionItems": [{ "title": "x".repeat(501) }] }),
            "actionItems.0.title",
        ),
        (
            "NUL in rootCause",
            json!({ "rootCause": "a\0b" }),
            "rootCause",
        ),
        (
            "rootCause over 64 KiB",
            json!({ "rootCause": "x".repeat(65_537) }),
            "rootCause",
        ),
    ];
    for (what, input, field) in &cases {
        assert_bad_input(
            &app,
            &alice,
            &format!("create: {what}"),
            CREATE_PM,
            json!({ "id": id, "input": input }),
            field,
        )
        .await;
    }
    let data = app
        .ok(
            &alice,
            "mutation($id: UUID!, $input: PostmortemInput!) { createPostmortem(incidentId: $id, input: $input) { actionItems { title } } }",
            json!({ "id": id, "input": { "actionItems": items(100) } }),
        )
        .await;
    assert_eq!(
        data["createPostmortem"]["actionItems"]
            .as_array()
            .unwrap()
            .len(),
        100
    );
    for (what, input, field) in &cases {
        assert_bad_input(
            &app,
            &alice,
            &format!("update: {what}"),
            UPDATE_PM,
            json!({ "id": id, "input": input }),
            field,
        )
        .await;
    }
}

/// Variables that are not of their declared type: each case, and the variables that fix it.
fn mistyped_variables(incident: &str) -> Vec<(&'static str, &'static str, Value, Value)> {
    vec![
        (
            "a bad UUID",
            "query($id: UUID!) { incident(id: $id) { id } }",
            json!({ "id": "not-a-uuid" }),
            json!({ "id": incident }),
        ),
        (
            "a bad UUID in a mutation",
            ADD_EVENT,
            json!({ "id": "12345", "input": { "content": "c" } }),
            json!({ "id": incident, "input": { "content": "c" } }),
        ),
        (
            "a bad enum value",
            CREATE,
            json!({ "input": { "title": "t", "severity": "SEV9" } }),
            json!({ "input": { "title": "t", "severity": "SEV1" } }),
        ),
        (
            "a bad enum value in a list",
            "query($s: [IncidentStatus!]) { incidents(filter: { status: $s }) { totalCount } }",
            json!({ "s": ["OPEN", "open"] }),
            json!({ "s": ["OPEN"] }),
        ),
        (
            "a bad transition target",
            "mutation($id: UUID!, $to: IncidentStatus!) { transitionIncident(id: $id, to: $to) { id } }",
            json!({ "id": incident, "to": "DONE" }),
            json!({ "id": incident, "to": "MITIGATING" }),
        ),
    ]
}

#[tokio::test]
async fn invalid_uuids_and_enum_values_in_variables_are_refused_and_run_nothing() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = incident(&app, &alice).await;
    let before = state(&app, &alice).await;
    for (what, query, bad, _) in mistyped_variables(&id) {
        let (status, body) = app.post(Some(&alice.token), query, bad).await;
        assert_eq!(status, 200, "{what}: {body}");
        assert!(
            body["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{what}: expected errors: {body}"
        );
        assert!(
            body.get("data").is_none_or(Value::is_null),
            "{what}: {body}"
        );
    }
    assert_eq!(state(&app, &alice).await, before);
    // The control: with well-typed variables each operation runs.
    for (what, query, _, good) in mistyped_variables(&id) {
        let (_, body) = app.post(Some(&alice.token), query, good).await;
        assert!(body.get("errors").is_none(), "{what}: {body}");
    }
    assert_ne!(state(&app, &alice).await, before);
}

/// Every GraphQL error carries `extensions.code`. async-graphql's own input
/// coercion and validation errors carry none; `graphql::classify` adds BAD_USER_INPUT.
#[tokio::test]
async fn invalid_uuids_and_enum_values_in_variables_carry_a_code() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = incident(&app, &alice).await;
    let mut missing = Vec::new();
    for (what, query, bad, _) in mistyped_variables(&id) {
        let (_, body) = app.post(Some(&alice.token), query, bad).await;
        if code(&body["errors"][0]) != "BAD_USER_INPUT" {
            missing.push(format!("{what}: {body}"));
        }
    }
    assert!(
        missing.is_empty(),
        "errors without extensions.code BAD_USER_INPUT:\n{}",
        missing.join("\n")
    );
}
