//! Tenancy as a property: random sequences of operations
//! by three organizations, each against any organization's ids, and after every step every row
//! the caller is given belongs to the caller's organization, and another organization's id is
//! `NOT_FOUND` exactly where an unknown id would be.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use incidentd::incident::identity::Role;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, code, spawn_app};

const STATUSES: [&str; 4] = ["OPEN", "MITIGATING", "RESOLVED", "CLOSED"];
const SEVERITIES: [&str; 4] = ["SEV1", "SEV2", "SEV3", "SEV4"];

#[derive(Debug, Clone)]
enum Op {
    Create {
        sev: usize,
        title: usize,
    },
    AddEvent {
        pick: usize,
    },
    Transition {
        pick: usize,
        to: usize,
        note: bool,
    },
    Postmortem {
        pick: usize,
    },
    List {
        status: Option<usize>,
        severity: Option<usize>,
        search: Option<usize>,
    },
    Read {
        pick: usize,
    },
    Postmortems,
    Audit {
        pick: Option<usize>,
    },
}

fn op() -> impl Strategy<Value = (usize, Op)> {
    let op = prop_oneof![
        3 => (0..4usize, 0..3usize).prop_map(|(sev, title)| Op::Create { sev, title }),
        2 => any::<usize>().prop_map(|pick| Op::AddEvent { pick }),
        2 => (any::<usize>(), 0..4usize, any::<bool>())
            .prop_map(|(pick, to, note)| Op::Transition { pick, to, note }),
        2 => any::<usize>().prop_map(|pick| Op::Postmortem { pick }),
        2 => (
            proptest::option::of(0..4usize),
            proptest::option::of(0..4usize),
            proptest::option::of(0..3usize)
        )
            .prop_map(|(status, severity, search)| Op::List { status, severity, search }),
        3 => any::<usize>().prop_map(|pick| Op::Read { pick }),
        1 => Just(Op::Postmortems),
        1 => proptest::option::of(any::<usize>()).prop_map(|pick| Op::Audit { pick }),
    ];
    (0..3usize, op)
}

const TITLES: [&str; 3] = ["database down", "queue backlog", "cert expiry"];

/// What the test knows of the world: each row's organization.
#[derive(Default)]
struct Model {
    /// Incidents in creation order, with their organization index and whether a postmortem exists.
    incidents: Vec<(String, usize, bool)>,
    /// Every row id (incident, event, postmortem) and its organization index.
    owner: HashMap<String, usize>,
}

impl Model {
    fn pick(&self, n: usize) -> Option<(String, usize, bool)> {
        if self.incidents.is_empty() {
            return None;
        }
        Some(self.incidents[n % self.incidents.len()].clone())
    }
}

struct Orgs {
    responders: Vec<Caller>,
    admins: Vec<Caller>,
}

fn org_index(orgs: &Orgs, org: &Value) -> Option<usize> {
    orgs.responders
        .iter()
        .position(|c| org.as_str() == Some(&c.org.to_string()))
}

/// How many foreign ids were tried and how many returned rows were checked, over all cases:
/// the property must not hold vacuously.
static FOREIGN: AtomicUsize = AtomicUsize::new(0);
static ROWS: AtomicUsize = AtomicUsize::new(0);

/// Asserts every id in `ids` is known and owned by `who`.
fn owned(model: &Model, who: usize, ids: &[&Value], context: &Value) -> Result<(), TestCaseError> {
    ROWS.fetch_add(ids.len(), Ordering::Relaxed);
    for id in ids {
        let id = id
            .as_str()
            .ok_or_else(|| TestCaseError::fail(format!("an id is missing: {context}")))?;
        prop_assert_eq!(
            model.owner.get(id),
            Some(&who),
            "row {} is not the caller's: {}",
            id,
            context
        );
    }
    Ok(())
}

/// Checks an incident node and its nested rows.
fn check_incident(
    model: &Model,
    orgs: &Orgs,
    who: usize,
    node: &Value,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        org_index(orgs, &node["organizationId"]),
        Some(who),
        "{}",
        node
    );
    owned(model, who, &[&node["id"]], node)?;
    for event in node["events"]["nodes"].as_array().into_iter().flatten() {
        prop_assert_eq!(&event["incidentId"], &node["id"], "{}", node);
        owned(model, who, &[&event["id"]], node)?;
    }
    if !node["postmortem"].is_null() {
        prop_assert_eq!(&node["postmortem"]["incidentId"], &node["id"], "{}", node);
        owned(model, who, &[&node["postmortem"]["id"]], node)?;
    }
    Ok(())
}

/// A foreign id must be answered `NOT_FOUND` with no data; an own id must not be.
fn expect_ownership(foreign: bool, body: &Value, allowed: &[&str]) -> Result<bool, TestCaseError> {
    let error = body["errors"].get(0);
    if foreign {
        FOREIGN.fetch_add(1, Ordering::Relaxed);
        prop_assert_eq!(error.map(code), Some("NOT_FOUND"), "{}", body);
        prop_assert!(body["data"].is_null(), "{}", body);
        return Ok(false);
    }
    match error {
        None => Ok(true),
        Some(e) => {
            prop_assert!(allowed.contains(&code(e)), "unexpected error: {}", body);
            Ok(false)
        }
    }
}

const INCIDENT: &str = "id organizationId title status severity events(first: 50) { nodes { id incidentId } } postmortem { id incidentId }";

async fn run(app: &TestApp, ops: Vec<(usize, Op)>) -> Result<(), TestCaseError> {
    let orgs = Orgs {
        responders: (0..3).map(|_| app.responder()).collect(),
        admins: vec![],
    };
    let orgs = Orgs {
        admins: orgs
            .responders
            .iter()
            .map(|r| app.caller(r.org, Role::Admin))
            .collect(),
        ..orgs
    };
    let mut model = Model::default();
    for (who, op) in ops {
        let caller = &orgs.responders[who];
        let post = |query: String, variables: Value| async move {
            let (status, body) = app.post(Some(&caller.token), &query, variables).await;
            assert_eq!(status, 200, "{body}");
            body
        };
        match op {
            Op::Create { sev, title } => {
                let body = post(
                    format!("mutation($input: CreateIncidentInput!) {{ createIncident(input: $input) {{ {INCIDENT} }} }}"),
                    json!({ "input": { "title": TITLES[title], "severity": SEVERITIES[sev] } }),
                )
                .await;
                let node = &body["data"]["createIncident"];
                prop_assert!(body["errors"].is_null(), "{}", body);
                let id = node["id"].as_str().unwrap().to_string();
                model.owner.insert(id.clone(), who);
                model.incidents.push((id, who, false));
                check_incident(&model, &orgs, who, node)?;
            }
            Op::AddEvent { pick } => {
                let Some((id, owner, _)) = model.pick(pick) else {
                    continue;
                };
                let body = post(
                    "mutation($id: UUID!) { addIncidentEvent(incidentId: $id, input: { content: \"n\" }) { id incidentId incident { organizationId } } }".into(),
                    json!({ "id": id }),
                )
                .await;
                if expect_ownership(owner != who, &body, &["CONFLICT"])? {
                    let event = &body["data"]["addIncidentEvent"];
                    prop_assert_eq!(event["incidentId"].as_str(), Some(id.as_str()));
                    prop_assert_eq!(
                        org_index(&orgs, &event["incident"]["organizationId"]),
                        Some(who)
                    );
                    model
                        .owner
                        .insert(event["id"].as_str().unwrap().to_string(), who);
                }
            }
            Op::Transition { pick, to, note } => {
                let Some((id, owner, _)) = model.pick(pick) else {
                    continue;
                };
                let body = post(
                    format!("mutation($id: UUID!, $to: IncidentStatus!, $note: String) {{ transitionIncident(id: $id, to: $to, note: $note) {{ {INCIDENT} }} }}"),
                    json!({ "id": id, "to": STATUSES[to], "note": note.then_some("because") }),
                )
                .await;
                let allowed = [
                    "INVALID_TRANSITION",
                    "POSTMORTEM_REQUIRED",
                    "BAD_USER_INPUT",
                ];
                if expect_ownership(owner != who, &body, &allowed)? {
                    let node = &body["data"]["transitionIncident"];
                    // The status change appended an event: learn its id before checking.
                    for event in node["events"]["nodes"].as_array().into_iter().flatten() {
                        if event["incidentId"].as_str() == Some(id.as_str()) {
                            model
                                .owner
                                .entry(event["id"].as_str().unwrap().to_string())
                                .or_insert(who);
                        }
                    }
                    check_incident(&model, &orgs, who, node)?;
                }
            }
            Op::Postmortem { pick } => {
                let Some((id, owner, exists)) = model.pick(pick) else {
                    continue;
                };
                // The owner's view decides create or update; a foreign caller gets either.
                let name = if exists {
                    "updatePostmortem"
                } else {
                    "createPostmortem"
                };
                let body = post(
                    format!("mutation($id: UUID!) {{ {name}(incidentId: $id, input: {{ rootCause: \"rc\" }}) {{ id incidentId incident {{ organizationId }} }} }}"),
                    json!({ "id": id }),
                )
                .await;
                if expect_ownership(owner != who, &body, &["CONFLICT"])? {
                    let pm = &body["data"][name];
                    prop_assert_eq!(pm["incidentId"].as_str(), Some(id.as_str()));
                    prop_assert_eq!(
                        org_index(&orgs, &pm["incident"]["organizationId"]),
                        Some(who)
                    );
                    model
                        .owner
                        .insert(pm["id"].as_str().unwrap().to_string(), who);
                    let entry = model.incidents.iter_mut().find(|i| i.0 == id).unwrap();
                    entry.2 = true;
                }
            }
            Op::List {
                status,
                severity,
                search,
            } => {
                let mut filter = serde_json::Map::new();
                if let Some(s) = status {
                    filter.insert("status".into(), json!([STATUSES[s]]));
                }
                if let Some(s) = severity {
                    filter.insert("severity".into(), json!([SEVERITIES[s]]));
                }
                if let Some(s) = search {
                    filter.insert("search".into(), json!(TITLES[s].split(' ').next()));
                }
                let body = post(
                    format!("query($filter: IncidentFilter) {{ incidents(filter: $filter, first: 100) {{ totalCount nodes {{ {INCIDENT} }} }} }}"),
                    json!({ "filter": filter }),
                )
                .await;
                prop_assert!(body["errors"].is_null(), "{}", body);
                let nodes = body["data"]["incidents"]["nodes"].as_array().unwrap();
                for node in nodes {
                    check_incident(&model, &orgs, who, node)?;
                }
                if filter.is_empty() {
                    let mine = model.incidents.iter().filter(|i| i.1 == who).count();
                    prop_assert_eq!(nodes.len(), mine, "{}", body);
                }
            }
            Op::Read { pick } => {
                let Some((id, owner, _)) = model.pick(pick) else {
                    continue;
                };
                let body = post(
                    format!("query($id: UUID!) {{ incident(id: $id) {{ {INCIDENT} }} }}"),
                    json!({ "id": id }),
                )
                .await;
                if expect_ownership(owner != who, &body, &[])? {
                    check_incident(&model, &orgs, who, &body["data"]["incident"])?;
                } else {
                    prop_assert!(body["data"]["incident"].is_null(), "{}", body);
                }
            }
            Op::Postmortems => {
                let body = post(
                    "{ postmortems(first: 100) { nodes { id incidentId incident { id organizationId } } } }".into(),
                    json!({}),
                )
                .await;
                prop_assert!(body["errors"].is_null(), "{}", body);
                let nodes = body["data"]["postmortems"]["nodes"].as_array().unwrap();
                for pm in nodes {
                    owned(
                        &model,
                        who,
                        &[&pm["id"], &pm["incidentId"], &pm["incident"]["id"]],
                        pm,
                    )?;
                    prop_assert_eq!(
                        org_index(&orgs, &pm["incident"]["organizationId"]),
                        Some(who)
                    );
                }
                let mine = model.incidents.iter().filter(|i| i.1 == who && i.2).count();
                prop_assert_eq!(nodes.len(), mine, "{}", body);
            }
            Op::Audit { pick } => {
                let target = pick.and_then(|p| model.pick(p));
                let (status, body) = app
                    .post(
                        Some(&orgs.admins[who].token),
                        "query($id: UUID) { auditEvents(entityId: $id, first: 100) { nodes { entityId incidentId } } }",
                        json!({ "id": target.as_ref().map(|t| t.0.clone()) }),
                    )
                    .await;
                prop_assert_eq!(status, 200);
                prop_assert!(body["errors"].is_null(), "{}", body);
                let nodes = body["data"]["auditEvents"]["nodes"].as_array().unwrap();
                for row in nodes {
                    owned(&model, who, &[&row["entityId"], &row["incidentId"]], row)?;
                }
                match target {
                    Some((_, owner, _)) if owner != who => {
                        prop_assert!(nodes.is_empty(), "{}", body)
                    }
                    // Its creation, at least.
                    Some(_) => prop_assert!(!nodes.is_empty(), "{}", body),
                    None => {}
                }
            }
        }
    }
    Ok(())
}

#[test]
fn every_row_a_caller_is_given_is_its_organizations() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(spawn_app());
    let cases = std::env::var("INCIDENTD_TENANCY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    // Fresh organizations per case, on one server and database: earlier cases' rows are other
    // organizations' rows too, which only makes the property stronger.
    let result = runner.run(&proptest::collection::vec(op(), 1..30), |ops| {
        rt.block_on(run(&app, ops))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (foreign, rows) = (
        FOREIGN.load(Ordering::Relaxed),
        ROWS.load(Ordering::Relaxed),
    );
    eprintln!("tenancy_props: {foreign} foreign ids tried, {rows} rows checked");
    assert!(
        foreign >= 10 && rows >= 30,
        "too little was tried: {foreign} foreign ids, {rows} rows"
    );
    drop(app);
    drop(rt);
}
