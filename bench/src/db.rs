//! The bench's own database access (sqlx, as re-exported by sea-orm): a pool on PostgreSQL or
//! SQLite, and the SQL text the server issues, captured from PostgreSQL's `log_statement = all`.

use std::time::Duration;

use anyhow::Context as _;
use sea_orm::sqlx;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

pub use sea_orm::sqlx::{PgPool, Row, SqlitePool};

#[derive(Clone)]
pub enum Pool {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$p` bound to the concrete sqlx pool and `$db` naming its database type, so
/// one piece of code serves both backends (each arm is type-checked on its own).
#[macro_export]
macro_rules! with_pool {
    ($pool:expr, |$p:ident, $db:ident| $body:expr) => {
        match $pool {
            $crate::db::Pool::Pg($p) => {
                #[allow(dead_code)]
                type $db = ::sea_orm::sqlx::Postgres;
                $body
            }
            $crate::db::Pool::Sqlite($p) => {
                #[allow(dead_code)]
                type $db = ::sea_orm::sqlx::Sqlite;
                $body
            }
        }
    };
}

impl Pool {
    /// A pool of exactly `connections` connections (opened up front, so a run measures queries,
    /// not connection set-up).
    pub async fn connect(url: &str, connections: u32) -> anyhow::Result<Pool> {
        if url.starts_with("postgres") {
            let options: PgConnectOptions = url.parse().context("the PostgreSQL URL")?;
            let pool = PgPoolOptions::new()
                .max_connections(connections)
                .min_connections(connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options.application_name("incidentd-bench"))
                .await
                .with_context(|| "cannot connect to PostgreSQL")?;
            Ok(Pool::Pg(pool))
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url);
            let path = path.split('?').next().unwrap_or(path);
            // The server's own settings (src/db.rs), so the floor pays what the server pays.
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(connections)
                .min_connections(connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .with_context(|| format!("cannot open SQLite file {path}"))?;
            Ok(Pool::Sqlite(pool))
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Pool::Pg(_))
    }

    /// The statement for this backend: the PostgreSQL text as captured, or its SQLite form.
    pub fn sql(&self, postgres: &str) -> String {
        match self {
            Pool::Pg(_) => postgres.to_string(),
            Pool::Sqlite(_) => to_sqlite(postgres),
        }
    }

    pub async fn close(&self) {
        with_pool!(self, |p, _D| p.close().await)
    }
}

/// sea-query's SQLite text differs from its PostgreSQL text in three ways only: `?` instead of
/// `$n`, no casts to and from the native enum types, and no `FOR UPDATE`.
pub fn to_sqlite(sql: &str) -> String {
    let mut s = sql.to_string();
    for col in ["status", "severity"] {
        s = s.replace(
            &format!("CAST(\"incident_records\".\"{col}\" AS \"text\")"),
            &format!("\"incident_records\".\"{col}\""),
        );
    }
    s = s.replace(" FOR UPDATE", "");
    // CAST($n AS "incident_status") → $n
    while let Some(start) = s.find("CAST($") {
        let Some(end) = s[start..].find(')') else {
            break;
        };
        let inner = &s[start + 5..start + end];
        let param = inner.split_whitespace().next().unwrap_or("").to_string();
        s.replace_range(start..start + end + 1, &param);
    }
    // $12 → ?, longest first is unnecessary: parameters are replaced left to right.
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// `, $a, $a+1, …` for an `IN (…)` list of `n` parameters starting at `$first`.
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statements the server issues, exactly as PostgreSQL logged them (sea-orm 2 / sea-query).
pub mod sql {
    pub const INCIDENT_COLUMNS: &str = r#""incident_records"."id", "incident_records"."organization_id", "incident_records"."title", CAST("incident_records"."status" AS "text"), CAST("incident_records"."severity" AS "text"), "incident_records"."linked_ticket_ids", "incident_records"."linked_problem_id", "incident_records"."started_at", "incident_records"."resolved_at", "incident_records"."created_by", "incident_records"."created_at", "incident_records"."updated_at""#;

    pub fn incidents_page() -> String {
        format!(
            r#"SELECT {INCIDENT_COLUMNS} FROM "incident_records" WHERE "incident_records"."organization_id" = $1 ORDER BY "incident_records"."created_at" DESC, "incident_records"."id" DESC LIMIT $2"#
        )
    }

    const INCIDENT: [&str; 13] = [
        "id",
        "organization_id",
        "title",
        "status",
        "severity",
        "highest_severity",
        "linked_ticket_ids",
        "linked_problem_id",
        "started_at",
        "resolved_at",
        "created_by",
        "created_at",
        "updated_at",
    ];
    const POSTMORTEM: [&str; 14] = [
        "id",
        "incident_id",
        "organization_id",
        "impact_summary",
        "root_cause",
        "timeline",
        "what_went_well",
        "what_went_wrong",
        "action_items",
        "public_summary",
        "internal_notes",
        "created_by",
        "created_at",
        "updated_at",
    ];
    const EVENT: [&str; 10] = [
        "id",
        "organization_id",
        "incident_id",
        "sequence",
        "event_type",
        "content",
        "created_by",
        "created_at",
        "from_status",
        "to_status",
    ];
    /// Read as text on PostgreSQL, where they are enum types.
    const ENUMS: [&str; 5] = [
        "status",
        "severity",
        "highest_severity",
        "from_status",
        "to_status",
    ];

    /// A column as the server selects it (sea-orm casts an enum to text on PostgreSQL).
    fn column(table: &str, column: &str, postgres: bool) -> String {
        let c = format!(r#""{table}"."{column}""#);
        if postgres && ENUMS.contains(&column) {
            format!(r#"CAST({c} AS "text")"#)
        } else {
            c
        }
    }

    fn params(postgres: bool) -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            if postgres {
                format!("${n}")
            } else {
                "?".to_string()
            }
        }
    }

    /// The board: the page and `totalCount` in one statement (src/incident/scope.rs
    /// `with_total`), an organization's 13 incident columns then `total`; parameters: the
    /// organization (the count), the organization (the page), the limit. Ready to run on the
    /// pool's database.
    pub fn incidents_page_with_total(postgres: bool) -> String {
        let mut p = params(postgres);
        let outer: Vec<String> = INCIDENT.iter().map(|c| column("p", c, false)).collect();
        let inner: Vec<String> = INCIDENT
            .iter()
            .map(|c| column("incident_records", c, postgres))
            .collect();
        format!(
            r#"SELECT {}, "t"."total" FROM (SELECT COUNT(*) AS "total" FROM "incident_records" WHERE "incident_records"."organization_id" = {}) AS "t" LEFT JOIN (SELECT {} FROM "incident_records" WHERE "incident_records"."organization_id" = {} ORDER BY "incident_records"."created_at" DESC, "incident_records"."id" DESC LIMIT {}) AS "p" ON 1 = 1 ORDER BY "p"."created_at" DESC, "p"."id" DESC"#,
            outer.join(", "),
            p(),
            inner.join(", "),
            p(),
            p()
        )
    }

    /// The detail: the incident joined with its postmortem, then (`UNION ALL`) its first
    /// events, in one statement (src/incident/scope.rs `incident_detail`): 13 incident, 14
    /// postmortem and 10 event columns, then `part` (0 the incident, 1 an event). Parameters:
    /// the organization (the postmortem), the organization and the incident (the incident),
    /// the organization, the incident and the limit (the events). Ready to run on the pool's
    /// database.
    pub fn incident_detail(postgres: bool) -> String {
        let mut p = params(postgres);
        let nulls = |prefix: &str, columns: &[&str]| -> Vec<String> {
            columns
                .iter()
                .map(|c| format!(r#"NULL AS "{prefix}{c}""#))
                .collect()
        };
        let named = |table: &str, prefix: &str, columns: &[&str]| -> Vec<String> {
            columns
                .iter()
                .map(|c| format!(r#"{} AS "{prefix}{c}""#, column(table, c, postgres)))
                .collect()
        };
        let head = [
            named("incident_records", "i_", &INCIDENT),
            named("incident_postmortems", "p_", &POSTMORTEM),
            nulls("e_", &EVENT),
        ]
        .concat()
        .join(", ");
        let tail = [
            nulls("i_", &INCIDENT),
            nulls("p_", &POSTMORTEM),
            named("e", "e_", &EVENT),
        ]
        .concat()
        .join(", ");
        let head = format!(
            r#"SELECT {head}, 0 AS "part" FROM "incident_records" LEFT JOIN "incident_postmortems" ON "incident_postmortems"."organization_id" = {} AND "incident_postmortems"."incident_id" = "incident_records"."id" WHERE "incident_records"."organization_id" = {} AND "incident_records"."id" = {}"#,
            p(),
            p(),
            p()
        );
        let events: Vec<String> = EVENT.iter().map(|c| format!(r#""{c}""#)).collect();
        let tail = format!(
            r#"SELECT {tail}, 1 AS "part" FROM (SELECT {} FROM "incident_events" WHERE "incident_events"."organization_id" = {} AND "incident_events"."incident_id" = {} ORDER BY "sequence" ASC LIMIT {}) AS "e""#,
            events.join(", "),
            p(),
            p(),
            p()
        );
        // sea-query parenthesizes a union's member on PostgreSQL; SQLite refuses that.
        if postgres {
            format!("{head} UNION ALL ({tail})")
        } else {
            format!("{head} UNION ALL {tail}")
        }
    }

    pub fn incident_by_id() -> String {
        format!(
            r#"SELECT {INCIDENT_COLUMNS} FROM "incident_records" WHERE "incident_records"."organization_id" = $1 AND "incident_records"."id" = $2 LIMIT $3"#
        )
    }

    pub fn lock_incident() -> String {
        format!("{} FOR UPDATE", incident_by_id())
    }

    /// The events page of each incident of a batch (src/incident/scope.rs `events_window`):
    /// `LATERAL … LIMIT` on PostgreSQL, a `ROW_NUMBER()` window on SQLite. Ready to run on
    /// the pool's database (no further `to_sqlite`).
    pub fn events_window(n: usize, postgres: bool) -> String {
        if postgres {
            events_lateral(n)
        } else {
            super::to_sqlite(&events_row_number(n))
        }
    }

    pub fn events_lateral(n: usize) -> String {
        let ids: Vec<String> = (2..n + 2).map(|i| format!("(${i}::uuid)")).collect();
        format!(
            r#"SELECT "e"."id", "e"."organization_id", "e"."incident_id", "e"."sequence", "e"."event_type", "e"."content", "e"."created_by", "e"."created_at" FROM (VALUES {}) AS "p"("incident_id") CROSS JOIN LATERAL (SELECT * FROM "incident_events" WHERE "organization_id" = $1 AND "incident_id" = "p"."incident_id" ORDER BY "sequence" ASC LIMIT ${}) AS "e" ORDER BY "e"."incident_id" ASC, "e"."sequence" ASC"#,
            ids.join(", "),
            n + 2
        )
    }

    /// What the server issues on SQLite (and issued on PostgreSQL before it used `LATERAL`).
    pub fn events_row_number(n: usize) -> String {
        format!(
            r#"SELECT * FROM (SELECT "id", "organization_id", "incident_id", "sequence", "event_type", "content", "created_by", "created_at", ROW_NUMBER() OVER (PARTITION BY "incident_id" ORDER BY "sequence" ASC) AS "rn" FROM "incident_events" WHERE "incident_events"."organization_id" = $1 AND "incident_events"."incident_id" IN ({})) AS "w" WHERE "rn" <= ${} ORDER BY "incident_id" ASC, "sequence" ASC"#,
            super::placeholders(2, n),
            n + 2
        )
    }

    pub fn event_counts(n: usize) -> String {
        format!(
            r#"SELECT "incident_events"."incident_id", COUNT("incident_events"."id") AS "n" FROM "incident_events" WHERE "incident_events"."organization_id" = $1 AND "incident_events"."incident_id" IN ({}) GROUP BY "incident_events"."incident_id""#,
            super::placeholders(2, n)
        )
    }

    pub fn postmortems_of(n: usize) -> String {
        format!(
            r#"SELECT "incident_postmortems"."id", "incident_postmortems"."incident_id", "incident_postmortems"."organization_id", "incident_postmortems"."impact_summary", "incident_postmortems"."root_cause", "incident_postmortems"."timeline", "incident_postmortems"."what_went_well", "incident_postmortems"."what_went_wrong", "incident_postmortems"."action_items", "incident_postmortems"."public_summary", "incident_postmortems"."internal_notes", "incident_postmortems"."created_by", "incident_postmortems"."created_at", "incident_postmortems"."updated_at" FROM "incident_postmortems" WHERE "incident_postmortems"."organization_id" = $1 AND "incident_postmortems"."incident_id" IN ({})"#,
            super::placeholders(2, n)
        )
    }

    pub const LAST_SEQUENCE: &str = r#"SELECT MAX("incident_events"."sequence") AS "max_sequence" FROM "incident_events" WHERE "incident_events"."organization_id" = $1 AND "incident_events"."incident_id" = $2 LIMIT $3"#;

    pub const INSERT_EVENT: &str = r#"INSERT INTO "incident_events" ("id", "organization_id", "incident_id", "sequence", "event_type", "content", "created_by", "created_at") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT ("id") DO NOTHING"#;

    pub const INSERT_AUDIT: &str = r#"INSERT INTO "audit_events" ("id", "organization_id", "actor_id", "action", "entity_type", "entity_id", "incident_id", "changes", "created_at") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"#;

    pub const UPDATE_STATUS: &str = r#"UPDATE "incident_records" SET "status" = CAST($1 AS "incident_status"), "resolved_at" = $2, "updated_at" = $3 WHERE "incident_records"."id" = $4 AND "incident_records"."organization_id" = $5"#;

    /// PostgreSQL only: the announcement, delivered at commit.
    pub const NOTIFY: &str = "SELECT pg_notify($1, $2)";
    pub const CHANNEL: &str = "incidentd_changes";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The detail floor runs the very statement the server builds for the detail page.
    #[test]
    fn the_detail_floor_is_the_servers_statement() {
        use incidentd::incident::identity::{Principal, Role};
        use incidentd::incident::read::EventWindow;
        use sea_orm::DatabaseBackend;
        let principal = Principal {
            user_id: uuid::Uuid::nil(),
            org_id: uuid::Uuid::nil(),
            role: Role::Viewer,
            expires_at: 0,
            person: None,
        };
        let window = EventWindow {
            after: None,
            before: None,
            types: None,
            backward: false,
            fetch: crate::scenario::read::DETAIL_EVENTS as u64 + 1,
        };
        for (backend, postgres) in [
            (DatabaseBackend::Postgres, true),
            (DatabaseBackend::Sqlite, false),
        ] {
            let server =
                principal
                    .scope()
                    .incident_detail(backend, uuid::Uuid::nil(), Some(&window), true);
            assert_eq!(server.sql, sql::incident_detail(postgres), "{backend:?}");
        }
    }

    #[test]
    fn sqlite_text_drops_casts_locks_and_numbers() {
        assert_eq!(
            to_sqlite(&sql::lock_incident()),
            r#"SELECT "incident_records"."id", "incident_records"."organization_id", "incident_records"."title", "incident_records"."status", "incident_records"."severity", "incident_records"."linked_ticket_ids", "incident_records"."linked_problem_id", "incident_records"."started_at", "incident_records"."resolved_at", "incident_records"."created_by", "incident_records"."created_at", "incident_records"."updated_at" FROM "incident_records" WHERE "incident_records"."organization_id" = ? AND "incident_records"."id" = ? LIMIT ?"#
        );
        assert_eq!(
            to_sqlite(sql::UPDATE_STATUS),
            r#"UPDATE "incident_records" SET "status" = ?, "resolved_at" = ?, "updated_at" = ? WHERE "incident_records"."id" = ? AND "incident_records"."organization_id" = ?"#
        );
        assert!(sql::events_window(12, false).ends_with(
            r#"IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)) AS "w" WHERE "rn" <= ? ORDER BY "incident_id" ASC, "sequence" ASC"#
        ));
    }
}
