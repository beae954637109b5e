//! `write`: `addIncidentEvent` and `transitionIncident` mixed, each one transaction with its
//! timeline event, audit row and announcement; and its floor, the same statements straight on
//! the database. Each worker owns a disjoint set of open incidents and walks their workflow
//! (OPEN → MITIGATING → RESOLVED → OPEN again, with the reopening note), so no request is refused.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sea_orm::sqlx::{self, Row};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::client::Gql;
use crate::db::{Pool, sql};
use crate::drive::Worker;
use crate::with_pool;
use crate::world::World;

pub const ADD_EVENT: &str = "mutation AddEvent($id: UUID!, $input: AddIncidentEventInput!) { \
     addIncidentEvent(incidentId: $id, input: $input) { id sequence createdAt } }";
pub const TRANSITION: &str = "mutation Transition($id: UUID!, $to: IncidentStatus!, $note: String) { \
     transitionIncident(id: $id, to: $to, note: $note) { id status resolvedAt updatedAt } }";

/// One incident a worker owns, with the status it has now.
#[derive(Debug, Clone)]
pub struct Owned {
    pub id: Uuid,
    pub status: String,
}

/// The next step of the bench's walk through the workflow, and its note (a reopen needs one).
fn next_status(status: &str) -> (&'static str, Option<&'static str>) {
    match status {
        "OPEN" => ("MITIGATING", None),
        "MITIGATING" => ("RESOLVED", None),
        _ => ("OPEN", Some("reopened by the bench")),
    }
}

/// Splits the open incidents (not CLOSED) among `workers`, each worker within one organization
/// (worker w → organization w mod n), so no two workers write one incident.
pub fn assign(world: &World, workers: usize) -> Vec<(usize, Vec<Owned>)> {
    let n = world.orgs.len();
    let mut out: Vec<(usize, Vec<Owned>)> = (0..workers).map(|w| (w % n, Vec::new())).collect();
    for (o, org) in world.orgs.iter().enumerate() {
        let mine: Vec<usize> = (0..workers).filter(|w| w % n == o).collect();
        if mine.is_empty() {
            continue;
        }
        for (k, incident) in org
            .incidents
            .iter()
            .filter(|i| i.status != "CLOSED")
            .enumerate()
        {
            out[mine[k % mine.len()]].1.push(Owned {
                id: incident.id,
                status: incident.status.clone(),
            });
        }
    }
    out
}

pub struct ServerWrite {
    pub gql: Gql,
    pub owned: Vec<Owned>,
    pub transition_share: f64,
    pub rng: ChaCha8Rng,
    pub counter: u64,
}

impl ServerWrite {
    pub fn new(gql: Gql, owned: Vec<Owned>, transition_share: f64, seed: u64) -> ServerWrite {
        ServerWrite {
            gql,
            owned,
            transition_share,
            rng: ChaCha8Rng::seed_from_u64(seed),
            counter: 0,
        }
    }
}

impl Worker for ServerWrite {
    async fn step(&mut self) -> Result<u64, String> {
        if self.owned.is_empty() {
            return Err("this worker owns no open incident".into());
        }
        let k = self.rng.random_range(0..self.owned.len());
        self.counter += 1;
        if self.rng.random_bool(self.transition_share) {
            let (to, note) = next_status(&self.owned[k].status);
            let vars = json!({ "id": self.owned[k].id, "to": to, "note": note });
            let data = self.gql.run(TRANSITION, &vars).await?;
            match data["transitionIncident"]["status"].as_str() {
                Some(status) => self.owned[k].status = status.to_string(),
                None => return Err("transitionIncident answered no status".into()),
            }
        } else {
            let vars = json!({
                "id": self.owned[k].id,
                "input": { "content": format!("bench note {} from the write scenario", self.counter) }
            });
            self.gql.run(ADD_EVENT, &vars).await?;
        }
        Ok(0)
    }
}

pub struct WriteSql {
    lock: String,
    last_sequence: String,
    insert_event: String,
    insert_audit: String,
    update_status: String,
}

impl WriteSql {
    pub fn new(pool: &Pool) -> Arc<WriteSql> {
        Arc::new(WriteSql {
            lock: pool.sql(&sql::lock_incident()),
            last_sequence: pool.sql(sql::LAST_SEQUENCE),
            insert_event: pool.sql(sql::INSERT_EVENT),
            insert_audit: pool.sql(sql::INSERT_AUDIT),
            update_status: pool.sql(sql::UPDATE_STATUS),
        })
    }
}

/// The same writes as `ServerWrite`, as the server's statements in one transaction each.
pub struct FloorWrite {
    pool: Pool,
    sql: Arc<WriteSql>,
    org: Uuid,
    user: Uuid,
    owned: Vec<Owned>,
    transition_share: f64,
    rng: ChaCha8Rng,
    counter: u64,
    /// SQLite: one writer at a time, as the server queues its writers (src/db.rs).
    write_lock: Option<Arc<Mutex<()>>>,
}

impl FloorWrite {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pool: Pool,
        sql: Arc<WriteSql>,
        org: Uuid,
        user: Uuid,
        owned: Vec<Owned>,
        transition_share: f64,
        seed: u64,
        write_lock: Option<Arc<Mutex<()>>>,
    ) -> FloorWrite {
        FloorWrite {
            pool,
            sql,
            org,
            user,
            owned,
            transition_share,
            rng: ChaCha8Rng::seed_from_u64(seed),
            counter: 0,
            write_lock,
        }
    }
}

/// `[{"o":…,"i":…,"k":…,"s":…}]`, the announcement the server NOTIFYs.
fn announcement(org: Uuid, incident: Uuid, kind: &str, sequence: Option<i64>) -> Value {
    let mut a = Map::new();
    a.insert("o".into(), json!(org));
    a.insert("i".into(), json!(incident));
    a.insert("k".into(), json!(kind));
    if let Some(s) = sequence {
        a.insert("s".into(), json!(s));
    }
    Value::Object(a)
}

impl Worker for FloorWrite {
    async fn step(&mut self) -> Result<u64, String> {
        if self.owned.is_empty() {
            return Err("this worker owns no open incident".into());
        }
        let k = self.rng.random_range(0..self.owned.len());
        self.counter += 1;
        let transition = self
            .rng
            .random_bool(self.transition_share)
            .then(|| next_status(&self.owned[k].status));
        let incident = self.owned[k].id;
        let from = self.owned[k].status.clone();
        let (org, user, sql) = (self.org, self.user, self.sql.clone());
        let content = format!("bench note {} from the write floor", self.counter);
        let pg = self.pool.is_postgres();
        let _guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let result: Result<(), sqlx::Error> = with_pool!(&self.pool, |p, _D| {
            async {
                let at = chrono::Utc::now();
                let mut tx = p.begin().await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(&*sql.lock))
                    .bind(org)
                    .bind(incident)
                    .bind(1i64)
                    .fetch_one(&mut *tx)
                    .await?;
                let resolved_before: Option<chrono::DateTime<chrono::Utc>> = row.try_get(8)?;
                let mut announcements = Vec::new();
                let (event_type, event_content, audit) = match transition {
                    Some((to, note)) => {
                        let resolved_at = match to {
                            "RESOLVED" => Some(at),
                            _ => None,
                        };
                        sqlx::query(sqlx::AssertSqlSafe(&*sql.update_status))
                            .bind(to)
                            .bind(resolved_at)
                            .bind(at)
                            .bind(incident)
                            .bind(org)
                            .execute(&mut *tx)
                            .await?;
                        let mut before = Map::new();
                        let mut after = Map::new();
                        before.insert("status".into(), json!(from));
                        after.insert("status".into(), json!(to));
                        if resolved_before != resolved_at {
                            before.insert("resolvedAt".into(), json!(resolved_before));
                            after.insert("resolvedAt".into(), json!(resolved_at));
                        }
                        let content = match note {
                            Some(note) => format!("{from} → {to}\n\n{note}"),
                            None => format!("{from} → {to}"),
                        };
                        let audit = (
                            "incident_updated",
                            "incident",
                            incident,
                            json!({ "before": before, "after": after }),
                        );
                        ("status_changed", content, Some(audit))
                    }
                    None => ("note", content, None),
                };
                // BIGINT since the schema-hardening migration (INTEGER, i.e. 64-bit, on SQLite).
                let max: Option<i64> = sqlx::query(sqlx::AssertSqlSafe(&*sql.last_sequence))
                    .bind(org)
                    .bind(incident)
                    .bind(1i64)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                let sequence = max.unwrap_or(0) + 1;
                let event_id = Uuid::now_v7();
                sqlx::query(sqlx::AssertSqlSafe(&*sql.insert_event))
                    .bind(event_id)
                    .bind(org)
                    .bind(incident)
                    .bind(sequence)
                    .bind(event_type)
                    .bind(Some(event_content.clone()))
                    .bind(Some(user))
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                announcements.push(announcement(org, incident, "EVENT_ADDED", Some(sequence)));
                let audit = match audit {
                    Some(audit) => {
                        announcements.push(announcement(org, incident, "STATUS_CHANGED", None));
                        audit
                    }
                    None => (
                        "incident_event_added",
                        "incident_event",
                        event_id,
                        json!({ "before": null, "after": {
                            "eventType": event_type, "sequence": sequence, "content": event_content
                        } }),
                    ),
                };
                sqlx::query(sqlx::AssertSqlSafe(&*sql.insert_audit))
                    .bind(Uuid::now_v7())
                    .bind(org)
                    .bind(Some(user))
                    .bind(audit.0)
                    .bind(audit.1)
                    .bind(audit.2)
                    .bind(Some(incident))
                    .bind(audit.3)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                if pg {
                    sqlx::query(sql::NOTIFY)
                        .bind(sql::CHANNEL)
                        .bind(Value::Array(announcements).to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
            .await
        });
        result.map_err(|e| format!("SQL: {e}"))?;
        if let Some((to, _)) = transition {
            self.owned[k].status = to.to_string();
        }
        Ok(0)
    }
}

/// Statements per request of the mix, BEGIN and COMMIT not counted (as the server's counter).
pub fn floor_statements(transition_share: f64, postgres: bool) -> f64 {
    let notify = if postgres { 1.0 } else { 0.0 };
    // lock, max, insert event, insert audit (+ update for a transition) (+ NOTIFY).
    4.0 + notify + transition_share
}
