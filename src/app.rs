//! The application: state shared by every handler, the router (every route, in one place), and
//! start-up that binds a port (port 0 in tests) and reports the one it got.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::auth::{Authenticator, DEV_ORG, DEV_USER, Role};
use crate::config::Config;
use crate::db::Db;
use crate::graphql::{self, AppSchema};
use crate::incident::service::Domain;
use crate::live::Hub;
use crate::live::ws::WsLimits;

#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub domain: Domain,
    pub auth: Arc<Authenticator>,
    /// In dev mode: a token for the demo organization, filled into GraphiQL.
    pub dev_token: Option<String>,
    pub ws_limits: WsLimits,
    pub ws_permits: Arc<Semaphore>,
    /// Cancelled at shutdown: every WebSocket closes with 1001.
    pub shutdown: CancellationToken,
    /// The WebSocket connections, which axum's graceful shutdown does not wait for.
    pub tasks: TaskTracker,
    /// Browser origins allowed beyond same-origin (CORS and WebSocket upgrades).
    pub allowed_origins: Arc<[String]>,
}

pub fn router(state: AppState, config: &Config) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route(
            "/graphql",
            get(graphql::http::graphql_get).post(graphql::http::graphql_post),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::monitoring::metrics))
        .merge(crate::rest::router())
        .merge(crate::desk::router(state.dev_token.clone()))
        .with_state(state)
        .layer(axum::middleware::from_fn(crate::monitoring::track_http))
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(cors(config))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            // Every log line of a request carries its id (set by the outer layer).
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<_>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        request_id = %id,
                        method = %request.method(),
                        uri = %request.uri().path(),
                    )
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// CORS for the configured origins only; with none configured, no cross-origin access.
fn cors(config: &Config) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderValue, Method, header};
    let origins: Vec<HeaderValue> = config
        .allowed_origins()
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match ready(&state.domain.db).await {
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

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    /// Longest the drain after a shutdown signal may take (in-flight requests, WebSockets).
    shutdown_timeout: Duration,
}

impl Application {
    /// Connects, migrates (unless told not to), and binds the listen address.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let auth = Authenticator::from_config(&config)?;
        if auth.dev_mode && !config.listen.ip().is_loopback() {
            anyhow::bail!(
                "refusing to listen on {} without JWT configuration: set INCIDENTD_JWT_SECRET, \
                 INCIDENTD_JWT_PUBLIC_KEY_FILE or INCIDENTD_JWT_JWKS_FILE, or listen on a loopback address for dev mode",
                config.listen
            );
        }
        crate::monitoring::install();
        // Without migrations to run, an unreachable database need not stop the start-up: the
        // server answers DATABASE_UNAVAILABLE and /readyz 503 until the database comes back.
        let db = if config.no_migrate {
            Db::connect_lazy(&config.db_options()).await?
        } else {
            Db::connect(&config.db_options())
                .await
                .with_context(|| "cannot connect to the database")?
        };
        if !config.no_migrate {
            migration::Migrator::up(db.conn(), None)
                .await
                .context("migrations failed")?;
        }
        let dev_token = if auth.dev_mode {
            Some(auth.mint(
                DEV_ORG,
                DEV_USER,
                Role::Admin,
                std::time::Duration::from_secs(30 * 86_400),
            )?)
        } else {
            None
        };
        let limits = config.limits();
        let state = AppState {
            schema: graphql::build_schema(&limits),
            domain: Domain {
                hub: Hub::start(db.clone()).await,
                db,
            },
            auth: Arc::new(auth),
            dev_token,
            ws_limits: WsLimits {
                init_timeout: config.ws_init_timeout,
                max_subscriptions: config.ws_max_subscriptions,
                max_message_bytes: config.ws_max_message_bytes,
                write_timeout: config.ws_write_timeout,
            },
            ws_permits: Arc::new(Semaphore::new(config.ws_max_connections)),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            allowed_origins: config.allowed_origins().into(),
        };
        let shutdown_timeout = config.shutdown_timeout;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Application {
            router: router(state.clone(), &config),
            listener,
            state,
            shutdown_timeout,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then closes WebSockets with 1001 and lets in-flight
    /// requests finish.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // The signal cancels `shutdown`: sockets close with 1001, axum stops accepting, and the
        // drain deadline starts.
        let stopping = self.state.shutdown.clone();
        let signal = {
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                stopping.cancel();
            }
        };
        let tasks = self.state.tasks.clone();
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(signal);
        let drain = async move {
            let served = serve.await;
            tasks.close();
            tasks.wait().await;
            served
        };
        // Whatever is still in flight `shutdown_timeout` after the signal is cut off, so an
        // orchestrator's kill deadline is never reached.
        let deadline = self.shutdown_timeout;
        let expired = async move {
            stopping.cancelled().await;
            tokio::time::sleep(deadline).await;
        };
        tokio::select! {
            served = drain => served,
            _ = expired => {
                tracing::warn!(?deadline, "shutdown deadline passed; dropping what is still in flight");
                Ok(())
            }
        }
    }
}
