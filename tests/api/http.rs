//! GraphQL over HTTP: GET for queries only, GraphiQL for browsers, `Accept`
//! negotiation between `application/json` and `application/graphql-response+json`, request ids.

use incidentd::incident::identity::Role;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, code, spawn_app};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// GET /graphql with the given query-string parameters.
async fn get(app: &TestApp, token: Option<&str>, params: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.get(app.url("/graphql")).query(params);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("request sent")
}

/// POST /graphql with an `Accept` header.
async fn post_accepting(
    app: &TestApp,
    caller: &Caller,
    accept: &str,
    query: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/graphql"))
        .bearer_auth(&caller.token)
        .header(ACCEPT, accept)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("request sent")
}

async fn incident_count(app: &TestApp, caller: &Caller) -> u64 {
    app.ok(caller, "{ incidents { totalCount } }", json!({}))
        .await["incidents"]["totalCount"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn queries_work_over_get() {
    let app = spawn_app().await;
    let alice = app.caller(uuid::Uuid::new_v4(), Role::Admin);
    let resp = get(&app, Some(&alice.token), &[("query", "{viewer{role}}")]).await;
    assert_eq!(resp.status(), 200);
    assert!(
        content_type(&resp).starts_with("application/json"),
        "{resp:?}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({ "data": { "viewer": { "role": "admin" } } }));

    // Variables and an operation name travel in the query string too.
    let resp = get(
        &app,
        Some(&alice.token),
        &[
            ("query", "query A { viewer { role } } query B($n: Int) { incidents(first: $n) { totalCount } }"),
            ("operationName", "B"),
            ("variables", r#"{"n": 1}"#),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "data": { "incidents": { "totalCount": 0 } } })
    );

    // GET needs a token like POST does.
    let resp = get(&app, None, &[("query", "{viewer{role}}")]).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code(&body["errors"][0]), "UNAUTHENTICATED");
}

#[tokio::test]
async fn mutations_over_get_are_refused_with_405() {
    let app = spawn_app().await;
    let alice = app.responder();
    let mutation = "mutation { createIncident(input: { title: \"over GET\" }) { id } }";
    let resp = get(&app, Some(&alice.token), &[("query", mutation)]).await;
    assert_eq!(resp.status(), 405);
    let resp = get(
        &app,
        Some(&alice.token),
        &[
            ("query", "query Q { viewer { role } } mutation M { createIncident(input: { title: \"over GET\" }) { id } }"),
            ("operationName", "M"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 405, "the operation chosen is a mutation");
    assert_eq!(incident_count(&app, &alice).await, 0, "nothing was written");

    // The same mutation over POST works.
    app.ok(&alice, mutation, json!({})).await;
    assert_eq!(incident_count(&app, &alice).await, 1);
}

#[tokio::test]
async fn a_browser_gets_graphiql() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/graphql"))
        .header(
            ACCEPT,
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(content_type(&resp).starts_with("text/html"), "{resp:?}");
    let html = resp.text().await.unwrap();
    assert!(html.to_lowercase().contains("<html"), "{html}");
    assert!(html.contains("graphiql"), "{html}");
    assert!(html.contains("/graphql"), "the endpoint: {html}");

    // A client that asks for JSON gets GraphQL, not the page.
    let resp = app
        .client
        .get(app.url("/graphql"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert!(!content_type(&resp).starts_with("text/html"), "{resp:?}");
}

#[tokio::test]
async fn the_response_media_type_follows_accept() {
    let app = spawn_app().await;
    let alice = app.responder();

    // application/graphql-response+json: that type; a request error is HTTP 400.
    let resp = post_accepting(&app, &alice, GRAPHQL_RESPONSE_JSON, "{ viewer { role } }").await;
    assert_eq!(resp.status(), 200);
    assert!(
        content_type(&resp).starts_with(GRAPHQL_RESPONSE_JSON),
        "{resp:?}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"]["viewer"]["role"], "responder");

    for (what, bad) in [
        ("a syntax error", "{ viewer { role "),
        ("an unknown field", "{ viewer { favouriteColour } }"),
    ] {
        let resp = post_accepting(&app, &alice, GRAPHQL_RESPONSE_JSON, bad).await;
        assert_eq!(resp.status(), 400, "{what}");
        assert!(
            content_type(&resp).starts_with(GRAPHQL_RESPONSE_JSON),
            "{what}: {resp:?}"
        );
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{what}: {body}"
        );
        assert!(body.get("data").is_none(), "{what}: no data: {body}");
    }

    // application/json: that type, and HTTP 200 even for a request error.
    let resp = post_accepting(&app, &alice, "application/json", "{ viewer { role } }").await;
    assert_eq!(resp.status(), 200);
    assert!(
        content_type(&resp).starts_with("application/json"),
        "{resp:?}"
    );
    let resp = post_accepting(&app, &alice, "application/json", "{ viewer { role ").await;
    assert_eq!(resp.status(), 200);
    assert!(
        content_type(&resp).starts_with("application/json"),
        "{resp:?}"
    );
    let body: Value = resp.json().await.unwrap();
    assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()));

    // The client's preference decides when it accepts both.
    let resp = post_accepting(
        &app,
        &alice,
        "application/json;q=0.5, application/graphql-response+json",
        "{ viewer { role ",
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(content_type(&resp).starts_with(GRAPHQL_RESPONSE_JSON));
    let resp = post_accepting(
        &app,
        &alice,
        "application/json, application/graphql-response+json;q=0.5",
        "{ viewer { role ",
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(content_type(&resp).starts_with("application/json"));
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = spawn_app().await;
    let alice = app.responder();
    let resp = post_accepting(&app, &alice, "application/json", "{ viewer { role } }").await;
    let first = request_id(&resp);
    assert!(!first.is_empty(), "{resp:?}");
    let resp = post_accepting(&app, &alice, "application/json", "{ viewer { role } }").await;
    let second = request_id(&resp);
    assert!(!second.is_empty());
    assert_ne!(first, second, "each request gets its own id");

    // Errors too, unauthenticated ones included.
    let resp = get(&app, None, &[("query", "{viewer{role}}")]).await;
    assert_eq!(resp.status(), 401);
    let id = request_id(&resp);
    assert!(!id.is_empty(), "{resp:?}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["requestId"], id,
        "the error names the request id of the header: {body}"
    );

    // A request id the client sends is the one it gets back.
    let resp = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&alice.token)
        .header("x-request-id", "client-chosen-id-42")
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(request_id(&resp), "client-chosen-id-42");
}
