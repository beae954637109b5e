//! The change feed's dispatcher and listener: filters that let go, trouble that stays local
//! (a bad notification, a full queue), connections of its own, and a listener that notices a
//! dead connection and re-reads after every LISTEN.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use incidentd::incident::changes::{Announcement, ChangeKind, ChangeSink};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{
    Caller, EVENTS_SUBSCRIPTION, TestApp, TestDb, Ws, spawn_app, spawn_app_with, test_config,
};
use crate::subscriptions::{receive_sequences, write_event};

const FEED: &str = "subscription($filter: IncidentFilter) { incidentChanged(filter: $filter) { kind matchesFilter incident { id title status severity } } }";

/// Sends `ping` and waits for `pong`: the server has handled everything sent before (a
/// subscription registers with the change feed as it is handled).
async fn barrier(ws: &mut Ws) {
    ws.send(json!({ "type": "ping" })).await;
    let m = ws.next_message().await;
    assert_eq!(m["type"], "pong", "{m}");
}

async fn next_change(ws: &mut Ws) -> Value {
    let m = ws.next_message().await;
    assert_eq!(m["type"], "next", "{m}");
    assert!(m["payload"].get("errors").is_none(), "{m}");
    m["payload"]["data"]["incidentChanged"].clone()
}

async fn update(app: &TestApp, caller: &Caller, id: &str, input: Value) {
    app.ok(
        caller,
        "mutation($id: UUID!, $input: UpdateIncidentInput!) { updateIncident(id: $id, input: $input) { id } }",
        json!({ "id": id, "input": input }),
    )
    .await;
}

#[tokio::test]
async fn a_filtered_feed_lets_go_of_an_incident_that_leaves_the_filter() {
    let app = spawn_app().await;
    let alice = app.responder();
    let mut sev1 = Ws::ready(app.addr, &alice.token).await;
    sev1.subscribe("f", FEED, json!({ "filter": { "severity": ["SEV1"] } }))
        .await;
    barrier(&mut sev1).await;
    let mut open = Ws::ready(app.addr, &alice.token).await;
    open.subscribe("f", FEED, json!({ "filter": { "status": ["OPEN"] } }))
        .await;
    barrier(&mut open).await;

    let created = app
        .create_incident(&alice, json!({ "title": "db down", "severity": "SEV1" }))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let c = next_change(&mut sev1).await;
    assert_eq!(
        (c["kind"].as_str(), c["matchesFilter"].as_bool()),
        (Some("CREATED"), Some(true))
    );
    let c = next_change(&mut open).await;
    assert_eq!(
        (c["kind"].as_str(), c["matchesFilter"].as_bool()),
        (Some("CREATED"), Some(true))
    );

    // Lowered out of SEV1: delivered once, saying it no longer matches.
    update(&app, &alice, &id, json!({ "severity": "SEV3" })).await;
    let c = next_change(&mut sev1).await;
    assert_eq!(c["kind"], "UPDATED", "{c}");
    assert_eq!(c["matchesFilter"], false, "{c}");
    assert_eq!(c["incident"]["severity"], "SEV3");
    // A change outside the filter before and after is not delivered. The OPEN feed sees
    // them all, in commit order (a severity change adds its timeline event); once it has the
    // rename, the dispatcher is past it, so the next change cannot show in the rename's
    // delivery (the incident is delivered as read at dispatch).
    update(&app, &alice, &id, json!({ "title": "db slow" })).await;
    let mut kinds = vec![];
    for _ in 0..3 {
        let c = next_change(&mut open).await;
        assert_eq!(c["matchesFilter"], true, "{c}");
        kinds.push(c["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(kinds, ["EVENT_ADDED", "UPDATED", "UPDATED"]);
    // Back in SEV1: the severity change's timeline event, then the update; the rename was
    // not delivered.
    update(&app, &alice, &id, json!({ "severity": "SEV1" })).await;
    let c = next_change(&mut sev1).await;
    assert_eq!(
        (c["kind"].as_str(), c["matchesFilter"].as_bool()),
        (Some("EVENT_ADDED"), Some(true)),
        "{c}"
    );
    let c = next_change(&mut sev1).await;
    assert_eq!(
        (c["kind"].as_str(), c["matchesFilter"].as_bool()),
        (Some("UPDATED"), Some(true)),
        "{c}"
    );
    assert_eq!(c["incident"]["title"], "db slow");
    for _ in 0..2 {
        let c = next_change(&mut open).await;
        assert_eq!(c["matchesFilter"], true, "{c}");
    }

    // Resolving takes it out of `status: [OPEN]`: delivered with `matchesFilter: false`; an
    // event on the resolved incident is not delivered there any more.
    app.transition(&alice, &id, "MITIGATING", None).await;
    // (The transition's own timeline event is not delivered: the incident it shows is
    // already out of the filter, and the event did not take it out.)
    let c = next_change(&mut open).await;
    assert_eq!(
        (c["kind"].as_str(), c["matchesFilter"].as_bool()),
        (Some("STATUS_CHANGED"), Some(false)),
        "{c}"
    );
    let other = app.new_incident(&alice, "still open").await;
    write_event(&app, &alice, id.parse().unwrap(), "after it left").await;
    write_event(&app, &alice, other, "on an open one").await;
    let c = next_change(&mut open).await;
    assert_eq!(c["incident"]["id"], other.to_string(), "{c}");
    assert_eq!(c["kind"], "CREATED", "{c}");
    let c = next_change(&mut open).await;
    assert_eq!(
        (c["kind"].as_str(), c["incident"]["id"].as_str()),
        (Some("EVENT_ADDED"), Some(other.to_string().as_str())),
        "{c}"
    );

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("incidentd_live_dispatch_lag_seconds_bucket"),
        "the dispatch lag is measured"
    );
}

/// Announces changes as a writer's commit would: in-process on SQLite, by NOTIFY (from a
/// connection of the test's own) on PostgreSQL.
async fn announce(app: &TestApp, payload: &str) {
    if app.db.is_postgres() {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(&app.database_url).await.unwrap();
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_notify('incidentd_changes', $1)",
            [payload.into()],
        ))
        .await
        .unwrap();
        db.close().await.ok();
    } else if let Ok(list) = serde_json::from_str::<Vec<Announcement>>(payload) {
        app.state.graphql.hub.committed(list);
    }
}

/// A notification the dispatcher cannot use re-syncs only the organization it names; one that
/// names none is dropped. Other organizations' feeds never notice. (PostgreSQL: the bad
/// notification arrives by NOTIFY.)
#[tokio::test]
async fn a_bad_notification_resyncs_only_its_organization() {
    let app = spawn_app().await;
    if !app.db.is_postgres() {
        eprintln!("skipped: notifications travel by NOTIFY on PostgreSQL only");
        return;
    }
    let alice = app.responder();
    let bob = app.caller(
        Uuid::new_v4(),
        incidentd::incident::identity::Role::Responder,
    );
    let mut a = Ws::ready(app.addr, &alice.token).await;
    a.subscribe("f", FEED, json!({})).await;
    barrier(&mut a).await;
    let mut b = Ws::ready(app.addr, &bob.token).await;
    b.subscribe("f", FEED, json!({})).await;
    barrier(&mut b).await;

    announce(&app, "not ours at all").await;
    announce(
        &app,
        &json!([{ "o": alice.org, "i": "not-an-id", "k": "EVENT_ADDED" }]).to_string(),
    )
    .await;
    let m = a.next_message().await;
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "SUBSCRIBER_LAGGED",
        "{m}"
    );

    // Bob's feed carries on: his next change is the first thing it sees.
    let id = app.new_incident(&bob, "bob's").await;
    let c = next_change(&mut b).await;
    assert_eq!(
        (c["kind"].as_str(), c["incident"]["id"].as_str()),
        (Some("CREATED"), Some(id.to_string().as_str())),
        "{c}"
    );
}

/// When announcements arrive faster than the dispatcher drains its (bounded) queue, the
/// overflow is dropped and counted, and subscribers re-read: timelines from their cursors,
/// change feeds told `SUBSCRIBER_LAGGED`. (SQLite: the test announces in-process, faster than
/// the dispatcher can run on this single-threaded runtime.)
#[tokio::test]
async fn an_overflowing_queue_resyncs_instead_of_growing() {
    let (db, url) = TestDb::create().await;
    if db.is_postgres() {
        eprintln!("skipped: the in-process announcements of this test are SQLite's");
        return;
    }
    let mut config = test_config(&url);
    config.live_queue = 2;
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    let incident = app.new_incident(&alice, "hot").await;
    let mut feed = Ws::ready(app.addr, &alice.token).await;
    feed.subscribe("f", FEED, json!({})).await;
    barrier(&mut feed).await;
    let mut timeline = Ws::ready(app.addr, &alice.token).await;
    timeline
        .subscribe(
            "t",
            EVENTS_SUBSCRIPTION,
            json!({ "id": incident, "after": 0 }),
        )
        .await;
    barrier(&mut timeline).await;

    // Ten announcements with no await between them: the queue holds two.
    for _ in 0..10 {
        app.state.graphql.hub.committed(vec![Announcement {
            org_id: alice.org,
            incident_id: incident,
            kind: ChangeKind::PostmortemUpdated,
            sequence: None,
            audit: None,
        }]);
    }
    loop {
        let m = feed.next_message().await;
        assert_eq!(m["type"], "next", "{m}");
        if let Some(errors) = m["payload"].get("errors") {
            assert_eq!(errors[0]["extensions"]["code"], "SUBSCRIBER_LAGGED", "{m}");
            break;
        }
    }
    // The timeline re-read and carries on: the next event arrives once.
    let seq = write_event(&app, &alice, incident, "after the overflow").await;
    assert_eq!(receive_sequences(&mut timeline, "t", 1).await, vec![seq]);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("incidentd_live_dropped_total"),
        "the overflow is counted"
    );
}

/// The dispatcher reads on connections of its own: with every request-pool connection taken,
/// a change is still delivered (on a shared pool it would wait, fail, and end the feed).
#[tokio::test]
async fn the_dispatcher_does_not_wait_for_the_request_pool() {
    use sea_orm::TransactionTrait;
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.db_max_connections = 1;
    config.db_acquire_timeout = Duration::from_secs(2);
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    // Subscribed before the incident exists, and its creation read off the feed: on PostgreSQL
    // that NOTIFY may arrive late, and must not be taken for the announcement below.
    let mut feed = Ws::ready(app.addr, &alice.token).await;
    feed.subscribe("f", FEED, json!({})).await;
    barrier(&mut feed).await;
    let incident = app.new_incident(&alice, "busy pool").await;
    let created = next_change(&mut feed).await;
    assert_eq!(created["kind"], "CREATED", "{created}");

    let held = app.state.graphql.domain.db.conn().begin().await.unwrap();
    let payload = json!([{ "o": alice.org, "i": incident, "k": "POSTMORTEM_UPDATED" }]).to_string();
    announce(&app, &payload).await;
    let c = next_change(&mut feed).await;
    assert_eq!(
        (c["kind"].as_str(), c["incident"]["id"].as_str()),
        (
            Some("POSTMORTEM_UPDATED"),
            Some(incident.to_string().as_str())
        ),
        "{c}"
    );
    drop(held);
}

/// A TCP proxy on loopback that can refuse new connections and freeze the ones it carries
/// (stop forwarding, keep them open: what a NAT that forgot a connection looks like).
struct Proxy {
    addr: SocketAddr,
    refusing: Arc<Mutex<bool>>,
    freeze: Arc<Mutex<CancellationToken>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr, refusing: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refusing = Arc::new(Mutex::new(refusing));
        let freeze = Arc::new(Mutex::new(CancellationToken::new()));
        let frozen: Arc<Mutex<Vec<(TcpStream, TcpStream)>>> = Arc::default();
        let (r, f) = (refusing.clone(), freeze.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *r.lock().unwrap() {
                    drop(client);
                    continue;
                }
                let token = f.lock().unwrap().clone();
                let frozen = frozen.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = token.cancelled() => frozen.lock().unwrap().push((client, server)),
                    }
                });
            }
        });
        Proxy {
            addr,
            refusing,
            freeze,
            _task: task,
        }
    }

    fn open(&self) {
        *self.refusing.lock().unwrap() = false;
    }

    /// Freezes every connection carried so far; new ones are carried as before.
    fn freeze_existing(&self) {
        let mut token = self.freeze.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }

    /// `url` with its host and port replaced by the proxy's.
    fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let userinfo = authority
            .rsplit_once('@')
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}{}/{path}", self.addr)
    }
}

fn postgres_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    };
    use std::net::ToSocketAddrs;
    hostport.to_socket_addrs().unwrap().next().unwrap()
}

/// A PostgreSQL app whose listener (only) connects through a proxy, a subscriber on a new
/// incident's timeline registered, and the caller; `None` on SQLite (no listener).
async fn listener_behind_proxy(refusing: bool) -> Option<(TestApp, Proxy, Caller, Uuid, Ws)> {
    let (db, url) = TestDb::create().await;
    if !db.is_postgres() {
        eprintln!("skipped: the listener is PostgreSQL's");
        return None;
    }
    let proxy = Proxy::start(postgres_addr(&url), refusing).await;
    let mut config = test_config(&url);
    config.listen_database_url = Some(proxy.url(&url).as_str().into());
    config.listen_heartbeat = Duration::from_millis(500);
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    let incident = app.new_incident(&alice, "behind a proxy").await;
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe(
        "t",
        EVENTS_SUBSCRIPTION,
        json!({ "id": incident, "after": 0 }),
    )
    .await;
    barrier(&mut ws).await;
    Some((app, proxy, alice, incident, ws))
}

/// The listener's connection goes silent (no reset, no error: a NAT that forgot it). Its
/// heartbeat notices, it reconnects, and the subscriber re-reads the event it would have missed.
#[tokio::test]
async fn a_silently_dead_listener_is_noticed_and_nothing_is_missed() {
    let Some((app, proxy, alice, incident, mut ws)) = listener_behind_proxy(false).await else {
        return;
    };
    let first = write_event(&app, &alice, incident, "before").await;
    assert_eq!(receive_sequences(&mut ws, "t", 1).await, vec![first]);

    proxy.freeze_existing();
    // Committed while the listener's connection is silently dead: its NOTIFY is lost.
    let second = write_event(&app, &alice, incident, "while the listener is deaf").await;
    assert_eq!(receive_sequences(&mut ws, "t", 1).await, vec![second]);
}

/// A listener that only comes up after start-up (the database was unreachable from it) still
/// leads subscribers to what was committed meanwhile: every successful LISTEN, the first one
/// too, makes them re-read.
#[tokio::test]
async fn changes_committed_before_the_first_listen_are_not_missed() {
    let Some((app, proxy, alice, incident, mut ws)) = listener_behind_proxy(true).await else {
        return;
    };
    let seq = write_event(&app, &alice, incident, "nobody listens yet").await;
    proxy.open();
    assert_eq!(receive_sequences(&mut ws, "t", 1).await, vec![seq]);
}

/// Collects what the domain announces, so a test can hand several commits to the hub at once.
#[derive(Default)]
struct Collect(Mutex<Vec<Vec<Announcement>>>);

impl ChangeSink for Collect {
    fn within<'a>(
        &'a self,
        _txn: &'a sea_orm::DatabaseTransaction,
        _announcements: &'a [Announcement],
    ) -> futures_util::future::BoxFuture<'a, Result<(), sea_orm::DbErr>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn committed(&self, announcements: Vec<Announcement>) {
        self.0.lock().unwrap().push(announcements);
    }
}

/// Two updates read by the dispatcher in one batch, under a filter over two fields: the first
/// (SEV1 → SEV3) takes the incident out; the second (a rename) happens outside. Each update is
/// judged by its own "before" (the incident as read with the later updates undone), so the
/// first is delivered with `matchesFilter: false`. (SQLite: the commits are handed to the hub
/// in-process, back to back.)
#[tokio::test]
async fn updates_read_in_one_batch_are_each_judged_by_their_own_before() {
    use incidentd::incident::input::UpdateIncident;
    let app = spawn_app().await;
    if app.db.is_postgres() {
        eprintln!("skipped: the in-process announcements of this test are SQLite's");
        return;
    }
    let alice = app.responder();
    let created = app
        .create_incident(&alice, json!({ "title": "db down", "severity": "SEV1" }))
        .await;
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe(
        "f",
        FEED,
        json!({ "filter": { "severity": ["SEV1"], "search": "db" } }),
    )
    .await;
    barrier(&mut ws).await;

    let collect = Arc::new(Collect::default());
    let domain = incidentd::incident::service::Domain::new(
        app.state.graphql.domain.db.clone(),
        collect.clone(),
    );
    let writer = crate::subscriptions::writer_for(&alice);
    let patch = |title: Option<&str>, severity| UpdateIncident {
        title: title.map(str::to_string),
        severity,
        linked_ticket_ids: None,
        linked_problem_id: async_graphql::MaybeUndefined::Undefined,
        started_at: None,
    };
    let lower = patch(None, Some(incidentd::entity::Severity::Sev3));
    domain
        .update_incident(&writer, id, lower.parse().unwrap())
        .await
        .unwrap();
    domain
        .update_incident(
            &writer,
            id,
            patch(Some("cache cold"), None).parse().unwrap(),
        )
        .await
        .unwrap();
    let commits = std::mem::take(&mut *collect.0.lock().unwrap());
    assert_eq!(commits.len(), 2);
    for announcements in commits {
        app.state.graphql.hub.committed(announcements);
    }
    let c = next_change(&mut ws).await;
    assert_eq!(
        (c["kind"].as_str(), c["matchesFilter"].as_bool()),
        (Some("UPDATED"), Some(false)),
        "{c}"
    );
    assert_eq!(c["incident"]["title"], "cache cold");
}

/// `awaitingPostmortem` on the change feed: resolving a SEV1 brings it in, writing its
/// postmortem takes it out (`matchesFilter: false`), and an incident that never waited is not sent.
#[tokio::test]
async fn a_feed_filtered_on_awaiting_postmortem_follows_the_workflow() {
    let app = spawn_app().await;
    let alice = app.responder();
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe(
        "f",
        FEED,
        json!({ "filter": { "awaitingPostmortem": true } }),
    )
    .await;
    barrier(&mut ws).await;

    let minor = app
        .create_incident(&alice, json!({ "title": "minor", "severity": "SEV3" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.transition(&alice, &minor, "RESOLVED", None).await;
    let major = app
        .create_incident(&alice, json!({ "title": "major", "severity": "SEV1" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    update(&app, &alice, &major, json!({ "severity": "SEV3" })).await;
    app.transition(&alice, &major, "RESOLVED", None).await;
    // Each change carries the incident as it is when delivered, so its earlier changes may
    // arrive already matching; all of them are `major`'s, up to its resolution.
    loop {
        let c = tokio::time::timeout(Duration::from_secs(10), next_change(&mut ws))
            .await
            .expect("the resolution arrives");
        assert_eq!(c["incident"]["id"], major.as_str(), "{c}");
        assert_eq!(c["matchesFilter"], true, "{c}");
        if c["kind"] == "STATUS_CHANGED" {
            break;
        }
    }

    app.ok(
        &alice,
        "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { rootCause: \"x\" }) { id } }",
        json!({ "id": major }),
    )
    .await;
    let c = tokio::time::timeout(Duration::from_secs(10), next_change(&mut ws))
        .await
        .expect("the postmortem arrives");
    assert_eq!(
        (c["kind"].as_str(), c["matchesFilter"].as_bool()),
        (Some("POSTMORTEM_UPDATED"), Some(false)),
        "{c}"
    );
    assert_eq!(c["incident"]["id"], major.as_str());
    // Nothing about `minor` came before or after: the next thing on the socket is the pong.
    barrier(&mut ws).await;
}
