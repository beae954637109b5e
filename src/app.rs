//! Assembles the application: each transport's state and router, merged, behind the layers
//! every request passes; and start-up that binds a port (port 0 in tests) and reports the one it
//! got. Nothing imports this module back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::FromRef;
use axum::http::{HeaderName, StatusCode};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::auth::{Authenticator, DEV_ORG, DEV_USER};
use crate::config::Config;
use crate::db::Db;
use crate::graphql::transport::persisted::Documents;
use crate::graphql::{self, GraphqlState};
use crate::incident::identity::Role;
use crate::incident::service::Domain;
use crate::live::Hub;
use crate::rest::{self, RestState};

/// Every transport's state; each handler takes only its own, through `FromRef`.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub graphql: GraphqlState,
    pub rest: RestState,
    /// For the operations endpoints (`/readyz`, `/metrics`).
    pub db: Db,
}

pub fn router(state: AppState, config: &Config, dev_mode: bool) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let mut app = Router::new()
        .merge(graphql::router())
        .merge(rest::router())
        .merge(crate::monitoring::router(config.metrics_listen.is_none()))
        .merge(crate::desk::router(state.graphql.dev_token.clone()))
        .with_state(state);
    if dev_mode {
        app = app.layer(axum::middleware::from_fn(loopback_hosts_only));
    }
    app.layer(axum::middleware::from_fn(crate::monitoring::track_http))
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

/// Dev mode hands an admin token to whoever opens GraphiQL, and listens on loopback only; a
/// hostile page whose name is rebound to 127.0.0.1 (DNS rebinding) still reaches it, under its
/// own `Host`. Only loopback names are served, over HTTP and WebSocket alike: 421 for the rest.
async fn loopback_hosts_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if is_loopback_host(host) {
        next.run(request).await
    } else {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "dev mode serves only loopback host names (127.0.0.1, [::1], localhost)",
        )
            .into_response()
    }
}

/// `127.0.0.1`, `[::1]` or `localhost` (any case), with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(name, rest)| {
            if rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port) {
                name
            } else {
                ""
            }
        }),
        None => match host.split_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => "",
            None => host,
        },
    };
    name == "127.0.0.1" || name == "::1" || name.eq_ignore_ascii_case("localhost")
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
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
        // PUT and DELETE and the token header: GraphQL over SSE's single-connection mode.
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static(graphql::transport::sse::TOKEN_HEADER),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}

pub struct Application {
    listener: TcpListener,
    /// `--metrics-listen`: `/metrics` on an address of its own.
    metrics: Option<(TcpListener, Router)>,
    router: Router,
    state: AppState,
    /// Longest the drain after a shutdown signal may take (in-flight requests, WebSockets).
    shutdown_timeout: Duration,
}

impl Application {
    /// Connects, migrates (unless told not to), and binds the listen address.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let auth = Authenticator::new(&config.auth())?;
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
            db.migrate().await.context("migrations failed")?;
        }
        let dev_mode = auth.dev_mode;
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
        let trusted = config.trusted_documents()?;
        if let Some(manifest) = &trusted {
            tracing::info!(
                operations = manifest.len(),
                "trusted-documents mode: only the manifest's operations run"
            );
        }
        let documents = Documents::new(
            db.clone(),
            trusted,
            config.max_query_bytes,
            config.apq_bounds(),
        );
        let graphiql = graphql::transport::graphiql::Graphiql::new(
            dev_token.as_deref(),
            config.graphiql_assets.as_deref(),
        )?;
        let hub = Hub::start(db.clone(), &config.db_options(), config.live_options()).await;
        let domain = Domain::new(db.clone(), Arc::new(hub.clone()));
        let auth = Arc::new(auth);
        let state = AppState {
            graphql: GraphqlState {
                schema: graphql::build_schema(&config.limits()),
                domain: domain.clone(),
                hub,
                auth: auth.clone(),
                dev_token,
                max_response_bytes: config.max_response_bytes,
                in_flight: crate::incident::budget::ServerBudget::new(
                    config.max_inflight_response_bytes,
                ),
                ws: graphql::transport::WsState::new(
                    config.ws_limits(),
                    config.ws_max_connections,
                    config.allowed_origins(),
                ),
                sse: graphql::transport::SseState::new(config.sse_keep_alive),
                documents,
                trusted_introspection: config.persisted_operations_introspection,
                get_max_age: config.get_max_age,
                graphiql: Arc::new(graphiql),
            },
            rest: RestState { domain, auth },
            db,
        };
        let shutdown_timeout = config.shutdown_timeout;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some((
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for metrics"))?,
                crate::monitoring::metrics_router(state.db.clone()),
            )),
            None => None,
        };
        Ok(Application {
            metrics,
            router: router(state.clone(), &config, dev_mode),
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

    /// Where `/metrics` is served when it has a listener of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
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
        let stopping = self.state.graphql.ws.shutdown.clone();
        let signal = {
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                stopping.cancel();
            }
        };
        let tasks = self.state.graphql.ws.tasks.clone();
        if let Some((listener, router)) = self.metrics {
            // Scrapes are short; the listener simply ends with the process.
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
        }
        // The peer's address: the WebSocket budget for unauthenticated sockets is per address.
        let router = self
            .router
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let serve = axum::serve(self.listener, router).with_graceful_shutdown(signal);
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

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(super::is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example:80",
            "127.0.0.1:80:80",
            "[::1]x",
            "127.0.0.2",
            "localhost:",
        ] {
            assert!(!super::is_loopback_host(host), "{host}");
        }
    }
}
