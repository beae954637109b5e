//! Hostile inputs at the edges of what the API takes: times and dates far from now, lists of
//! any length, cursors the server never wrote. Each is `BAD_USER_INPUT` (REST: 400 with the
//! code) or an answer, never `INTERNAL`, a 500 or a dropped connection; and no request panicked
//! meanwhile (`incidentd_panics_total` stays 0). The property tests below run the same checks
//! over the whole range of chrono's `DateTime` and over random and mutated cursors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use incidentd::incident::identity::Role;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Caller, TestApp, Ws, assert_no_panic, code, rest, spawn_app};

const CREATE: &str =
    "mutation($i: CreateIncidentInput!) { createIncident(input: $i) { id startedAt } }";
const UPDATE: &str = "mutation($id: UUID!, $i: UpdateIncidentInput!) { updateIncident(id: $id, input: $i) { id startedAt } }";
const LIST: &str =
    "query($f: IncidentFilter) { incidents(filter: $f, first: 5) { totalCount nodes { id } } }";
const METRICS: &str = "query($from: DateTime!, $to: DateTime!, $f: IncidentFilter) { incidentMetrics(from: $from, to: $to, filter: $f) { total openNow weekly { weekStart total } } }";
const POSTMORTEM: &str = "mutation($id: UUID!, $i: PostmortemInput!) { updatePostmortem(incidentId: $id, input: $i) { id actionItems { dueDate } } }";

/// Posts an operation; returns the HTTP status and the body (a dropped connection fails here).
async fn post(app: &TestApp, caller: &Caller, query: &str, variables: Value) -> (u16, Value) {
    app.post(Some(&caller.token), query, variables).await
}

/// The first error of an answer that must be `BAD_USER_INPUT` (naming `field` when given).
#[track_caller]
fn bad_input(status: u16, body: &Value, field: Option<&str>) {
    assert!(status < 500, "{status}: {body}");
    let error = &body["errors"][0];
    assert_eq!(code(error), "BAD_USER_INPUT", "{body}");
    if let Some(field) = field {
        assert_eq!(error["extensions"]["field"], field, "{body}");
    }
}

/// An incident with a postmortem, for the inputs that need one.
async fn incident_with_postmortem(app: &TestApp, caller: &Caller) -> String {
    let id = app.new_incident(caller, "edges").await.to_string();
    app.ok(
        caller,
        "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { rootCause: \"r\" }) { id } }",
        json!({ "id": id }),
    )
    .await;
    id
}

#[tokio::test]
async fn times_and_dates_outside_years_1_to_9999_are_bad_user_input_naming_the_field() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = incident_with_postmortem(&app, &alice).await;

    for far in [
        "-5000-01-01T00:00:00Z",
        "+262142-12-01T00:00:00Z",
        "-262143-01-01T00:00:00Z",
        "0000-12-31T23:59:59Z",
        "+10000-01-01T00:00:00Z",
    ] {
        let (s, b) = post(
            &app,
            &alice,
            CREATE,
            json!({ "i": { "title": "t", "startedAt": far } }),
        )
        .await;
        bad_input(s, &b, Some("startedAt"));
        let (s, b) = post(
            &app,
            &alice,
            UPDATE,
            json!({ "id": id, "i": { "startedAt": far } }),
        )
        .await;
        bad_input(s, &b, Some("startedAt"));
        for (name, field) in [
            ("startedAfter", "filter.startedAfter"),
            ("startedBefore", "filter.startedBefore"),
        ] {
            let (s, b) = post(&app, &alice, LIST, json!({ "f": obj(name, far) })).await;
            bad_input(s, &b, Some(field));
            let (s, b) = post(
                &app,
                &alice,
                METRICS,
                json!({ "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "f": obj(name, far) }),
            )
            .await;
            bad_input(s, &b, Some(field));
        }
        // REST: 400 with the code and the field in snake_case.
        let (s, b) = rest(
            &app,
            &alice,
            reqwest::Method::POST,
            "/api/v1/incidents",
            Some(json!({ "title": "t", "started_at": far })),
        )
        .await;
        assert_eq!(s, 400, "{b}");
        assert_eq!(b["error"]["code"], "BAD_USER_INPUT", "{b}");
        if b["error"]["field"].is_string() {
            assert_eq!(b["error"]["field"], "started_at", "{b}");
        }
    }

    // The statistics' window at the ends of chrono's calendar (this panicked in the weekly series).
    for (from, to, field) in [
        ("+262142-12-01T00:00:00Z", "+262142-12-31T23:59:59Z", "from"),
        ("-262143-01-01T00:00:00Z", "-262143-01-31T00:00:00Z", "from"),
        ("9999-12-01T00:00:00Z", "+10000-01-02T00:00:00Z", "to"),
    ] {
        let (s, b) = post(&app, &alice, METRICS, json!({ "from": from, "to": to })).await;
        bad_input(s, &b, Some(field));
    }
    // The last and first weeks the range holds still answer.
    for (from, to) in [
        ("9999-12-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"),
        ("0001-01-01T00:00:00Z", "0001-01-31T00:00:00Z"),
    ] {
        let data = app
            .ok(&alice, METRICS, json!({ "from": from, "to": to }))
            .await;
        assert!(
            !data["incidentMetrics"]["weekly"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{data}"
        );
    }

    // Dates: a postmortem's action item, over GraphQL and REST.
    for far in ["+262142-01-01", "-5000-01-01", "0000-01-01", "+10000-01-01"] {
        let (s, b) = post(
            &app,
            &alice,
            POSTMORTEM,
            json!({ "id": id, "i": { "actionItems": [{ "title": "a", "dueDate": far }] } }),
        )
        .await;
        assert!(s < 500, "{b}");
        assert_eq!(code(&b["errors"][0]), "BAD_USER_INPUT", "{b}");
    }
    let other = app.new_incident(&alice, "rest").await;
    let (s, b) = rest(
        &app,
        &alice,
        reqwest::Method::POST,
        &format!("/api/v1/incidents/{other}/postmortem"),
        Some(json!({ "action_items": [{ "title": "a", "due_date": "-5000-01-01" }] })),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["code"], "BAD_USER_INPUT", "{b}");

    // Nothing was stored at those times: an incident from year 1 is found by a window around it
    // (on SQLite as on PostgreSQL), and nothing else was created.
    let early = app
        .create_incident(
            &alice,
            json!({ "title": "early", "startedAt": "0001-01-01T12:00:00Z" }),
        )
        .await;
    let data = app
        .ok(
            &alice,
            LIST,
            json!({ "f": { "startedAfter": "0001-01-01T00:00:00Z", "startedBefore": "0001-01-02T00:00:00Z" } }),
        )
        .await;
    let ids: Vec<&Value> = data["incidents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id"])
        .collect();
    assert_eq!(ids, vec![&early["id"]], "{data}");
    let data = app.ok(&alice, LIST, json!({})).await;
    assert_eq!(data["incidents"]["totalCount"], 3, "{data}");

    assert_no_panic(&app).await;
}

/// The change feed's filter parses as the list's does: a far time is refused by name, and a
/// huge status list is one status.
#[tokio::test]
async fn the_change_feed_filter_is_parsed_like_the_list_filter() {
    let app = spawn_app().await;
    let alice = app.responder();
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    let feed = "subscription($f: IncidentFilter) { incidentChanged(filter: $f) { kind incident { title } } }";
    ws.subscribe(
        "far",
        feed,
        json!({ "f": { "startedBefore": "+262142-01-01T00:00:00Z" } }),
    )
    .await;
    let message = ws.next_message().await;
    assert_eq!(message["id"], "far", "{message}");
    let errors = if message["type"] == "error" {
        &message["payload"]
    } else {
        &message["payload"]["errors"]
    };
    assert_eq!(
        errors[0]["extensions"]["code"], "BAD_USER_INPUT",
        "{message}"
    );
    assert_eq!(
        errors[0]["extensions"]["field"], "filter.startedBefore",
        "{message}"
    );

    ws.subscribe(
        "many",
        feed,
        json!({ "f": { "status": vec!["OPEN"; 5_000] } }),
    )
    .await;
    app.create_incident(&alice, json!({ "title": "seen" }))
        .await;
    let mut message = ws.next_message().await;
    while message["id"] == "far" {
        assert_eq!(message["type"], "complete", "{message}");
        message = ws.next_message().await;
    }
    assert_eq!(message["id"], "many", "{message}");
    assert_eq!(
        message["payload"]["data"]["incidentChanged"]["incident"]["title"], "seen",
        "{message}"
    );

    assert_no_panic(&app).await;
}

#[tokio::test]
async fn enum_lists_collapse_to_their_distinct_values_and_other_lists_are_bounded() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = incident_with_postmortem(&app, &alice).await;
    app.create_incident(&alice, json!({ "title": "second", "severity": "SEV1" }))
        .await;

    // 70,000 × OPEN (past SQLite's bind limit, as one parameter each) selects what [OPEN] does.
    let statuses = vec!["OPEN"; 70_000];
    let severities: Vec<&str> = ["SEV1", "SEV3"]
        .iter()
        .copied()
        .cycle()
        .take(70_000)
        .collect();
    let data = app
        .ok(&alice, LIST, json!({ "f": { "status": statuses } }))
        .await;
    assert_eq!(data["incidents"]["totalCount"], 2, "{data}");
    let data = app
        .ok(
            &alice,
            LIST,
            json!({ "f": { "status": statuses, "severity": severities } }),
        )
        .await;
    assert_eq!(data["incidents"]["totalCount"], 2, "{data}");
    let data = app
        .ok(
            &alice,
            METRICS,
            json!({ "from": "2020-01-01T00:00:00Z", "to": "2021-12-31T00:00:00Z",
                    "f": { "status": statuses, "severity": severities } }),
        )
        .await;
    assert_eq!(data["incidentMetrics"]["openNow"], 2, "{data}");
    // REST's comma-separated lists collapse the same way.
    let many = vec!["OPEN"; 2_000].join(",");
    let (s, b) = rest(
        &app,
        &alice,
        reqwest::Method::GET,
        &format!("/api/v1/incidents?status={many}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"].as_array().unwrap().len(), 2, "{b}");

    // Other lists: at most their documented number, and BAD_USER_INPUT beyond it.
    let events = "query($id: UUID!, $types: [String!]) { incident(id: $id) { events(types: $types) { totalCount } } }";
    let types: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    app.ok(&alice, events, json!({ "id": id, "types": types }))
        .await;
    let types: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    let (s, b) = post(&app, &alice, events, json!({ "id": id, "types": types })).await;
    bad_input(s, &b, Some("types"));
    let (s, b) = post(
        &app,
        &alice,
        events,
        json!({ "id": id, "types": vec!["note"; 70_000] }),
    )
    .await;
    bad_input(s, &b, Some("types"));
    // A NUL in an event type is refused before it reaches PostgreSQL (which refuses NUL text).
    let (s, b) = post(
        &app,
        &alice,
        events,
        json!({ "id": id, "types": ["a\u{0}b"] }),
    )
    .await;
    bad_input(s, &b, Some("types"));

    let tickets: Vec<String> = (0..51).map(|i| format!("OPS-{i}")).collect();
    let (s, b) = post(
        &app,
        &alice,
        CREATE,
        json!({ "i": { "title": "t", "linkedTicketIds": tickets } }),
    )
    .await;
    bad_input(s, &b, Some("linkedTicketIds"));
    let (s, b) = post(
        &app,
        &alice,
        UPDATE,
        json!({ "id": id, "i": { "linkedTicketIds": tickets } }),
    )
    .await;
    bad_input(s, &b, Some("linkedTicketIds"));
    let items: Vec<Value> = (0..101)
        .map(|i| json!({ "title": format!("a{i}") }))
        .collect();
    let (s, b) = post(
        &app,
        &alice,
        POSTMORTEM,
        json!({ "id": id, "i": { "actionItems": items } }),
    )
    .await;
    bad_input(s, &b, Some("actionItems"));

    assert_no_panic(&app).await;
}

/// `{name: value}`.
fn obj(name: &str, value: &str) -> Value {
    Value::Object([(name.to_string(), json!(value))].into_iter().collect())
}

fn forged(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn cursors_the_server_did_not_write_are_bad_user_input_on_every_list() {
    let app = spawn_app().await;
    let alice = app.responder();
    let admin = app.caller(alice.org, Role::Admin);
    let id = incident_with_postmortem(&app, &alice).await;
    let uuid = Uuid::now_v7();
    app.add_event(&alice, &id, "hello").await;
    let real_event = {
        let data = app
            .ok(
                &alice,
                "query($id: UUID!) { incident(id: $id) { events(first: 1) { edges { cursor } } } }",
                json!({ "id": id }),
            )
            .await;
        data["incident"]["events"]["edges"][0]["cursor"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let real_incident = {
        let data = app
            .ok(
                &alice,
                "{ incidents(first: 1) { edges { cursor } } }",
                json!({}),
            )
            .await;
        data["incidents"]["edges"][0]["cursor"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let bad = [
        forged(&format!("t:-8000000000000000000:{uuid}")),
        forged(&format!("t:8000000000000000000:{uuid}")),
        forged(&format!("t:253402300800000000:{uuid}")),
        forged(&format!("t:+1:{uuid}")),
        forged(&format!("t:1:{}", uuid.simple())),
        forged("t:1:not-a-uuid"),
        forged("s:-1"),
        forged("s:99999999999999999999"),
        "not base64 at all!".into(),
        format!("{real_incident}="),
        String::new(),
    ];
    for cursor in &bad {
        for (arg, user) in [("after", &alice), ("before", &alice)] {
            for list in ["incidents", "postmortems"] {
                let q = format!(
                    "query($c: String) {{ {list}({arg}: $c) {{ totalCount nodes {{ id }} }} }}"
                );
                let (s, b) = post(&app, user, &q, json!({ "c": cursor })).await;
                bad_input(s, &b, Some(arg));
            }
            let q = format!(
                "query($id: UUID!, $c: String) {{ incident(id: $id) {{ events({arg}: $c) {{ totalCount }} }} }}"
            );
            let (s, b) = post(&app, user, &q, json!({ "id": id, "c": cursor })).await;
            bad_input(s, &b, Some(arg));
        }
        let (s, b) = post(
            &app,
            &admin,
            "query($c: String) { auditEvents(after: $c) { totalCount } }",
            json!({ "c": cursor }),
        )
        .await;
        bad_input(s, &b, Some("after"));
        let path = format!("/api/v1/incidents?cursor={}", urlencode(cursor));
        let (s, b) = rest(&app, &alice, reqwest::Method::GET, &path, None).await;
        if !cursor.is_empty() {
            assert_eq!(s, 400, "{cursor}: {b}");
            assert_eq!(b["error"]["code"], "BAD_USER_INPUT", "{b}");
        } else {
            assert!(s == 200 || s == 400, "{b}");
        }
    }
    // Another sort's cursor: a timeline position on a list of incidents, and the reverse.
    let (s, b) = post(
        &app,
        &alice,
        "query($c: String) { incidents(after: $c) { totalCount } }",
        json!({ "c": real_event }),
    )
    .await;
    bad_input(s, &b, Some("after"));
    let (s, b) = post(
        &app,
        &alice,
        "query($id: UUID!, $c: String) { incident(id: $id) { events(after: $c) { totalCount } } }",
        json!({ "id": id, "c": real_incident }),
    )
    .await;
    bad_input(s, &b, Some("after"));
    let (s, b) = rest(
        &app,
        &alice,
        reqwest::Method::GET,
        &format!("/api/v1/incidents?cursor={real_event}"),
        None,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["code"], "BAD_USER_INPUT", "{b}");
    // The server's own cursors still work.
    app.ok(
        &alice,
        "query($c: String) { incidents(after: $c) { totalCount } }",
        json!({ "c": real_incident }),
    )
    .await;

    assert_no_panic(&app).await;
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Property tests: a real server per test, a modest number of cases (each is a request).

fn cases() -> u32 {
    std::env::var("INCIDENTD_EDGE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Any instant chrono can hold, with extra weight on the ends of the range and of years 1–9999.
fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp();
    let max = DateTime::<Utc>::MAX_UTC.timestamp();
    let year_1 = -62_135_596_800i64;
    let year_10000 = 253_402_300_800i64;
    prop_oneof![
        4 => (min..=max, 0u32..1_000_000_000),
        1 => ((year_1 - 2 * 86_400)..(year_1 + 2 * 86_400), 0u32..1_000_000_000),
        1 => ((year_10000 - 2 * 86_400)..(year_10000 + 2 * 86_400), 0u32..1_000_000_000),
        1 => ((min)..(min + 30 * 86_400), 0u32..1_000_000_000),
        1 => ((max - 30 * 86_400)..=max, 0u32..1_000_000_000),
        2 => (0i64..4_000_000_000, 0u32..1_000_000_000),
    ]
    .prop_map(|(secs, nanos)| {
        DateTime::from_timestamp(secs, nanos).unwrap_or(DateTime::<Utc>::MAX_UTC)
    })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Every date and time input the API has.
#[derive(Debug, Clone, Copy)]
enum DateInput {
    CreateStartedAt,
    UpdateStartedAt,
    FilterStartedAfter,
    FilterStartedBefore,
    MetricsFrom,
    MetricsTo,
    MetricsFilter,
    DueDate,
    RestStartedAt,
    RestDueDate,
}

const DATE_INPUTS: [DateInput; 10] = [
    DateInput::CreateStartedAt,
    DateInput::UpdateStartedAt,
    DateInput::FilterStartedAfter,
    DateInput::FilterStartedBefore,
    DateInput::MetricsFrom,
    DateInput::MetricsTo,
    DateInput::MetricsFilter,
    DateInput::DueDate,
    DateInput::RestStartedAt,
    DateInput::RestDueDate,
];

struct Fixture {
    caller: Caller,
    incident: String,
    /// An incident without a postmortem, for REST's create (409 once it has one).
    bare: String,
}

async fn send_date(
    app: &TestApp,
    f: &Fixture,
    input: DateInput,
    t: DateTime<Utc>,
    other: i64,
) -> (u16, Value) {
    let at = rfc3339(t);
    let day = t.format("%Y-%m-%d").to_string();
    let near = t
        .checked_add_signed(TimeDelta::days(other))
        .map_or_else(|| "2026-01-01T00:00:00Z".to_string(), rfc3339);
    let c = &f.caller;
    match input {
        DateInput::CreateStartedAt => {
            post(
                app,
                c,
                CREATE,
                json!({ "i": { "title": "p", "startedAt": at } }),
            )
            .await
        }
        DateInput::UpdateStartedAt => {
            post(
                app,
                c,
                UPDATE,
                json!({ "id": f.incident, "i": { "startedAt": at } }),
            )
            .await
        }
        DateInput::FilterStartedAfter => {
            post(app, c, LIST, json!({ "f": { "startedAfter": at } })).await
        }
        DateInput::FilterStartedBefore => {
            post(app, c, LIST, json!({ "f": { "startedBefore": at } })).await
        }
        DateInput::MetricsFrom => post(app, c, METRICS, json!({ "from": at, "to": near })).await,
        DateInput::MetricsTo => post(app, c, METRICS, json!({ "from": near, "to": at })).await,
        DateInput::MetricsFilter => {
            post(
                app,
                c,
                METRICS,
                json!({ "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z",
                        "f": { "startedAfter": at, "startedBefore": near } }),
            )
            .await
        }
        DateInput::DueDate => post(
            app,
            c,
            POSTMORTEM,
            json!({ "id": f.incident, "i": { "actionItems": [{ "title": "a", "dueDate": day }] } }),
        )
        .await,
        DateInput::RestStartedAt => {
            rest(
                app,
                c,
                reqwest::Method::POST,
                "/api/v1/incidents",
                Some(json!({ "title": "p", "started_at": at })),
            )
            .await
        }
        DateInput::RestDueDate => {
            rest(
                app,
                c,
                reqwest::Method::POST,
                &format!("/api/v1/incidents/{}/postmortem", f.bare),
                Some(json!({ "action_items": [{ "title": "a", "due_date": day }] })),
            )
            .await
        }
    }
}

/// No 5xx, no INTERNAL; every error has a code.
fn no_server_fault(status: u16, body: &Value, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "{} for {}: {}", status, what, body);
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        for e in errors {
            prop_assert!(e["extensions"]["code"].is_string(), "{} for {}", body, what);
            prop_assert_ne!(
                &e["extensions"]["code"],
                "INTERNAL",
                "{} for {}",
                body,
                what
            );
        }
    }
    if let Some(error) = body.get("error") {
        prop_assert!(error["code"].is_string(), "{} for {}", body, what);
        prop_assert_ne!(&error["code"], "INTERNAL", "{} for {}", body, what);
    }
    Ok(())
}

fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .or_else(|| body["error"]["code"].as_str())
}

#[test]
fn no_date_or_time_anywhere_in_chrono_s_range_breaks_a_request() {
    use chrono::Datelike;
    let rt = runtime();
    let app = rt.block_on(spawn_app());
    let caller = app.responder();
    let fixture = rt.block_on(async {
        let incident = incident_with_postmortem(&app, &caller).await;
        let bare = app.new_incident(&caller, "bare").await.to_string();
        Fixture {
            caller,
            incident,
            bare,
        }
    });
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::sample::select(DATE_INPUTS.to_vec()),
        any_instant(),
        -40i64..40,
    );
    runner
        .run(&strategy, |(input, t, other)| {
            let (status, body) = rt.block_on(send_date(&app, &fixture, input, t, other));
            let what = format!("{input:?} = {}", rfc3339(t));
            no_server_fault(status, &body, &what)?;
            if !(1..=9999).contains(&t.year()) {
                prop_assert_eq!(
                    error_code(&body),
                    Some("BAD_USER_INPUT"),
                    "{} answered {}",
                    what,
                    body
                );
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(assert_no_panic(&app));
}

/// A cursor as a client might forge it: random text, random bytes, a well-formed cursor with
/// random numbers, or one of the server's own cursors mutated.
fn any_cursor(real: Vec<String>) -> impl Strategy<Value = String> {
    let real_one = proptest::sample::select(real);
    prop_oneof![
        2 => ".{0,40}",
        2 => proptest::collection::vec(any::<u8>(), 0..48).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        2 => (any::<i64>(), any::<u128>()).prop_map(|(n, id)| forged(&format!("t:{n}:{}", Uuid::from_u128(id)))),
        1 => any::<i64>().prop_map(|n| forged(&format!("s:{n}"))),
        1 => (prop_oneof![Just("t"), Just("s"), Just("x"), Just("")], ".{0,30}")
            .prop_map(|(p, rest)| forged(&format!("{p}:{rest}"))),
        3 => (real_one, any::<usize>(), any::<u8>(), 0u8..4).prop_map(|(c, at, byte, how)| {
            let mut bytes = URL_SAFE_NO_PAD.decode(&c).unwrap_or_default();
            if bytes.is_empty() {
                return c;
            }
            let at = at % bytes.len();
            match how {
                0 => bytes[at] = byte,
                1 => bytes.truncate(at),
                2 => bytes.insert(at, byte),
                _ => {
                    let mut s = c.clone();
                    s.insert(at % (s.len() + 1), byte as char);
                    return s;
                }
            }
            URL_SAFE_NO_PAD.encode(bytes)
        }),
    ]
}

#[test]
fn no_cursor_breaks_a_paginated_field_or_the_rest_list() {
    let rt = runtime();
    let app = rt.block_on(spawn_app());
    let alice = app.responder();
    let admin = app.caller(alice.org, Role::Admin);
    let (id, real) = rt.block_on(async {
        let id = incident_with_postmortem(&app, &alice).await;
        app.new_incident(&alice, "two").await;
        app.add_event(&alice, &id, "hello").await;
        let data = app
            .ok(
                &admin,
                "query($id: UUID!) { incidents(first: 2) { edges { cursor } } postmortems { edges { cursor } } auditEvents(first: 2) { edges { cursor } } incident(id: $id) { events { edges { cursor } } } }",
                json!({ "id": id }),
            )
            .await;
        let mut real = vec![];
        for list in [&data["incidents"], &data["postmortems"], &data["auditEvents"], &data["incident"]["events"]] {
            for e in list["edges"].as_array().unwrap() {
                real.push(e["cursor"].as_str().unwrap().to_string());
            }
        }
        (id, real)
    });
    let fields: Vec<(&str, bool)> = vec![
        (
            "query($c: String) { incidents(after: $c) { totalCount nodes { id } } }",
            false,
        ),
        (
            "query($c: String) { incidents(last: 2, before: $c) { totalCount nodes { id } } }",
            false,
        ),
        (
            "query($c: String) { postmortems(after: $c) { totalCount nodes { id } } }",
            false,
        ),
        (
            "query($c: String) { postmortems(before: $c) { nodes { id } } }",
            false,
        ),
        (
            "query($c: String) { auditEvents(after: $c) { totalCount nodes { id } } }",
            false,
        ),
        (
            "query($id: UUID!, $c: String) { incident(id: $id) { events(after: $c) { totalCount nodes { id } } } }",
            true,
        ),
        (
            "query($id: UUID!, $c: String) { incident(id: $id) { events(last: 3, before: $c) { nodes { id } } } }",
            true,
        ),
    ];
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (any_cursor(real), 0..fields.len() + 1);
    runner
        .run(&strategy, |(cursor, which)| {
            let (status, body) = rt.block_on(async {
                if which == fields.len() {
                    let path = format!("/api/v1/incidents?cursor={}", urlencode(&cursor));
                    rest(&app, &alice, reqwest::Method::GET, &path, None).await
                } else {
                    let (query, with_id) = fields[which];
                    let vars = if with_id {
                        json!({ "id": id, "c": cursor })
                    } else {
                        json!({ "c": cursor })
                    };
                    post(&app, &admin, query, vars).await
                }
            });
            let what = format!("cursor {cursor:?} on #{which}");
            no_server_fault(status, &body, &what)?;
            if let Some(code) = error_code(&body) {
                prop_assert_eq!(code, "BAD_USER_INPUT", "{}: {}", what, body);
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(assert_no_panic(&app));
    // The server still answers.
    let data = rt.block_on(app.ok(&alice, "{ viewer { role } }", json!({})));
    assert_eq!(data["viewer"]["role"], "responder");
}
