//! Operations: liveness, readiness and Prometheus metrics (`/healthz`, `/readyz`, `/metrics`),
//! the process-wide recorder, and the probes that feed it (HTTP middleware, GraphQL operations,
//! WebSocket gauges, the change feed, the database pool sampled at scrape).

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::DatabaseBackend;
use sea_orm_migration::MigratorTrait;

use crate::db::Db;

pub const HTTP_REQUESTS: &str = "incidentd_http_requests_total";
pub const HTTP_DURATION: &str = "incidentd_http_request_duration_seconds";
pub const GRAPHQL_OPERATIONS: &str = "incidentd_graphql_operations_total";
pub const GRAPHQL_DURATION: &str = "incidentd_graphql_operation_duration_seconds";
pub const DB_POOL_IN_USE: &str = "incidentd_db_pool_connections_in_use";
pub const DB_POOL_IDLE: &str = "incidentd_db_pool_connections_idle";
pub const DB_POOL_MAX: &str = "incidentd_db_pool_connections_max";
pub const WS_CONNECTIONS: &str = "incidentd_ws_connections";
pub const WS_SUBSCRIPTIONS: &str = "incidentd_ws_subscriptions";
pub const SSE_CONNECTIONS: &str = "incidentd_sse_connections";
pub const SSE_OPERATIONS: &str = "incidentd_sse_operations";
pub const CHANGES_PUBLISHED: &str = "incidentd_changes_published_total";
pub const CHANGES_DELIVERED: &str = "incidentd_changes_delivered_total";
pub const WEBHOOK_DELIVERIES: &str = "incidentd_webhook_deliveries_total";
pub const WEBHOOK_DELIVERY_SECONDS: &str = "incidentd_webhook_delivery_seconds";
pub const WEBHOOK_QUEUE_DEPTH: &str = "incidentd_webhook_queue_depth";
pub const WEBHOOK_OLDEST_PENDING: &str = "incidentd_webhook_oldest_pending_seconds";
pub const WEBHOOK_ENDPOINTS_DISABLED: &str = "incidentd_webhook_endpoints_disabled_total";
/// Requests that panicked (answered `INTERNAL`); any rise is a bug to chase in the log.
pub const PANICS: &str = "incidentd_panics_total";

const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The recorder is global to the process; tests run many apps in one, so it is installed once.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        // Shown from the start: a scrape reads 0, not an absent series, until a panic happens.
        counter!(PANICS).absolute(0);
        // Histograms buffer samples until drained; without the exporter's HTTP listener
        // nothing else drains them when nobody scrapes.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .expect("spawn the metrics upkeep thread");
        handle
    })
}

/// `/healthz`, `/readyz` and `/metrics`.
/// `/healthz` and `/readyz`, and `/metrics` unless it has a listener of its own
/// (`--metrics-listen`, see `metrics_router`).
pub fn router<S>(with_metrics: bool) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Db: FromRef<S>,
{
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if with_metrics {
        router.route("/metrics", get(metrics))
    } else {
        router
    }
}

/// `/metrics` alone, for a listener of its own (an address scrapers reach and clients do not).
pub fn metrics_router(db: Db) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(db)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(db): State<Db>) -> Response {
    match ready(&db).await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

async fn ready(db: &Db) -> Result<(), String> {
    db.ping()
        .await
        .map_err(|_| "database unreachable".to_string())?;
    let pending = migration::Migrator::get_pending_migrations(db.conn())
        .await
        .map_err(|_| "cannot read the migration table".to_string())?;
    if pending.is_empty() {
        Ok(())
    } else {
        Err(format!("{} migrations pending", pending.len()))
    }
}

/// `GET /metrics`: samples what is cheaper to read than to track, then renders everything.
async fn metrics(State(db): State<Db>) -> Response {
    sample_pool(&db);
    let body = install().render();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn sample_pool(db: &Db) {
    let conn = db.conn();
    let (size, idle, max) = match db.backend() {
        DatabaseBackend::Postgres => {
            let pool = conn.get_postgres_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        }
        DatabaseBackend::Sqlite => {
            let pool = conn.get_sqlite_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        }
        _ => return,
    };
    let idle = idle as f64;
    gauge!(DB_POOL_IN_USE).set((f64::from(size) - idle).max(0.0));
    gauge!(DB_POOL_IDLE).set(idle);
    gauge!(DB_POOL_MAX).set(f64::from(max));
}

/// Counts every request by method, matched route (not the raw path: bounded labels) and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    counter!(HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Client-chosen names become label values: keep them short.
const MAX_NAME: usize = 64;

/// Which operation names may become label values. Clients choose names, and every new label
/// value is a series kept forever: an allow-list when one is configured, else the first
/// `cap` names seen in valid documents; any other name is counted as `other`.
#[derive(Debug)]
pub struct OperationNames {
    allowed: Option<HashSet<String>>,
    cap: usize,
    seen: Mutex<HashSet<String>>,
}

impl OperationNames {
    pub fn new(allowed: &[String], cap: usize) -> OperationNames {
        OperationNames {
            allowed: (!allowed.is_empty()).then(|| allowed.iter().cloned().collect()),
            cap,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// The label for `name`: itself when admitted, else `other`.
    pub fn label(&self, name: String) -> String {
        if let Some(allowed) = &self.allowed {
            return if allowed.contains(&name) {
                name
            } else {
                OTHER.into()
            };
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&name) || (seen.len() < self.cap && seen.insert(name.clone())) {
            name
        } else {
            OTHER.into()
        }
    }
}

const OTHER: &str = "other";

/// One GraphQL operation ran: by name (`anonymous`, `other` past the admitted names, or `-`
/// when none could be chosen), type (`query`, `mutation`, `subscription`, `invalid`) and outcome.
pub fn graphql_operation(mut name: String, ty: &'static str, ok: bool, took: Duration) {
    // GraphQL names are ASCII by grammar; cut on a character boundary all the same.
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    let outcome = if ok { "ok" } else { "error" };
    counter!(GRAPHQL_OPERATIONS, "operation" => name.clone(), "type" => ty, "outcome" => outcome)
        .increment(1);
    histogram!(GRAPHQL_DURATION, "operation" => name, "type" => ty).record(took.as_secs_f64());
}

/// Holds a gauge one higher for as long as it lives, so every exit path gives it back.
pub struct GaugeGuard(&'static str);

impl GaugeGuard {
    pub fn ws_connection() -> GaugeGuard {
        GaugeGuard::new(WS_CONNECTIONS)
    }

    pub fn ws_subscription() -> GaugeGuard {
        GaugeGuard::new(WS_SUBSCRIPTIONS)
    }

    pub fn sse_connection() -> GaugeGuard {
        GaugeGuard::new(SSE_CONNECTIONS)
    }

    pub fn sse_operation() -> GaugeGuard {
        GaugeGuard::new(SSE_OPERATIONS)
    }

    fn new(name: &'static str) -> GaugeGuard {
        gauge!(name).increment(1.0);
        GaugeGuard(name)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        gauge!(self.0).decrement(1.0);
    }
}

/// A request panicked (see the router's panic layer).
pub fn panicked() {
    counter!(PANICS).increment(1);
}

pub fn change_delivered() {
    counter!(CHANGES_DELIVERED).increment(1);
}

/// One delivery attempt ended: `delivered`, `failed` (will retry) or `dead` (gave up).
pub fn webhook_delivery(outcome: &'static str, took: Duration) {
    counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
    histogram!(WEBHOOK_DELIVERY_SECONDS).record(took.as_secs_f64());
}

/// Undelivered messages (pending or failed, over every organization) and the oldest one's age.
pub fn webhook_queue(depth: i64, oldest: Duration) {
    gauge!(WEBHOOK_QUEUE_DEPTH).set(depth as f64);
    gauge!(WEBHOOK_OLDEST_PENDING).set(oldest.as_secs_f64());
}

/// The delivery worker disabled an endpoint (`gone`: it answered 410; `failing`: five days
/// without a success).
pub fn webhook_endpoint_disabled(reason: &'static str) {
    counter!(WEBHOOK_ENDPOINTS_DISABLED, "reason" => reason).increment(1);
}
