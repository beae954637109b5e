//! `list`, `board` and `detail`: the three pages, over GraphQL and as their bare SQL (the floor).

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sea_orm::sqlx::{self, Row};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::client::Gql;
use crate::db::{Pool, sql, to_sqlite};
use crate::drive::Worker;
use crate::with_pool;
use crate::world::Org;

pub const LIST_PAGE: usize = 50;
pub const LIST_EVENTS: usize = 20;
pub const DETAIL_EVENTS: usize = 50;

const POSTMORTEM_FIELDS: &str = "id impactSummary rootCause timeline whatWentWell whatWentWrong \
     actionItems { title owner dueDate done ticketId } publicSummary internalNotes createdBy createdAt updatedAt";
const INCIDENT_FIELDS: &str = "id title status severity linkedTicketIds linkedProblemId startedAt \
     resolvedAt createdBy createdAt updatedAt allowedTransitions";
const EVENT_FIELDS: &str = "id sequence eventType content createdBy createdAt";

/// The incident list page: 50 incidents, each with its first 20 events and its postmortem.
pub fn list_query() -> String {
    format!(
        "query List {{ incidents(first: {LIST_PAGE}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {INCIDENT_FIELDS} \
         events(first: {LIST_EVENTS}) {{ nodes {{ {EVENT_FIELDS} }} }} postmortem {{ {POSTMORTEM_FIELDS} }} }} }} }}"
    )
}

/// The board: 50 incidents, flat, with the total.
pub fn board_query() -> String {
    format!(
        "query Board {{ incidents(first: {LIST_PAGE}) {{ totalCount pageInfo {{ hasNextPage endCursor }} nodes {{ \
         id title status severity linkedTicketIds startedAt resolvedAt updatedAt }} }} }}"
    )
}

/// One incident with its whole timeline (30 events when seeded) and its postmortem.
pub fn detail_query() -> String {
    format!(
        "query Detail($id: UUID!) {{ incident(id: $id) {{ {INCIDENT_FIELDS} \
         events(first: {DETAIL_EVENTS}) {{ nodes {{ {EVENT_FIELDS} }} }} postmortem {{ {POSTMORTEM_FIELDS} }} }} }}"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    List,
    Board,
    Detail,
}

pub struct ServerRead {
    pub gql: Gql,
    pub page: Page,
    pub query: Arc<str>,
    pub incidents: Vec<Uuid>,
    pub rng: ChaCha8Rng,
}

impl ServerRead {
    pub fn new(gql: Gql, page: Page, org: &Org, seed: u64) -> ServerRead {
        let query: Arc<str> = match page {
            Page::List => list_query(),
            Page::Board => board_query(),
            Page::Detail => detail_query(),
        }
        .into();
        ServerRead {
            gql,
            page,
            query,
            incidents: org.incidents.iter().map(|i| i.id).collect(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Worker for ServerRead {
    async fn step(&mut self) -> Result<u64, String> {
        let variables = match self.page {
            Page::Detail => {
                let id = self.incidents[self.rng.random_range(0..self.incidents.len())];
                json!({ "id": id })
            }
            _ => Value::Null,
        };
        self.gql.check(&self.query, &variables).await
    }
}

/// The SQL the server issues for one page, run straight on the pool, rows decoded and dropped.
pub struct FloorRead {
    pub pool: Pool,
    pub page: Page,
    pub org: Uuid,
    pub incidents: Vec<Uuid>,
    pub rng: ChaCha8Rng,
    sql: Arc<FloorSql>,
}

pub struct FloorSql {
    incidents_page: String,
    board: String,
    list_events: String,
    list_postmortems: String,
    detail: String,
}

impl FloorSql {
    pub fn new(pool: &Pool) -> Arc<FloorSql> {
        Arc::new(FloorSql {
            incidents_page: pool.sql(&sql::incidents_page()),
            board: sql::incidents_page_with_total(pool.is_postgres()),
            list_events: sql::events_window(LIST_PAGE, pool.is_postgres()),
            list_postmortems: pool.sql(&sql::postmortems_of(LIST_PAGE)),
            detail: sql::incident_detail(pool.is_postgres()),
        })
    }
}

impl FloorRead {
    pub fn new(pool: Pool, sql: Arc<FloorSql>, page: Page, org: &Org, seed: u64) -> FloorRead {
        FloorRead {
            pool,
            page,
            org: org.id,
            incidents: org.incidents.iter().map(|i| i.id).collect(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            sql,
        }
    }

    /// SQL statements one request of this page issues.
    pub fn statements(page: Page) -> u32 {
        match page {
            Page::List => 3,
            Page::Board => 1,
            Page::Detail => 1,
        }
    }
}

/// Decodes every column of an `incident_records` row as the server's entity does.
macro_rules! decode_incident {
    ($row:expr) => {{
        let r = $row;
        let id: Uuid = r.try_get(0)?;
        let _: Uuid = r.try_get(1)?;
        let _: String = r.try_get(2)?;
        let _: String = r.try_get(3)?;
        let _: String = r.try_get(4)?;
        let _: serde_json::Value = r.try_get(5)?;
        let _: Option<Uuid> = r.try_get(6)?;
        let _: chrono::DateTime<chrono::Utc> = r.try_get(7)?;
        let _: Option<chrono::DateTime<chrono::Utc>> = r.try_get(8)?;
        let _: Option<Uuid> = r.try_get(9)?;
        let _: chrono::DateTime<chrono::Utc> = r.try_get(10)?;
        let _: chrono::DateTime<chrono::Utc> = r.try_get(11)?;
        id
    }};
}

/// Decodes the 13 incident columns the server's one-statement pages select (from `at`).
macro_rules! decode_incident_row {
    ($row:expr, $at:expr) => {{
        let (r, at) = ($row, $at);
        let _: Uuid = r.try_get(at)?;
        let _: Uuid = r.try_get(at + 1)?;
        let _: String = r.try_get(at + 2)?;
        let _: String = r.try_get(at + 3)?;
        let _: String = r.try_get(at + 4)?;
        let _: Option<String> = r.try_get(at + 5)?;
        let _: serde_json::Value = r.try_get(at + 6)?;
        let _: Option<Uuid> = r.try_get(at + 7)?;
        let _: chrono::DateTime<chrono::Utc> = r.try_get(at + 8)?;
        let _: Option<chrono::DateTime<chrono::Utc>> = r.try_get(at + 9)?;
        let _: Option<Uuid> = r.try_get(at + 10)?;
        let _: chrono::DateTime<chrono::Utc> = r.try_get(at + 11)?;
        let _: chrono::DateTime<chrono::Utc> = r.try_get(at + 12)?;
    }};
}

/// Decodes the event columns of the list's window (from `at`, 0 when not given).
macro_rules! decode_event {
    ($row:expr) => {
        decode_event!($row, 0)
    };
    ($row:expr, $at:expr) => {{
        let (r, at) = ($row, $at);
        let _: Uuid = r.try_get(at)?;
        let _: Uuid = r.try_get(at + 1)?;
        let _: Uuid = r.try_get(at + 2)?;
        let _: i64 = r.try_get(at + 3)?;
        let _: String = r.try_get(at + 4)?;
        let _: Option<String> = r.try_get(at + 5)?;
        let _: Option<Uuid> = r.try_get(at + 6)?;
        let _: chrono::DateTime<chrono::Utc> = r.try_get(at + 7)?;
    }};
}

/// Decodes a postmortem's 14 columns (from `at`, 0 when not given).
macro_rules! decode_postmortem {
    ($row:expr) => {
        decode_postmortem!($row, 0)
    };
    ($row:expr, $at:expr) => {{
        let (r, at) = ($row, $at);
        let _: Uuid = r.try_get(at)?;
        let _: Uuid = r.try_get(at + 1)?;
        let _: Uuid = r.try_get(at + 2)?;
        for i in 3..8 {
            let _: Option<String> = r.try_get(at + i)?;
        }
        let _: serde_json::Value = r.try_get(at + 8)?;
        let _: Option<String> = r.try_get(at + 9)?;
        let _: Option<String> = r.try_get(at + 10)?;
        let _: Option<Uuid> = r.try_get(at + 11)?;
        let _: chrono::DateTime<chrono::Utc> = r.try_get(at + 12)?;
        let _: chrono::DateTime<chrono::Utc> = r.try_get(at + 13)?;
    }};
}

impl Worker for FloorRead {
    async fn step(&mut self) -> Result<u64, String> {
        let detail_id = match self.page {
            Page::Detail => Some(self.incidents[self.rng.random_range(0..self.incidents.len())]),
            _ => None,
        };
        let (org, page, stmts) = (self.org, self.page, self.sql.clone());
        let is_pg = self.pool.is_postgres();
        let result: Result<u64, sqlx::Error> = with_pool!(&self.pool, |p, _D| {
            async {
                match page {
                    Page::Board => {
                        let rows = sqlx::query(sqlx::AssertSqlSafe(&*stmts.board))
                            .bind(org)
                            .bind(org)
                            .bind((LIST_PAGE + 1) as i64)
                            .fetch_all(p)
                            .await?;
                        for row in rows.iter().take(LIST_PAGE) {
                            let id: Option<Uuid> = row.try_get(0)?;
                            if id.is_some() {
                                decode_incident_row!(row, 0);
                            }
                            let _: i64 = row.try_get(13)?;
                        }
                        Ok(0)
                    }
                    Page::List => {
                        let rows = sqlx::query(sqlx::AssertSqlSafe(&*stmts.incidents_page))
                            .bind(org)
                            .bind((LIST_PAGE + 1) as i64)
                            .fetch_all(p)
                            .await?;
                        let mut ids = Vec::with_capacity(rows.len());
                        for row in rows.iter().take(LIST_PAGE) {
                            ids.push(decode_incident!(row));
                        }
                        if ids.is_empty() {
                            return Ok(0);
                        }
                        // A short page (a tiny data set) has its own IN list.
                        let short = (ids.len() < LIST_PAGE).then(|| {
                            (
                                sql::events_window(ids.len(), is_pg),
                                pool_sql(is_pg, &sql::postmortems_of(ids.len())),
                            )
                        });
                        let (events_sql, postmortems_sql) = match &short {
                            Some((e, p)) => (e.as_str(), p.as_str()),
                            None => (stmts.list_events.as_str(), stmts.list_postmortems.as_str()),
                        };
                        // The server's DataLoaders run these two side by side.
                        let mut events = sqlx::query(sqlx::AssertSqlSafe(events_sql)).bind(org);
                        for id in &ids {
                            events = events.bind(*id);
                        }
                        let events = events.bind((LIST_EVENTS + 1) as i64).fetch_all(p);
                        let mut postmortems =
                            sqlx::query(sqlx::AssertSqlSafe(postmortems_sql)).bind(org);
                        for id in &ids {
                            postmortems = postmortems.bind(*id);
                        }
                        let postmortems = postmortems.fetch_all(p);
                        let (events, postmortems) = tokio::join!(events, postmortems);
                        for row in &events? {
                            decode_event!(row);
                        }
                        for row in &postmortems? {
                            decode_postmortem!(row);
                        }
                        Ok(0)
                    }
                    Page::Detail => {
                        let id = detail_id.unwrap_or_default();
                        let rows = sqlx::query(sqlx::AssertSqlSafe(&*stmts.detail))
                            .bind(org)
                            .bind(org)
                            .bind(id)
                            .bind(org)
                            .bind(id)
                            .bind((DETAIL_EVENTS + 1) as i64)
                            .fetch_all(p)
                            .await?;
                        for row in &rows {
                            let part: i32 = row.try_get(37)?;
                            if part == 0 {
                                decode_incident_row!(row, 0);
                                let postmortem: Option<Uuid> = row.try_get(13)?;
                                if postmortem.is_some() {
                                    decode_postmortem!(row, 13);
                                }
                            } else {
                                decode_event!(row, 27);
                                let _: Option<String> = row.try_get(35)?;
                                let _: Option<String> = row.try_get(36)?;
                            }
                        }
                        Ok(0)
                    }
                }
            }
            .await
        });
        result.map_err(|e| format!("SQL: {e}"))
    }
}

fn pool_sql(postgres: bool, text: &str) -> String {
    if postgres {
        text.to_string()
    } else {
        to_sqlite(text)
    }
}
