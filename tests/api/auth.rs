//! Identity and roles: bearer tokens, the three roles, dev mode and `incidentd token`.

use incidentd::auth::{DEV_ORG, DEV_USER};
use incidentd::incident::identity::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Caller, TEST_SECRET, TestApp, TestDb, code, spawn_app, spawn_app_with};

const VIEWER_QUERY: &str = "{ viewer { userId organizationId role } }";

/// Signs arbitrary claims with HS256.
fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token signs")
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// POSTs `{ viewer { … } }` with a raw `Authorization` header value (or none).
async fn with_authorization(app: &TestApp, authorization: Option<&str>) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": VIEWER_QUERY }));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON body"))
}

fn assert_unauthenticated(what: &str, (status, body): &(u16, Value)) {
    assert_eq!(*status, 401, "{what}: {body}");
    assert_eq!(
        code(&body["errors"][0]),
        "UNAUTHENTICATED",
        "{what}: {body}"
    );
    assert!(
        body.get("data").is_none_or(Value::is_null),
        "{what}: no data: {body}"
    );
}

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthenticated() {
    let app = spawn_app().await;
    let (org, user) = (Uuid::new_v4(), Uuid::new_v4());
    let valid = |secret: &str| {
        sign(
            &json!({ "sub": user, "org": org, "role": "admin", "exp": now() + 600 }),
            secret,
        )
    };

    // The control: the same request with a good token succeeds.
    let good = with_authorization(&app, Some(&format!("Bearer {}", valid(TEST_SECRET)))).await;
    assert_eq!(good.0, 200, "{}", good.1);
    assert_eq!(good.1["data"]["viewer"]["organizationId"], org.to_string());

    assert_unauthenticated("no header", &with_authorization(&app, None).await);
    assert_unauthenticated(
        "not a bearer scheme",
        &with_authorization(&app, Some(&format!("Basic {}", valid(TEST_SECRET)))).await,
    );
    assert_unauthenticated(
        "garbage",
        &with_authorization(&app, Some("Bearer not.a.jwt")).await,
    );
    assert_unauthenticated(
        "another secret",
        &with_authorization(
            &app,
            Some(&format!(
                "Bearer {}",
                valid("some-other-secret-that-is-long-enough-too!")
            )),
        )
        .await,
    );
    let cases = [
        (
            "expired beyond the leeway",
            json!({ "sub": user, "org": org, "role": "admin", "exp": now() - 120 }),
        ),
        (
            "non-UUID org",
            json!({ "sub": user, "org": "acme", "role": "admin", "exp": now() + 600 }),
        ),
        (
            "no org",
            json!({ "sub": user, "role": "admin", "exp": now() + 600 }),
        ),
        (
            "no exp",
            json!({ "sub": user, "org": org, "role": "admin" }),
        ),
        (
            "non-UUID sub",
            json!({ "sub": "alice", "org": org, "role": "admin", "exp": now() + 600 }),
        ),
    ];
    for (what, claims) in cases {
        let token = sign(&claims, TEST_SECRET);
        assert_unauthenticated(
            what,
            &with_authorization(&app, Some(&format!("Bearer {token}"))).await,
        );
    }

    // A mutation without a token writes nothing.
    let (status, body) = app
        .post(
            None,
            "mutation { createIncident(input: { title: \"anonymous\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(code(&body["errors"][0]), "UNAUTHENTICATED");
    let admin = app.caller(org, Role::Admin);
    let data = app
        .ok(&admin, "{ incidents { totalCount } }", json!({}))
        .await;
    assert_eq!(data["incidents"]["totalCount"], 0);
}

#[tokio::test]
async fn viewer_returns_the_claims_of_the_token() {
    let app = spawn_app().await;
    let org = Uuid::new_v4();
    for (role, name) in [
        (Role::Viewer, "viewer"),
        (Role::Responder, "responder"),
        (Role::Admin, "admin"),
    ] {
        let caller = app.caller(org, role);
        let data = app.ok(&caller, VIEWER_QUERY, json!({})).await;
        assert_eq!(
            data["viewer"],
            json!({ "userId": caller.user, "organizationId": org, "role": name })
        );
    }
}

/// Everything a responder of `org` can see about its organization, audit log included.
async fn snapshot(app: &TestApp, org: Uuid) -> Value {
    let admin = app.caller(org, Role::Admin);
    app.ok(
        &admin,
        "{ incidents(first: 100) { totalCount nodes { id title status severity linkedTicketIds updatedAt resolvedAt events(first: 100) { totalCount nodes { id } } postmortem { id rootCause actionItems { title } updatedAt } } } postmortems { totalCount } auditEvents(first: 100) { totalCount nodes { id } } }",
        json!({}),
    )
    .await
}

#[tokio::test]
async fn a_viewer_can_run_no_mutation_and_writes_nothing() {
    let app = spawn_app().await;
    let responder = app.responder();
    let viewer = app.caller(responder.org, Role::Viewer);
    let plain = app
        .create_incident(&responder, json!({ "title": "no postmortem yet" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let with_pm = app
        .create_incident(&responder, json!({ "title": "has a postmortem" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.ok(
        &responder,
        "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { rootCause: \"original\" }) { id } }",
        json!({ "id": with_pm }),
    )
    .await;
    let before = snapshot(&app, responder.org).await;
    assert_eq!(before["incidents"]["totalCount"], 2);

    let mutations = [
        (
            "createIncident",
            "mutation { createIncident(input: { title: \"by a viewer\" }) { id } }",
            json!({}),
        ),
        (
            "updateIncident",
            "mutation($id: UUID!) { updateIncident(id: $id, input: { title: \"renamed\", severity: SEV1 }) { id } }",
            json!({ "id": plain }),
        ),
        (
            "transitionIncident",
            "mutation($id: UUID!) { transitionIncident(id: $id, to: RESOLVED) { id } }",
            json!({ "id": plain }),
        ),
        (
            "addIncidentEvent",
            "mutation($id: UUID!) { addIncidentEvent(incidentId: $id, input: { content: \"hi\" }) { id } }",
            json!({ "id": plain }),
        ),
        (
            "createPostmortem",
            "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { rootCause: \"viewer\" }) { id } }",
            json!({ "id": plain }),
        ),
        (
            "updatePostmortem",
            "mutation($id: UUID!) { updatePostmortem(incidentId: $id, input: { rootCause: \"viewer\", actionItems: [{ title: \"x\" }] }) { id } }",
            json!({ "id": with_pm }),
        ),
    ];
    for (name, query, variables) in &mutations {
        let (status, body) = app
            .post(Some(&viewer.token), query, variables.clone())
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(code(&body["errors"][0]), "FORBIDDEN", "{name}: {body}");
        assert!(body["data"].is_null(), "{name}: {body}");
    }
    assert_eq!(
        snapshot(&app, responder.org).await,
        before,
        "a viewer's mutations changed something"
    );

    // The control: the same mutations succeed for a responder.
    for (name, query, variables) in &mutations {
        let data = app.ok(&responder, query, variables.clone()).await;
        assert!(data[name]["id"].is_string(), "{name}: {data}");
    }
    assert_ne!(snapshot(&app, responder.org).await, before);
}

#[tokio::test]
async fn only_an_admin_reads_the_audit_log() {
    let app = spawn_app().await;
    let responder = app.responder();
    let id = app
        .create_incident(&responder, json!({ "title": "t" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let query = "query($id: UUID) { auditEvents(entityId: $id) { totalCount nodes { action } } }";
    for role in [Role::Viewer, Role::Responder] {
        let caller = app.caller(responder.org, role);
        let (status, body) = app
            .post(Some(&caller.token), query, json!({ "id": id }))
            .await;
        assert_eq!(status, 200, "{role:?}: {body}");
        assert_eq!(code(&body["errors"][0]), "FORBIDDEN", "{role:?}: {body}");
        assert!(body["data"].is_null(), "{role:?}: {body}");
        assert!(!body.to_string().contains("incident_created"), "{body}");
    }
    let admin = app.caller(responder.org, Role::Admin);
    let data = app.ok(&admin, query, json!({ "id": id })).await;
    assert_eq!(
        data["auditEvents"],
        json!({ "totalCount": 1, "nodes": [{ "action": "incident_created" }] })
    );
}

#[tokio::test]
async fn a_token_without_a_role_is_a_viewer() {
    let app = spawn_app().await;
    let responder = app.responder();
    app.create_incident(&responder, json!({ "title": "visible" }))
        .await;
    let user = Uuid::new_v4();
    let token = sign(
        &json!({ "sub": user, "org": responder.org, "exp": now() + 600 }),
        TEST_SECRET,
    );
    let roleless = Caller {
        org: responder.org,
        user,
        token,
    };

    let data = app
        .ok(
            &roleless,
            "{ viewer { userId organizationId role } incidents { totalCount nodes { title } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["viewer"],
        json!({ "userId": user, "organizationId": responder.org, "role": "viewer" })
    );
    assert_eq!(
        data["incidents"],
        json!({ "totalCount": 1, "nodes": [{ "title": "visible" }] })
    );

    let error = app
        .err(
            &roleless,
            "mutation { createIncident(input: { title: \"no\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&error), "FORBIDDEN");
    let error = app
        .err(&roleless, "{ auditEvents { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&error), "FORBIDDEN");
    let data = app
        .ok(&responder, "{ incidents { totalCount } }", json!({}))
        .await;
    assert_eq!(data["incidents"]["totalCount"], 1);
}

#[tokio::test]
async fn dev_mode_refuses_a_non_loopback_address() {
    let (_db, url) = TestDb::create().await;
    let mut config = incidentd::config::Config::for_database(&url);
    config.listen = "0.0.0.0:0".parse().unwrap();
    config.jwt_secret = None;
    config.jwt_public_key_file = None;
    let error = match incidentd::app::Application::build(config).await {
        Ok(_) => panic!("dev mode must not listen on 0.0.0.0"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("INCIDENTD_JWT_SECRET") && error.contains("INCIDENTD_JWT_PUBLIC_KEY_FILE"),
        "the message names the JWT settings: {error}"
    );
    assert!(error.contains("0.0.0.0"), "{error}");
}

#[tokio::test]
async fn dev_mode_on_loopback_hands_out_a_working_token() {
    let (db, url) = TestDb::create().await;
    let mut config = incidentd::config::Config::for_database(&url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.jwt_secret = None;
    config.jwt_public_key_file = None;
    let app = spawn_app_with(db, config).await;
    let token = app
        .state
        .graphql
        .dev_token
        .clone()
        .expect("dev mode has a dev token");
    let dev = Caller {
        org: DEV_ORG,
        user: DEV_USER,
        token,
    };
    let data = app.ok(&dev, VIEWER_QUERY, json!({})).await;
    assert_eq!(data["viewer"]["organizationId"], DEV_ORG.to_string());
    assert_eq!(data["viewer"]["userId"], DEV_USER.to_string());
    let incident = app
        .create_incident(&dev, json!({ "title": "dev mode works" }))
        .await;
    assert_eq!(incident["organizationId"], DEV_ORG.to_string());

    // A token signed with any other secret is still refused in dev mode.
    let foreign = sign(
        &json!({ "sub": DEV_USER, "org": DEV_ORG, "role": "admin", "exp": now() + 600 }),
        TEST_SECRET,
    );
    assert_unauthenticated(
        "foreign secret in dev mode",
        &with_authorization(&app, Some(&format!("Bearer {foreign}"))).await,
    );

    // With a secret configured there is no dev token.
    let configured = spawn_app().await;
    assert!(configured.state.graphql.dev_token.is_none());
}

/// Runs `incidentd token …` with `secret` in the environment; returns its standard output.
fn mint_with_binary(secret: Option<&str>, org: Uuid, user: Uuid, role: &str) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"));
    command
        .args([
            "token",
            "--org",
            &org.to_string(),
            "--user",
            &user.to_string(),
        ])
        .args(["--role", role, "--ttl", "10m"])
        .env_remove("INCIDENTD_JWT_SECRET")
        .env_remove("INCIDENTD_JWT_PUBLIC_KEY_FILE")
        .env_remove("INCIDENTD_JWT_ISSUER")
        .env_remove("INCIDENTD_JWT_AUDIENCE");
    if let Some(secret) = secret {
        command.env("INCIDENTD_JWT_SECRET", secret);
    }
    let output = command.output().expect("incidentd runs");
    assert!(
        output.status.success(),
        "incidentd token failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn the_token_subcommand_mints_a_token_the_server_accepts() {
    let app = spawn_app().await;
    let (org, user) = (Uuid::new_v4(), Uuid::new_v4());
    let token = mint_with_binary(Some(TEST_SECRET), org, user, "admin");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let caller = Caller { org, user, token };
    let data = app.ok(&caller, VIEWER_QUERY, json!({})).await;
    assert_eq!(
        data["viewer"],
        json!({ "userId": user, "organizationId": org, "role": "admin" })
    );
    app.ok(&caller, "{ auditEvents { totalCount } }", json!({}))
        .await;

    let viewer = Caller {
        token: mint_with_binary(Some(TEST_SECRET), org, user, "viewer"),
        ..caller.clone()
    };
    let data = app.ok(&viewer, VIEWER_QUERY, json!({})).await;
    assert_eq!(data["viewer"]["role"], "viewer");

    // Minted with a different secret (here: the dev secret), the server refuses it.
    let dev_token = mint_with_binary(None, org, user, "admin");
    assert_unauthenticated(
        "a token minted with the dev secret",
        &with_authorization(&app, Some(&format!("Bearer {dev_token}"))).await,
    );
}

/// Dev mode serves loopback host names only: a page whose name was rebound to 127.0.0.1 (DNS
/// rebinding) gets 421, for GraphiQL (which carries the admin dev token), the API and the
/// WebSocket upgrade alike.
#[tokio::test]
async fn dev_mode_refuses_foreign_host_names() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (db, url) = TestDb::create().await;
    let mut config = incidentd::config::Config::for_database(&url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.jwt_secret = None;
    config.jwt_public_key_file = None;
    let app = spawn_app_with(db, config).await;
    let port = app.addr.port();
    let get = |host: String| {
        app.client
            .get(app.url("/graphql"))
            .header("host", host)
            .header("accept", "text/html")
            .send()
    };
    for host in [format!("rebound.example:{port}"), "rebound.example".into()] {
        let response = get(host.clone()).await.unwrap();
        assert_eq!(response.status(), 421, "{host}");
        assert!(!response.text().await.unwrap().contains("Bearer"), "{host}");
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let response = get(host.clone()).await.unwrap();
        assert_eq!(response.status(), 200, "{host}");
        assert!(response.text().await.unwrap().contains("Bearer"), "{host}");
    }
    let mut request = format!("ws://{}/graphql", app.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    request
        .headers_mut()
        .insert("host", format!("rebound.example:{port}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 421)
        }
        other => panic!("the upgrade must be refused: {other:?}"),
    }
    // With a JWT secret configured (not dev mode), host names are the proxy's business.
    let configured = spawn_app().await;
    let response = configured
        .client
        .get(configured.url("/healthz"))
        .header("host", "incidents.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
