//! The tenancy matrix: organization B against organization
//! A's ids on every query with an id, every nested field, every mutation, both subscriptions and
//! every REST endpoint. Each answer must be indistinguishable from the answer for an id that does
//! not exist, and none of A's rows may ever appear in what B is given.

use incidentd::incident::identity::Role;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Caller, EVENTS_SUBSCRIPTION, TestApp, Ws, code, rest, spawn_app};

/// One organization's data: an incident with an event and a postmortem.
struct Org {
    responder: Caller,
    admin: Caller,
    incident: String,
    event: String,
    postmortem: String,
    /// A marker in every text of the organization's rows.
    secret: String,
}

async fn seed(app: &TestApp, name: &str) -> Org {
    let responder = app.responder();
    let admin = app.caller(responder.org, Role::Admin);
    let incident = app
        .create_incident(
            &responder,
            json!({ "title": format!("{name}-secret outage"), "linkedTicketIds": [format!("{name}-1")] }),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let event = app
        .add_event(&responder, &incident, &format!("{name}-secret note"))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let postmortem = app
        .ok(
            &responder,
            "mutation($id: UUID!, $cause: String) { createPostmortem(incidentId: $id, input: { rootCause: $cause, actionItems: [{ title: \"fix\" }] }) { id } }",
            json!({ "id": incident, "cause": format!("{name}-secret cause") }),
        )
        .await["createPostmortem"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    Org {
        responder,
        admin,
        incident,
        event,
        postmortem,
        secret: format!("{name}-secret"),
    }
}

/// An answer with what legitimately differs between two requests removed: the request id the
/// server names, and the id the caller itself sent (echoed in some messages).
fn normalize(value: &Value, sent: &str) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "requestId" && k.as_str() != "request_id")
                .map(|(k, v)| (k.clone(), normalize(v, sent)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| normalize(v, sent)).collect()),
        Value::String(s) => Value::String(s.replace(sent, "<sent id>")),
        other => other.clone(),
    }
}

/// Every id of `org` that appears anywhere in `value`: must be none when B is the caller.
fn leaked(value: &Value, org: &Org) -> Vec<String> {
    let text = value.to_string();
    [
        org.incident.as_str(),
        org.event.as_str(),
        org.postmortem.as_str(),
        &org.responder.org.to_string(),
    ]
    .into_iter()
    .filter(|id| text.contains(id))
    .map(str::to_string)
    .chain(text.contains(&org.secret).then(|| org.secret.clone()))
    .collect()
}

/// Runs `query` as `caller` with `$id` bound to the foreign id and to an unknown one; asserts
/// both answers are the same (status and normalized body) and returns the foreign one.
async fn same_as_unknown(
    app: &TestApp,
    caller: &Caller,
    query: &str,
    foreign: &str,
    extra: Value,
) -> Value {
    let unknown = Uuid::new_v4().to_string();
    let vars = |id: &str| {
        let mut v = extra.clone();
        v["id"] = json!(id);
        v
    };
    let (fs, fb) = app.post(Some(&caller.token), query, vars(foreign)).await;
    let (us, ub) = app.post(Some(&caller.token), query, vars(&unknown)).await;
    assert_eq!(fs, us, "{query}: {fb} vs {ub}");
    assert_eq!(
        normalize(&fb, foreign),
        normalize(&ub, &unknown),
        "{query}: a foreign id answers unlike an unknown one"
    );
    fb
}

#[tokio::test]
async fn queries_with_an_id_answer_a_foreign_id_as_an_unknown_one() {
    let app = spawn_app().await;
    let a = seed(&app, "A").await;
    let b = seed(&app, "B").await;

    let incident = "query($id: UUID!) { incident(id: $id) { id title organizationId events { nodes { id content } } postmortem { id rootCause } } }";
    for caller in [&b.responder, &b.admin] {
        let body = same_as_unknown(&app, caller, incident, &a.incident, json!({})).await;
        assert_eq!(code(&body["errors"][0]), "NOT_FOUND", "{body}");
        assert!(body["data"]["incident"].is_null(), "{body}");
        // Ids of A's other kinds of rows are not incidents either.
        for other in [&a.event, &a.postmortem] {
            let body = same_as_unknown(&app, caller, incident, other, json!({})).await;
            assert_eq!(code(&body["errors"][0]), "NOT_FOUND", "{body}");
        }
    }

    // auditEvents(entityId) as B's admin: A's incident, event and postmortem have no rows for B.
    let audit = "query($id: UUID) { auditEvents(entityId: $id, first: 100) { totalCount nodes { id entityId } } }";
    for target in [&a.incident, &a.event, &a.postmortem] {
        let body = same_as_unknown(&app, &b.admin, audit, target, json!({})).await;
        assert_eq!(
            body["data"]["auditEvents"],
            json!({ "totalCount": 0, "nodes": [] }),
            "{body}"
        );
    }
    // The same query about B's own incident does return rows: the check above can fail.
    let own = app.audit(b.responder.org, &b.incident).await;
    assert!(!own.is_empty());
    // A's admin sees A's rows, so they exist.
    assert!(!app.audit(a.responder.org, &a.incident).await.is_empty());
}

#[tokio::test]
async fn nested_fields_never_reach_another_organizations_rows() {
    let app = spawn_app().await;
    let a = seed(&app, "A").await;
    let b = seed(&app, "B").await;
    // A second incident of A's without a postmortem, and more events, so there is plenty to leak.
    let a2 = app.new_incident(&a.responder, "A-secret second").await;
    app.add_event(&a.responder, &a2.to_string(), "A-secret 2")
        .await;

    let incident_fields = "id organizationId title events(first: 10) { totalCount nodes { id incidentId incident { id organizationId postmortem { id incidentId } } } } postmortem { id incidentId incident { id organizationId events { nodes { id incidentId } } } }";
    let query = format!(
        "query($id: UUID!) {{ incident(id: $id) {{ {incident_fields} }} \
           incidents(first: 10) {{ totalCount nodes {{ {incident_fields} }} }} \
           postmortems(first: 10) {{ totalCount nodes {{ id incidentId incident {{ {incident_fields} }} }} }} \
           auditEvents(first: 50) {{ totalCount nodes {{ entityId actorId changes }} }} \
           viewer {{ organizationId }} }}"
    );
    let data = app.ok(&b.admin, &query, json!({ "id": b.incident })).await;
    assert_eq!(leaked(&data, &a), Vec::<String>::new(), "{data}");
    // B's own rows are there, so the query did reach the nested fields.
    let text = data.to_string();
    for own in [&b.incident, &b.event, &b.postmortem] {
        assert!(text.contains(own.as_str()), "{own} missing: {data}");
    }
    assert_eq!(data["incidents"]["totalCount"], 1);
    assert_eq!(data["postmortems"]["totalCount"], 1);
    assert_eq!(data["incident"]["events"]["totalCount"], 1);
    assert_eq!(
        data["incident"]["events"]["nodes"][0]["incident"]["organizationId"],
        b.responder.org.to_string()
    );
    assert_eq!(
        data["incident"]["postmortem"]["incident"]["organizationId"],
        b.responder.org.to_string()
    );
    // Every organizationId anywhere in the answer is B's.
    let mut orgs = vec![];
    collect(&data, "organizationId", &mut orgs);
    assert!(orgs.len() >= 5, "{data}");
    assert!(
        orgs.iter()
            .all(|o| o == &json!(b.responder.org.to_string())),
        "{orgs:?}"
    );

    // Filters naming A's values find nothing for B.
    let filtered = app
        .ok(
            &b.responder,
            "{ t: incidents(filter: { linkedTicketId: \"A-1\" }) { totalCount } s: incidents(filter: { search: \"A-secret\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        filtered,
        json!({ "t": { "totalCount": 0 }, "s": { "totalCount": 0 } })
    );
}

fn collect(value: &Value, key: &str, out: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    out.push(v.clone());
                }
                collect(v, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, key, out)),
        _ => {}
    }
}

/// What A's organization holds, as A's admin sees it: compared before and after B's attempts.
async fn snapshot(app: &TestApp, org: &Org) -> Value {
    app.ok(
        &org.admin,
        "{ incidents(first: 100) { totalCount nodes { id title severity status linkedTicketIds updatedAt events(first: 100) { nodes { id content } } postmortem { rootCause actionItems { title } updatedAt } } } auditEvents(first: 100) { totalCount } }",
        json!({}),
    )
    .await
}

#[tokio::test]
async fn every_mutation_on_a_foreign_id_answers_as_on_an_unknown_one_and_changes_nothing() {
    let app = spawn_app().await;
    let a = seed(&app, "A").await;
    let b = seed(&app, "B").await;
    let before = snapshot(&app, &a).await;

    let on_incident = [
        "mutation($id: UUID!) { updateIncident(id: $id, input: { title: \"pwned\", severity: SEV1 }) { id title } }",
        "mutation($id: UUID!) { transitionIncident(id: $id, to: RESOLVED, note: \"pwned\") { id status } }",
        "mutation($id: UUID!) { transitionIncident(id: $id, to: OPEN) { id status } }",
        "mutation($id: UUID!) { addIncidentEvent(incidentId: $id, input: { content: \"pwned\" }) { id incidentId } }",
        "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { rootCause: \"pwned\" }) { id } }",
        "mutation($id: UUID!) { updatePostmortem(incidentId: $id, input: { rootCause: \"pwned\" }) { id rootCause } }",
    ];
    for caller in [&b.responder, &b.admin] {
        for m in on_incident {
            let body = same_as_unknown(&app, caller, m, &a.incident, json!({})).await;
            assert_eq!(code(&body["errors"][0]), "NOT_FOUND", "{m}: {body}");
            assert!(body["data"].is_null(), "{m}: {body}");
        }
    }

    // createIncident with a client-chosen id taken in A answers as an id taken in B's own
    // organization with different input: CONFLICT, naming nothing of A's.
    let create = "mutation($id: UUID!) { createIncident(input: { id: $id, title: \"B's retry\" }) { id organizationId } }";
    let (_, foreign) = app
        .post(
            Some(&b.responder.token),
            create,
            json!({ "id": a.incident }),
        )
        .await;
    let (_, own) = app
        .post(
            Some(&b.responder.token),
            create,
            json!({ "id": b.incident }),
        )
        .await;
    assert_eq!(code(&foreign["errors"][0]), "CONFLICT", "{foreign}");
    assert_eq!(
        normalize(&foreign, &a.incident),
        normalize(&own, &b.incident)
    );
    // The same for an event id taken in A, added to B's own incident.
    let add = "mutation($incident: UUID!, $id: UUID!) { addIncidentEvent(incidentId: $incident, input: { id: $id, content: \"B's\" }) { id incidentId } }";
    let (_, foreign) = app
        .post(
            Some(&b.responder.token),
            add,
            json!({ "incident": b.incident, "id": a.event }),
        )
        .await;
    let (_, own) = app
        .post(
            Some(&b.responder.token),
            add,
            json!({ "incident": b.incident, "id": b.event }),
        )
        .await;
    assert_eq!(code(&foreign["errors"][0]), "CONFLICT", "{foreign}");
    assert_eq!(normalize(&foreign, &a.event), normalize(&own, &b.event));
    assert_eq!(leaked(&foreign, &a), vec![a.event.clone()]);

    assert_eq!(snapshot(&app, &a).await, before, "B changed A's data");
    // B can still write its own data: the refusals above were about ownership.
    app.ok(&b.responder, on_incident[0], json!({ "id": b.incident }))
        .await;
}

#[tokio::test]
async fn subscriptions_never_carry_another_organizations_rows() {
    let app = spawn_app().await;
    let a = seed(&app, "A").await;
    let b = seed(&app, "B").await;

    // incidentEvents on A's incident: the same messages as for an unknown id.
    let mut ws = Ws::ready(app.addr, &b.responder.token).await;
    let mut answers = vec![];
    for target in [a.incident.clone(), Uuid::new_v4().to_string()] {
        ws.subscribe("s", EVENTS_SUBSCRIPTION, json!({ "id": target }))
            .await;
        let mut messages = vec![ws.next_message().await];
        if messages[0]["type"] == "next" {
            messages.push(ws.next_message().await);
        }
        let errors = if messages[0]["type"] == "error" {
            messages[0]["payload"].clone()
        } else {
            messages[0]["payload"]["errors"].clone()
        };
        assert_eq!(code(&errors[0]), "NOT_FOUND", "{messages:?}");
        answers.push(normalize(&Value::Array(messages), &target));
    }
    assert_eq!(answers[0], answers[1]);

    // incidentChanged as B while A writes every kind of change: B receives only B's changes.
    ws.subscribe(
        "feed",
        "subscription { incidentChanged { kind incident { id organizationId title } } }",
        json!({}),
    )
    .await;
    // The subscription is live once B's first write shows up; A writes around it.
    let mut expected = vec![];
    for round in 0..3 {
        let created = app.new_incident(&a.responder, "A-secret").await.to_string();
        app.add_event(&a.responder, &created, "A-secret").await;
        app.transition(&a.responder, &created, "RESOLVED", None)
            .await;
        app.ok(
            &a.responder,
            "mutation($id: UUID!) { updatePostmortem(incidentId: $id, input: { rootCause: \"A-secret 2\" }) { id } updateIncident(id: $id, input: { title: \"A-secret again\" }) { id } }",
            json!({ "id": a.incident }),
        )
        .await;
        let mine = app
            .new_incident(&b.responder, &format!("B's {round}"))
            .await;
        expected.push(mine.to_string());
    }
    for id in &expected {
        let message = ws.next_message().await;
        assert_eq!(message["id"], "feed", "{message}");
        let change = &message["payload"]["data"]["incidentChanged"];
        assert_eq!(change["kind"], "CREATED", "{message}");
        assert_eq!(change["incident"]["id"], id.as_str(), "{message}");
        assert_eq!(
            change["incident"]["organizationId"],
            b.responder.org.to_string()
        );
        assert_eq!(leaked(&message, &a), Vec::<String>::new(), "{message}");
    }
}

#[tokio::test]
async fn every_rest_endpoint_answers_a_foreign_id_as_an_unknown_one() {
    let app = spawn_app().await;
    let a = seed(&app, "A").await;
    let b = seed(&app, "B").await;
    let before = snapshot(&app, &a).await;

    let requests: [(Method, &str, Option<Value>); 6] = [
        (Method::GET, "", None),
        (Method::POST, "/events", Some(json!({ "content": "pwned" }))),
        (
            Method::POST,
            "/postmortem",
            Some(json!({ "root_cause": "pwned" })),
        ),
        (
            Method::POST,
            "/transition",
            Some(json!({ "to": "RESOLVED" })),
        ),
        (
            Method::POST,
            "/transition",
            Some(json!({ "to": "OPEN", "note": "x" })),
        ),
        (Method::POST, "/transition", Some(json!({ "to": "CLOSED" }))),
    ];
    for caller in [&b.responder, &b.admin] {
        for (method, suffix, body) in &requests {
            for foreign in [&a.incident, &a.event, &a.postmortem] {
                let unknown = Uuid::new_v4().to_string();
                let (fs, fb) = rest(
                    &app,
                    caller,
                    method.clone(),
                    &format!("/api/v1/incidents/{foreign}{suffix}"),
                    body.clone(),
                )
                .await;
                let (us, ub) = rest(
                    &app,
                    caller,
                    method.clone(),
                    &format!("/api/v1/incidents/{unknown}{suffix}"),
                    body.clone(),
                )
                .await;
                assert_eq!(fs, 404, "{method} {suffix}: {fb}");
                assert_eq!(fb["error"]["code"], "NOT_FOUND");
                assert_eq!(us, fs, "{method} {suffix}");
                assert_eq!(
                    normalize(&fb, foreign),
                    normalize(&ub, &unknown),
                    "{method} {suffix}"
                );
            }
        }
    }

    // The list, whatever its filters, shows B's incident only.
    for query in [
        "",
        "?status=OPEN",
        "?severity=SEV3",
        "?limit=100",
        "?status=OPEN&severity=SEV3&limit=1",
    ] {
        let (status, list) = rest(
            &app,
            &b.responder,
            Method::GET,
            &format!("/api/v1/incidents{query}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{list}");
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec![b.incident.as_str()], "{query}");
        assert_eq!(leaked(&list, &a), Vec::<String>::new());
    }
    // B's own detail carries B's event and postmortem, and nothing of A's.
    let (status, detail) = rest(
        &app,
        &b.responder,
        Method::GET,
        &format!("/api/v1/incidents/{}", b.incident),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(detail["events"][0]["id"], b.event.as_str());
    assert_eq!(detail["postmortem"]["id"], b.postmortem.as_str());
    assert_eq!(
        detail["postmortem"]["organization_id"],
        b.responder.org.to_string()
    );
    assert_eq!(leaked(&detail, &a), Vec::<String>::new());

    // A REST create with A's incident id is a CONFLICT as for B's own taken id.
    let (fs, fb) = rest(
        &app,
        &b.responder,
        Method::POST,
        "/api/v1/incidents",
        Some(json!({ "id": a.incident, "title": "B's" })),
    )
    .await;
    let (us, ub) = rest(
        &app,
        &b.responder,
        Method::POST,
        "/api/v1/incidents",
        Some(json!({ "id": b.incident, "title": "B's" })),
    )
    .await;
    assert_eq!((fs, us), (409, 409), "{fb} {ub}");
    assert_eq!(normalize(&fb, &a.incident), normalize(&ub, &b.incident));

    assert_eq!(snapshot(&app, &a).await, before, "B changed A's data");
}
