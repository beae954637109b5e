//! Organization B sees and changes none of organization A's rows, through any path, and the code
//! cannot query a tenant table except through `OrgScope`.

use serde_json::{Value, json};

use crate::helpers::{code, spawn_app};

#[tokio::test]
async fn another_organization_sees_nothing_and_changes_nothing() {
    let app = spawn_app().await;
    let (alice, bob) = (app.responder(), app.responder());
    let id = app
        .create_incident(
            &alice,
            json!({ "title": "A's outage", "linkedTicketIds": ["A-1"] }),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.add_event(&alice, &id, "A's note").await;
    app.ok(&alice, "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { rootCause: \"A's cause\" }) { id } }", json!({ "id": id }))
        .await;
    let unknown = uuid::Uuid::new_v4().to_string();

    // Reads: a foreign id answers exactly as an unknown id does.
    let single =
        "query($id: UUID!) { incident(id: $id) { id events { nodes { id } } postmortem { id } } }";
    let foreign = app
        .post(Some(&bob.token), single, json!({ "id": id }))
        .await;
    let missing = app
        .post(Some(&bob.token), single, json!({ "id": unknown }))
        .await;
    assert_eq!(code(&foreign.1["errors"][0]), "NOT_FOUND");
    assert_eq!(strip_ids(foreign.1), strip_ids(missing.1));

    let lists = app
        .ok(
            &bob,
            "{ incidents { totalCount nodes { id } } postmortems { totalCount nodes { id } } a: incidents(filter: { linkedTicketId: \"A-1\" }) { totalCount } b: incidents(filter: { search: \"outage\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        lists,
        json!({ "incidents": { "totalCount": 0, "nodes": [] }, "postmortems": { "totalCount": 0, "nodes": [] }, "a": { "totalCount": 0 }, "b": { "totalCount": 0 } })
    );

    // Writes: every mutation on A's incident is NOT_FOUND, as for an unknown id.
    let mutations = [
        "mutation($id: UUID!) { updateIncident(id: $id, input: { title: \"pwned\" }) { id } }",
        "mutation($id: UUID!) { transitionIncident(id: $id, to: RESOLVED) { id } }",
        "mutation($id: UUID!) { addIncidentEvent(incidentId: $id, input: { content: \"pwned\" }) { id } }",
        "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { rootCause: \"pwned\" }) { id } }",
        "mutation($id: UUID!) { updatePostmortem(incidentId: $id, input: { rootCause: \"pwned\" }) { id } }",
    ];
    for m in mutations {
        let foreign = app.post(Some(&bob.token), m, json!({ "id": id })).await;
        let missing = app
            .post(Some(&bob.token), m, json!({ "id": unknown }))
            .await;
        assert_eq!(
            code(&foreign.1["errors"][0]),
            "NOT_FOUND",
            "{m}: {}",
            foreign.1
        );
        assert_eq!(strip_ids(foreign.1), strip_ids(missing.1), "{m}");
    }

    // Nothing of A's changed, and B's admin sees no audit rows of A's.
    let data = app
        .ok(&alice, "query($id: UUID!) { incident(id: $id) { title status events { totalCount } postmortem { rootCause } } }", json!({ "id": id }))
        .await;
    assert_eq!(
        data["incident"],
        json!({ "title": "A's outage", "status": "OPEN", "events": { "totalCount": 1 }, "postmortem": { "rootCause": "A's cause" } })
    );
    assert!(app.audit(bob.org, &id).await.is_empty());
    assert_eq!(app.audit(alice.org, &id).await.len(), 3);
}

/// Error bodies differ only in the id the caller sent, which is not in them; drop nothing else.
fn strip_ids(v: Value) -> Value {
    v
}

/// Only `incident/scope.rs` may name an entity's query builders; everything else goes through `OrgScope`.
#[test]
fn tenancy_is_structural() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let forbidden = [
        "Entity::find",
        "Entity::insert",
        "Entity::update",
        "Entity::delete",
        "::find_by_id(",
        "find_by_statement",
        "from_raw_sql",
        "execute_unprepared",
        "Statement::from",
    ];
    // scope.rs is the scoped query builder itself; read.rs runs statements scope.rs built;
    // live/pg.rs sends NOTIFY, which touches no table; incident/statistics.rs runs aggregates
    // over OrgScope's builders (it names tables only to qualify their columns); the
    // persisted-document store (graphql/transport/persisted/store.rs) owns the one table that is
    // not tenant data (document text by hash; the organization it names registered the
    // document and is charged for it, it does not limit who may read it); the session store
    // (auth/sessions.rs) finds a session by the hash of its cookie before anyone is known (that
    // lookup is what makes the caller known), sweeps ended sessions for nobody in particular,
    // and names the session's organization in every other statement;
    // incident/webhooks/store.rs is the webhook tables' scope: every function a request calls
    // takes an `OrgScope` and filters by it, and the delivery worker's cross-organization reads
    // hand back rows that name their organization (its one unprepared statement is a `SET LOCAL`
    // that touches no table); db/statements.rs is where statements outside transactions run
    // (a sea-orm connection: its `execute_unprepared` passes on SQL it is given, it builds none).
    let entity_builders = [
        "Entity::find",
        "Entity::insert",
        "Entity::update",
        "Entity::delete",
        "::find_by_id(",
    ];
    let exempt = |file: &str, pattern: &str| {
        file == "incident/scope.rs"
            || ([
                "graphql/transport/persisted/store.rs",
                "auth/sessions.rs",
                "incident/webhooks/store.rs",
            ]
            .contains(&file)
                && entity_builders.contains(&pattern))
            || (file == "incident/webhooks/store.rs" && pattern == "execute_unprepared")
            || (file == "db/statements.rs" && pattern == "execute_unprepared")
            || (file == "incident/read.rs" && pattern == "find_by_statement")
            || (file == "incident/statistics.rs" && pattern == "find_by_statement")
            || (file == "live/pg.rs" && pattern == "Statement::from")
    };
    let mut offenders = vec![];
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                for pattern in forbidden {
                    if line.contains(pattern) && !exempt(&rel, pattern) {
                        offenders.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unscoped database access:\n{}",
        offenders.join("\n")
    );
}
