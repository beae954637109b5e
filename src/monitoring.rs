//! Prometheus metrics: the process-wide recorder, `GET /metrics`, and the probes that feed it
//! (HTTP middleware, a GraphQL extension, WebSocket gauges, the database pool sampled at scrape).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{ServerResult, Variables};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::DatabaseBackend;

use crate::app::AppState;

pub const HTTP_REQUESTS: &str = "incidentd_http_requests_total";
pub const HTTP_DURATION: &str = "incidentd_http_request_duration_seconds";
pub const GRAPHQL_OPERATIONS: &str = "incidentd_graphql_operations_total";
pub const GRAPHQL_DURATION: &str = "incidentd_graphql_operation_duration_seconds";
pub const DB_POOL_IN_USE: &str = "incidentd_db_pool_connections_in_use";
pub const DB_POOL_IDLE: &str = "incidentd_db_pool_connections_idle";
pub const DB_POOL_MAX: &str = "incidentd_db_pool_connections_max";
pub const WS_CONNECTIONS: &str = "incidentd_ws_connections";
pub const WS_SUBSCRIPTIONS: &str = "incidentd_ws_subscriptions";
pub const CHANGES_PUBLISHED: &str = "incidentd_changes_published_total";
pub const CHANGES_DELIVERED: &str = "incidentd_changes_delivered_total";
pub const DB_STATEMENTS: &str = "incidentd_db_statements_total";

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

/// `GET /metrics`: samples what is cheaper to read than to track, then renders everything.
pub async fn metrics(State(state): State<AppState>) -> Response {
    sample_pool(&state);
    let body = install().render();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn sample_pool(state: &AppState) {
    let conn = state.domain.db.conn();
    let (size, idle, max) = match state.domain.db.backend() {
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

/// Counts GraphQL operations by name, type and outcome, with their latency.
pub struct GraphqlMetrics;

impl ExtensionFactory for GraphqlMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GraphqlProbe::default())
    }
}

#[derive(Default)]
struct GraphqlProbe {
    /// Every operation of the parsed document: (name, type).
    operations: Mutex<Vec<(Option<String>, &'static str)>>,
    /// The operation that ran: (name, type).
    chosen: Mutex<Option<(String, &'static str)>>,
}

/// Client-chosen names become label values: keep them short.
const MAX_NAME: usize = 64;

#[async_graphql::async_trait::async_trait]
impl Extension for GraphqlProbe {
    async fn request(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextRequest<'_>,
    ) -> async_graphql::Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let (name, ty) = self
            .chosen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| ("-".to_owned(), "invalid"));
        let outcome = if response.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        counter!(GRAPHQL_OPERATIONS, "operation" => name.clone(), "type" => ty, "outcome" => outcome)
            .increment(1);
        histogram!(GRAPHQL_DURATION, "operation" => name, "type" => ty)
            .record(started.elapsed().as_secs_f64());
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let operations = document
            .operations
            .iter()
            .map(|(name, op)| (name.map(|n| n.to_string()), op_type(op.node.ty)))
            .collect();
        *self.operations.lock().unwrap_or_else(|e| e.into_inner()) = operations;
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> async_graphql::Response {
        let chosen = {
            let operations = self.operations.lock().unwrap_or_else(|e| e.into_inner());
            let found = match operation_name {
                Some(wanted) => operations
                    .iter()
                    .find(|(name, _)| name.as_deref() == Some(wanted)),
                None => operations.first(),
            };
            found.map(|(name, ty)| {
                let mut name = name.clone().unwrap_or_else(|| "anonymous".to_owned());
                name.truncate(MAX_NAME);
                (name, *ty)
            })
        };
        *self.chosen.lock().unwrap_or_else(|e| e.into_inner()) = chosen;
        next.run(ctx, operation_name).await
    }
}

fn op_type(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
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

pub fn change_published() {
    counter!(CHANGES_PUBLISHED).increment(1);
}

pub fn change_delivered() {
    counter!(CHANGES_DELIVERED).increment(1);
}

/// One SQL statement run through the pool (what `Db::statement_count` counts).
pub fn db_statement() {
    counter!(DB_STATEMENTS).increment(1);
}
