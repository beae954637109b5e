//! Production hardening: query limits, batching, body size, content types, introspection,
//! internal errors, CORS and WebSocket origins, and the GraphQL-over-HTTP conformance audit.

use clap::Parser;
use incidentd::config::Cli;
use incidentd::incident::identity::Role;
use reqwest::header::{ACCEPT, CONTENT_TYPE, ORIGIN};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Caller, TestApp, TestDb, Ws, code, spawn_app, spawn_app_with, test_config};

const ALLOWED_ORIGIN: &str = "https://desk.example.com";

/// Runs `query` expecting a request refused as `QUERY_TOO_COMPLEX` without touching the database.
async fn assert_too_complex(app: &TestApp, caller: &Caller, query: &str) -> Value {
    let before = app.state.graphql.domain.db.statement_count();
    let (status, body) = app.post(Some(&caller.token), query, json!({})).await;
    assert_eq!(status, 200, "application/json answers 200: {body}");
    assert_eq!(code(&body["errors"][0]), "QUERY_TOO_COMPLEX", "{body}");
    assert!(
        body.get("data").is_none_or(Value::is_null),
        "nothing ran: {body}"
    );
    assert_eq!(
        app.state.graphql.domain.db.statement_count(),
        before,
        "no resolver ran: no SQL statement"
    );
    body
}

/// `{ viewer { role } }` under `n` aliases.
fn aliased(n: usize) -> String {
    let fields: Vec<String> = (0..n).map(|i| format!("a{i}: viewer {{ role }}")).collect();
    format!("{{ {} }}", fields.join(" "))
}

#[tokio::test]
async fn a_too_deep_query_is_refused() {
    let app = spawn_app().await;
    let alice = app.responder();
    // 13 levels: incidents > nodes > events > nodes > incident > events > nodes > incident > …
    let deep = "{ incidents(first: 1) { nodes { events(first: 1) { nodes { incident { events(first: 1) { nodes { incident { events(first: 1) { nodes { incident { events(first: 1) { nodes { id } } } } } } } } } } } } } }";
    let body = assert_too_complex(&app, &alice, deep).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nested too deep"),
        "{body}"
    );
    // Under graphql-response+json a request error is a 400.
    let resp = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&alice.token)
        .header(ACCEPT, "application/graphql-response+json")
        .json(&json!({ "query": deep }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_too_complex_query_is_refused() {
    let app = spawn_app().await;
    let alice = app.responder();
    // 100 incidents × 100 events × 5 fields ≈ 60 000.
    let body = assert_too_complex(
        &app,
        &alice,
        "{ incidents(first: 100) { nodes { id title events(first: 100) { nodes { id sequence eventType content createdAt } } } } }",
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too complex"),
        "{body}"
    );
    // `last` counts like `first`, and variables are read too.
    let before = app.state.graphql.domain.db.statement_count();
    let (_, body) = app
        .post(
            Some(&alice.token),
            "query($n: Int) { incidents(last: $n) { nodes { id title events(first: 100) { nodes { id sequence eventType content createdAt } } } } }",
            json!({ "n": 100 }),
        )
        .await;
    assert_eq!(code(&body["errors"][0]), "QUERY_TOO_COMPLEX", "{body}");
    assert_eq!(app.state.graphql.domain.db.statement_count(), before);
}

#[tokio::test]
async fn too_many_aliases_are_refused_over_http_and_websocket() {
    let app = spawn_app().await;
    let alice = app.responder();
    assert_too_complex(&app, &alice, &aliased(31)).await;
    let data = app.ok(&alice, &aliased(30), json!({})).await;
    assert_eq!(data["a29"]["role"], "responder");

    // Aliases inside fragments count too.
    let fields: Vec<String> = (0..31)
        .map(|i| format!("f{i}: viewer {{ role }}"))
        .collect();
    let in_fragment = format!("{{ ...F }} fragment F on Query {{ {} }}", fields.join(" "));
    assert_too_complex(&app, &alice, &in_fragment).await;

    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe("1", &aliased(31), json!({})).await;
    let message = ws.next_message().await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["id"], "1");
    assert_eq!(
        code(&message["payload"][0]),
        "QUERY_TOO_COMPLEX",
        "{message}"
    );
}

#[tokio::test]
async fn an_oversized_query_text_is_refused() {
    let app = spawn_app().await;
    let alice = app.responder();
    let padding = "#".repeat(32 * 1024);
    let query = format!("{{ viewer {{ role }} }}\n{padding}");
    let body = assert_too_complex(&app, &alice, &query).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("bytes"),
        "{body}"
    );
    // Just under the limit it runs.
    let query = format!("{{ viewer {{ role }} }}\n{}", "#".repeat(30 * 1024));
    app.ok(&alice, &query, json!({})).await;
}

#[tokio::test]
async fn frontend_queries_pass_the_limits() {
    let app = spawn_app().await;
    let alice = app.responder();
    let incident = app
        .create_incident(&alice, json!({ "title": "Checkout is failing" }))
        .await;
    let id = incident["id"].as_str().unwrap();
    app.add_event(&alice, id, "rolled back").await;

    // The incident list: 100 incidents with their fields, latest 20 events and postmortem.
    let list = "{ incidents(first: 100) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node {
        id organizationId title status severity linkedTicketIds linkedProblemId startedAt resolvedAt
        createdBy createdAt updatedAt allowedTransitions
        events(last: 20) { totalCount nodes { id sequence eventType content createdBy createdAt } }
        postmortem { id rootCause actionItems { title owner dueDate done } } } } } }";
    let data = app.ok(&alice, list, json!({})).await;
    assert_eq!(data["incidents"]["totalCount"], 1);

    // The widest export: 100 incidents × their 100 latest event ids (≈ 40 000).
    let export = "{ incidents(first: 100) { nodes { id events(last: 100) { totalCount nodes { id sequence } } } } }";
    let data = app.ok(&alice, export, json!({})).await;
    assert_eq!(data["incidents"]["nodes"][0]["events"]["totalCount"], 1);

    // The README's timeline at the largest page.
    let timeline =
        "query($id: UUID!) { incident(id: $id) { title status severity startedAt resolvedAt
        events(first: 100) { totalCount nodes { sequence eventType content createdAt } }
        postmortem { rootCause actionItems { title owner dueDate done } } } }";
    let data = app.ok(&alice, timeline, json!({ "id": id })).await;
    assert_eq!(data["incident"]["events"]["totalCount"], 1);

    // A dashboard: counts per status and per severity (8 aliases).
    let mut fields = Vec::new();
    for s in ["OPEN", "MITIGATING", "RESOLVED", "CLOSED"] {
        fields.push(format!(
            "{}: incidents(filter: {{ status: [{s}] }}) {{ totalCount }}",
            s.to_lowercase()
        ));
    }
    for s in ["SEV1", "SEV2", "SEV3", "SEV4"] {
        fields.push(format!(
            "{}: incidents(filter: {{ severity: [{s}] }}) {{ totalCount }}",
            s.to_lowercase()
        ));
    }
    let data = app
        .ok(&alice, &format!("{{ {} }}", fields.join(" ")), json!({}))
        .await;
    assert_eq!(data["open"]["totalCount"], 1);
    assert_eq!(data["sev3"]["totalCount"], 1);
}

#[tokio::test]
async fn the_limits_follow_the_configuration() {
    let cli = Cli::parse_from([
        "incidentd",
        "--max-depth",
        "3",
        "--max-complexity",
        "50",
        "--max-aliases",
        "2",
        "--max-query-bytes",
        "100",
        "--cors-origins",
        "https://a.example, https://b.example",
    ]);
    assert_eq!(cli.config.max_depth, 3);
    assert_eq!(cli.config.max_complexity, 50);
    assert_eq!(cli.config.cors_origins.len(), 2);
    let defaults = Cli::parse_from(["incidentd"]).config;
    assert_eq!(
        (
            defaults.max_depth,
            defaults.max_query_bytes,
            defaults.max_body_bytes
        ),
        (12, 32 * 1024, 1024 * 1024)
    );
    assert!(defaults.cors_origins.is_empty(), "no origin by default");

    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.max_depth = cli.config.max_depth;
    config.max_complexity = cli.config.max_complexity;
    config.max_aliases = cli.config.max_aliases;
    config.max_query_bytes = cli.config.max_query_bytes;
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();

    app.ok(&alice, "{ incidents { nodes { id } } }", json!({}))
        .await;
    assert_too_complex(
        &app,
        &alice,
        "{ incidents { nodes { incident: events { nodes { id } } } } }",
    )
    .await;
    // 20 (default page) × 3 > 50; a page of 10 fits.
    assert_too_complex(&app, &alice, "{ incidents { nodes { id title } } }").await;
    app.ok(
        &alice,
        "{ incidents(first: 10) { nodes { id title } } }",
        json!({}),
    )
    .await;
    assert_too_complex(&app, &alice, &aliased(3)).await;
    app.ok(&alice, &aliased(2), json!({})).await;
    assert_too_complex(
        &app,
        &alice,
        &format!("{{ viewer {{ role }} }} #{}", "x".repeat(80)),
    )
    .await;
}

async fn post_raw(
    app: &TestApp,
    caller: &Caller,
    content_type: Option<&str>,
    body: String,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&caller.token)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    req.send().await.expect("request sent")
}

#[tokio::test]
async fn batched_requests_are_refused_clearly() {
    let app = spawn_app().await;
    let alice = app.responder();
    let resp = post_raw(
        &app,
        &alice,
        Some("application/json"),
        json!([{ "query": "{ viewer { role } }" }, { "query": "{ viewer { userId } }" }])
            .to_string(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code(&body["errors"][0]), "BAD_USER_INPUT", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("batch") && message.contains("not supported"),
        "{message}"
    );
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.max_body_bytes = 64 * 1024;
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    let big =
        json!({ "query": "{ viewer { role } }", "variables": { "pad": "x".repeat(100 * 1024) } })
            .to_string();

    // With a Content-Length.
    let resp = post_raw(&app, &alice, Some("application/json"), big.clone()).await;
    assert_eq!(resp.status(), 413);

    // Chunked: the size shows only while the body streams in.
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr, alice.token
    );
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        for chunk in big.as_bytes().chunks(8 * 1024) {
            write
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            write.write_all(chunk).await?;
            write.write_all(b"\r\n").await?;
        }
        write.write_all(b"0\r\n\r\n").await
    });
    let mut response = Vec::new();
    let _ = read.read_to_end(&mut response).await;
    let _ = writer.await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("\"code\":\"BAD_USER_INPUT\""),
        "{response}"
    );

    // Under the limit it works.
    let resp = post_raw(
        &app,
        &alice,
        Some("application/json"),
        json!({ "query": "{ viewer { role } }" }).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn post_needs_a_json_content_type() {
    let app = spawn_app().await;
    let alice = app.responder();
    let body = json!({ "query": "{ viewer { role } }" }).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let resp = post_raw(&app, &alice, content_type, body.clone()).await;
        assert_eq!(resp.status(), 415, "{content_type:?}");
        let body: Value = resp.json().await.expect("a JSON error body");
        assert_eq!(code(&body["errors"][0]), "BAD_USER_INPUT", "{body}");
    }
    for content_type in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/graphql-response+json",
    ] {
        let resp = post_raw(&app, &alice, Some(content_type), body.clone()).await;
        assert_eq!(resp.status(), 200, "{content_type}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["data"]["viewer"]["role"], "responder",
            "{content_type}"
        );
    }
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    let misspelt = "{ viewr { role } }";
    // On (the default): introspection answers and errors suggest.
    let app = spawn_app().await;
    let alice = app.responder();
    let data = app
        .ok(&alice, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
    let error = app.err(&alice, misspelt, json!({})).await;
    assert!(
        error["message"].as_str().unwrap().contains("Did you mean"),
        "{error}"
    );
    drop(app);

    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.introspection = false;
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    for query in [
        "{ __schema { queryType { name } } }",
        "{ __type(name: \"Incident\") { name fields { name } } }",
    ] {
        let (_, body) = app.post(Some(&alice.token), query, json!({})).await;
        assert_eq!(
            code(&body["errors"][0]),
            "BAD_USER_INPUT",
            "{query}: {body}"
        );
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("introspection is disabled"),
            "{query}: {body}"
        );
        assert!(body.get("data").is_none_or(Value::is_null), "{body}");
        assert!(
            !body.to_string().contains("queryType\":{") && !body.to_string().contains("fields\":["),
            "{query}: nothing of the schema: {body}"
        );
    }
    let error = app.err(&alice, misspelt, json!({})).await;
    assert!(
        !error["message"].as_str().unwrap().contains("Did you mean"),
        "{error}"
    );
    // Ordinary queries (and __typename) still work.
    let data = app
        .ok(&alice, "{ __typename viewer { role } }", json!({}))
        .await;
    assert_eq!(data["viewer"]["role"], "responder");
}

#[tokio::test]
async fn internal_errors_do_not_leak() {
    let app = spawn_app().await;
    let alice = app.responder();
    let incident = app.create_incident(&alice, json!({ "title": "x" })).await;
    let id = incident["id"].as_str().unwrap();
    app.add_event(&alice, id, "a note").await;

    // A real database failure: the table the query needs is gone.
    {
        use sea_orm::ConnectionTrait;
        let conn = sea_orm::Database::connect(&app.database_url).await.unwrap();
        let sql = if app.db.is_postgres() {
            "DROP TABLE incident_events CASCADE"
        } else {
            "DROP TABLE incident_events"
        };
        conn.execute_unprepared(sql).await.unwrap();
        conn.close().await.unwrap();
    }

    let resp = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&alice.token)
        .json(&json!({
            "query": "query($id: UUID!) { incident(id: $id) { title events(first: 10) { nodes { content } } } }",
            "variables": { "id": id },
        }))
        .send()
        .await
        .unwrap();
    let header_id = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let error = &body["errors"][0];
    assert_eq!(code(error), "INTERNAL", "{body}");
    assert_eq!(
        error["extensions"]["requestId"],
        header_id.as_str(),
        "{body}"
    );
    let lower = text.to_lowercase();
    for leak in [
        "incident_events",
        "select",
        "from ",
        "no such table",
        "relation",
        "sqlx",
        "sqlite",
        "postgres",
        "query error",
    ] {
        assert!(!lower.contains(leak), "the body shows {leak:?}: {text}");
    }
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.cors_origins = vec![ALLOWED_ORIGIN.to_string()];
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();

    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header(ORIGIN, origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let resp = preflight(ALLOWED_ORIGIN).await.unwrap();
    assert!(resp.status().is_success(), "{resp:?}");
    let allow = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_lowercase())
    };
    assert_eq!(
        allow(&resp, "access-control-allow-origin").as_deref(),
        Some(ALLOWED_ORIGIN)
    );
    let methods = allow(&resp, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("post"), "{methods}");
    let headers = allow(&resp, "access-control-allow-headers").unwrap_or_default();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );

    let resp = preflight("https://evil.example").await.unwrap();
    assert_eq!(
        allow(&resp, "access-control-allow-origin"),
        None,
        "{resp:?}"
    );

    // The actual request from the allowed origin may be read by the page; from another may not.
    for (origin, readable) in [(ALLOWED_ORIGIN, true), ("https://evil.example", false)] {
        let resp = app
            .client
            .post(app.url("/graphql"))
            .bearer_auth(&alice.token)
            .header(ORIGIN, origin)
            .json(&json!({ "query": "{ viewer { role } }" }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            allow(&resp, "access-control-allow-origin").is_some(),
            readable,
            "{origin}: {resp:?}"
        );
    }

    // By default no origin is allowed.
    let app = spawn_app().await;
    let resp = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header(ORIGIN, ALLOWED_ORIGIN)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allow(&resp, "access-control-allow-origin"),
        None,
        "{resp:?}"
    );
}

/// Opens a graphql-transport-ws WebSocket with an `Origin`; the HTTP status of a refusal.
async fn ws_with_origin(app: &TestApp, origin: &str) -> Result<(), u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/graphql", app.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected WebSocket error: {e}"),
    }
}

#[tokio::test]
async fn cross_site_websockets_are_refused() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.cors_origins = vec![ALLOWED_ORIGIN.to_string()];
    let app = spawn_app_with(db, config).await;

    assert_eq!(ws_with_origin(&app, "https://evil.example").await, Err(403));
    assert_eq!(ws_with_origin(&app, "null").await, Err(403));
    // Same host name, other port: another origin.
    let other_port = format!(
        "http://127.0.0.1:{}",
        app.addr.port().wrapping_add(1).max(1)
    );
    assert_eq!(ws_with_origin(&app, &other_port).await, Err(403));

    // Same-origin (the page GraphiQL is served from) and the allowlist are accepted.
    assert_eq!(
        ws_with_origin(&app, &format!("http://{}", app.addr)).await,
        Ok(())
    );
    assert_eq!(ws_with_origin(&app, ALLOWED_ORIGIN).await, Ok(()));
    // Without Origin (not a browser) as before.
    let alice = app.caller(uuid::Uuid::new_v4(), Role::Viewer);
    Ws::ready(app.addr, &alice.token).await;
}

#[tokio::test]
async fn the_graphql_over_http_audit_passes() {
    let app = spawn_app().await;
    let alice = app.responder();
    let node_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    if !node_dir.join("node_modules/graphql-http").exists() {
        let status = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&node_dir)
            .status()
            .await
            .expect("npm runs (Node 20 and npm are needed)");
        assert!(status.success(), "npm ci failed");
    }
    let output = tokio::process::Command::new("node")
        .arg(node_dir.join("audit.mjs"))
        .arg(app.url("/graphql"))
        .arg(&alice.token)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the audit found problems:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" 0 warn, 0 error"), "{stdout}");
}

/// A request that outlives the request timeout is cut off (503), not left running.
#[tokio::test]
async fn a_request_over_the_timeout_is_cut_off() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.request_timeout = std::time::Duration::from_secs(1);
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    let id = app.new_incident(&alice, "held").await;
    // Hold the incident's write lock (the row lock on PostgreSQL, the writer queue on SQLite), so
    // a transition waits for as long as the test wants: far past the timeout.
    let writer = crate::subscriptions::writer_for(&alice);
    let txn = app.state.graphql.domain.db.begin_write().await.unwrap();
    writer
        .scope
        .lock_incident(&*txn, id)
        .await
        .unwrap()
        .expect("the incident exists");
    let started = std::time::Instant::now();
    let (status, body) = app
        .transition(&alice, &id.to_string(), "MITIGATING", None)
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    drop(txn);
    // The cut-off request left nothing behind: the incident is as it was.
    let data = app
        .ok(
            &alice,
            "query($id: UUID!) { incident(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["incident"]["status"], "OPEN");
}

/// PostgreSQL ends a statement that runs past the configured statement timeout.
#[tokio::test]
async fn the_database_statement_timeout_applies_to_the_pool() {
    use sea_orm::ConnectionTrait;
    let (db, url) = TestDb::create().await;
    if !db.is_postgres() {
        eprintln!("statement timeouts are a PostgreSQL setting");
        return;
    }
    let mut config = test_config(&url);
    config.db_statement_timeout = std::time::Duration::from_millis(200);
    let app = spawn_app_with(db, config).await;
    let conn = app.state.graphql.domain.db.conn();
    let started = std::time::Instant::now();
    let err = conn
        .execute_unprepared("SELECT pg_sleep(5)")
        .await
        .expect_err("the statement is cancelled");
    assert!(err.to_string().contains("statement timeout"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // A client is told to retry, not that the server failed.
    assert_eq!(incidentd::error::AppError::from(err).code(), "BUSY");
    conn.execute_unprepared("SELECT 1")
        .await
        .expect("the pool still works");
}
