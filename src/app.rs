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

use crate::auth::{Authenticator, DEV_ORG, DEV_USER, DEV_USER_EMAIL, DEV_USER_NAME, Profile};
use crate::config::Config;
use crate::db::Db;
use crate::graphql::transport::persisted::Documents;
use crate::graphql::{self, GraphqlState};
use crate::incident::identity::Role;
use crate::incident::service::Domain;
use crate::live::Hub;
use crate::rest::{self, RestState};
use crate::signin::{Oidc, SignInState};
use crate::webhook::{Clock, Deliveries, SystemClock};

/// Every transport's state; each handler takes only its own, through `FromRef`.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub graphql: GraphqlState,
    pub rest: RestState,
    pub signin: SignInState,
    /// For the operations endpoints (`/readyz`, `/metrics`).
    pub db: Db,
    /// The webhook delivery worker of this replica.
    pub webhooks: Deliveries,
}

pub fn router(state: AppState, config: &Config, dev_mode: bool) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let mut app = Router::new()
        .merge(graphql::router())
        .merge(rest::router())
        .merge(crate::signin::router())
        .merge(crate::monitoring::router(config.metrics_listen.is_none()))
        .merge(crate::desk::router(state.graphql.dev_token.clone()))
        .with_state(state);
    if dev_mode {
        app = app.layer(axum::middleware::from_fn(loopback_hosts_only));
    }
    app.layer(axum::middleware::from_fn(catch_panics))
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

/// A panic while a request is handled answers that request `INTERNAL` with its request id (in
/// the GraphQL shape on `/graphql`, the REST shape elsewhere), is logged under that id and
/// counted (`incidentd_panics_total`), instead of dropping the connection without a word.
/// Inside the request id layers (the id is set, and echoed on the answer) and inside the HTTP
/// metrics (the 500 is counted there too).
async fn catch_panics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use futures_util::FutureExt;
    let request_id = crate::telemetry::request_id(request.headers());
    let graphql = request.uri().path().starts_with("/graphql");
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(payload) => panic_response(&request_id, graphql, payload.as_ref()),
    }
}

fn panic_response(
    request_id: &str,
    graphql: bool,
    payload: &(dyn std::any::Any + Send),
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    crate::monitoring::panicked();
    let error = crate::error::AppError::Internal(anyhow::anyhow!("panic: {detail}"));
    error.log(request_id);
    let message = error.public_message(request_id);
    let code = error.code();
    let body = if graphql {
        serde_json::json!({ "errors": [{
            "message": message,
            "extensions": { "code": code, "requestId": request_id },
        }] })
    } else {
        serde_json::json!({ "error": {
            "code": code,
            "message": message,
            "request_id": request_id,
        } })
    };
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
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
        Application::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As `build`, with the clock webhook deliveries are scheduled by (tests move one by hand).
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let auth = Authenticator::new(&config.auth())?;
        if auth.dev_mode && !config.listen.ip().is_loopback() {
            anyhow::bail!(
                "refusing to listen on {} in dev mode (neither sign-in nor a JWT key is configured): \
                 set --oidc-issuer, INCIDENTD_JWT_SECRET, INCIDENTD_JWT_PUBLIC_KEY_FILE or \
                 INCIDENTD_JWT_JWKS_FILE, or listen on a loopback address for dev mode",
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
            // The demo user has a name, as a signed-in person would: the desk shows it.
            Some(auth.mint_for(
                DEV_ORG,
                DEV_USER,
                Role::Admin,
                std::time::Duration::from_secs(30 * 86_400),
                Profile {
                    name: Some(DEV_USER_NAME.into()),
                    email: Some(DEV_USER_EMAIL.into()),
                },
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
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let public_url = config.public_url(listener.local_addr()?);
        let session_settings = config.sessions(&public_url);
        let oidc = match config.oidc(&public_url)? {
            Some(settings) => Some(Arc::new(Oidc::new(settings, session_settings.secure)?)),
            None => None,
        };
        let sessions = crate::auth::sessions::Sessions::new(db.clone(), session_settings);
        let hub = Hub::start(db.clone(), &config.db_options(), config.live_options()).await;
        let webhook_settings = config.webhook_settings(&public_url);
        let domain =
            Domain::new(db.clone(), Arc::new(hub.clone())).with_webhooks(webhook_settings.clone());
        let webhooks = crate::webhook::start(
            db.background(),
            webhook_settings,
            config.webhook_worker(),
            clock,
        );
        if let Some(token) = &dev_token {
            // In the directory before anyone uses the token, so the demo user can be picked
            // for a role at once.
            domain.recognize(&auth.authenticate(token)?).await;
        }
        let auth = Arc::new(auth);
        let state = AppState {
            graphql: GraphqlState {
                schema: graphql::build_schema(&config.limits()),
                domain: domain.clone(),
                hub,
                auth: auth.clone(),
                sessions: sessions.clone(),
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
            rest: RestState {
                domain,
                auth,
                sessions: sessions.clone(),
            },
            signin: SignInState {
                oidc,
                sessions,
                db: db.clone(),
            },
            db,
            webhooks,
        };
        let shutdown_timeout = config.shutdown_timeout;
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
        let webhooks = self.state.webhooks.clone();
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
        let result = tokio::select! {
            served = drain => served,
            _ = expired => {
                tracing::warn!(?deadline, "shutdown deadline passed; dropping what is still in flight");
                Ok(())
            }
        };
        webhooks.stop();
        result
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{HeaderName, Request, StatusCode};
    use tower::ServiceExt;
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

    fn panics_total() -> u64 {
        crate::monitoring::install()
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("incidentd_panics_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The panic layer as `router` stacks it, over a handler that panics: built in this test
    /// only, so no shipped route can panic on purpose.
    #[tokio::test]
    async fn a_panicking_request_answers_internal_with_its_request_id_and_is_counted() {
        let id = HeaderName::from_static("x-request-id");
        let app = axum::Router::new()
            .route(
                "/graphql",
                axum::routing::post(|| async {
                    let missing: Option<&str> = std::hint::black_box(None);
                    missing.expect("a resolver's bug")
                }),
            )
            .route(
                "/api/v1/incidents",
                axum::routing::get(|| async {
                    let missing: Option<u8> = std::hint::black_box(None);
                    missing.expect("a handler's bug").to_string()
                }),
            )
            .layer(axum::middleware::from_fn(super::catch_panics))
            .layer(PropagateRequestIdLayer::new(id.clone()))
            .layer(SetRequestIdLayer::new(id, MakeRequestUuid));
        let before = panics_total();

        let response = app
            .clone()
            .oneshot(
                Request::post("/graphql")
                    .header("x-request-id", "req-42")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["x-request-id"], "req-42");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "INTERNAL", "{body}");
        assert_eq!(error["extensions"]["requestId"], "req-42", "{body}");
        assert!(
            !body.to_string().contains("resolver's bug"),
            "the panic's text stays in the log: {body}"
        );

        let response = app
            .oneshot(
                Request::get("/api/v1/incidents")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let set_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "INTERNAL", "{body}");
        assert_eq!(body["error"]["request_id"], set_id.as_str(), "{body}");

        // Other tests of this binary may panic in requests of their own only through this
        // layer too; the counter rose by at least these two.
        assert!(panics_total() >= before + 2, "{}", panics_total());
    }

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
