//! `spawn_app()` and the small client the tests speak GraphQL through.

use std::net::SocketAddr;
use std::time::Duration;

use incidentd::app::AppState;
use incidentd::config::Config;
use incidentd::incident::identity::Role;
pub use incidentd_test_support::TestDb;
use incidentd_test_support::TestServer;
pub use incidentd_test_support::ws::{EVENTS_SUBSCRIPTION, WAIT, Ws, WsEvent, WsStream};
use serde_json::{Value, json};
use uuid::Uuid;

pub const TEST_SECRET: &str = "test-secret-that-is-long-enough-for-hs256!";

/// A server on a database of its own, and a client to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
    // Before `db`: fields drop in order, so the server is told to stop before its database goes.
    server: TestServer,
    pub db: TestDb,
    pub database_url: String,
}

pub fn test_config(database_url: &str) -> Config {
    let mut config = incidentd_test_support::config(database_url, TEST_SECRET);
    config.db_max_connections = 10;
    // Correctness tests run 50 writers at one incident on a loaded machine; the tests of the
    // lock timeout itself set it short.
    config.db_lock_timeout = Duration::from_secs(20);
    // The raw protocol tests read every message; server pings are tested on their own.
    config.ws_ping_interval = Duration::ZERO;
    config
}

pub async fn spawn_app() -> TestApp {
    let (db, url) = TestDb::create().await;
    spawn_app_with(db, test_config(&url)).await
}

/// A server for tests that count its statements: its webhook worker is stopped, since the
/// worker's outbox polls (every second, and after each write) would be counted too.
pub async fn spawn_counting_app() -> TestApp {
    let app = spawn_app().await;
    app.state.webhooks.stop();
    app
}

pub async fn spawn_app_with(db: TestDb, config: Config) -> TestApp {
    spawn_app_with_clock(
        db,
        config,
        std::sync::Arc::new(incidentd::webhook::SystemClock),
    )
    .await
}

/// As `spawn_app_with`, with the clock the webhook worker schedules by.
pub async fn spawn_app_with_clock(
    db: TestDb,
    config: Config,
    clock: std::sync::Arc<dyn incidentd::webhook::Clock>,
) -> TestApp {
    let database_url = config.database_url.expose().to_string();
    let server = TestServer::start_with_clock(config, clock).await;
    TestApp {
        addr: server.addr,
        state: server.state.clone(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        server,
        db,
        database_url,
    }
}

/// A caller: a user in an organization with a role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub org: Uuid,
    pub user: Uuid,
    pub token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn caller(&self, org: Uuid, role: Role) -> Caller {
        let user = Uuid::new_v4();
        let token = self
            .state
            .graphql
            .auth
            .mint(org, user, role, Duration::from_secs(3600))
            .unwrap();
        Caller { org, user, token }
    }

    /// A caller whose token names them (the `name` and `email` claims).
    pub fn named(&self, org: Uuid, role: Role, name: &str, email: Option<&str>) -> Caller {
        self.named_as(org, Uuid::new_v4(), role, name, email)
    }

    /// A token for `user` of `org` that names them.
    pub fn named_as(
        &self,
        org: Uuid,
        user: Uuid,
        role: Role,
        name: &str,
        email: Option<&str>,
    ) -> Caller {
        let profile = incidentd::auth::Profile {
            name: Some(name.to_string()),
            email: email.map(str::to_string),
        };
        let token = self
            .state
            .graphql
            .auth
            .mint_for(org, user, role, Duration::from_secs(3600), profile)
            .unwrap();
        Caller { org, user, token }
    }

    /// A responder in a fresh organization.
    pub fn responder(&self) -> Caller {
        self.caller(Uuid::new_v4(), Role::Responder)
    }

    /// POSTs a GraphQL operation; returns the HTTP status and the JSON body.
    pub async fn post(&self, token: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Runs an operation that must succeed; returns `data`.
    pub async fn ok(&self, caller: &Caller, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(Some(&caller.token), query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Runs an operation that must fail; returns the first error.
    pub async fn err(&self, caller: &Caller, query: &str, variables: Value) -> Value {
        let (_, body) = self.post(Some(&caller.token), query, variables).await;
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("expected errors: {body}"));
        assert!(!errors.is_empty(), "expected errors: {body}");
        errors[0].clone()
    }

    pub async fn create_incident(&self, caller: &Caller, input: Value) -> Value {
        let data = self
            .ok(
                caller,
                "mutation($input: CreateIncidentInput!) { createIncident(input: $input) { id title status severity startedAt resolvedAt linkedTicketIds linkedProblemId organizationId createdBy } }",
                json!({ "input": input }),
            )
            .await;
        data["createIncident"].clone()
    }

    pub async fn add_event(&self, caller: &Caller, incident_id: &str, content: &str) -> Value {
        let data = self
            .ok(
                caller,
                "mutation($id: UUID!, $input: AddIncidentEventInput!) { addIncidentEvent(incidentId: $id, input: $input) { id sequence eventType content incidentId } }",
                json!({ "id": incident_id, "input": { "content": content } }),
            )
            .await;
        data["addIncidentEvent"].clone()
    }

    pub async fn transition(
        &self,
        caller: &Caller,
        id: &str,
        to: &str,
        note: Option<&str>,
    ) -> (u16, Value) {
        self.post(
            Some(&caller.token),
            "mutation($id: UUID!, $to: IncidentStatus!, $note: String) { transitionIncident(id: $id, to: $to, note: $note) { id status resolvedAt startedAt allowedTransitions } }",
            json!({ "id": id, "to": to, "note": note }),
        )
        .await
    }

    /// All events of an incident (sequence, type) in timeline order.
    pub async fn events(&self, caller: &Caller, id: &str) -> Vec<(i64, String)> {
        let data = self
            .ok(
                caller,
                "query($id: UUID!) { incident(id: $id) { events(first: 100) { nodes { sequence eventType } } } }",
                json!({ "id": id }),
            )
            .await;
        data["incident"]["events"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["sequence"].as_i64().unwrap(),
                    e["eventType"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Audit rows about an entity (needs an admin caller of the same organization).
    pub async fn audit(&self, org: Uuid, entity: &str) -> Vec<Value> {
        let admin = self.caller(org, Role::Admin);
        let data = self
            .ok(
                &admin,
                "query($id: UUID) { auditEvents(entityId: $id, first: 100) { nodes { action entityType entityId actorId changes } } }",
                json!({ "id": entity }),
            )
            .await;
        data["auditEvents"]["nodes"].as_array().unwrap().clone()
    }
}

pub fn code(error: &Value) -> &str {
    error["extensions"]["code"].as_str().unwrap_or("<no code>")
}

impl TestApp {
    /// Stops the server as SIGTERM would.
    pub fn shutdown(&mut self) {
        self.server.signal_stop();
    }
}

/// Terminates this database's sessions of one `application_name` (`incidentd` for the pool,
/// `incidentd-listener` for the change listener); returns how many it ended.
pub async fn terminate_backends(database_url: &str, application_name: &str) -> u64 {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(database_url).await.unwrap();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
            [application_name.into()],
        ))
        .await
        .unwrap();
    db.close().await.ok();
    rows.len() as u64
}

impl TestApp {
    /// Declares an incident titled `title`; returns its id.
    pub async fn new_incident(&self, caller: &Caller, title: &str) -> Uuid {
        self.create_incident(caller, json!({ "title": title }))
            .await["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// A caller in a fresh organization with `role`, whose token any replica started on
/// `database_url` by the tests (same secret) accepts.
pub fn replica_caller(database_url: &str, role: Role) -> Caller {
    let auth = incidentd::auth::Authenticator::new(&test_config(database_url).auth()).unwrap();
    let (org, user) = (Uuid::new_v4(), Uuid::new_v4());
    let token = auth
        .mint(org, user, role, Duration::from_secs(3600))
        .unwrap();
    Caller { org, user, token }
}

/// POSTs an operation to the server at `addr`; the HTTP status and the JSON body.
pub async fn gql(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<(u16, Value), reqwest::Error> {
    let response = client
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.json::<Value>().await?;
    Ok((status, body))
}

/// `incidentd_panics_total` as the server reports it on `/metrics` (the recorder is the
/// process's, so this counts the panics of every server in this test binary).
pub async fn panics(app: &TestApp) -> u64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("incidentd_panics_total"))
        .unwrap_or_else(|| panic!("/metrics shows incidentd_panics_total:\n{text}"));
    line.rsplit(' ').next().unwrap().trim().parse().unwrap()
}

/// No request panicked (hostile-input tests end with this).
pub async fn assert_no_panic(app: &TestApp) {
    assert_eq!(panics(app).await, 0, "a request panicked during the test");
}

/// A REST call by `caller`: the status and the JSON body (`Null` when the body is not JSON).
pub async fn rest(
    app: &TestApp,
    caller: &Caller,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method, app.url(path))
        .bearer_auth(&caller.token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}
