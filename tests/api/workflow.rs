//! The incident workflow, end to end through GraphQL.

use serde_json::json;

use crate::helpers::{code, spawn_app};

#[tokio::test]
async fn the_whole_workflow_from_declaration_to_close() {
    let app = spawn_app().await;
    let alice = app.responder();

    let incident = app
        .create_incident(&alice, json!({ "title": "  Checkout is failing  ", "severity": "SEV2", "linkedTicketIds": ["OPS-1"] }))
        .await;
    let id = incident["id"].as_str().unwrap();
    assert_eq!(
        incident["title"], "Checkout is failing",
        "titles are trimmed"
    );
    assert_eq!(incident["status"], "OPEN");
    assert_eq!(incident["organizationId"], alice.org.to_string());
    assert_eq!(incident["createdBy"], alice.user.to_string());

    app.add_event(&alice, id, "Error rate at 40%").await;
    let (_, body) = app
        .transition(&alice, id, "MITIGATING", Some("rolling back"))
        .await;
    assert_eq!(
        body["data"]["transitionIncident"]["status"], "MITIGATING",
        "{body}"
    );
    app.add_event(&alice, id, "Rollback done").await;
    let (_, body) = app.transition(&alice, id, "RESOLVED", None).await;
    let resolved = &body["data"]["transitionIncident"];
    assert_eq!(resolved["status"], "RESOLVED");
    assert!(resolved["resolvedAt"].is_string());
    assert_eq!(
        resolved["allowedTransitions"],
        json!(["OPEN", "MITIGATING"]),
        "CLOSED waits for the SEV2 postmortem"
    );

    let (_, body) = app.transition(&alice, id, "CLOSED", None).await;
    assert_eq!(code(&body["errors"][0]), "POSTMORTEM_REQUIRED", "{body}");

    let pm = app
        .ok(
            &alice,
            "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { impactSummary: \"checkout down 20m\", actionItems: [{ title: \"alert on error rate\", dueDate: \"2026-12-01\" }] }) { id incidentId impactSummary actionItems { title dueDate done owner } incident { id } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        pm["createPostmortem"]["actionItems"],
        json!([{ "title": "alert on error rate", "dueDate": "2026-12-01", "done": false, "owner": null }])
    );
    assert_eq!(pm["createPostmortem"]["incident"]["id"], id);

    let updated = app
        .ok(
            &alice,
            "mutation($id: UUID!) { updatePostmortem(incidentId: $id, input: { rootCause: \"bad deploy\" }) { impactSummary rootCause } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        updated["updatePostmortem"],
        json!({ "impactSummary": "checkout down 20m", "rootCause": "bad deploy" }),
        "only the fields given change"
    );

    let (_, body) = app.transition(&alice, id, "CLOSED", None).await;
    assert_eq!(
        body["data"]["transitionIncident"]["status"], "CLOSED",
        "{body}"
    );
    assert_eq!(
        body["data"]["transitionIncident"]["allowedTransitions"],
        json!([])
    );

    let events = app.events(&alice, id).await;
    let kinds: Vec<&str> = events.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "note",
            "status_changed",
            "note",
            "status_changed",
            "status_changed"
        ]
    );
    let sequences: Vec<i64> = events.iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);

    let actions: Vec<String> = app
        .audit(alice.org, id)
        .await
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    // Newest first: close, 2× postmortem, resolve, event, mitigate, event, create.
    assert_eq!(
        actions,
        [
            "incident_updated",
            "postmortem_updated",
            "postmortem_updated",
            "incident_updated",
            "incident_event_added",
            "incident_updated",
            "incident_event_added",
            "incident_created"
        ]
    );
}

#[tokio::test]
async fn every_transition_outside_the_workflow_is_refused_with_the_allowed_ones() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app
        .create_incident(&alice, json!({ "title": "t", "severity": "SEV4" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let (_, body) = app.transition(&alice, &id, "CLOSED", None).await;
    let error = &body["errors"][0];
    assert_eq!(code(error), "INVALID_TRANSITION");
    assert_eq!(error["extensions"]["currentStatus"], "OPEN");
    assert_eq!(
        error["extensions"]["allowedTransitions"],
        json!(["MITIGATING", "RESOLVED"])
    );
    assert!(error["message"].as_str().unwrap().contains("OPEN"));

    app.transition(&alice, &id, "MITIGATING", None).await;
    let (_, body) = app.transition(&alice, &id, "OPEN", None).await;
    assert_eq!(
        code(&body["errors"][0]),
        "INVALID_TRANSITION",
        "MITIGATING→OPEN is not allowed"
    );

    // OPEN → RESOLVED directly is allowed (from a fresh incident).
    let other = app.create_incident(&alice, json!({ "title": "u" })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = app.transition(&alice, &other, "RESOLVED", None).await;
    assert_eq!(body["data"]["transitionIncident"]["status"], "RESOLVED");

    // SEV3/SEV4 close without a postmortem; CLOSED is final.
    let (_, body) = app.transition(&alice, &other, "CLOSED", None).await;
    assert_eq!(
        body["data"]["transitionIncident"]["status"], "CLOSED",
        "{body}"
    );
    for to in ["OPEN", "MITIGATING", "RESOLVED"] {
        let (_, body) = app.transition(&alice, &other, to, Some("why")).await;
        assert_eq!(
            code(&body["errors"][0]),
            "INVALID_TRANSITION",
            "CLOSED→{to}"
        );
    }
}

#[tokio::test]
async fn a_transition_to_the_current_status_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app.create_incident(&alice, json!({ "title": "t" })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        let (_, body) = app.transition(&alice, &id, "MITIGATING", None).await;
        assert_eq!(body["data"]["transitionIncident"]["status"], "MITIGATING");
    }
    let (_, body) = app.transition(&alice, &id, "OPEN", None).await;
    assert_eq!(code(&body["errors"][0]), "INVALID_TRANSITION");
    assert_eq!(
        app.events(&alice, &id).await.len(),
        1,
        "one status_changed event"
    );
    let updates = app
        .audit(alice.org, &id)
        .await
        .into_iter()
        .filter(|a| a["action"] == "incident_updated")
        .count();
    assert_eq!(updates, 1, "one audit row");
}

#[tokio::test]
async fn reopening_needs_a_note_and_clears_resolved_at() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app.create_incident(&alice, json!({ "title": "t" })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.transition(&alice, &id, "RESOLVED", None).await;

    let (_, body) = app.transition(&alice, &id, "OPEN", None).await;
    assert_eq!(code(&body["errors"][0]), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "note");

    let (_, body) = app
        .transition(&alice, &id, "MITIGATING", Some("it came back"))
        .await;
    let reopened = &body["data"]["transitionIncident"];
    assert_eq!(reopened["status"], "MITIGATING", "{body}");
    assert!(reopened["resolvedAt"].is_null());

    let data = app
        .ok(&alice, "query($id: UUID!) { incident(id: $id) { events(last: 1) { nodes { eventType content } } } }", json!({ "id": id }))
        .await;
    let last = &data["incident"]["events"]["nodes"][0];
    assert_eq!(last["eventType"], "status_changed");
    assert!(
        last["content"].as_str().unwrap().contains("it came back"),
        "the note is in the event: {last}"
    );
}

#[tokio::test]
async fn resolved_at_is_never_before_started_at() {
    let app = spawn_app().await;
    let alice = app.responder();
    let started = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let id = app
        .create_incident(&alice, json!({ "title": "t", "startedAt": started }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = app.transition(&alice, &id, "RESOLVED", None).await;
    let resolved = &body["data"]["transitionIncident"];
    let started_at =
        chrono::DateTime::parse_from_rfc3339(resolved["startedAt"].as_str().unwrap()).unwrap();
    let resolved_at =
        chrono::DateTime::parse_from_rfc3339(resolved["resolvedAt"].as_str().unwrap()).unwrap();
    assert!(resolved_at >= started_at);

    // Moving the start after the resolution is refused.
    let later = (chrono::Utc::now()).to_rfc3339();
    let error = app
        .err(&alice, "mutation($id: UUID!, $t: DateTime!) { updateIncident(id: $id, input: { startedAt: $t }) { id } }", json!({ "id": id, "t": later }))
        .await;
    assert_eq!(code(&error), "BAD_USER_INPUT");
    assert_eq!(error["extensions"]["field"], "startedAt");
}

#[tokio::test]
async fn a_severity_change_appends_an_event_and_an_audit_row() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app
        .create_incident(&alice, json!({ "title": "t", "severity": "SEV3" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let data = app
        .ok(
            &alice,
            "mutation($id: UUID!) { updateIncident(id: $id, input: { severity: SEV1, title: \"bigger\" }) { severity title allowedTransitions } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["updateIncident"]["severity"], "SEV1");
    assert_eq!(
        app.events(&alice, &id).await,
        vec![(1, "severity_changed".to_string())]
    );
    let audit = app.audit(alice.org, &id).await;
    assert_eq!(audit[0]["action"], "incident_updated");
    assert_eq!(audit[0]["changes"]["before"]["severity"], "SEV3");
    assert_eq!(audit[0]["changes"]["after"]["severity"], "SEV1");
    assert_eq!(audit[0]["changes"]["after"]["title"], "bigger");
    assert_eq!(audit[0]["actorId"], alice.user.to_string());

    // An update that changes nothing records nothing.
    app.ok(
        &alice,
        "mutation($id: UUID!) { updateIncident(id: $id, input: { severity: SEV1 }) { id } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(app.audit(alice.org, &id).await.len(), 2);
    assert_eq!(app.events(&alice, &id).await.len(), 1);
}

#[tokio::test]
async fn a_second_postmortem_conflicts_and_a_missing_one_is_not_found() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app.create_incident(&alice, json!({ "title": "t" })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let update = "mutation($id: UUID!) { updatePostmortem(incidentId: $id, input: { rootCause: \"x\" }) { id } }";
    assert_eq!(
        code(&app.err(&alice, update, json!({ "id": id })).await),
        "NOT_FOUND"
    );
    let create = "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: {}) { id } }";
    app.ok(&alice, create, json!({ "id": id })).await;
    assert_eq!(
        code(&app.err(&alice, create, json!({ "id": id })).await),
        "CONFLICT"
    );
}

#[tokio::test]
async fn migrations_go_down_and_up_again() {
    use sea_orm_migration::MigratorTrait;
    let app = spawn_app().await;
    let db = app.state.graphql.domain.db.conn();
    migration::Migrator::down(db, None).await.expect("down");
    assert_eq!(
        migration::Migrator::get_applied_migrations(db)
            .await
            .unwrap()
            .len(),
        0
    );
    migration::Migrator::up(db, None).await.expect("up again");
    let alice = app.responder();
    app.create_incident(&alice, json!({ "title": "after a round trip" }))
        .await;
}

/// A unique violation is answered by the constraint's name, in words that say which rule was
/// hit: a second postmortem and a reused event id are different conflicts. (PostgreSQL names
/// the constraint; SQLite names none, and there the service's checks under the writer queue
/// answer first, as the GraphQL tests above show.)
#[tokio::test]
async fn a_constraint_violation_says_which_rule_it_broke() {
    use incidentd::entity::postmortem;
    use incidentd::error::AppError;
    use sea_orm::ActiveValue::Set;

    let app = spawn_app().await;
    if !app.db.is_postgres() {
        eprintln!("constraint names are PostgreSQL's; SQLite reports none");
        return;
    }
    let alice = app.responder();
    let incident = app.new_incident(&alice, "constraints").await;
    let writer = crate::subscriptions::writer_for(&alice);
    let db = &app.state.graphql.domain.db;
    let now = chrono::Utc::now();
    let postmortem = |id: uuid::Uuid| postmortem::ActiveModel {
        id: Set(id),
        incident_id: Set(incident),
        organization_id: Set(alice.org),
        impact_summary: Set(None),
        root_cause: Set(None),
        timeline: Set(None),
        what_went_well: Set(None),
        what_went_wrong: Set(None),
        action_items: Set(json!([])),
        public_summary: Set(None),
        internal_notes: Set(None),
        created_by: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let txn = db.begin_write().await.unwrap();
    writer
        .scope
        .insert_postmortem(&*txn, postmortem(uuid::Uuid::new_v4()))
        .await
        .unwrap();
    let second = writer
        .scope
        .insert_postmortem(&*txn, postmortem(uuid::Uuid::new_v4()))
        .await
        .unwrap_err();
    drop(txn);
    let AppError::Conflict(second) = AppError::from(second) else {
        panic!("a unique violation is a conflict");
    };
    assert!(second.contains("already has a postmortem"), "{second}");

    // The same postmortem id for another incident: the primary key, a different conflict.
    let other = app.new_incident(&alice, "another").await;
    let id = uuid::Uuid::new_v4();
    let txn = db.begin_write().await.unwrap();
    writer
        .scope
        .insert_postmortem(&*txn, postmortem(id))
        .await
        .unwrap();
    let mut again = postmortem(id);
    again.incident_id = Set(other);
    let reused = writer
        .scope
        .insert_postmortem(&*txn, again)
        .await
        .unwrap_err();
    drop(txn);
    let AppError::Conflict(reused) = AppError::from(reused) else {
        panic!("a unique violation is a conflict");
    };
    assert!(
        reused.contains("a postmortem with this id already exists"),
        "{reused}"
    );
    assert_ne!(second, reused);
}

const TOLD: &str = "query($id: UUID!) { incident(id: $id) { status severity allowedTransitions transitions { to needsNote } closeBlocker { reason message severity } } }";
const AWAITING: &str = "query($filter: IncidentFilter) { incidents(filter: $filter, first: 50) { totalCount nodes { id closeBlocker { severity } } } }";

fn ids(data: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = data["incidents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// The server tells what the desk needs: which transitions are open and which need a note,
/// what blocks closing (by the highest severity ever, not the current one), and which
/// incidents wait for a postmortem, in a list as in one incident.
#[tokio::test]
async fn the_workflow_is_told_by_the_highest_severity_ever() {
    let app = spawn_app().await;
    let alice = app.responder();
    let declare = |title: &'static str, severity: &'static str| {
        let (app, alice) = (&app, &alice);
        async move {
            app.create_incident(alice, json!({ "title": title, "severity": severity }))
                .await["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    // Declared SEV1, lowered to SEV3, resolved.
    let lowered = declare("lowered", "SEV1").await;
    app.ok(
        &alice,
        "mutation($id: UUID!) { updateIncident(id: $id, input: { severity: SEV3 }) { id } }",
        json!({ "id": lowered }),
    )
    .await;
    let open = app.ok(&alice, TOLD, json!({ "id": lowered })).await["incident"].clone();
    assert_eq!(
        open["transitions"],
        json!([{ "to": "MITIGATING", "needsNote": false }, { "to": "RESOLVED", "needsNote": false }])
    );
    assert_eq!(
        open["closeBlocker"],
        json!(null),
        "not resolved: nothing to block yet"
    );
    app.transition(&alice, &lowered, "RESOLVED", None).await;
    let told = app.ok(&alice, TOLD, json!({ "id": lowered })).await["incident"].clone();
    assert_eq!(told["severity"], "SEV3");
    assert_eq!(told["allowedTransitions"], json!(["OPEN", "MITIGATING"]));
    assert_eq!(
        told["transitions"],
        json!([{ "to": "OPEN", "needsNote": true }, { "to": "MITIGATING", "needsNote": true }])
    );
    assert_eq!(told["closeBlocker"]["reason"], "POSTMORTEM_REQUIRED");
    assert_eq!(told["closeBlocker"]["severity"], "SEV1", "{told}");
    assert!(
        told["closeBlocker"]["message"]
            .as_str()
            .unwrap()
            .contains("SEV1"),
        "{told}"
    );

    // Others: a resolved SEV3 (no postmortem needed), an open SEV1 (not resolved), a resolved
    // SEV2 with its postmortem, and another organization's resolved SEV1.
    let minor = declare("minor", "SEV3").await;
    app.transition(&alice, &minor, "RESOLVED", None).await;
    let open_sev1 = declare("open", "SEV1").await;
    let written = declare("written", "SEV2").await;
    app.transition(&alice, &written, "RESOLVED", None).await;
    let postmortem = "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { rootCause: \"x\" }) { id } }";
    app.ok(&alice, postmortem, json!({ "id": written })).await;
    let bob = app.responder();
    let theirs = app
        .create_incident(&bob, json!({ "title": "theirs", "severity": "SEV1" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.transition(&bob, &theirs, "RESOLVED", None).await;

    let waiting = app
        .ok(
            &alice,
            AWAITING,
            json!({ "filter": { "awaitingPostmortem": true } }),
        )
        .await;
    assert_eq!(ids(&waiting), [lowered.as_str()]);
    assert_eq!(waiting["incidents"]["totalCount"], 1);
    assert_eq!(
        waiting["incidents"]["nodes"][0]["closeBlocker"]["severity"],
        "SEV1"
    );
    let rest = app
        .ok(
            &alice,
            AWAITING,
            json!({ "filter": { "awaitingPostmortem": false } }),
        )
        .await;
    let mut others = vec![minor.clone(), open_sev1.clone(), written.clone()];
    others.sort();
    assert_eq!(ids(&rest), others);
    let combined = app
        .ok(
            &alice,
            AWAITING,
            json!({ "filter": { "awaitingPostmortem": true, "severity": ["SEV1"] } }),
        )
        .await;
    assert_eq!(
        ids(&combined),
        Vec::<String>::new(),
        "its severity now is SEV3"
    );
    let told = app.ok(&alice, TOLD, json!({ "id": written })).await["incident"].clone();
    assert_eq!(told["closeBlocker"], json!(null));
    assert_eq!(
        told["transitions"][0],
        json!({ "to": "CLOSED", "needsNote": false })
    );

    // Once written, it no longer waits and may close.
    app.ok(&alice, postmortem, json!({ "id": lowered })).await;
    let told = app.ok(&alice, TOLD, json!({ "id": lowered })).await["incident"].clone();
    assert_eq!(told["closeBlocker"], json!(null));
    assert_eq!(
        told["allowedTransitions"],
        json!(["CLOSED", "OPEN", "MITIGATING"])
    );
    let waiting = app
        .ok(
            &alice,
            AWAITING,
            json!({ "filter": { "awaitingPostmortem": true } }),
        )
        .await;
    assert_eq!(waiting["incidents"]["totalCount"], 0);
    let (_, body) = app.transition(&alice, &lowered, "CLOSED", None).await;
    assert_eq!(
        body["data"]["transitionIncident"]["status"], "CLOSED",
        "{body}"
    );
}
