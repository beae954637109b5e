//! The REST API: each endpoint, its errors in `{"error": {code, message}}`, and
//! agreement with GraphQL (the same service layer answers both).

use incidentd::incident::identity::Role;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Caller, TestApp, spawn_app};

/// An answer: status, headers and the JSON body (`Null` when there is none).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<no code>")
    }

    /// Asserts a status and returns the body, with the whole answer in the failure message.
    fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        &self.body
    }

    /// Asserts an error answer: status, code, and nothing but the error object at the top.
    fn expect_error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.code(), code, "{}", self.body);
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error has a message: {}",
            self.body
        );
        assert_eq!(
            self.body.as_object().map(|o| o.len()),
            Some(1),
            "{}",
            self.body
        );
        &self.body["error"]
    }
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut req = app.client.request(method, app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    send(req).await
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("a body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(app: &TestApp, caller: &Caller, path: &str) -> Answer {
    call(app, Method::GET, path, Some(&caller.token), None).await
}

async fn post(app: &TestApp, caller: &Caller, path: &str, body: Value) -> Answer {
    call(app, Method::POST, path, Some(&caller.token), Some(body)).await
}

/// Creates an incident over REST; returns its id.
async fn create(app: &TestApp, caller: &Caller, body: Value) -> String {
    let answer = post(app, caller, "/api/v1/incidents", body).await;
    answer.expect(201)["id"].as_str().unwrap().to_string()
}

fn incident_path(id: &str) -> String {
    format!("/api/v1/incidents/{id}")
}

#[tokio::test]
async fn every_endpoint_works_end_to_end() {
    let app = spawn_app().await;
    let alice = app.responder();

    let created = post(
        &app,
        &alice,
        "/api/v1/incidents",
        json!({ "title": "  Checkout is failing  ", "severity": "SEV2", "linked_ticket_ids": ["OPS-1", "OPS-1", "OPS-2"] }),
    )
    .await;
    let incident = created.expect(201).clone();
    let id = incident["id"].as_str().unwrap();
    assert_eq!(
        created.headers["location"].to_str().unwrap(),
        format!("/api/v1/incidents/{id}")
    );
    assert_eq!(
        incident["title"], "Checkout is failing",
        "titles are trimmed"
    );
    assert_eq!(incident["status"], "OPEN");
    assert_eq!(incident["severity"], "SEV2");
    assert_eq!(incident["linked_ticket_ids"], json!(["OPS-1", "OPS-2"]));
    assert_eq!(incident["linked_problem_id"], Value::Null);
    assert_eq!(incident["resolved_at"], Value::Null);
    assert_eq!(incident["organization_id"], alice.org.to_string());
    assert_eq!(incident["created_by"], alice.user.to_string());
    let mut keys: Vec<&str> = incident
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "created_by",
            "id",
            "linked_problem_id",
            "linked_ticket_ids",
            "organization_id",
            "resolved_at",
            "roles",
            "severity",
            "started_at",
            "status",
            "title",
            "updated_at"
        ]
    );
    // The declarer leads, as the directory knows them (no name in this token).
    assert_eq!(
        incident["roles"][0]["person"],
        json!({ "id": alice.user.to_string(), "name": null, "email": null })
    );
    assert_eq!(incident["roles"][0]["role"], "COMMANDER");

    // The Location answers with the incident, its (empty) timeline and no postmortem.
    let location = created.headers["location"].to_str().unwrap().to_string();
    let detail = get(&app, &alice, &location).await;
    let detail = detail.expect(200);
    for (key, value) in incident.as_object().unwrap() {
        assert_eq!(&detail[key], value, "{key}");
    }
    assert_eq!(detail["events"], json!([]));
    assert_eq!(detail["postmortem"], Value::Null);

    let event = post(
        &app,
        &alice,
        &format!("{location}/events"),
        json!({ "content": "Error rate at 40%" }),
    )
    .await;
    let event = event.expect(201);
    assert_eq!(event["incident_id"], id);
    assert_eq!(event["sequence"], 1);
    assert_eq!(event["event_type"], "note", "the default type");
    assert_eq!(event["content"], "Error rate at 40%");
    assert_eq!(event["created_by"], alice.user.to_string());
    let typed = post(
        &app,
        &alice,
        &format!("{location}/events"),
        json!({ "event_type": "customer_update", "content": "We are on it" }),
    )
    .await;
    assert_eq!(typed.expect(201)["sequence"], 2);

    let transitioned = post(
        &app,
        &alice,
        &format!("{location}/transition"),
        json!({ "to": "RESOLVED", "note": "rolled back" }),
    )
    .await;
    let resolved = transitioned.expect(200);
    assert_eq!(resolved["status"], "RESOLVED");
    assert!(resolved["resolved_at"].is_string(), "{resolved}");
    assert!(transitioned.headers.get("location").is_none());

    let postmortem = post(
        &app,
        &alice,
        &format!("{location}/postmortem"),
        json!({
            "impact_summary": "checkout down 20m",
            "action_items": [{ "title": "alert on error rate", "due_date": "2026-12-01", "ticket_id": "OPS-3" }]
        }),
    )
    .await;
    let pm = postmortem.expect(201).clone();
    assert_eq!(pm["incident_id"], id);
    assert_eq!(pm["organization_id"], alice.org.to_string());
    assert_eq!(pm["impact_summary"], "checkout down 20m");
    assert_eq!(pm["root_cause"], Value::Null);
    assert_eq!(
        pm["action_items"],
        json!([{ "title": "alert on error rate", "owner": null, "due_date": "2026-12-01", "done": false, "ticket_id": "OPS-3" }])
    );

    let again = post(
        &app,
        &alice,
        &format!("{location}/postmortem"),
        json!({ "root_cause": "bad deploy" }),
    )
    .await;
    again.expect_error(409, "CONFLICT");

    let closed = post(
        &app,
        &alice,
        &format!("{location}/transition"),
        json!({ "to": "CLOSED" }),
    )
    .await;
    assert_eq!(closed.expect(200)["status"], "CLOSED");

    // The detail now shows the whole timeline, oldest first, and the first postmortem unchanged.
    let detail = get(&app, &alice, &location).await;
    let detail = detail.expect(200);
    let timeline: Vec<(i64, &str)> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["sequence"].as_i64().unwrap(),
                e["event_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        timeline,
        [
            (1, "note"),
            (2, "customer_update"),
            (3, "status_changed"),
            (4, "status_changed")
        ]
    );
    assert!(
        detail["events"][2]["content"]
            .as_str()
            .unwrap()
            .contains("rolled back")
    );
    assert_eq!(detail["postmortem"], pm);
    assert_eq!(detail["status"], "CLOSED");
}

#[tokio::test]
async fn a_create_retried_with_its_id_answers_the_same_incident() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = Uuid::now_v7().to_string();
    let body = json!({ "id": id, "title": "Retry me", "started_at": "2026-01-02T03:04:05Z" });

    let first = post(&app, &alice, "/api/v1/incidents", body.clone()).await;
    let second = post(&app, &alice, "/api/v1/incidents", body).await;
    assert_eq!(first.expect(201)["id"], id);
    assert_eq!(second.expect(201), first.expect(201));
    assert_eq!(first.body["severity"], "SEV3", "the default severity");
    assert_eq!(first.body["started_at"], "2026-01-02T03:04:05Z");

    let different = post(
        &app,
        &alice,
        "/api/v1/incidents",
        json!({ "id": id, "title": "Something else" }),
    )
    .await;
    different.expect_error(409, "CONFLICT");
}

#[tokio::test]
async fn unknown_and_foreign_ids_answer_exactly_alike() {
    let app = spawn_app().await;
    let (alice, bob) = (app.responder(), app.responder());
    let id = create(
        &app,
        &alice,
        json!({ "title": "A's outage", "severity": "SEV4" }),
    )
    .await;
    let unknown = Uuid::new_v4().to_string();

    let requests: [(Method, &str, Option<Value>); 5] = [
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
        (Method::POST, "/transition", Some(json!({ "to": "CLOSED" }))),
    ];
    for (method, suffix, body) in requests {
        let foreign = call(
            &app,
            method.clone(),
            &format!("/api/v1/incidents/{id}{suffix}"),
            Some(&bob.token),
            body.clone(),
        )
        .await;
        let missing = call(
            &app,
            method.clone(),
            &format!("/api/v1/incidents/{unknown}{suffix}"),
            Some(&bob.token),
            body,
        )
        .await;
        foreign.expect_error(404, "NOT_FOUND");
        assert_eq!(foreign.body, missing.body, "{method} {suffix}");
        assert_eq!(foreign.status, missing.status, "{method} {suffix}");
    }

    // Bob's list does not show it either, and Alice's incident is untouched.
    let list = get(&app, &bob, "/api/v1/incidents").await;
    assert_eq!(
        list.expect(200),
        &json!({ "data": [], "next_cursor": null })
    );
    let detail = get(&app, &alice, &incident_path(&id)).await;
    let detail = detail.expect(200);
    assert_eq!(detail["status"], "OPEN");
    assert_eq!(detail["events"], json!([]));
    assert_eq!(detail["postmortem"], Value::Null);
}

#[tokio::test]
async fn tokens_and_roles_are_checked_on_every_endpoint() {
    let app = spawn_app().await;
    let alice = app.responder();
    let viewer = app.caller(alice.org, Role::Viewer);
    let id = create(&app, &alice, json!({ "title": "Roles" })).await;
    let base = incident_path(&id);

    let reads = ["/api/v1/incidents".to_string(), base.clone()];
    let writes = [
        (
            "/api/v1/incidents".to_string(),
            json!({ "title": "viewer's" }),
        ),
        (
            format!("{base}/events"),
            json!({ "content": "viewer's note" }),
        ),
        (
            format!("{base}/postmortem"),
            json!({ "root_cause": "viewer's" }),
        ),
        (format!("{base}/transition"), json!({ "to": "MITIGATING" })),
    ];

    for path in &reads {
        call(&app, Method::GET, path, None, None)
            .await
            .expect_error(401, "UNAUTHENTICATED");
        call(&app, Method::GET, path, Some("not-a-jwt"), None)
            .await
            .expect_error(401, "UNAUTHENTICATED");
        get(&app, &viewer, path).await.expect(200);
    }
    for (path, body) in &writes {
        call(&app, Method::POST, path, None, Some(body.clone()))
            .await
            .expect_error(401, "UNAUTHENTICATED");
        post(&app, &viewer, path, body.clone())
            .await
            .expect_error(403, "FORBIDDEN");
        // The role is checked before the body is read.
        let malformed = app
            .client
            .post(app.url(path))
            .bearer_auth(&viewer.token)
            .header("content-type", "application/json")
            .body("{");
        send(malformed).await.expect_error(403, "FORBIDDEN");
    }

    // Nothing the viewer sent was written.
    let list = get(&app, &alice, "/api/v1/incidents").await;
    assert_eq!(list.expect(200)["data"].as_array().unwrap().len(), 1);
    let detail = get(&app, &alice, &base).await;
    let detail = detail.expect(200);
    assert_eq!(detail["status"], "OPEN");
    assert_eq!(detail["events"], json!([]));
    assert_eq!(detail["postmortem"], Value::Null);
}

#[tokio::test]
async fn bad_input_is_bad_user_input_with_the_field_at_fault() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = create(
        &app,
        &alice,
        json!({ "title": "Inputs", "severity": "SEV4" }),
    )
    .await;
    let base = incident_path(&id);

    // Bodies that are not the JSON we take.
    let raw = |path: &str, content_type: Option<&str>, body: &str| {
        let mut req = app
            .client
            .post(app.url(path))
            .bearer_auth(&alice.token)
            .body(body.to_string());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req
    };
    let json_type = Some("application/json");
    for (what, req) in [
        (
            "truncated JSON",
            raw("/api/v1/incidents", json_type, "{\"title\": "),
        ),
        (
            "not JSON at all",
            raw(&format!("{base}/events"), json_type, "content=hello"),
        ),
        (
            "no content type",
            raw("/api/v1/incidents", None, "{\"title\": \"x\"}"),
        ),
        (
            "an array",
            raw(&format!("{base}/transition"), json_type, "[]"),
        ),
    ] {
        let answer = send(req).await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.body);
        assert_eq!(answer.code(), "BAD_USER_INPUT", "{what}");
    }

    // Well-formed JSON with fields the domain refuses: the same parsing as GraphQL's.
    let future = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let cases: Vec<(String, Value, Option<&str>)> = vec![
        (
            "/api/v1/incidents".into(),
            json!({ "title": "   " }),
            Some("title"),
        ),
        (
            "/api/v1/incidents".into(),
            json!({ "title": "x".repeat(501) }),
            Some("title"),
        ),
        ("/api/v1/incidents".into(), json!({}), None),
        (
            "/api/v1/incidents".into(),
            json!({ "title": "t", "severity": "SEV9" }),
            None,
        ),
        (
            "/api/v1/incidents".into(),
            json!({ "title": "t", "severty": "SEV1" }),
            None,
        ),
        (
            "/api/v1/incidents".into(),
            json!({ "title": "t", "started_at": future }),
            Some("started_at"),
        ),
        (
            "/api/v1/incidents".into(),
            json!({ "title": "t", "linked_ticket_ids": [""] }),
            Some("linked_ticket_ids"),
        ),
        ("/api/v1/incidents".into(), json!({ "title": 42 }), None),
        (
            format!("{base}/events"),
            json!({ "content": "" }),
            Some("content"),
        ),
        (
            format!("{base}/events"),
            json!({ "content": "x", "event_type": "Not A Type" }),
            Some("event_type"),
        ),
        (
            format!("{base}/events"),
            json!({ "content": "x", "event_type": "status_changed" }),
            Some("event_type"),
        ),
        (
            format!("{base}/postmortem"),
            json!({ "action_items": [{ "title": " " }] }),
            Some("action_items.0.title"),
        ),
        (
            format!("{base}/postmortem"),
            json!({ "root_cause": "nul\u{0}byte" }),
            Some("root_cause"),
        ),
        (
            format!("{base}/transition"),
            json!({ "to": "SOLVED" }),
            None,
        ),
        (
            format!("{base}/transition"),
            json!({ "to": "RESOLVED", "note": "  " }),
            Some("note"),
        ),
    ];
    for (path, body, field) in cases {
        let answer = post(&app, &alice, &path, body.clone()).await;
        let error = answer.expect_error(400, "BAD_USER_INPUT");
        assert_eq!(error["field"].as_str(), field, "{path} {body}: {error}");
    }

    // Path and query parameters.
    get(&app, &alice, "/api/v1/incidents/not-a-uuid")
        .await
        .expect_error(400, "BAD_USER_INPUT");
    for (query, field) in [
        ("status=OPEN,SOLVED", "status"),
        ("severity=sev1", "severity"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
    ] {
        let answer = get(&app, &alice, &format!("/api/v1/incidents?{query}")).await;
        let error = answer.expect_error(400, "BAD_USER_INPUT");
        assert_eq!(error["field"], field, "{query}");
    }

    // None of it was written.
    let detail = get(&app, &alice, &base).await;
    let detail = detail.expect(200);
    assert_eq!(detail["events"], json!([]));
    assert_eq!(detail["postmortem"], Value::Null);
    assert_eq!(detail["status"], "OPEN");
    let list = get(&app, &alice, "/api/v1/incidents").await;
    assert_eq!(list.expect(200)["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn lists_filter_and_page_newest_first() {
    let app = spawn_app().await;
    let alice = app.responder();
    let mut ids = Vec::new();
    for (i, severity) in ["SEV1", "SEV2", "SEV3", "SEV4", "SEV3"].iter().enumerate() {
        ids.push(
            create(
                &app,
                &alice,
                json!({ "title": format!("incident {i}"), "severity": severity }),
            )
            .await,
        );
    }
    // ids[1] is resolved, ids[2] mitigating; the rest stay open.
    post(
        &app,
        &alice,
        &format!("{}/transition", incident_path(&ids[1])),
        json!({ "to": "RESOLVED" }),
    )
    .await
    .expect(200);
    post(
        &app,
        &alice,
        &format!("{}/transition", incident_path(&ids[2])),
        json!({ "to": "MITIGATING" }),
    )
    .await
    .expect(200);
    // Another organization's incidents never show.
    let bob = app.responder();
    create(&app, &bob, json!({ "title": "bob's", "severity": "SEV1" })).await;

    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let listed = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };

    let all = get(&app, &alice, "/api/v1/incidents").await;
    assert_eq!(listed(all.expect(200)), newest_first);
    assert_eq!(all.body["next_cursor"], Value::Null);
    assert_eq!(all.body["data"][3]["status"], "RESOLVED");

    // Pages of two: 2 + 2 + 1, no gap, no repeat, the last without a cursor.
    let mut seen = Vec::new();
    let mut path = "/api/v1/incidents?limit=2".to_string();
    let mut pages = 0;
    loop {
        let page = get(&app, &alice, &path).await;
        let body = page.expect(200);
        pages += 1;
        seen.extend(listed(body));
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/incidents?limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, newest_first);

    // Filters, alone and together with paging.
    let filtered = |query: &'static str| {
        let app = &app;
        let alice = &alice;
        async move {
            let answer = get(app, alice, &format!("/api/v1/incidents?{query}")).await;
            listed(answer.expect(200))
        }
    };
    assert_eq!(
        filtered("severity=SEV3").await,
        [ids[4].clone(), ids[2].clone()]
    );
    assert_eq!(
        filtered("severity=SEV1,SEV2").await,
        [ids[1].clone(), ids[0].clone()]
    );
    assert_eq!(filtered("status=RESOLVED").await, [ids[1].clone()]);
    assert_eq!(
        filtered("status=OPEN,MITIGATING").await,
        [
            ids[4].clone(),
            ids[3].clone(),
            ids[2].clone(),
            ids[0].clone()
        ]
    );
    assert_eq!(
        filtered("status=OPEN&severity=SEV3").await,
        [ids[4].clone()]
    );
    assert_eq!(filtered("status=CLOSED").await, Vec::<String>::new());
    assert_eq!(
        filtered("status=&severity=").await,
        newest_first,
        "empty selects all"
    );

    let first = get(
        &app,
        &alice,
        "/api/v1/incidents?status=OPEN,MITIGATING&limit=3",
    )
    .await;
    let cursor = first.expect(200)["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        listed(&first.body),
        [ids[4].clone(), ids[3].clone(), ids[2].clone()]
    );
    let rest = get(
        &app,
        &alice,
        &format!("/api/v1/incidents?status=OPEN,MITIGATING&limit=3&cursor={cursor}"),
    )
    .await;
    assert_eq!(listed(rest.expect(200)), [ids[0].clone()]);
    assert_eq!(rest.body["next_cursor"], Value::Null);
}

#[tokio::test]
async fn rest_and_graphql_show_the_same_incident() {
    let app = spawn_app().await;
    let alice = app.responder();
    let problem = Uuid::new_v4();
    let created = post(
        &app,
        &alice,
        "/api/v1/incidents",
        json!({
            "title": "Seen from both sides",
            "severity": "SEV1",
            "linked_ticket_ids": ["OPS-9"],
            "linked_problem_id": problem,
            "started_at": "2026-03-04T05:06:07.123456Z"
        }),
    )
    .await;
    let rest = created.expect(201).clone();
    let id = rest["id"].as_str().unwrap();
    post(
        &app,
        &alice,
        &format!("{}/events", incident_path(id)),
        json!({ "event_type": "page", "content": "paged" }),
    )
    .await
    .expect(201);
    let resolved = post(
        &app,
        &alice,
        &format!("{}/transition", incident_path(id)),
        json!({ "to": "RESOLVED" }),
    )
    .await;
    let rest = resolved.expect(200).clone();

    let data = app
        .ok(
            &alice,
            "query($id: UUID!) { incident(id: $id) { id organizationId title status severity linkedTicketIds linkedProblemId startedAt resolvedAt createdBy createdAt updatedAt events { nodes { id sequence eventType content createdBy createdAt } } } }",
            json!({ "id": id }),
        )
        .await;
    let gql = &data["incident"];
    for (gql_key, rest_key) in [
        ("id", "id"),
        ("organizationId", "organization_id"),
        ("title", "title"),
        ("status", "status"),
        ("severity", "severity"),
        ("linkedTicketIds", "linked_ticket_ids"),
        ("linkedProblemId", "linked_problem_id"),
        ("createdBy", "created_by"),
    ] {
        assert_eq!(gql[gql_key], rest[rest_key], "{gql_key}");
    }
    for (gql_key, rest_key) in [
        ("startedAt", "started_at"),
        ("resolvedAt", "resolved_at"),
        ("createdAt", "created_at"),
        ("updatedAt", "updated_at"),
    ] {
        assert_eq!(
            instant(&gql[gql_key]),
            instant(&rest[rest_key]),
            "{gql_key}"
        );
    }
    assert_eq!(rest["linked_problem_id"], problem.to_string());

    // The timelines agree too.
    let detail = get(&app, &alice, &incident_path(id)).await;
    let events = detail.expect(200)["events"].as_array().unwrap().clone();
    let gql_events = gql["events"]["nodes"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events.len(), gql_events.len());
    for (r, g) in events.iter().zip(gql_events) {
        assert_eq!(r["id"], g["id"]);
        assert_eq!(r["sequence"], g["sequence"]);
        assert_eq!(r["event_type"], g["eventType"]);
        assert_eq!(r["content"], g["content"]);
        assert_eq!(r["created_by"], g["createdBy"]);
        assert_eq!(instant(&r["created_at"]), instant(&g["createdAt"]));
    }

    // And the other way round: a GraphQL incident is in the REST list.
    let from_gql = app
        .create_incident(&alice, json!({ "title": "made in GraphQL" }))
        .await;
    let list = get(&app, &alice, "/api/v1/incidents?limit=1").await;
    assert_eq!(list.expect(200)["data"][0]["id"], from_gql["id"]);
    assert_eq!(list.body["data"][0]["title"], "made in GraphQL");
}

fn instant(value: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    value.as_str().map(|s| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{s} is not RFC 3339: {e}"))
            .to_utc()
    })
}

#[tokio::test]
async fn the_workflow_rules_answer_over_rest() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = create(
        &app,
        &alice,
        json!({ "title": "Rules", "severity": "SEV1" }),
    )
    .await;
    let transition = |to: &'static str, note: Option<&'static str>| {
        let (app, alice, path) = (&app, &alice, format!("{}/transition", incident_path(&id)));
        async move { post(app, alice, &path, json!({ "to": to, "note": note })).await }
    };

    let invalid = transition("CLOSED", None).await;
    let error = invalid.expect_error(409, "INVALID_TRANSITION");
    assert_eq!(error["current_status"], "OPEN");
    assert_eq!(
        error["allowed_transitions"],
        json!(["MITIGATING", "RESOLVED"])
    );

    assert_eq!(
        transition("RESOLVED", None).await.expect(200)["status"],
        "RESOLVED"
    );
    transition("CLOSED", None)
        .await
        .expect_error(409, "POSTMORTEM_REQUIRED");
    let reopen = transition("OPEN", None).await;
    assert_eq!(reopen.expect_error(400, "BAD_USER_INPUT")["field"], "note");

    // A transition to the current status changes nothing and succeeds.
    let same = transition("RESOLVED", None).await;
    assert_eq!(same.expect(200)["status"], "RESOLVED");
    let detail = get(&app, &alice, &incident_path(&id)).await;
    assert_eq!(detail.expect(200)["events"].as_array().unwrap().len(), 1);

    post(
        &app,
        &alice,
        &format!("{}/postmortem", incident_path(&id)),
        json!({}),
    )
    .await
    .expect(201);
    let closed = transition("CLOSED", None).await;
    assert_eq!(closed.expect(200)["status"], "CLOSED");
    assert_eq!(
        transition("OPEN", Some("again"))
            .await
            .expect_error(409, "INVALID_TRANSITION")["allowed_transitions"],
        json!([])
    );
}

#[tokio::test]
async fn an_unavailable_database_is_a_503_naming_the_request_id() {
    let app = spawn_app().await;
    let alice = app.responder();
    app.state
        .graphql
        .domain
        .db
        .conn()
        .clone()
        .close()
        .await
        .expect("pool closes");

    for answer in [
        get(&app, &alice, "/api/v1/incidents").await,
        post(&app, &alice, "/api/v1/incidents", json!({ "title": "t" })).await,
    ] {
        let error = answer.expect_error(503, "DATABASE_UNAVAILABLE");
        let request_id = answer.headers["x-request-id"].to_str().unwrap();
        assert!(!request_id.is_empty());
        assert_eq!(error["request_id"], request_id);
        assert!(
            !error["message"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("pool"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let alice = app.responder();
    get(&app, &alice, "/api/v1/nothing-here")
        .await
        .expect_error(404, "NOT_FOUND");
    call(
        &app,
        Method::DELETE,
        "/api/v1/incidents",
        Some(&alice.token),
        None,
    )
    .await
    .expect_error(405, "BAD_USER_INPUT");
}

#[tokio::test]
async fn the_openapi_document_is_served_and_matches_its_snapshot() {
    let app = spawn_app().await;
    // Public, like any API description: no token.
    let answer = call(&app, Method::GET, "/api/v1/openapi.json", None, None).await;
    let served = answer.expect(200).clone();
    assert_eq!(
        served,
        serde_json::to_value(incidentd::rest::openapi()).unwrap()
    );
    assert!(served["openapi"].as_str().unwrap().starts_with("3."));
    let mut paths: Vec<&str> = served["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/api/v1/incidents",
            "/api/v1/incidents/{id}",
            "/api/v1/incidents/{id}/events",
            "/api/v1/incidents/{id}/postmortem",
            "/api/v1/incidents/{id}/roles",
            "/api/v1/incidents/{id}/transition"
        ]
    );
    insta::assert_json_snapshot!("openapi", served);
}
