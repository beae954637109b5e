//! `seed`: a reproducible data set written straight to the database, row for row as the server
//! writes it (src/incident/service.rs): gapless sequences from 1, a `status_changed` event and an
//! `incident_updated` audit row per transition, an audit row per user event, the postmortem of
//! every resolved or closed incident with its `postmortem_updated` row, JSON as serde renders it.

use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sea_orm::sqlx::{self, QueryBuilder};
use sea_orm_migration::MigratorTrait;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::db::Pool;
use crate::with_pool;

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub organizations: usize,
    pub incidents: usize,
    pub events: usize,
    pub seed: u64,
    /// The newest incident is created shortly before this instant; fixed, so two seeds are equal.
    pub epoch: DateTime<Utc>,
    /// Empty the four tables first.
    pub reset: bool,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            organizations: 20,
            incidents: 500,
            events: 30,
            seed: 1,
            epoch: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            reset: false,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct SeedReport {
    pub organizations: usize,
    pub incidents: usize,
    pub events: usize,
    pub postmortems: usize,
    pub audit_events: usize,
    pub seconds: f64,
}

/// Runs the server's migrations (the `migration` crate, as `incidentd migrate` does).
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    // As the server does (src/db.rs): a `sqlite:` URL creates its file when missing.
    let url = if url.starts_with("sqlite:") && !url.contains("mode=") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_string()
    };
    let conn = sea_orm::Database::connect(&url)
        .await
        .with_context(|| "cannot connect to the database to migrate it")?;
    migration::Migrator::up(&conn, None)
        .await
        .context("migrations failed")?;
    conn.close().await.ok();
    Ok(())
}

pub async fn seed(url: &str, opts: &SeedOptions) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    migrate(url).await?;
    let pool = Pool::connect(url, 2).await?;
    if opts.reset {
        for table in [
            "audit_events",
            "incident_postmortems",
            "incident_events",
            "incident_records",
        ] {
            let delete = format!("DELETE FROM \"{table}\"");
            with_pool!(&pool, |p, _D| sqlx::query(sqlx::AssertSqlSafe(
                delete.as_str()
            ))
            .execute(p)
            .await
            .map(|_| ()))?;
        }
    } else {
        let existing: i64 = with_pool!(&pool, |p, _D| sqlx::query_scalar(
            "SELECT COUNT(*) FROM incident_records"
        )
        .fetch_one(p)
        .await)?;
        anyhow::ensure!(
            existing == 0,
            "the database already holds {existing} incidents: seed an empty one, or pass --reset"
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut report = SeedReport {
        organizations: opts.organizations,
        ..Default::default()
    };
    for org_index in 0..opts.organizations {
        let org = Org::new(&mut rng);
        let mut rows = Rows::default();
        for i in 0..opts.incidents {
            // Newest last: incident i of n is created (n - i) × ~2 h before the epoch.
            let back = (opts.incidents - i) as i64 * 7200 + org_index as i64;
            let created = opts.epoch - Duration::seconds(back) + ms(&mut rng, 0, 60_000);
            generate_incident(&mut rng, &org, created, opts.events, &mut rows);
        }
        report.incidents += rows.incidents.len();
        report.events += rows.events.len();
        report.postmortems += rows.postmortems.len();
        report.audit_events += rows.audits.len();
        rows.insert(&pool).await?;
    }
    if pool.is_postgres() {
        with_pool!(&pool, |p, _D| sqlx::query("ANALYZE")
            .execute(p)
            .await
            .map(|_| ()))?;
    }
    pool.close().await;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

struct Org {
    id: Uuid,
    users: Vec<Uuid>,
}

impl Org {
    fn new(rng: &mut ChaCha8Rng) -> Org {
        let id = random_uuid(rng);
        let users = (0..5).map(|_| random_uuid(rng)).collect();
        Org { id, users }
    }

    fn user(&self, rng: &mut ChaCha8Rng) -> Uuid {
        self.users[rng.random_range(0..self.users.len())]
    }
}

/// The ids of organizations and users come from the seeded generator too.
fn random_uuid(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

/// Row ids are UUIDv7 like the server's, with the row's own time and seeded random bits.
fn v7(rng: &mut ChaCha8Rng, at: DateTime<Utc>) -> Uuid {
    let random: [u8; 10] = rng.random();
    uuid::Builder::from_unix_timestamp_millis(at.timestamp_millis() as u64, &random).into_uuid()
}

fn ms(rng: &mut ChaCha8Rng, lo: i64, hi: i64) -> Duration {
    Duration::milliseconds(rng.random_range(lo..hi))
}

#[derive(Default)]
struct Rows {
    incidents: Vec<IncidentRow>,
    events: Vec<EventRow>,
    postmortems: Vec<PostmortemRow>,
    audits: Vec<AuditRow>,
}

struct IncidentRow {
    id: Uuid,
    org: Uuid,
    title: String,
    status: &'static str,
    severity: &'static str,
    linked_ticket_ids: Value,
    linked_problem_id: Option<Uuid>,
    started_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct EventRow {
    id: Uuid,
    org: Uuid,
    incident_id: Uuid,
    sequence: i32,
    event_type: &'static str,
    content: Option<String>,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    /// A status change's (from, to), as the server records it beside the sentence.
    status_change: Option<(&'static str, &'static str)>,
}

struct PostmortemRow {
    id: Uuid,
    incident_id: Uuid,
    org: Uuid,
    texts: [Option<String>; 7],
    action_items: Value,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct AuditRow {
    id: Uuid,
    org: Uuid,
    actor_id: Option<Uuid>,
    action: &'static str,
    entity_type: &'static str,
    entity_id: Uuid,
    incident_id: Option<Uuid>,
    changes: Value,
    created_at: DateTime<Utc>,
}

/// src/incident/audit.rs `Diff`: before/after maps, `before` null when empty.
#[derive(Default)]
struct Diff {
    before: Map<String, Value>,
    after: Map<String, Value>,
}

impl Diff {
    fn field(&mut self, name: &str, before: Value, after: Value) {
        if before != after {
            self.before.insert(name.into(), before);
            self.after.insert(name.into(), after);
        }
    }
    fn created(&mut self, name: &str, after: Value) {
        self.after.insert(name.into(), after);
    }
    fn into_json(self) -> Value {
        let before = if self.before.is_empty() {
            Value::Null
        } else {
            Value::Object(self.before)
        };
        json!({ "before": before, "after": Value::Object(self.after) })
    }
}

const SYSTEMS: [&str; 12] = [
    "Checkout",
    "Payments API",
    "Search",
    "Login",
    "Image CDN",
    "Order export",
    "Notifications",
    "Billing",
    "Inventory sync",
    "Mobile push",
    "Reporting",
    "Webhooks",
];
const SYMPTOMS: [&str; 10] = [
    "is failing for some users",
    "latency above SLO",
    "returns 502s",
    "error rate at 12%",
    "queue backlog growing",
    "timeouts from the primary database",
    "stale data after deploy",
    "partial outage in eu-west-1",
    "certificate expired",
    "memory leak on the workers",
];
const WORDS: [&str; 40] = [
    "rolled",
    "back",
    "the",
    "deploy",
    "error",
    "rate",
    "dropped",
    "paged",
    "on-call",
    "customer",
    "reports",
    "confirmed",
    "database",
    "failover",
    "started",
    "queue",
    "drained",
    "cache",
    "hit",
    "ratio",
    "recovered",
    "restarted",
    "pods",
    "in",
    "region",
    "traffic",
    "shifted",
    "to",
    "secondary",
    "monitoring",
    "alert",
    "fired",
    "again",
    "investigating",
    "root",
    "cause",
    "mitigation",
    "holds",
    "since",
    "minutes",
];
const USER_EVENT_TYPES: [&str; 6] = [
    "note",
    "note",
    "note",
    "customer_update",
    "action_taken",
    "investigation",
];

fn sentence(rng: &mut ChaCha8Rng, min_words: usize, max_words: usize) -> String {
    let n = rng.random_range(min_words..=max_words);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    s.push('.');
    s
}

fn ts(at: DateTime<Utc>) -> Value {
    json!(at)
}

fn generate_incident(
    rng: &mut ChaCha8Rng,
    org: &Org,
    created_at: DateTime<Utc>,
    n_events: usize,
    rows: &mut Rows,
) {
    let id = v7(rng, created_at);
    let creator = org.user(rng);
    let severity = match rng.random_range(0..10) {
        0 => "SEV1",
        1 | 2 => "SEV2",
        3..=6 => "SEV3",
        _ => "SEV4",
    };
    let final_status = match rng.random_range(0..20) {
        0..=3 => "OPEN",
        4..=6 => "MITIGATING",
        7..=12 => "RESOLVED",
        _ => "CLOSED",
    };
    let tickets: Vec<String> = (0..rng.random_range(0..3))
        .map(|_| format!("OPS-{}", rng.random_range(100..10_000)))
        .collect();
    let linked_ticket_ids = json!(tickets);
    let linked_problem_id = rng.random_bool(0.1).then(|| random_uuid(rng));
    let title = format!(
        "{} {} #{}",
        SYSTEMS[rng.random_range(0..SYSTEMS.len())],
        SYMPTOMS[rng.random_range(0..SYMPTOMS.len())],
        rng.random_range(1..100_000)
    );
    let started_at = created_at;

    let mut diff = Diff::default();
    diff.created("title", json!(title));
    diff.created("status", json!("OPEN"));
    diff.created("severity", json!(severity));
    diff.created("linkedTicketIds", linked_ticket_ids.clone());
    diff.created("linkedProblemId", json!(linked_problem_id));
    diff.created("startedAt", ts(started_at));
    rows.audits.push(AuditRow {
        id: v7(rng, created_at),
        org: org.id,
        actor_id: Some(creator),
        action: "incident_created",
        entity_type: "incident",
        entity_id: id,
        incident_id: Some(id),
        changes: diff.into_json(),
        created_at,
    });

    // The path to the final status; each step is a status_changed event at a chosen place.
    let path: &[(&str, &str)] = match final_status {
        "OPEN" => &[],
        "MITIGATING" => &[("OPEN", "MITIGATING")],
        "RESOLVED" => &[("OPEN", "MITIGATING"), ("MITIGATING", "RESOLVED")],
        _ => &[
            ("OPEN", "MITIGATING"),
            ("MITIGATING", "RESOLVED"),
            ("RESOLVED", "CLOSED"),
        ],
    };
    let path = &path[..path.len().min(n_events)];
    // Sequences of the transitions: spread over the timeline, a closing one last.
    let places: Vec<usize> = (0..path.len())
        .map(|k| {
            if path[k].1 == "CLOSED" {
                n_events
            } else {
                ((k + 1) * n_events / (path.len() + 1)).max(k + 1)
            }
        })
        .collect();

    let mut status = "OPEN";
    let mut resolved_at: Option<DateTime<Utc>> = None;
    let mut updated_at = created_at;
    let mut at = created_at;
    let mut postmortem_due = false;
    for sequence in 1..=n_events {
        at += ms(rng, 30_000, 600_000);
        if postmortem_due && status == "RESOLVED" && places.contains(&sequence) {
            // Written between resolving and closing: closing a SEV1/SEV2 needs it.
            push_postmortem(rng, org, id, at - Duration::seconds(10), rows);
            postmortem_due = false;
        }
        let transition = places.iter().position(|&p| p == sequence).map(|k| path[k]);
        let actor = org.user(rng);
        match transition {
            Some((from, to)) => {
                let before_resolved = resolved_at;
                match to {
                    "RESOLVED" => resolved_at = Some(at),
                    "OPEN" | "MITIGATING" => resolved_at = None,
                    _ => {}
                }
                status = to;
                updated_at = at;
                rows.events.push(EventRow {
                    id: v7(rng, at),
                    org: org.id,
                    incident_id: id,
                    sequence: sequence as i32,
                    event_type: "status_changed",
                    content: Some(format!("{from} → {to}")),
                    created_by: Some(actor),
                    created_at: at,
                    status_change: Some((from, to)),
                });
                let mut diff = Diff::default();
                diff.field("status", json!(from), json!(to));
                diff.field(
                    "resolvedAt",
                    json!(before_resolved),
                    json!(resolved_at.map(ts)),
                );
                rows.audits.push(AuditRow {
                    id: v7(rng, at),
                    org: org.id,
                    actor_id: Some(actor),
                    action: "incident_updated",
                    entity_type: "incident",
                    entity_id: id,
                    incident_id: Some(id),
                    changes: diff.into_json(),
                    created_at: at,
                });
                if to == "RESOLVED" {
                    postmortem_due = true;
                }
            }
            None => {
                let event_type = USER_EVENT_TYPES[rng.random_range(0..USER_EVENT_TYPES.len())];
                let content = sentence(rng, 12, 30);
                let event_id = v7(rng, at);
                let mut diff = Diff::default();
                diff.created("eventType", json!(event_type));
                diff.created("sequence", json!(sequence as i32));
                diff.created("content", json!(content));
                rows.events.push(EventRow {
                    id: event_id,
                    org: org.id,
                    incident_id: id,
                    sequence: sequence as i32,
                    event_type,
                    content: Some(content),
                    created_by: Some(actor),
                    created_at: at,
                    status_change: None,
                });
                rows.audits.push(AuditRow {
                    id: v7(rng, at),
                    org: org.id,
                    actor_id: Some(actor),
                    action: "incident_event_added",
                    entity_type: "incident_event",
                    entity_id: event_id,
                    incident_id: Some(id),
                    changes: diff.into_json(),
                    created_at: at,
                });
            }
        }
    }
    if postmortem_due {
        push_postmortem(rng, org, id, at + Duration::minutes(30), rows);
    }
    rows.incidents.push(IncidentRow {
        id,
        org: org.id,
        title,
        status,
        severity,
        linked_ticket_ids,
        linked_problem_id,
        started_at,
        resolved_at,
        created_by: Some(creator),
        created_at,
        updated_at,
    });
}

/// `createPostmortem` with every text field and a few action items.
fn push_postmortem(
    rng: &mut ChaCha8Rng,
    org: &Org,
    incident_id: Uuid,
    at: DateTime<Utc>,
    rows: &mut Rows,
) {
    let names = [
        "impactSummary",
        "rootCause",
        "timeline",
        "whatWentWell",
        "whatWentWrong",
        "publicSummary",
        "internalNotes",
    ];
    let texts: [Option<String>; 7] = std::array::from_fn(|_| Some(sentence(rng, 8, 24)));
    let items: Vec<Value> = (0..rng.random_range(1..4))
        .map(|_| {
            let due = (at + Duration::days(rng.random_range(7..60))).date_naive();
            json!({
                "title": sentence(rng, 3, 8),
                "owner": rng.random_bool(0.7).then(|| SYSTEMS[rng.random_range(0..SYSTEMS.len())].to_lowercase()),
                "dueDate": due,
                "done": rng.random_bool(0.3),
                "ticketId": rng.random_bool(0.5).then(|| format!("OPS-{}", rng.random_range(100..10_000))),
            })
        })
        .collect();
    let action_items = Value::Array(items);
    // src/incident/service.rs `apply_postmortem`: text fields in this order, then the items.
    let mut diff = Diff::default();
    for (name, text) in names.iter().zip(&texts) {
        diff.field(name, Value::Null, json!(text));
    }
    diff.field("actionItems", json!([]), action_items.clone());
    let id = v7(rng, at);
    let author = org.user(rng);
    rows.audits.push(AuditRow {
        id: v7(rng, at),
        org: org.id,
        actor_id: Some(author),
        action: "postmortem_updated",
        entity_type: "postmortem",
        entity_id: id,
        incident_id: Some(incident_id),
        changes: diff.into_json(),
        created_at: at,
    });
    rows.postmortems.push(PostmortemRow {
        id,
        incident_id,
        org: org.id,
        texts,
        action_items,
        created_by: Some(author),
        created_at: at,
        updated_at: at,
    });
}

/// Rows per INSERT: under SQLite's 32,766 and PostgreSQL's 65,535 parameters.
const BATCH: usize = 500;

impl Rows {
    async fn insert(&self, pool: &Pool) -> anyhow::Result<()> {
        let pg = pool.is_postgres();
        with_pool!(pool, |p, D| {
            let mut tx = p.begin().await?;
            if pg {
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
            }
            for chunk in self.incidents.chunks(BATCH) {
                let mut q = QueryBuilder::<D>::new(
                    "INSERT INTO incident_records (id, organization_id, title, status, severity, linked_ticket_ids, linked_problem_id, started_at, resolved_at, created_by, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.id)
                        .push_bind(r.org)
                        .push_bind(r.title.clone());
                    if pg {
                        b.push("CAST(")
                            .push_bind_unseparated(r.status)
                            .push_unseparated(" AS incident_status)");
                        b.push("CAST(")
                            .push_bind_unseparated(r.severity)
                            .push_unseparated(" AS incident_severity)");
                    } else {
                        b.push_bind(r.status).push_bind(r.severity);
                    }
                    b.push_bind(r.linked_ticket_ids.clone())
                        .push_bind(r.linked_problem_id)
                        .push_bind(r.started_at)
                        .push_bind(r.resolved_at)
                        .push_bind(r.created_by)
                        .push_bind(r.created_at)
                        .push_bind(r.updated_at);
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in self.events.chunks(BATCH) {
                let mut q = QueryBuilder::<D>::new(
                    "INSERT INTO incident_events (id, organization_id, incident_id, sequence, event_type, content, created_by, created_at, from_status, to_status) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.id)
                        .push_bind(r.org)
                        .push_bind(r.incident_id)
                        .push_bind(r.sequence)
                        .push_bind(r.event_type)
                        .push_bind(r.content.clone())
                        .push_bind(r.created_by)
                        .push_bind(r.created_at);
                    let (from, to) = r.status_change.unzip();
                    if pg {
                        b.push("CAST(")
                            .push_bind_unseparated(from)
                            .push_unseparated(" AS incident_status)");
                        b.push("CAST(")
                            .push_bind_unseparated(to)
                            .push_unseparated(" AS incident_status)");
                    } else {
                        b.push_bind(from).push_bind(to);
                    }
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in self.postmortems.chunks(BATCH) {
                let mut q = QueryBuilder::<D>::new(
                    "INSERT INTO incident_postmortems (id, incident_id, organization_id, impact_summary, root_cause, timeline, what_went_well, what_went_wrong, public_summary, internal_notes, action_items, created_by, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.id).push_bind(r.incident_id).push_bind(r.org);
                    for text in &r.texts {
                        b.push_bind(text.clone());
                    }
                    b.push_bind(r.action_items.clone())
                        .push_bind(r.created_by)
                        .push_bind(r.created_at)
                        .push_bind(r.updated_at);
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in self.audits.chunks(BATCH) {
                let mut q = QueryBuilder::<D>::new(
                    "INSERT INTO audit_events (id, organization_id, actor_id, action, entity_type, entity_id, incident_id, changes, created_at) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.id)
                        .push_bind(r.org)
                        .push_bind(r.actor_id)
                        .push_bind(r.action)
                        .push_bind(r.entity_type)
                        .push_bind(r.entity_id)
                        .push_bind(r.incident_id)
                        .push_bind(r.changes.clone())
                        .push_bind(r.created_at);
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<(), anyhow::Error>(())
        })
    }
}
