//! `Query.incidentMetrics`: the GraphQL shape of `incident::statistics`, for dashboards and the
//! desk. The GraphQL names say "metrics", as published; the Rust names say what they are.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::context::{domain, principal};
use crate::entity::{Severity, Status};
use crate::graphql::error::GqlResult;
use crate::incident::input::{Date, IncidentFilterInput};
use crate::incident::statistics::{self, Window};

#[derive(Default)]
pub struct StatisticsQuery;

#[Object]
impl StatisticsQuery {
    /// Metrics of the caller's organization over the incidents that match `filter` and started
    /// in `[from, to)` (at most 731 days, within the years 1 to 9999). `openNow` and the
    /// action-item counts describe the present instead: every incident matching `filter`,
    /// whenever it started.
    async fn incident_metrics(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        filter: Option<IncidentFilterInput>,
    ) -> GqlResult<IncidentStatistics> {
        let scope = principal(ctx)?.scope();
        let window = Window::parse(from, to)?;
        let filter = filter.unwrap_or_default().parse()?;
        let today = crate::incident::now().date_naive();
        let s =
            statistics::incident_statistics(&domain(ctx).db, scope, &filter, window, today).await?;
        Ok(IncidentStatistics(s))
    }
}

pub struct IncidentStatistics(statistics::IncidentStatistics);

#[Object(name = "IncidentMetrics")]
impl IncidentStatistics {
    async fn from(&self) -> DateTime<Utc> {
        self.0.window.from
    }
    async fn to(&self) -> DateTime<Utc> {
        self.0.window.to
    }
    /// Incidents started in the window.
    async fn total(&self) -> u64 {
        self.0.total
    }
    /// Per severity (the incident's current one), all four, most severe first.
    async fn by_severity(&self) -> Vec<SeverityStatistics> {
        self.0
            .by_severity
            .iter()
            .map(|s| SeverityStatistics {
                severity: s.severity,
                count: s.count,
                time_to_mitigate: (&s.time_to_mitigate).into(),
                time_to_resolve: (&s.time_to_resolve).into(),
            })
            .collect()
    }
    /// Per current status, all four in workflow order.
    async fn by_status(&self) -> Vec<StatusCount> {
        self.0
            .by_status
            .iter()
            .map(|&(status, count)| StatusCount { status, count })
            .collect()
    }
    /// Incidents OPEN or MITIGATING now, whenever they started.
    async fn open_now(&self) -> u64 {
        self.0.open_now
    }
    /// Reopenings (RESOLVED → OPEN or MITIGATING) of incidents started in the window.
    async fn reopen_count(&self) -> u64 {
        self.0.reopen_count
    }
    /// Incidents started in the window that were reopened at least once.
    async fn reopened_incidents(&self) -> u64 {
        self.0.reopened_incidents
    }
    /// Start → first move to MITIGATING on the timeline; incidents that never were MITIGATING
    /// are left out.
    async fn time_to_mitigate(&self) -> DurationStats {
        (&self.0.time_to_mitigate).into()
    }
    /// Start → `resolvedAt` (the latest resolution); incidents not resolved now are left out.
    async fn time_to_resolve(&self) -> DurationStats {
        (&self.0.time_to_resolve).into()
    }
    /// Incidents started per week (weeks begin Monday 00:00 UTC), from the week holding `from`
    /// to the week holding `to`, empty weeks included.
    async fn weekly(&self) -> Vec<WeeklyIncidents> {
        self.0
            .weekly
            .iter()
            .map(|w| WeeklyIncidents {
                week_start: Date(w.start),
                total: w.by_severity.iter().map(|(_, n)| n).sum(),
                by_severity: w
                    .by_severity
                    .iter()
                    .map(|&(severity, count)| SeverityCount { severity, count })
                    .collect(),
            })
            .collect()
    }
    /// Postmortem action items not done, over every incident matching the filter.
    async fn action_items_open(&self) -> u64 {
        self.0.action_items_open
    }
    /// Action items not done whose due date (UTC) has passed.
    async fn action_items_overdue(&self) -> u64 {
        self.0.action_items_overdue
    }
}

/// Durations in seconds. Percentiles are nearest-rank: the smallest observed value with at least
/// p % of the values at or below it. Null when `count` is 0.
#[derive(SimpleObject)]
pub struct DurationStats {
    pub count: u64,
    pub mean_seconds: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

impl From<&statistics::DurationStats> for DurationStats {
    fn from(s: &statistics::DurationStats) -> Self {
        DurationStats {
            count: s.count,
            mean_seconds: s.mean,
            p50_seconds: s.p50,
            p90_seconds: s.p90,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "SeverityMetrics")]
pub struct SeverityStatistics {
    pub severity: Severity,
    /// Incidents of this severity started in the window.
    pub count: u64,
    pub time_to_mitigate: DurationStats,
    pub time_to_resolve: DurationStats,
}

#[derive(SimpleObject)]
pub struct StatusCount {
    pub status: Status,
    pub count: u64,
}

#[derive(SimpleObject)]
pub struct SeverityCount {
    pub severity: Severity,
    pub count: u64,
}

#[derive(SimpleObject)]
pub struct WeeklyIncidents {
    /// The Monday the week begins on.
    pub week_start: Date,
    pub total: u64,
    /// All four severities, most severe first.
    pub by_severity: Vec<SeverityCount>,
}
