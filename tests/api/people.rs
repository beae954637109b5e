//! The people directory: filled from bearer tokens' `name` and `email` (written once, not on
//! every request), searched and paged by name, and never shown to another organization.

use incidentd::incident::identity::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Caller, TestApp, code, spawn_counting_app};

const VIEWER: &str = "{ viewer { userId person { id name email } } }";
const PEOPLE: &str = "query($search: String, $first: Int, $after: String) { people(search: $search, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } nodes { id name email } } }";

/// Statements the server ran for one request.
async fn statements(app: &TestApp, caller: &Caller, query: &str) -> u64 {
    let before = app.state.graphql.domain.db.statement_count();
    app.ok(caller, query, json!({})).await;
    app.state.graphql.domain.db.statement_count() - before
}

#[tokio::test]
async fn bearer_claims_fill_the_directory_and_unchanged_claims_write_nothing() {
    let app = spawn_counting_app().await;
    let org = Uuid::new_v4();
    let ada = app.named(
        org,
        Role::Viewer,
        "  Ada Lovelace ",
        Some("ada@example.com"),
    );

    // The first request writes; the same claims again write nothing (a bare `viewer` reads
    // nothing either, so any statement would be the directory's).
    assert!(statements(&app, &ada, "{ viewer { userId } }").await > 0);
    assert_eq!(statements(&app, &ada, "{ viewer { userId } }").await, 0);
    assert_eq!(statements(&app, &ada, "{ viewer { userId } }").await, 0);
    let data = app.ok(&ada, VIEWER, json!({})).await;
    assert_eq!(
        data["viewer"]["person"],
        json!({ "id": ada.user.to_string(), "name": "Ada Lovelace", "email": "ada@example.com" })
    );

    // A token that says something new refreshes the directory, once.
    let renamed = app.named_as(
        org,
        ada.user,
        Role::Viewer,
        "Ada King",
        Some("ada@example.com"),
    );
    assert!(statements(&app, &renamed, "{ viewer { userId } }").await > 0);
    assert_eq!(statements(&app, &renamed, "{ viewer { userId } }").await, 0);
    let data = app.ok(&renamed, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["person"]["name"], "Ada King");

    // REST callers are remembered too.
    let grace = app.named(org, Role::Viewer, "Grace Hopper", None);
    let (status, _) = crate::helpers::rest(
        &app,
        &grace,
        reqwest::Method::GET,
        "/api/v1/incidents",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let data = app.ok(&grace, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["person"]["name"], "Grace Hopper");

    // A token without a name or an email leaves the directory alone: no person yet.
    let anonymous = app.caller(org, Role::Viewer);
    assert_eq!(
        statements(&app, &anonymous, "{ viewer { userId } }").await,
        0
    );
    let data = app.ok(&anonymous, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["person"], Value::Null);
}

async fn people(app: &TestApp, caller: &Caller, variables: Value) -> Value {
    app.ok(caller, PEOPLE, variables).await["people"].clone()
}

fn names(page: &Value) -> Vec<String> {
    page["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn people_are_searched_by_name_or_email_and_paged_by_name() {
    let app = spawn_counting_app().await;
    let org = Uuid::new_v4();
    let named = [
        ("Margaret Hamilton", "mh@apollo.example"),
        ("alan turing", "alan@bletchley.example"),
        ("Grace Hopper", "grace@navy.example"),
        ("Katherine Johnson", "kj@nasa.example"),
        ("Edsger 100% Dijkstra", "ewd@eindhoven.example"),
        // Names beyond ASCII, which the databases fold differently: paging stays whole.
        ("Émilie du Châtelet", "emilie@cirey.example"),
        ("Ørsted", "hc@copenhagen.example"),
    ];
    let mut callers = Vec::new();
    for (name, email) in named {
        let caller = app.named(org, Role::Viewer, name, Some(email));
        app.ok(&caller, "{ viewer { userId } }", json!({})).await;
        callers.push(caller);
    }
    let me = &callers[0];

    // Everyone, by name, case-insensitively; pages of two follow each other.
    let all = people(&app, me, json!({})).await;
    assert_eq!(all["totalCount"], 7);
    let ascii: Vec<String> = names(&all).into_iter().filter(|n| n.is_ascii()).collect();
    assert_eq!(
        ascii,
        [
            "alan turing",
            "Edsger 100% Dijkstra",
            "Grace Hopper",
            "Katherine Johnson",
            "Margaret Hamilton"
        ]
    );
    let mut paged = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = people(&app, me, json!({ "first": 2, "after": after })).await;
        paged.extend(names(&page));
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(paged, names(&all));

    // Search: a substring of the name or of the email, in any case; LIKE's wildcards are text.
    let found = people(&app, me, json!({ "search": "HOP" })).await;
    assert_eq!(names(&found), ["Grace Hopper"]);
    assert_eq!(found["totalCount"], 1);
    let found = people(&app, me, json!({ "search": "nasa" })).await;
    assert_eq!(names(&found), ["Katherine Johnson"]);
    let found = people(&app, me, json!({ "search": "100%" })).await;
    assert_eq!(names(&found), ["Edsger 100% Dijkstra"]);
    let found = people(&app, me, json!({ "search": "a_" })).await;
    assert_eq!(found["totalCount"], 0);
    let found = people(&app, me, json!({ "search": "   " })).await;
    assert_eq!(found["totalCount"], 7, "a blank search is no search");

    // Bounded pages and cursors the server wrote.
    for variables in [
        json!({ "first": 101 }),
        json!({ "after": "bm90IGEgY3Vyc29y" }),
    ] {
        let (_, body) = app.post(Some(&me.token), PEOPLE, variables).await;
        assert_eq!(code(&body["errors"][0]), "BAD_USER_INPUT", "{body}");
    }
}

#[tokio::test]
async fn another_organization_s_people_are_neither_listed_nor_assignable() {
    let app = spawn_counting_app().await;
    let alice = app.named(Uuid::new_v4(), Role::Responder, "Alice", None);
    let mallory = app.named(Uuid::new_v4(), Role::Responder, "Mallory", None);
    app.ok(&mallory, "{ viewer { userId } }", json!({})).await;
    let page = people(&app, &alice, json!({ "search": "mallory" })).await;
    assert_eq!(page["totalCount"], 0);
    let page = people(&app, &alice, json!({})).await;
    assert_eq!(names(&page), ["Alice"]);

    // Assigning or naming as commander a person of another organization reads exactly as an
    // unknown person does.
    let incident = app.new_incident(&alice, "checkout down").await;
    let assign = "mutation($id: UUID!, $person: UUID!) { assignIncidentRole(incidentId: $id, role: SCRIBE, personId: $person) { id } }";
    let foreign = app
        .err(
            &alice,
            assign,
            json!({ "id": incident, "person": mallory.user }),
        )
        .await;
    let unknown = app
        .err(
            &alice,
            assign,
            json!({ "id": incident, "person": Uuid::new_v4() }),
        )
        .await;
    assert_eq!(code(&foreign), "NOT_FOUND");
    assert_eq!(foreign["message"], unknown["message"]);
    let create =
        "mutation($c: UUID!) { createIncident(input: { title: \"t\", commander: $c }) { id } }";
    let foreign = app.err(&alice, create, json!({ "c": mallory.user })).await;
    assert_eq!(code(&foreign), "NOT_FOUND");
    let listed = app
        .ok(&alice, "{ incidents { totalCount } }", json!({}))
        .await;
    assert_eq!(listed["incidents"]["totalCount"], 1, "nothing was created");

    // Mallory cannot see Alice's people through a role either: the incident is not found.
    let data = app
        .post(
            Some(&mallory.token),
            "query($id: UUID!) { incident(id: $id) { roles { person { name } } } }",
            json!({ "id": incident }),
        )
        .await;
    assert_eq!(code(&data.1["errors"][0]), "NOT_FOUND");
}
