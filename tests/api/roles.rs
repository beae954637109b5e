//! Incident roles: the declarer leads unless told otherwise; assigning, replacing and
//! unassigning write a timeline event and an audit row and are announced live; the `person`
//! filter selects by role holder in SQL and in the change feed; REST speaks the same.

use incidentd::incident::identity::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Caller, TestApp, Ws, code, rest, spawn_app};

const ROLES: &str = "query($id: UUID!) { incident(id: $id) { creator { id name } roles { role assignedAt person { id name email } } } }";
const ASSIGN: &str = "mutation($id: UUID!, $role: IncidentRole!, $person: UUID!) { assignIncidentRole(incidentId: $id, role: $role, personId: $person) { id updatedAt roles { role person { id name } } } }";
const UNASSIGN: &str = "mutation($id: UUID!, $role: IncidentRole!) { unassignIncidentRole(incidentId: $id, role: $role) { id roles { role person { name } } } }";
const FEED: &str = "subscription($filter: IncidentFilter) { incidentChanged(filter: $filter) { kind matchesFilter incident { id roles { role person { name } } } } }";
const TIMELINE: &str = "subscription($id: UUID!) { incidentEvents(incidentId: $id) { sequence eventType content author { name } } }";

/// Three named people of one organization, each already in its directory.
async fn team(app: &TestApp) -> (Caller, Caller, Caller) {
    let org = Uuid::new_v4();
    let alice = app.named(
        org,
        Role::Responder,
        "Alice Archer",
        Some("alice@example.com"),
    );
    let bob = app.named(org, Role::Responder, "Bob Builder", None);
    let carol = app.named(org, Role::Viewer, "Carol Chen", None);
    for caller in [&alice, &bob, &carol] {
        app.ok(caller, "{ viewer { userId } }", json!({})).await;
    }
    (alice, bob, carol)
}

async fn roles(app: &TestApp, caller: &Caller, id: Uuid) -> Value {
    app.ok(caller, ROLES, json!({ "id": id })).await["incident"].clone()
}

fn holders(roles: &Value) -> Vec<(String, String)> {
    roles
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap().to_string(),
                r["person"]["name"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn pair(role: &str, name: &str) -> (String, String) {
    (role.to_string(), name.to_string())
}

/// The last event of the incident's timeline: (type, content, author's name).
async fn last_event(app: &TestApp, caller: &Caller, id: Uuid) -> (String, String, String) {
    let data = app
        .ok(
            caller,
            "query($id: UUID!) { incident(id: $id) { events(last: 1) { nodes { eventType content author { name } } } } }",
            json!({ "id": id }),
        )
        .await;
    let e = &data["incident"]["events"]["nodes"][0];
    (
        e["eventType"].as_str().unwrap().to_string(),
        e["content"].as_str().unwrap().to_string(),
        e["author"]["name"].as_str().unwrap_or("?").to_string(),
    )
}

async fn barrier(ws: &mut Ws) {
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next_message().await["type"], "pong");
}

async fn next_data(ws: &mut Ws, field: &str) -> Value {
    let m = ws.next_message().await;
    assert_eq!(m["type"], "next", "{m}");
    assert!(m["payload"].get("errors").is_none(), "{m}");
    m["payload"]["data"][field].clone()
}

/// The next `UPDATED` change: a role change announces its timeline event (`EVENT_ADDED`) first,
/// as a severity change does.
async fn next_update(ws: &mut Ws) -> Value {
    loop {
        let change = next_data(ws, "incidentChanged").await;
        if change["kind"] != "EVENT_ADDED" {
            return change;
        }
    }
}

#[tokio::test]
async fn the_declarer_becomes_commander_unless_the_input_names_another() {
    let app = spawn_app().await;
    let (alice, bob, _) = team(&app).await;
    let id = app.new_incident(&alice, "payments down").await;
    let incident = roles(&app, &alice, id).await;
    assert_eq!(incident["creator"]["name"], "Alice Archer");
    assert_eq!(
        holders(&incident["roles"]),
        [pair("COMMANDER", "Alice Archer")]
    );
    assert_eq!(incident["roles"][0]["person"]["id"], alice.user.to_string());

    let named = app
        .create_incident(
            &alice,
            json!({ "title": "search slow", "commander": bob.user }),
        )
        .await;
    let id: Uuid = named["id"].as_str().unwrap().parse().unwrap();
    let incident = roles(&app, &alice, id).await;
    assert_eq!(
        holders(&incident["roles"]),
        [pair("COMMANDER", "Bob Builder")]
    );
    assert_eq!(incident["creator"]["name"], "Alice Archer");

    // A declarer the directory does not know yet (a token without a name) is added to it,
    // nameless, so the role can name them.
    let anonymous = app.caller(alice.org, Role::Responder);
    let id = app.new_incident(&anonymous, "disk full").await;
    let incident = roles(&app, &anonymous, id).await;
    assert_eq!(
        incident["roles"],
        json!([{ "role": "COMMANDER", "assignedAt": incident["roles"][0]["assignedAt"],
                 "person": { "id": anonymous.user.to_string(), "name": null, "email": null } }])
    );
    // The creation's audit row names the commander.
    let audit = app.audit(alice.org, &id.to_string()).await;
    assert_eq!(audit[0]["action"], "incident_created");
    assert_eq!(
        audit[0]["changes"]["after"]["roles"],
        json!({ "COMMANDER": anonymous.user.to_string() })
    );
}

#[tokio::test]
async fn roles_are_assigned_replaced_and_unassigned_with_timeline_audit_and_live_announcements() {
    let app = spawn_app().await;
    let (alice, bob, carol) = team(&app).await;
    // The feed first, so the creation is seen (and read) before anything else.
    let mut feed = Ws::ready(app.addr, &alice.token).await;
    feed.subscribe("f", FEED, json!({})).await;
    barrier(&mut feed).await;
    let id = app.new_incident(&alice, "checkout failing").await;
    let created = next_data(&mut feed, "incidentChanged").await;
    assert_eq!(created["kind"], "CREATED", "{created}");
    assert_eq!(
        holders(&created["incident"]["roles"]),
        [pair("COMMANDER", "Alice Archer")]
    );
    let mut timeline = Ws::ready(app.addr, &alice.token).await;
    timeline.subscribe("t", TIMELINE, json!({ "id": id })).await;
    barrier(&mut timeline).await;

    // Assign: one person per role, the holders in role order.
    let data = app
        .ok(
            &alice,
            ASSIGN,
            json!({ "id": id, "role": "SCRIBE", "person": bob.user }),
        )
        .await;
    assert_eq!(
        holders(&data["assignIncidentRole"]["roles"]),
        [
            pair("COMMANDER", "Alice Archer"),
            pair("SCRIBE", "Bob Builder")
        ]
    );
    let event = last_event(&app, &alice, id).await;
    assert_eq!(event.0, "role_assigned");
    assert!(
        event.1.contains("Bob Builder") && event.1.contains("scribe"),
        "{event:?}"
    );
    assert_eq!(event.2, "Alice Archer", "the author is who assigned");
    let change = next_data(&mut feed, "incidentChanged").await;
    assert_eq!(change["kind"], "EVENT_ADDED", "{change}");
    let change = next_data(&mut feed, "incidentChanged").await;
    assert_eq!(change["kind"], "UPDATED", "{change}");
    assert_eq!(
        holders(&change["incident"]["roles"]),
        [
            pair("COMMANDER", "Alice Archer"),
            pair("SCRIBE", "Bob Builder")
        ]
    );
    let live = next_data(&mut timeline, "incidentEvents").await;
    assert_eq!(live["eventType"], "role_assigned");
    assert_eq!(live["author"]["name"], "Alice Archer");

    // Replace: Carol (a viewer may hold a role) takes over from Bob.
    app.ok(
        &bob,
        ASSIGN,
        json!({ "id": id, "role": "SCRIBE", "person": carol.user }),
    )
    .await;
    let incident = roles(&app, &alice, id).await;
    assert_eq!(
        holders(&incident["roles"]),
        [
            pair("COMMANDER", "Alice Archer"),
            pair("SCRIBE", "Carol Chen")
        ]
    );
    let event = last_event(&app, &alice, id).await;
    assert_eq!(event.1, "Carol Chen is now the scribe (was Bob Builder)");
    assert_eq!(event.2, "Bob Builder");
    assert_eq!(next_update(&mut feed).await["kind"], "UPDATED");
    assert!(
        next_data(&mut timeline, "incidentEvents").await["content"]
            .as_str()
            .unwrap()
            .contains("Carol Chen")
    );
    let audit = app.audit(alice.org, &id.to_string()).await;
    let replaced = &audit[0];
    assert_eq!(replaced["action"], "incident_updated");
    assert_eq!(replaced["actorId"], bob.user.to_string());
    assert_eq!(
        replaced["changes"]["before"]["roles"]["SCRIBE"],
        bob.user.to_string()
    );
    assert_eq!(
        replaced["changes"]["after"]["roles"]["SCRIBE"],
        carol.user.to_string()
    );

    // Unassign: the timeline names who left the role.
    let data = app
        .ok(&alice, UNASSIGN, json!({ "id": id, "role": "SCRIBE" }))
        .await;
    assert_eq!(
        holders(&data["unassignIncidentRole"]["roles"]),
        [pair("COMMANDER", "Alice Archer")]
    );
    let event = last_event(&app, &alice, id).await;
    assert_eq!(event.0, "role_unassigned");
    assert!(
        event.1.contains("Carol Chen") && event.1.contains("scribe"),
        "{event:?}"
    );
    assert_eq!(next_update(&mut feed).await["kind"], "UPDATED");
    assert_eq!(
        next_data(&mut timeline, "incidentEvents").await["eventType"],
        "role_unassigned"
    );

    // Unassigning an empty role, or assigning the holder again, changes nothing and writes
    // nothing: no event, no audit row.
    let (events, audits) = (
        app.events(&alice, &id.to_string()).await.len(),
        app.audit(alice.org, &id.to_string()).await.len(),
    );
    app.ok(&alice, UNASSIGN, json!({ "id": id, "role": "SCRIBE" }))
        .await;
    app.ok(
        &alice,
        ASSIGN,
        json!({ "id": id, "role": "COMMANDER", "person": alice.user }),
    )
    .await;
    assert_eq!(app.events(&alice, &id.to_string()).await.len(), events);
    assert_eq!(app.audit(alice.org, &id.to_string()).await.len(), audits);

    // Server-written event types cannot be forged, and viewers cannot change roles.
    let forged = app
        .err(
            &alice,
            "mutation($id: UUID!) { addIncidentEvent(incidentId: $id, input: { eventType: \"role_assigned\", content: \"x\" }) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&forged), "BAD_USER_INPUT");
    let refused = app
        .err(&carol, UNASSIGN, json!({ "id": id, "role": "COMMANDER" }))
        .await;
    assert_eq!(code(&refused), "FORBIDDEN");

    // The audit rows name their actors as people; someone the directory does not know is null.
    let stranger = app.caller(alice.org, Role::Responder);
    app.add_event(&stranger, &id.to_string(), "a note from a stranger")
        .await;
    let admin = app.caller(alice.org, Role::Admin);
    let data = app
        .ok(
            &admin,
            "query($id: UUID!) { auditEvents(entityId: $id, first: 100) { nodes { actorId actor { name } } } }",
            json!({ "id": id }),
        )
        .await;
    let actors: Vec<&Value> = data["auditEvents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["actor"])
        .collect();
    assert_eq!(actors[0], &Value::Null, "the stranger");
    assert!(
        actors.contains(&&json!({ "name": "Bob Builder" })),
        "{actors:?}"
    );
    assert!(
        actors.contains(&&json!({ "name": "Alice Archer" })),
        "{actors:?}"
    );
    assert_eq!(
        last_event(&app, &alice, id).await.2,
        "?",
        "an author the directory does not know is null"
    );

    // A closed incident's roles are final, and the incident says so.
    for to in ["RESOLVED", "CLOSED"] {
        let (status, body) = app.transition(&alice, &id.to_string(), to, None).await;
        assert_eq!(status, 200, "{body}");
    }
    let closed = app
        .err(
            &alice,
            ASSIGN,
            json!({ "id": id, "role": "SCRIBE", "person": bob.user }),
        )
        .await;
    assert_eq!(code(&closed), "CONFLICT", "{closed}");
    let data = app
        .ok(
            &alice,
            "query($id: UUID!) { incident(id: $id) { editable roles { role } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data["incident"],
        json!({ "editable": false, "roles": [{ "role": "COMMANDER" }] })
    );
}

#[tokio::test]
async fn the_person_filter_selects_role_holders_in_sql_and_in_the_change_feed() {
    let app = spawn_app().await;
    let (alice, bob, _) = team(&app).await;
    // An unfiltered feed of the organization: each write is awaited there before the next one
    // (and before Bob subscribes), so each change is dispatched on its own (a feed tells a
    // change with the incident as it is when dispatched).
    let mut all = Ws::ready(app.addr, &alice.token).await;
    all.subscribe("a", FEED, json!({})).await;
    barrier(&mut all).await;
    let led_by_alice = app.new_incident(&alice, "one").await;
    assert_eq!(next_update(&mut all).await["kind"], "CREATED");
    let led_by_bob = app
        .create_incident(&alice, json!({ "title": "two", "commander": bob.user }))
        .await["id"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    assert_eq!(next_update(&mut all).await["kind"], "CREATED");
    let mine = "query($p: UUID!) { incidents(filter: { person: $p }) { totalCount nodes { id } } a: incidents(filter: { person: $p, search: \"two\" }) { totalCount } }";
    let ids = |data: &Value| -> Vec<String> {
        data["incidents"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect()
    };
    let data = app.ok(&alice, mine, json!({ "p": bob.user })).await;
    assert_eq!(ids(&data), [led_by_bob.to_string()]);
    assert_eq!(data["a"]["totalCount"], 1, "with the other filter fields");
    let data = app.ok(&alice, mine, json!({ "p": alice.user })).await;
    assert_eq!(ids(&data), [led_by_alice.to_string()]);
    let data = app.ok(&alice, mine, json!({ "p": Uuid::new_v4() })).await;
    assert_eq!(data["incidents"]["totalCount"], 0);

    // Live: Bob's feed sees the incident he is given (now matching), and the one he leaves
    // (no longer matching); changes to incidents he holds no role on pass him by.
    let mut feed = Ws::ready(app.addr, &bob.token).await;
    feed.subscribe("f", FEED, json!({ "filter": { "person": bob.user } }))
        .await;
    barrier(&mut feed).await;
    let write = |query: &'static str, variables: Value| {
        let (app, alice) = (&app, &alice);
        async move {
            app.ok(alice, query, variables).await;
        }
    };
    let retitle = "mutation($id: UUID!, $t: String!) { updateIncident(id: $id, input: { title: $t }) { id } }";

    write(retitle, json!({ "id": led_by_alice, "t": "one!" })).await;
    assert_eq!(next_update(&mut all).await["kind"], "UPDATED");
    write(
        ASSIGN,
        json!({ "id": led_by_alice, "role": "COMMUNICATIONS", "person": bob.user }),
    )
    .await;
    next_update(&mut all).await;
    let change = next_update(&mut feed).await;
    assert_eq!(
        (
            change["incident"]["id"].as_str(),
            change["matchesFilter"].as_bool()
        ),
        (Some(led_by_alice.to_string().as_str()), Some(true)),
        "only the assignment is delivered: {change}"
    );
    write(
        UNASSIGN,
        json!({ "id": led_by_alice, "role": "COMMUNICATIONS" }),
    )
    .await;
    next_update(&mut all).await;
    let change = next_update(&mut feed).await;
    assert_eq!(change["incident"]["id"], led_by_alice.to_string());
    assert_eq!(change["kind"], "UPDATED");
    assert_eq!(change["matchesFilter"], false, "Bob left it: {change}");
    // Replacing Bob as commander of his incident also lets it go.
    write(
        ASSIGN,
        json!({ "id": led_by_bob, "role": "COMMANDER", "person": alice.user }),
    )
    .await;
    next_update(&mut all).await;
    let change = next_update(&mut feed).await;
    assert_eq!(change["incident"]["id"], led_by_bob.to_string());
    assert_eq!(change["matchesFilter"], false, "{change}");
    // The incident he no longer holds a role on passes him by, until he gets one again.
    write(retitle, json!({ "id": led_by_bob, "t": "two!" })).await;
    next_update(&mut all).await;
    write(
        ASSIGN,
        json!({ "id": led_by_bob, "role": "SCRIBE", "person": bob.user }),
    )
    .await;
    let change = next_update(&mut feed).await;
    assert_eq!(
        (
            change["incident"]["id"].as_str(),
            change["matchesFilter"].as_bool()
        ),
        (Some(led_by_bob.to_string().as_str()), Some(true)),
        "the title change was not delivered: {change}"
    );
}

#[tokio::test]
async fn rest_carries_roles_and_assigns_them() {
    let app = spawn_app().await;
    let (alice, bob, _) = team(&app).await;
    let post = |path: String, body: Value| {
        let (app, alice) = (&app, &alice);
        async move { rest(app, alice, reqwest::Method::POST, &path, Some(body)).await }
    };
    let (status, created) = post("/api/v1/incidents".into(), json!({ "title": "api down" })).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["roles"][0]["role"], "COMMANDER");
    assert_eq!(
        created["roles"][0]["person"],
        json!({ "id": alice.user.to_string(), "name": "Alice Archer", "email": "alice@example.com" })
    );
    assert!(created["roles"][0]["assigned_at"].is_string());

    let roles_path = format!("/api/v1/incidents/{id}/roles");
    let (status, body) = post(
        roles_path.clone(),
        json!({ "role": "SCRIBE", "person_id": bob.user }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let roles: Vec<_> = body["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["role"].clone(), r["person"]["name"].clone()))
        .collect();
    assert_eq!(
        roles,
        [
            (json!("COMMANDER"), json!("Alice Archer")),
            (json!("SCRIBE"), json!("Bob Builder"))
        ]
    );
    let (_, detail) = rest(
        &app,
        &alice,
        reqwest::Method::GET,
        &format!("/api/v1/incidents/{id}"),
        None,
    )
    .await;
    assert_eq!(detail["roles"], body["roles"]);
    let last = detail["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event_type"], "role_assigned");

    // The list carries roles too, and filters by holder.
    let (_, list) = rest(
        &app,
        &alice,
        reqwest::Method::GET,
        &format!("/api/v1/incidents?person={}", bob.user),
        None,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["roles"], body["roles"]);

    // null unassigns; a missing person_id, an unknown person or role are refused.
    let (status, body) = post(
        roles_path.clone(),
        json!({ "role": "SCRIBE", "person_id": null }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["roles"].as_array().unwrap().len(), 1);
    let (status, body) = post(roles_path.clone(), json!({ "role": "SCRIBE" })).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("BAD_USER_INPUT")),
        "{body}"
    );
    let (status, body) = post(
        roles_path.clone(),
        json!({ "role": "SCRIBE", "person_id": Uuid::new_v4() }),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{body}"
    );
    let (status, _) = post(
        roles_path,
        json!({ "role": "JESTER", "person_id": bob.user }),
    )
    .await;
    assert!(status == 400 || status == 422, "{status}");
}
