//! Persisted operations: automatic persisted queries as Apollo Client sends them (POST and GET,
//! shared through the database), and the trusted-documents mode with the manifest that
//! `incidentd persisted-manifest` prints.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{
    EVENTS_SUBSCRIPTION, TestApp, TestDb, Ws, code, spawn_app, spawn_app_with, test_config,
};

fn sha256(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

fn apq(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

async fn post(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .header("accept", "application/graphql-response+json")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A GET as Apollo's `useGETForHashedQueries` sends it: only the hash, no text.
async fn get_hash(
    app: &TestApp,
    token: &str,
    hash: &str,
    variables: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[
            ("variables", variables.to_string()),
            ("extensions", apq(hash).to_string()),
        ])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn apq_registers_on_retry_serves_hash_only_gets_and_is_shared_by_replicas() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app.new_incident(&alice, "hashed").await.to_string();
    let query = "query Title($id: UUID!) { incident(id: $id) { title } }";
    let hash = sha256(query);
    let vars = json!({ "id": id });

    // Unknown hash: Apollo's error (by code and by message), with 200 so no cache keeps it.
    let (status, body) = post(
        &app,
        &alice.token,
        json!({ "variables": vars, "extensions": apq(&hash) }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(code(&body["errors"][0]), "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    let (status, headers, body) = get_hash(&app, &alice.token, &hash, vars.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(code(&body["errors"][0]), "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(headers["cache-control"], "no-store");

    // A text that is not the hash's is refused and not stored.
    let (status, body) = post(
        &app,
        &alice.token,
        json!({ "query": "{ viewer { role } }", "extensions": apq(&hash) }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(code(&body["errors"][0]), "BAD_USER_INPUT");
    assert_eq!(
        body["errors"][0]["extensions"]["field"],
        "extensions.persistedQuery.sha256Hash"
    );

    // The retry with the text runs and registers it; the hash alone then works, over GET too.
    let (_, body) = post(
        &app,
        &alice.token,
        json!({ "query": query, "variables": vars, "extensions": apq(&hash) }),
    )
    .await;
    assert_eq!(body["data"]["incident"]["title"], "hashed", "{body}");
    let (status, headers, body) = get_hash(&app, &alice.token, &hash, vars.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["incident"]["title"], "hashed");
    assert_eq!(headers["cache-control"], "max-age=0");
    assert_eq!(headers["vary"], "Accept, Authorization");

    // Another replica on the same database knows the hash without having seen the text.
    let mut config = test_config(&app.database_url);
    config.get_max_age = std::time::Duration::from_secs(60);
    let replica = spawn_app_with(TestDb::create().await.0, config).await;
    let (status, headers, body) = get_hash(&replica, &alice.token, &hash, vars.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["incident"]["title"], "hashed");
    assert_eq!(headers["cache-control"], "max-age=60");

    // Tenancy is untouched: another organization's token runs the same document on its own data.
    let bob = app.responder();
    let (_, _, body) = get_hash(&app, &bob.token, &hash, vars).await;
    assert_eq!(code(&body["errors"][0]), "NOT_FOUND");
}

#[tokio::test]
async fn apq_refuses_mutations_over_get_bad_versions_and_stores_no_oversized_text() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.max_query_bytes = 200;
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();

    let mutation = "mutation { createIncident(input: { title: \"via GET\" }) { id } }";
    let hash = sha256(mutation);
    let (_, body) = post(
        &app,
        &alice.token,
        json!({ "query": mutation, "extensions": apq(&hash) }),
    )
    .await;
    assert!(body["data"]["createIncident"]["id"].is_string(), "{body}");
    let (status, _, _) = get_hash(&app, &alice.token, &hash, json!({})).await;
    assert_eq!(status, 405, "a mutation by hash over GET");

    let (status, body) = post(
        &app,
        &alice.token,
        json!({ "extensions": { "persistedQuery": { "version": 2, "sha256Hash": hash } } }),
    )
    .await;
    assert_eq!((status, code(&body["errors"][0])), (400, "BAD_USER_INPUT"));

    // Larger than the query limit: refused when run, and never stored.
    let big = format!("{{ viewer {{ role }} {} }}", "__typename ".repeat(40));
    let big_hash = sha256(&big);
    let (_, body) = post(
        &app,
        &alice.token,
        json!({ "query": big, "extensions": apq(&big_hash) }),
    )
    .await;
    assert_eq!(code(&body["errors"][0]), "QUERY_TOO_COMPLEX", "{body}");
    let (_, body) = post(&app, &alice.token, json!({ "extensions": apq(&big_hash) })).await;
    assert_eq!(code(&body["errors"][0]), "PERSISTED_QUERY_NOT_FOUND");

    // Without a token nothing is looked up or stored.
    let response = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": "{ viewer { role } }", "extensions": apq(&sha256("{ viewer { role } }")) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

const OPERATIONS: &str = r#"
# What the incident page runs.
query Incident($id: UUID!) {
  incident(id: $id) { ...Card }
}

subscription Timeline($id: UUID!, $after: Int) {
  incidentEvents(incidentId: $id, afterSequence: $after) { sequence content }
}
"#;

const FRAGMENTS: &str = "fragment Card on Incident { title status }\n";

/// The manifest `incidentd persisted-manifest` prints for a folder of operations.
fn manifest_for(dir: &std::path::Path) -> Value {
    std::fs::write(dir.join("incident.graphql"), OPERATIONS).unwrap();
    std::fs::create_dir_all(dir.join("fragments")).unwrap();
    std::fs::write(dir.join("fragments/card.graphql"), FRAGMENTS).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .arg("persisted-manifest")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn trusted_app(introspection: bool) -> (TestApp, Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_for(dir.path());
    let file = dir.path().join("manifest.json");
    std::fs::write(&file, manifest.to_string()).unwrap();
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.persisted_operations_file = Some(file);
    config.persisted_operations_introspection = introspection;
    (spawn_app_with(db, config).await, manifest, dir)
}

fn operation<'a>(manifest: &'a Value, name: &str) -> &'a Value {
    manifest["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {manifest}"))
}

#[tokio::test]
async fn the_manifest_command_prints_apollos_format() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_for(dir.path());
    assert_eq!(manifest["format"], "apollo-persisted-query-manifest");
    assert_eq!(manifest["version"], 1);
    let incident = operation(&manifest, "Incident");
    assert_eq!(incident["type"], "query");
    assert_eq!(
        incident["body"],
        "query Incident($id: UUID!) {\n  incident(id: $id) { ...Card }\n}\n\nfragment Card on Incident { title status }"
    );
    assert_eq!(incident["id"], sha256(incident["body"].as_str().unwrap()));
    assert_eq!(operation(&manifest, "Timeline")["type"], "subscription");

    let failed = std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .arg("persisted-manifest")
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("cannot read the folder"));
}

#[tokio::test]
async fn trusted_documents_mode_runs_only_listed_operations_on_every_transport() {
    let (app, manifest, _dir) = trusted_app(false).await;
    let alice = app.responder();
    // The incident is created with the domain directly: createIncident is not in the manifest.
    let (_, body) = post(
        &app,
        &alice.token,
        json!({ "query": "mutation { createIncident(input: { title: \"x\" }) { id } }" }),
    )
    .await;
    assert_eq!(
        code(&body["errors"][0]),
        "PERSISTED_QUERY_NOT_ALLOWED",
        "{body}"
    );
    let incident = operation(&manifest, "Incident");
    let id_hash = incident["id"].as_str().unwrap();

    // Listed: by id (POST and GET) and by its exact text.
    let unknown = uuid::Uuid::new_v4().to_string();
    let vars = json!({ "id": unknown });
    let (_, body) = post(
        &app,
        &alice.token,
        json!({ "variables": vars, "extensions": apq(id_hash) }),
    )
    .await;
    assert_eq!(body["data"]["incident"], Value::Null, "{body}");
    assert_eq!(code(&body["errors"][0]), "NOT_FOUND", "ran: {body}");
    let (status, _, body) = get_hash(&app, &alice.token, id_hash, vars.clone()).await;
    assert_eq!((status, code(&body["errors"][0])), (200, "NOT_FOUND"));
    let (_, body) = post(
        &app,
        &alice.token,
        json!({ "query": incident["body"], "variables": vars }),
    )
    .await;
    assert_eq!(code(&body["errors"][0]), "NOT_FOUND", "{body}");

    // Not listed: an unknown id is refused (no APQ retry), and so is any other text.
    let (status, body) = post(
        &app,
        &alice.token,
        json!({ "extensions": apq(&sha256("{ viewer { role } }")) }),
    )
    .await;
    assert_eq!(
        (status, code(&body["errors"][0])),
        (400, "PERSISTED_QUERY_NOT_ALLOWED")
    );
    let (_, body) = post(
        &app,
        &alice.token,
        json!({ "query": "{ viewer { role } }", "extensions": apq(&sha256("{ viewer { role } }")) }),
    )
    .await;
    assert_eq!(code(&body["errors"][0]), "PERSISTED_QUERY_NOT_ALLOWED");
    let (_, body) = post(
        &app,
        &alice.token,
        json!({ "query": "{ __schema { queryType { name } } }" }),
    )
    .await;
    assert_eq!(code(&body["errors"][0]), "PERSISTED_QUERY_NOT_ALLOWED");
    let graphiql = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(graphiql.status(), 404);

    // WebSocket: an unlisted subscription is an `error` message; the listed one by id runs.
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe("1", EVENTS_SUBSCRIPTION, json!({ "id": unknown }))
        .await;
    let message = ws.next_message().await;
    assert_eq!(message["type"], "error");
    assert_eq!(code(&message["payload"][0]), "PERSISTED_QUERY_NOT_ALLOWED");
    let timeline = operation(&manifest, "Timeline")["id"].as_str().unwrap();
    ws.send(json!({ "type": "subscribe", "id": "2", "payload": { "variables": { "id": unknown }, "extensions": apq(timeline) } }))
        .await;
    let message = ws.next_message().await;
    assert_eq!(
        code(&message["payload"]["errors"][0]),
        "NOT_FOUND",
        "ran: {message}"
    );

    // SSE: the same refusal inside the stream.
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("accept", "text/event-stream")
        .bearer_auth(&alice.token)
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .unwrap();
    let mut sse = crate::sse::SseReader::new(response);
    let (_, data) = sse.next().await;
    assert_eq!(code(&data["errors"][0]), "PERSISTED_QUERY_NOT_ALLOWED");
}

#[tokio::test]
async fn trusted_documents_mode_can_keep_introspection_and_graphiql() {
    let (app, _, _dir) = trusted_app(true).await;
    let alice = app.responder();
    let (_, body) = post(
        &app,
        &alice.token,
        json!({ "query": "{ __schema { queryType { name } } }" }),
    )
    .await;
    assert_eq!(
        body["data"]["__schema"]["queryType"]["name"], "Query",
        "{body}"
    );
    // Only introspection: a document mixing in data fields is still refused.
    let (_, body) = post(
        &app,
        &alice.token,
        json!({ "query": "{ __typename viewer { role } }" }),
    )
    .await;
    assert_eq!(code(&body["errors"][0]), "PERSISTED_QUERY_NOT_ALLOWED");
    let graphiql = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(graphiql.status(), 200);
}

#[tokio::test]
async fn a_manifest_that_is_not_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifest.json");
    std::fs::write(
        &file,
        r#"{"format":"something-else","version":1,"operations":[]}"#,
    )
    .unwrap();
    let (_db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.persisted_operations_file = Some(file);
    let error = incidentd::app::Application::build(config)
        .await
        .err()
        .expect("the start fails");
    assert!(
        format!("{error:#}").contains("not a persisted-query manifest"),
        "{error:#}"
    );
}

/// A GET with `extensions` and the given `Accept`, as a proxy might repeat it.
async fn get_with(app: &TestApp, token: &str, accept: &str, extensions: Value) -> (u16, Value) {
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[("extensions", extensions.to_string())])
        .header("accept", accept)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `request` runs `{ incidents { totalCount } }`, as text or by id.
async fn incident_count(app: &TestApp, token: &str, request: Value) -> i64 {
    let (_, body) = post(app, token, request).await;
    body["data"]["incidents"]["totalCount"]
        .as_i64()
        .unwrap_or_else(|| panic!("{body}"))
}

/// Whatever the `Accept` (JSON or an event stream) and wherever the document comes from (an APQ
/// hash, a manifest id), a GET never runs a mutation: 405 in the GraphQL error shape, nothing
/// written.
#[tokio::test]
async fn a_mutation_behind_a_hash_is_refused_on_every_get() {
    const ACCEPTS: [&str; 3] = [
        "application/json",
        "application/graphql-response+json",
        "text/event-stream",
    ];
    let app = spawn_app().await;
    let alice = app.responder();
    let mutation = "mutation { createIncident(input: { title: \"via GET\" }) { id } }";
    let hash = sha256(mutation);
    let (_, body) = post(
        &app,
        &alice.token,
        json!({ "query": mutation, "extensions": apq(&hash) }),
    )
    .await;
    assert!(body["data"]["createIncident"]["id"].is_string(), "{body}");
    for accept in ACCEPTS {
        let (status, body) = get_with(&app, &alice.token, accept, apq(&hash)).await;
        assert_eq!(status, 405, "{accept}: {body}");
        assert_eq!(code(&body["errors"][0]), "BAD_REQUEST", "{accept}: {body}");
    }
    let count = json!({ "query": "{ incidents { totalCount } }" });
    assert_eq!(incident_count(&app, &alice.token, count).await, 1);

    // Trusted-documents mode, with the mutation in the manifest.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("declare.graphql"),
        "mutation Declare { createIncident(input: { title: \"listed\" }) { id } }\n\
         query Count { incidents { totalCount } }\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .arg("persisted-manifest")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let file = dir.path().join("manifest.json");
    std::fs::write(&file, &output.stdout).unwrap();
    let manifest: Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = operation(&manifest, "Declare")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.persisted_operations_file = Some(file);
    config.persisted_operations_introspection = true;
    let trusted = spawn_app_with(db, config).await;
    let bob = trusted.responder();
    for accept in ACCEPTS {
        let (status, body) = get_with(&trusted, &bob.token, accept, apq(&id)).await;
        assert_eq!(status, 405, "{accept}: {body}");
    }
    // Over POST the listed mutation runs: the refusal above was the method's, not the manifest's.
    let (_, body) = post(&trusted, &bob.token, json!({ "extensions": apq(&id) })).await;
    assert!(body["data"]["createIncident"]["id"].is_string(), "{body}");
    let count = operation(&manifest, "Count")["id"].as_str().unwrap();
    assert_eq!(
        incident_count(&trusted, &bob.token, json!({ "extensions": apq(count) })).await,
        1
    );
}

/// A document is stored only once it would run: one that fails validation (or a limit) leaves
/// its hash unknown, so the hash answers `PERSISTED_QUERY_NOT_FOUND`, not the old error.
#[tokio::test]
async fn apq_stores_only_documents_that_pass_the_checks() {
    let app = spawn_app().await;
    let alice = app.responder();
    for invalid in [
        "{ noSuchField }",
        "query($id: UUID!) { incident(id: $id) { noSuchField } }",
        "{ viewer { role } ",
    ] {
        let hash = sha256(invalid);
        let (_, body) = post(
            &app,
            &alice.token,
            json!({ "query": invalid, "extensions": apq(&hash) }),
        )
        .await;
        assert_eq!(
            code(&body["errors"][0]),
            "BAD_USER_INPUT",
            "{invalid}: {body}"
        );
        let (status, body) = post(&app, &alice.token, json!({ "extensions": apq(&hash) })).await;
        assert_eq!(
            (status, code(&body["errors"][0])),
            (200, "PERSISTED_QUERY_NOT_FOUND"),
            "{invalid}: {body}"
        );
    }
}

/// The hashes in the APQ store, with when each was last used, read from the database itself.
async fn stored_hashes(database_url: &str) -> std::collections::HashMap<String, String> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(database_url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT sha256, CAST(last_used_at AS TEXT) AS used FROM persisted_queries",
        ))
        .await
        .unwrap();
    let stored = rows
        .iter()
        .map(|row| {
            let sha: String = row.try_get("", "sha256").unwrap();
            let used: String = row.try_get("", "used").unwrap();
            (sha, used)
        })
        .collect();
    db.close().await.ok();
    stored
}

/// The store keeps at most `--apq-max-bytes-per-org` of one organization's documents and
/// `--apq-max-bytes` in all, evicting the least recently used: a flood from one organization
/// evicts its own documents, never another's, and the store never outgrows its bounds.
#[tokio::test]
async fn apq_is_bounded_per_organization_and_in_total_by_least_recent_use() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.apq_max_bytes_per_org = 1_000;
    config.apq_max_bytes = 1_500;
    let app = spawn_app_with(db, config.clone()).await;
    let (alice, mallory) = (app.responder(), app.responder());
    // Documents of about 200 bytes, distinct per `n`: four fit in an organization's share.
    let document = |n: usize| {
        format!(
            "query Q{n} {{ viewer {{ role }} {} }}",
            "__typename ".repeat(16)
        )
    };
    let hash = |n: usize| sha256(&document(n));
    assert!(4 * document(100).len() <= 1_000 && 5 * document(0).len() > 1_000);
    assert!(8 * document(0).len() > 1_500 && 7 * document(100).len() <= 1_500);
    let register = |caller: &crate::helpers::Caller, n: usize| {
        let text = document(n);
        let body = json!({ "query": text, "extensions": apq(&sha256(&text)) });
        let (token, app) = (caller.token.clone(), &app);
        async move {
            let (_, body) = post(app, &token, body).await;
            assert_eq!(body["data"]["viewer"]["role"], "responder", "{body}");
        }
    };
    let bytes = |stored: &std::collections::HashMap<String, String>| -> usize {
        (0..6)
            .chain(100..130)
            .filter(|n| stored.contains_key(&hash(*n)))
            .map(|n| document(n).len())
            .sum()
    };

    // Alice's two documents, then a flood of Mallory's: Mallory stays within its own share,
    // keeping its most recent documents.
    register(&alice, 0).await;
    register(&alice, 1).await;
    for n in 100..130 {
        register(&mallory, n).await;
    }
    let stored = stored_hashes(&app.database_url).await;
    assert!(stored.contains_key(&hash(0)) && stored.contains_key(&hash(1)));
    let mallorys: Vec<bool> = (100..130).map(|n| stored.contains_key(&hash(n))).collect();
    assert_eq!(mallorys.iter().filter(|k| **k).count(), 4, "{mallorys:?}");
    assert!(mallorys[26..].iter().all(|k| *k), "{mallorys:?}");

    // Alice's first document is used again on a replica that has not seen it: it becomes
    // more recent than her second.
    let replica = spawn_app_with(TestDb::create().await.0, config).await;
    let (_, body) = post(
        &replica,
        &alice.token,
        json!({ "extensions": apq(&hash(0)) }),
    )
    .await;
    assert_eq!(body["data"]["viewer"]["role"], "responder", "{body}");
    let touched = async {
        loop {
            let stored = stored_hashes(&app.database_url).await;
            if stored[&hash(0)] > stored[&hash(1)] {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(crate::helpers::WAIT, touched)
        .await
        .expect("the use is recorded");

    // Three more of Alice's: past her share her least recently used one (the second) goes;
    // past the total, Mallory's least recently used one goes.
    for n in 2..5 {
        register(&alice, n).await;
    }
    let stored = stored_hashes(&app.database_url).await;
    let alices: Vec<bool> = (0..5).map(|n| stored.contains_key(&hash(n))).collect();
    assert_eq!(alices, [true, false, true, true, true]);
    let mallorys: Vec<bool> = (100..130).map(|n| stored.contains_key(&hash(n))).collect();
    assert_eq!(mallorys.iter().filter(|k| **k).count(), 3, "{mallorys:?}");
    assert!(mallorys[27..].iter().all(|k| *k), "{mallorys:?}");
    assert!(bytes(&stored) <= 1_500, "{} bytes kept", bytes(&stored));
    assert_eq!(stored.len(), 7);
}
