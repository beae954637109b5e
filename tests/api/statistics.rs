//! `incidentMetrics` against values worked out by hand from a known history: a reopened
//! incident, one that skipped MITIGATING, one outside the window, and another organization's.

use chrono::{Datelike, Duration as Span, Utc};
use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, code, spawn_app};

const METRICS: &str = "query($from: DateTime!, $to: DateTime!, $filter: IncidentFilter) {
  incidentMetrics(from: $from, to: $to, filter: $filter) {
    total openNow reopenCount reopenedIncidents actionItemsOpen actionItemsOverdue
    byStatus { status count }
    bySeverity { severity count
      timeToMitigate { count meanSeconds p50Seconds p90Seconds }
      timeToResolve { count meanSeconds p50Seconds p90Seconds } }
    timeToMitigate { count meanSeconds p50Seconds p90Seconds }
    timeToResolve { count meanSeconds p50Seconds p90Seconds }
    weekly { weekStart total bySeverity { severity count } }
  }
}";

const H: f64 = 3600.0;

async fn declare(app: &TestApp, who: &Caller, title: &str, severity: &str, ago: Span) -> String {
    let started = (Utc::now() - ago).to_rfc3339();
    app.create_incident(
        who,
        json!({ "title": title, "severity": severity, "startedAt": started }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn walk(app: &TestApp, who: &Caller, id: &str, steps: &[(&str, Option<&str>)]) {
    for (to, note) in steps {
        let (status, body) = app.transition(who, id, to, *note).await;
        assert!(
            status == 200 && body.get("errors").is_none(),
            "{to}: {body}"
        );
    }
}

async fn postmortem(app: &TestApp, who: &Caller, id: &str, items: Value) {
    app.ok(
        who,
        "mutation($id: UUID!, $items: [ActionItemInput!]) { createPostmortem(incidentId: $id, input: { rootCause: \"x\", actionItems: $items }) { id } }",
        json!({ "id": id, "items": items }),
    )
    .await;
}

/// `actual` is the hand-computed `expected` seconds plus the few seconds the test itself took.
fn close_to(actual: &Value, expected: f64) -> bool {
    actual
        .as_f64()
        .is_some_and(|a| a >= expected - 1.0 && a <= expected + 60.0)
}

fn stats_match(stats: &Value, count: u64, mean: f64, p50: f64, p90: f64) {
    assert_eq!(stats["count"], count, "{stats}");
    assert!(close_to(&stats["meanSeconds"], mean), "mean: {stats}");
    assert!(close_to(&stats["p50Seconds"], p50), "p50: {stats}");
    assert!(close_to(&stats["p90Seconds"], p90), "p90: {stats}");
}

#[tokio::test]
async fn statistics_match_a_hand_computed_history() {
    let app = spawn_app().await;
    let alice = app.responder();
    let day = |d: i64| (Utc::now().date_naive() + Span::days(d)).to_string();

    // a: SEV1, 1 h ago; mitigated, resolved, postmortem, closed. ttm 1 h, ttr 1 h.
    let a = declare(&app, &alice, "a", "SEV1", Span::hours(1)).await;
    walk(
        &app,
        &alice,
        &a,
        &[("MITIGATING", None), ("RESOLVED", None)],
    )
    .await;
    postmortem(
        &app,
        &alice,
        &a,
        json!([
            { "title": "overdue", "dueDate": day(-1) },
            { "title": "done, was due", "dueDate": day(-1), "done": true },
            { "title": "due later", "dueDate": day(30) },
            { "title": "no due date" },
        ]),
    )
    .await;
    walk(&app, &alice, &a, &[("CLOSED", None)]).await;
    // b: SEV2, 2 h ago; resolved without MITIGATING. ttm none, ttr 2 h.
    let b = declare(&app, &alice, "b", "SEV2", Span::hours(2)).await;
    walk(&app, &alice, &b, &[("RESOLVED", None)]).await;
    // c: SEV2, 4 h ago; reopened twice, resolved again. ttm 4 h (the first move), ttr 4 h.
    let c = declare(&app, &alice, "c", "SEV2", Span::hours(4)).await;
    walk(
        &app,
        &alice,
        &c,
        &[
            ("MITIGATING", None),
            ("RESOLVED", None),
            ("OPEN", Some("came back")),
            ("RESOLVED", None),
            ("MITIGATING", Some("again")),
            ("RESOLVED", None),
        ],
    )
    .await;
    // d: SEV3, 3 h ago, still OPEN. e: SEV2, 8 h ago, MITIGATING (ttm 8 h).
    declare(&app, &alice, "d", "SEV3", Span::hours(3)).await;
    let e = declare(&app, &alice, "e", "SEV2", Span::hours(8)).await;
    walk(&app, &alice, &e, &[("MITIGATING", None)]).await;
    // Outside the window (40 days ago), OPEN, with an overdue item: counts only in the present.
    let old = declare(&app, &alice, "old", "SEV4", Span::days(40)).await;
    postmortem(
        &app,
        &alice,
        &old,
        json!([{ "title": "ancient", "dueDate": "2020-01-01" }]),
    )
    .await;
    // Another organization's incident counts nowhere.
    let bob = app.responder();
    let other = declare(&app, &bob, "other", "SEV1", Span::hours(1)).await;
    walk(
        &app,
        &bob,
        &other,
        &[("MITIGATING", None), ("RESOLVED", None)],
    )
    .await;
    postmortem(
        &app,
        &bob,
        &other,
        json!([{ "title": "theirs", "dueDate": "2020-01-01" }]),
    )
    .await;

    let now = Utc::now();
    let (from, to) = (now - Span::days(30), now + Span::minutes(5));
    let vars = |filter: Value| json!({ "from": from.to_rfc3339(), "to": to.to_rfc3339(), "filter": filter });
    let m = app.ok(&alice, METRICS, vars(Value::Null)).await["incidentMetrics"].clone();

    assert_eq!(m["total"], 5);
    assert_eq!(m["openNow"], 3, "d, e and the old one");
    assert_eq!(m["reopenCount"], 2);
    assert_eq!(m["reopenedIncidents"], 1);
    assert_eq!(m["actionItemsOpen"], 4);
    assert_eq!(m["actionItemsOverdue"], 2);
    assert_eq!(
        m["byStatus"],
        json!([
            { "status": "OPEN", "count": 1 },
            { "status": "MITIGATING", "count": 1 },
            { "status": "RESOLVED", "count": 2 },
            { "status": "CLOSED", "count": 1 },
        ])
    );
    // ttm: a 1 h, c 4 h, e 8 h → mean 13/3 h, p50 (rank 2 of 3) 4 h, p90 (rank 3) 8 h.
    stats_match(&m["timeToMitigate"], 3, 13.0 / 3.0 * H, 4.0 * H, 8.0 * H);
    // ttr: a 1 h, b 2 h, c 4 h → mean 7/3 h, p50 2 h, p90 4 h.
    stats_match(&m["timeToResolve"], 3, 7.0 / 3.0 * H, 2.0 * H, 4.0 * H);

    let sev = |s: &str| {
        m["bySeverity"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["severity"] == s)
            .unwrap()
            .clone()
    };
    assert_eq!(
        m["bySeverity"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (
                s["severity"].as_str().unwrap(),
                s["count"].as_u64().unwrap()
            ))
            .collect::<Vec<_>>(),
        [("SEV1", 1), ("SEV2", 3), ("SEV3", 1), ("SEV4", 0)]
    );
    stats_match(&sev("SEV1")["timeToMitigate"], 1, H, H, H);
    stats_match(&sev("SEV1")["timeToResolve"], 1, H, H, H);
    // SEV2 ttm: c 4 h, e 8 h → p50 is rank 1, p90 rank 2. ttr: b 2 h, c 4 h.
    stats_match(&sev("SEV2")["timeToMitigate"], 2, 6.0 * H, 4.0 * H, 8.0 * H);
    stats_match(&sev("SEV2")["timeToResolve"], 2, 3.0 * H, 2.0 * H, 4.0 * H);
    assert_eq!(
        sev("SEV3")["timeToMitigate"],
        json!({ "count": 0, "meanSeconds": null, "p50Seconds": null, "p90Seconds": null })
    );

    // Weeks begin on Monday (UTC), from the one holding `from` to the one holding `to`.
    let monday = |t: chrono::DateTime<Utc>| {
        let d = t.date_naive();
        d - Span::days(i64::from(d.weekday().num_days_from_monday()))
    };
    let weekly = m["weekly"].as_array().unwrap();
    assert_eq!(
        weekly[0]["weekStart"],
        monday(from).to_string(),
        "{weekly:?}"
    );
    assert_eq!(weekly.last().unwrap()["weekStart"], monday(to).to_string());
    assert_eq!(
        weekly.len() as i64,
        (monday(to) - monday(from)).num_days() / 7 + 1
    );
    let mut expected: std::collections::BTreeMap<String, [u64; 4]> = Default::default();
    for (hours, sev) in [(1, 0), (2, 1), (4, 1), (3, 2), (8, 1)] {
        expected
            .entry(monday(now - Span::hours(hours)).to_string())
            .or_default()[sev] += 1;
    }
    for week in weekly {
        let counts: Vec<u64> = week["bySeverity"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["count"].as_u64().unwrap())
            .collect();
        let want = expected
            .get(week["weekStart"].as_str().unwrap())
            .copied()
            .unwrap_or_default();
        assert_eq!(counts, want, "{week}");
        assert_eq!(week["total"], want.iter().sum::<u64>());
    }

    // The filter narrows every number, the present ones included.
    let sev2 = app
        .ok(&alice, METRICS, vars(json!({ "severity": ["SEV2"] })))
        .await["incidentMetrics"]
        .clone();
    assert_eq!(sev2["total"], 3);
    assert_eq!(sev2["openNow"], 1);
    assert_eq!(sev2["actionItemsOpen"], 0);
    assert_eq!(sev2["reopenCount"], 2);
    stats_match(&sev2["timeToMitigate"], 2, 6.0 * H, 4.0 * H, 8.0 * H);
    let searched = app
        .ok(&alice, METRICS, vars(json!({ "search": "OLD" })))
        .await["incidentMetrics"]
        .clone();
    assert_eq!(
        (
            &searched["total"],
            &searched["openNow"],
            &searched["actionItemsOverdue"]
        ),
        (&json!(0), &json!(1), &json!(1))
    );

    // Another organization sees only its own incident.
    let theirs = app.ok(&bob, METRICS, vars(Value::Null)).await["incidentMetrics"].clone();
    assert_eq!(theirs["total"], 1);
    assert_eq!(theirs["actionItemsOverdue"], 1);
    assert_eq!(theirs["reopenCount"], 0);
}

#[tokio::test]
async fn statistics_refuse_a_backwards_or_huge_window() {
    let app = spawn_app().await;
    let alice = app.responder();
    let now = Utc::now();
    for (from, to) in [
        (now, now),
        (now, now - Span::days(1)),
        (now - Span::days(800), now),
    ] {
        let err = app
            .err(
                &alice,
                METRICS,
                json!({ "from": from.to_rfc3339(), "to": to.to_rfc3339() }),
            )
            .await;
        assert_eq!(code(&err), "BAD_USER_INPUT", "{err}");
        assert_eq!(err["extensions"]["field"], "to", "{err}");
    }
    let (_, body) = app
        .post(
            None,
            METRICS,
            json!({ "from": (now - Span::days(1)).to_rfc3339(), "to": now.to_rfc3339() }),
        )
        .await;
    assert_eq!(code(&body["errors"][0]), "UNAUTHENTICATED", "{body}");
}

/// Statistics read the statuses a status change records, not the sentence written for people:
/// rewording every stored status change leaves every number as it was.
#[tokio::test]
async fn statistics_do_not_depend_on_the_wording_of_status_changes() {
    let app = spawn_app().await;
    let alice = app.responder();
    let a = declare(&app, &alice, "a", "SEV2", Span::hours(3)).await;
    walk(
        &app,
        &alice,
        &a,
        &[
            ("MITIGATING", None),
            ("RESOLVED", None),
            ("OPEN", Some("came back")),
            ("RESOLVED", None),
            ("MITIGATING", Some("again")),
        ],
    )
    .await;
    let b = declare(&app, &alice, "b", "SEV3", Span::hours(1)).await;
    walk(&app, &alice, &b, &[("RESOLVED", None)]).await;

    let now = Utc::now();
    let vars = json!({
        "from": (now - Span::days(1)).to_rfc3339(),
        "to": (now + Span::minutes(5)).to_rfc3339(),
    });
    let before = app.ok(&alice, METRICS, vars.clone()).await["incidentMetrics"].clone();
    assert_eq!(before["reopenCount"], 2, "{before}");
    assert_eq!(before["reopenedIncidents"], 1, "{before}");
    assert_eq!(before["timeToMitigate"]["count"], 1, "{before}");

    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(&app.database_url).await.unwrap();
    let reworded = db
        .execute_unprepared(
            "UPDATE incident_events SET content = 'The status moved on.' \
             WHERE event_type = 'status_changed'",
        )
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(reworded, 6);
    db.close().await.ok();

    let after = app.ok(&alice, METRICS, vars).await["incidentMetrics"].clone();
    assert_eq!(after, before);
}
