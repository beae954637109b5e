//! The migrations that change existing data run on a database that already holds data from the
//! earlier migrations, and undo cleanly.

use sea_orm::{ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, Statement};
use sea_orm_migration::MigratorTrait;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestDb, code, spawn_app};

async fn exec(db: &DatabaseConnection, sql: &str) -> Result<u64, sea_orm::DbErr> {
    db.execute_unprepared(sql).await.map(|r| r.rows_affected())
}

async fn one_string(db: &DatabaseConnection, sql: &str) -> Option<String> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()?;
    row.try_get_by_index::<Option<String>>(0).unwrap()
}

#[tokio::test]
async fn the_hardening_migration_runs_on_existing_data() {
    let (test_db, url) = TestDb::create().await;
    let url = if test_db.is_postgres() {
        url
    } else {
        format!("{url}?mode=rwc")
    };
    let db = Database::connect(&url).await.unwrap();
    let postgres = db.get_database_backend() == DatabaseBackend::Postgres;
    // The schema as the first two migrations left it, with data in it.
    migration::Migrator::up(&db, Some(2)).await.unwrap();
    let (org, other_org) = (Uuid::new_v4(), Uuid::new_v4());
    let (lowered, untouched, foreign) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let now = "2026-11-01T10:00:00Z";
    for (id, owner, severity) in [
        (lowered, org, "SEV3"),
        (untouched, org, "SEV2"),
        (foreign, other_org, "SEV4"),
    ] {
        let cast = if postgres { "::incident_severity" } else { "" };
        let status = if postgres {
            "'OPEN'::incident_status"
        } else {
            "'OPEN'"
        };
        let json = if postgres { "'[]'::jsonb" } else { "'[]'" };
        exec(&db, &format!(
            "INSERT INTO incident_records (id, organization_id, title, status, severity, linked_ticket_ids, started_at, created_at, updated_at) \
             VALUES ('{id}', '{owner}', 't', {status}, '{severity}'{cast}, {json}, '{now}', '{now}', '{now}')"
        ))
        .await
        .unwrap();
    }
    exec(&db, &format!(
        "INSERT INTO incident_events (id, organization_id, incident_id, sequence, event_type, content, created_at) \
         VALUES ('{}', '{org}', '{lowered}', 1, 'severity_changed', 'SEV1 → SEV3', '{now}')",
        Uuid::new_v4()
    ))
    .await
    .unwrap();

    migration::Migrator::up(&db, None).await.unwrap();
    let highest = |id: Uuid| {
        let db = &db;
        async move {
            one_string(
                db,
                &format!(
                    "SELECT CAST(highest_severity AS TEXT) FROM incident_records WHERE id = '{id}'"
                ),
            )
            .await
        }
    };
    assert_eq!(
        highest(lowered).await.as_deref(),
        Some("SEV1"),
        "from the timeline"
    );
    assert_eq!(highest(untouched).await.as_deref(), Some("SEV2"));
    assert!(
        one_string(
            &db,
            "SELECT 'x' FROM audit_events WHERE incident_id IS NULL LIMIT 1"
        )
        .await
        .is_none()
    );

    // An event or a postmortem naming another organization's incident is refused by the
    // database itself (both databases), and the postmortem's action items default to [].
    let crossed = exec(&db, &format!(
        "INSERT INTO incident_events (id, organization_id, incident_id, sequence, event_type, content, created_at) \
         VALUES ('{}', '{org}', '{foreign}', 1, 'note', 'x', '{now}')",
        Uuid::new_v4()
    ))
    .await;
    assert!(
        crossed.is_err(),
        "a cross-organization event must not be stored"
    );
    let crossed = exec(&db, &format!(
        "INSERT INTO incident_postmortems (id, organization_id, incident_id, created_at, updated_at) \
         VALUES ('{}', '{org}', '{foreign}', '{now}', '{now}')",
        Uuid::new_v4()
    ))
    .await;
    assert!(
        crossed.is_err(),
        "a cross-organization postmortem must not be stored"
    );
    exec(&db, &format!(
        "INSERT INTO incident_postmortems (id, organization_id, incident_id, created_at, updated_at) \
         VALUES ('{}', '{org}', '{lowered}', '{now}', '{now}')",
        Uuid::new_v4()
    ))
    .await
    .expect("action_items defaults to []");
    assert_eq!(
        one_string(&db, "SELECT CAST(COUNT(*) AS TEXT) FROM incident_events")
            .await
            .as_deref(),
        Some("1"),
        "the rows from before are still there"
    );

    if postgres {
        assert_eq!(
            one_string(
                &db,
                "SELECT data_type::text FROM information_schema.columns WHERE table_name = 'incident_events' AND column_name = 'sequence'"
            )
            .await
            .as_deref(),
            Some("bigint")
        );
        // Writers following the original DDL may omit the JSON arrays.
        exec(&db, &format!(
            "INSERT INTO incident_records (id, organization_id, title, status, severity, started_at, created_at, updated_at) \
             VALUES ('{}', '{org}', 'minimal', 'OPEN', 'SEV4', '{now}', '{now}', '{now}')",
            Uuid::new_v4()
        ))
        .await
        .expect("linked_ticket_ids defaults to []");
    }

    // It undoes, and applies again.
    migration::Migrator::down(&db, Some(1)).await.unwrap();
    migration::Migrator::up(&db, None).await.unwrap();
    assert_eq!(highest(lowered).await.as_deref(), Some("SEV1"));
    db.close().await.ok();
}

/// Lowering a SEV1 to SEV3 before closing does not get around the postmortem rule.
#[tokio::test]
async fn lowering_the_severity_does_not_skip_the_postmortem() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app
        .create_incident(&alice, json!({ "title": "big", "severity": "SEV1" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.transition(&alice, &id, "RESOLVED", None).await;
    app.ok(
        &alice,
        "mutation($id: UUID!) { updateIncident(id: $id, input: { severity: SEV3 }) { severity } }",
        json!({ "id": id }),
    )
    .await;
    let (_, body) = app.transition(&alice, &id, "CLOSED", None).await;
    assert_eq!(code(&body["errors"][0]), "POSTMORTEM_REQUIRED", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("SEV1"),
        "{body}"
    );
    let data = app
        .ok(
            &alice,
            "query($id: UUID!) { incident(id: $id) { severity allowedTransitions } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data["incident"],
        json!({ "severity": "SEV3", "allowedTransitions": ["OPEN", "MITIGATING"] })
    );
}

/// Status changes stored before the structured columns existed get them from their sentence,
/// note or not; other events keep none.
#[tokio::test]
async fn status_changes_are_backfilled_into_their_columns() {
    let (test_db, url) = TestDb::create().await;
    let url = if test_db.is_postgres() {
        url
    } else {
        format!("{url}?mode=rwc")
    };
    let db = Database::connect(&url).await.unwrap();
    let postgres = db.get_database_backend() == DatabaseBackend::Postgres;
    // Up to the migration that adds the columns, whatever migrations came after it.
    let migrations = migration::Migrator::migrations();
    let before_columns = migrations
        .iter()
        .position(|m| m.name() == "m20261203_000003_structured_status_changes")
        .expect("the migration that adds the status columns") as u32;
    let from_columns = migrations.len() as u32 - before_columns;
    migration::Migrator::up(&db, Some(before_columns))
        .await
        .unwrap();
    let (org, incident) = (Uuid::new_v4(), Uuid::new_v4());
    let now = "2026-11-01T10:00:00Z";
    let (status, json) = if postgres {
        ("'RESOLVED'::incident_status", "'[]'::jsonb")
    } else {
        ("'RESOLVED'", "'[]'")
    };
    exec(&db, &format!(
        "INSERT INTO incident_records (id, organization_id, title, status, severity, linked_ticket_ids, started_at, created_at, updated_at) \
         VALUES ('{incident}', '{org}', 't', {status}, 'SEV3', {json}, '{now}', '{now}', '{now}')"
    ))
    .await
    .unwrap();
    let events = [
        ("status_changed", "OPEN → MITIGATING"),
        ("status_changed", "MITIGATING → RESOLVED"),
        (
            "status_changed",
            "RESOLVED → OPEN\n\nit came back → MITIGATING",
        ),
        ("note", "OPEN → CLOSED"),
        ("status_changed", "OPEN → RESOLVED"),
    ];
    for (i, (event_type, content)) in events.iter().enumerate() {
        exec(&db, &format!(
            "INSERT INTO incident_events (id, organization_id, incident_id, sequence, event_type, content, created_at) \
             VALUES ('{}', '{org}', '{incident}', {}, '{event_type}', '{content}', '{now}')",
            Uuid::new_v4(),
            i + 1
        ))
        .await
        .unwrap();
    }

    migration::Migrator::up(&db, None).await.unwrap();
    let columns = |sequence: usize| {
        let db = &db;
        async move {
            let sql = format!(
                "SELECT CAST(from_status AS TEXT), CAST(to_status AS TEXT) FROM incident_events \
                 WHERE incident_id = '{incident}' AND sequence = {sequence}"
            );
            let row = db
                .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap();
            (
                row.try_get_by_index::<Option<String>>(0).unwrap(),
                row.try_get_by_index::<Option<String>>(1).unwrap(),
            )
        }
    };
    let pair = |from: &str, to: &str| (Some(from.to_string()), Some(to.to_string()));
    assert_eq!(columns(1).await, pair("OPEN", "MITIGATING"));
    assert_eq!(columns(2).await, pair("MITIGATING", "RESOLVED"));
    assert_eq!(
        columns(3).await,
        pair("RESOLVED", "OPEN"),
        "the note is not read"
    );
    assert_eq!(columns(4).await, (None, None), "only status changes");
    assert_eq!(columns(5).await, pair("OPEN", "RESOLVED"));

    // It undoes, and applies again.
    migration::Migrator::down(&db, Some(from_columns))
        .await
        .unwrap();
    migration::Migrator::up(&db, None).await.unwrap();
    assert_eq!(columns(3).await, pair("RESOLVED", "OPEN"));
    db.close().await.ok();
}
