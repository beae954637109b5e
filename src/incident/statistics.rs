//! Incident statistics for one organization, computed in the database: counts, reopenings, time to
//! mitigate and to resolve (mean and nearest-rank percentiles), a weekly series and action items.
//!
//! Every statement starts from `OrgScope`'s builders (the filtered incidents, the scoped events
//! and postmortems); the SQL written here only combines those scoped sets, it names no table.
//! The dialect differences (seconds between two times, the week of a time, JSON action items)
//! are the only per-backend text, and both databases give the same numbers. Status changes are
//! read from the statuses each `status_changed` event records (`from_status`, `to_status`),
//! never from the sentence in its content, which is written for people.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use sea_orm::sea_query::{
    Alias, CommonTableExpression, Expr, ExprTrait, JoinType, Query, SelectStatement, UnionType,
    WithClause,
};
use sea_orm::{
    ColumnTrait, DatabaseBackend, FromQueryResult, PaginatorTrait, QueryFilter, QuerySelect,
    QueryTrait, Select,
};

use super::OrgScope;
use super::input::{IncidentFilter, STATUS_CHANGED};
use super::read::filtered;
use crate::db::Db;
use crate::entity::{Severity, Status, incident, incident_event, postmortem};
use crate::error::{AppError, AppResult};

/// The longest window one request may ask for: two years is 105 weekly points.
pub const MAX_WINDOW_DAYS: i64 = 731;

/// `[from, to)`, parsed: `from` before `to`, at most [`MAX_WINDOW_DAYS`] apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    pub fn parse(from: DateTime<Utc>, to: DateTime<Utc>) -> AppResult<Window> {
        let from = super::truncate(super::input::instant("from", from)?);
        let to = super::truncate(super::input::instant("to", to)?);
        if from >= to {
            return Err(AppError::bad_input("to", "to must be later than from"));
        }
        if to - from > TimeDelta::days(MAX_WINDOW_DAYS) {
            return Err(AppError::bad_input(
                "to",
                format!("the window may span at most {MAX_WINDOW_DAYS} days"),
            ));
        }
        Ok(Window { from, to })
    }
}

/// Mean and nearest-rank percentiles of a set of durations, in seconds; `None` when it is empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurationStats {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeverityStatistics {
    pub severity: Severity,
    pub count: u64,
    pub time_to_mitigate: DurationStats,
    pub time_to_resolve: DurationStats,
}

/// Incidents started in the week (Monday 00:00 UTC) beginning on `start`, by severity.
#[derive(Debug, Clone, PartialEq)]
pub struct Week {
    pub start: NaiveDate,
    pub by_severity: Vec<(Severity, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IncidentStatistics {
    pub window: Window,
    pub total: u64,
    pub by_severity: Vec<SeverityStatistics>,
    pub by_status: Vec<(Status, u64)>,
    pub open_now: u64,
    pub reopen_count: u64,
    pub reopened_incidents: u64,
    pub time_to_mitigate: DurationStats,
    pub time_to_resolve: DurationStats,
    pub weekly: Vec<Week>,
    pub action_items_open: u64,
    pub action_items_overdue: u64,
}

const SEVERITIES: [Severity; 4] = [
    Severity::Sev1,
    Severity::Sev2,
    Severity::Sev3,
    Severity::Sev4,
];
const STATUSES: [Status; 4] = [
    Status::Open,
    Status::Mitigating,
    Status::Resolved,
    Status::Closed,
];

/// The caller's statistics for incidents matching `filter`. Incidents started in the window count
/// everywhere except in `open_now` and the action items, which describe now: every incident
/// matching `filter`, whenever it started.
#[tracing::instrument(skip(db, filter))]
pub async fn incident_statistics(
    db: &Db,
    scope: OrgScope,
    filter: &IncidentFilter,
    window: Window,
    today: NaiveDate,
) -> AppResult<IncidentStatistics> {
    let backend = db.backend();
    let in_window = || {
        filtered(db, scope, filter)
            .filter(incident::Column::StartedAt.gte(window.from))
            .filter(incident::Column::StartedAt.lt(window.to))
    };
    let ids =
        |q: Select<incident::Entity>| q.select_only().column(incident::Column::Id).into_query();

    // Counts by severity and status.
    let counts: Vec<(Severity, Status, i64)> = in_window()
        .select_only()
        .column(incident::Column::Severity)
        .column(incident::Column::Status)
        .column_as(incident::Column::Id.count(), "n")
        .group_by(incident::Column::Severity)
        .group_by(incident::Column::Status)
        .into_tuple()
        .all(db)
        .await?;

    let open_now = filtered(db, scope, filter)
        .filter(incident::Column::Status.is_in([Status::Open, Status::Mitigating]))
        .count(db)
        .await?;

    // Reopenings: RESOLVED → OPEN or RESOLVED → MITIGATING on the timeline, from the statuses
    // each status change records (never from its wording).
    let reopened: Option<(i64, i64)> = scope
        .events()
        .select_only()
        .column_as(incident_event::Column::Id.count(), "n")
        .column_as(
            Expr::cust(r#"COUNT(DISTINCT "incident_events"."incident_id")"#),
            "incidents",
        )
        .filter(incident_event::Column::EventType.eq(STATUS_CHANGED))
        .filter(incident_event::Column::FromStatus.eq(Status::Resolved))
        .filter(incident_event::Column::ToStatus.is_in([Status::Open, Status::Mitigating]))
        .filter(incident_event::Column::IncidentId.in_subquery(ids(in_window())))
        .into_tuple()
        .one(db)
        .await?;
    let (reopen_count, reopened_incidents) = reopened.unwrap_or((0, 0));

    let durations = DurationRow::find_by_statement(backend.build(&durations_statement(
        backend,
        scope,
        in_window().into_query(),
    )))
    .all(db)
    .await?;

    let week = week_start_sql(backend);
    let weekly_rows: Vec<(String, Severity, i64)> = in_window()
        .select_only()
        .column_as(Expr::cust(week.clone()), "week")
        .column(incident::Column::Severity)
        .column_as(incident::Column::Id.count(), "n")
        .group_by(Expr::cust(week))
        .group_by(incident::Column::Severity)
        .into_tuple()
        .all(db)
        .await?;

    let (open_sql, overdue_sql) = action_item_sql(backend);
    let items: Option<(Option<i64>, Option<i64>)> = scope
        .postmortems()
        .select_only()
        .column_as(Expr::cust(open_sql), "open")
        .column_as(
            Expr::cust_with_values(overdue_sql, [today.format("%Y-%m-%d").to_string()]),
            "overdue",
        )
        .filter(postmortem::Column::IncidentId.in_subquery(ids(filtered(db, scope, filter))))
        .into_tuple()
        .one(db)
        .await?;
    let (items_open, items_overdue) = items.unwrap_or((None, None));

    let stats = |metric: &str, group: &str| {
        durations
            .iter()
            .find(|r| r.metric == metric && r.grp == group)
            .map(DurationRow::stats)
            .unwrap_or_default()
    };
    let count_of = |pred: &dyn Fn(Severity, Status) -> bool| -> u64 {
        counts
            .iter()
            .filter(|(sev, st, _)| pred(*sev, *st))
            .map(|(_, _, n)| non_negative(*n))
            .sum()
    };
    Ok(IncidentStatistics {
        window,
        total: count_of(&|_, _| true),
        by_severity: SEVERITIES
            .iter()
            .map(|&severity| SeverityStatistics {
                severity,
                count: count_of(&|sev, _| sev == severity),
                time_to_mitigate: stats("ttm", severity.as_str()),
                time_to_resolve: stats("ttr", severity.as_str()),
            })
            .collect(),
        by_status: STATUSES
            .iter()
            .map(|&status| (status, count_of(&|_, st| st == status)))
            .collect(),
        open_now,
        reopen_count: non_negative(reopen_count),
        reopened_incidents: non_negative(reopened_incidents),
        time_to_mitigate: stats("ttm", ALL),
        time_to_resolve: stats("ttr", ALL),
        weekly: weeks(window, &weekly_rows),
        action_items_open: non_negative(items_open.unwrap_or(0)),
        action_items_overdue: non_negative(items_overdue.unwrap_or(0)),
    })
}

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The group name of the overall statistics next to the four severities.
const ALL: &str = "ALL";

#[derive(Debug, FromQueryResult)]
struct DurationRow {
    metric: String,
    grp: String,
    n: i64,
    mean: Option<f64>,
    p50: Option<f64>,
    p90: Option<f64>,
}

impl DurationRow {
    fn stats(&self) -> DurationStats {
        DurationStats {
            count: non_negative(self.n),
            mean: self.mean,
            p50: self.p50,
            p90: self.p90,
        }
    }
}

/// Seconds from `start` to `end` (both SQL expressions), as a double on both databases.
fn seconds_between(backend: DatabaseBackend, start: &str, end: &str) -> String {
    match backend {
        DatabaseBackend::Postgres => {
            format!("CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS DOUBLE PRECISION)")
        }
        _ => format!("(unixepoch({end}, 'subsec') - unixepoch({start}, 'subsec'))"),
    }
}

/// The Monday (UTC) of the week an incident started in, as `YYYY-MM-DD` text.
fn week_start_sql(backend: DatabaseBackend) -> String {
    let col = r#""incident_records"."started_at""#;
    match backend {
        DatabaseBackend::Postgres => {
            format!("to_char(date_trunc('week', {col} AT TIME ZONE 'UTC'), 'YYYY-MM-DD')")
        }
        // Back six days, then forward to the next Monday: the Monday on or before the day.
        _ => format!("date({col}, '-6 days', 'weekday 1')"),
    }
}

/// Sums over the postmortems' action items (a JSON array of `{done, dueDate, …}`): those not
/// done, and those not done whose due date is before the bound date.
fn action_item_sql(backend: DatabaseBackend) -> (String, String) {
    let col = r#""incident_postmortems"."action_items""#;
    match backend {
        DatabaseBackend::Postgres => (
            format!(
                "COALESCE(SUM(jsonb_array_length(jsonb_path_query_array({col}, '$[*] ? (@.done != true)'))), 0)"
            ),
            format!(
                "COALESCE(SUM(jsonb_array_length(jsonb_path_query_array({col}, '$[*] ? (@.done != true && @.dueDate < $today)', jsonb_build_object('today', CAST($1 AS TEXT))))), 0)"
            ),
        ),
        _ => (
            format!(
                "COALESCE(SUM((SELECT COUNT(*) FROM json_each({col}) AS item WHERE NOT COALESCE(json_extract(item.value, '$.done'), 0))), 0)"
            ),
            format!(
                "COALESCE(SUM((SELECT COUNT(*) FROM json_each({col}) AS item WHERE NOT COALESCE(json_extract(item.value, '$.done'), 0) AND json_extract(item.value, '$.dueDate') < ?)), 0)"
            ),
        ),
    }
}

/// Time to mitigate (start → first status change into MITIGATING on the timeline) and time to resolve
/// (start → `resolved_at`) of the incidents in `incidents`, overall and per severity: count,
/// mean, and the nearest-rank p50 and p90 (the smallest value with at least p % of the values
/// at or below it: rank ⌈p·n/100⌉, computed as (p·n + 99) / 100 in integers).
fn durations_statement(
    backend: DatabaseBackend,
    scope: OrgScope,
    incidents: SelectStatement,
) -> sea_orm::sea_query::WithQuery {
    let first_mitigation = scope
        .events()
        .select_only()
        .column(incident_event::Column::IncidentId)
        .column_as(incident_event::Column::CreatedAt.min(), "first_at")
        .filter(incident_event::Column::EventType.eq(STATUS_CHANGED))
        .filter(incident_event::Column::ToStatus.eq(Status::Mitigating))
        .group_by(incident_event::Column::IncidentId)
        .into_query();

    let (w, m, d, v, r) = (
        Alias::new("w"),
        Alias::new("m"),
        Alias::new("d"),
        Alias::new("v"),
        Alias::new("r"),
    );
    let per_incident = Query::select()
        .expr_as(
            Expr::cust(r#"CAST("w"."severity" AS TEXT)"#),
            Alias::new("severity"),
        )
        .expr_as(
            Expr::cust(seconds_between(
                backend,
                r#""w"."started_at""#,
                r#""m"."first_at""#,
            )),
            Alias::new("ttm"),
        )
        .expr_as(
            Expr::cust(seconds_between(
                backend,
                r#""w"."started_at""#,
                r#""w"."resolved_at""#,
            )),
            Alias::new("ttr"),
        )
        .from_subquery(incidents, w.clone())
        .join_subquery(
            JoinType::LeftJoin,
            first_mitigation,
            m.clone(),
            Expr::col((m.clone(), Alias::new("incident_id"))).equals((w, Alias::new("id"))),
        )
        .to_owned();

    // One row per (metric, group, duration): each incident's durations, once under its severity
    // and once under ALL.
    let part = |metric: &str, by_severity: bool| {
        let group = if by_severity {
            Expr::col(Alias::new("severity"))
        } else {
            Expr::cust(format!("'{ALL}'"))
        };
        Query::select()
            .expr_as(Expr::cust(format!("'{metric}'")), Alias::new("metric"))
            .expr_as(group, Alias::new("grp"))
            .expr_as(Expr::col(Alias::new(metric)), Alias::new("secs"))
            .from(d.clone())
            .and_where(Expr::col(Alias::new(metric)).is_not_null())
            .to_owned()
    };
    let values = part("ttm", true)
        .union(UnionType::All, part("ttm", false))
        .union(UnionType::All, part("ttr", true))
        .union(UnionType::All, part("ttr", false))
        .to_owned();

    let ranked = Query::select()
        .columns([Alias::new("metric"), Alias::new("grp"), Alias::new("secs")])
        .expr_as(
            Expr::cust(r#"ROW_NUMBER() OVER (PARTITION BY "metric", "grp" ORDER BY "secs")"#),
            Alias::new("rn"),
        )
        .expr_as(
            Expr::cust(r#"COUNT(*) OVER (PARTITION BY "metric", "grp")"#),
            Alias::new("cnt"),
        )
        .from(v.clone())
        .to_owned();

    let nearest_rank = |p: u32| {
        Expr::cust(format!(
            r#"MAX(CASE WHEN "rn" = ({p} * "cnt" + 99) / 100 THEN "secs" END)"#
        ))
    };
    let summary = Query::select()
        .columns([Alias::new("metric"), Alias::new("grp")])
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .expr_as(Expr::cust(r#"AVG("secs")"#), Alias::new("mean"))
        .expr_as(nearest_rank(50), Alias::new("p50"))
        .expr_as(nearest_rank(90), Alias::new("p90"))
        .from(r.clone())
        .group_by_col(Alias::new("metric"))
        .group_by_col(Alias::new("grp"))
        .to_owned();

    let cte = |name: Alias, query: SelectStatement| {
        CommonTableExpression::new()
            .query(query)
            .table_name(name)
            .to_owned()
    };
    WithClause::new()
        .cte(cte(d, per_incident))
        .cte(cte(v, values))
        .cte(cte(r, ranked))
        .to_owned()
        .query(summary)
}

/// Every week from the one holding `from` to the one holding the window's last instant, with
/// the database's counts filled in and zeros elsewhere. The arithmetic is checked: at the ends
/// of the calendar the series stops instead of overflowing.
fn weeks(window: Window, rows: &[(String, Severity, i64)]) -> Vec<Week> {
    let monday = |t: DateTime<Utc>| {
        let day = t.date_naive();
        day.checked_sub_signed(TimeDelta::days(i64::from(
            day.weekday().num_days_from_monday(),
        )))
        .unwrap_or(NaiveDate::MIN)
    };
    let last_instant = window
        .to
        .checked_sub_signed(TimeDelta::microseconds(1))
        .unwrap_or(window.to);
    let last = monday(last_instant);
    let mut out = vec![];
    let mut start = monday(window.from);
    while start <= last {
        let key = start.format("%Y-%m-%d").to_string();
        out.push(Week {
            start,
            by_severity: SEVERITIES
                .iter()
                .map(|&severity| {
                    let n = rows
                        .iter()
                        .filter(|(week, sev, _)| *week == key && *sev == severity)
                        .map(|(_, _, n)| non_negative(*n))
                        .sum();
                    (severity, n)
                })
                .collect(),
        });
        match start.checked_add_signed(TimeDelta::days(7)) {
            Some(next) => start = next,
            None => break,
        }
    }
    out
}
