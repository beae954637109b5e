//! Typed settings from flags and environment variables, and the settings each part of the
//! server takes from them. Secrets are never printed: the JWT secret is a `SecretString` and the
//! database URL hides its password, in `--help` and in `Debug` alike.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::auth::sessions::SessionSettings;
use crate::auth::{AuthSettings, JwtAlgorithm};
use crate::db::{DatabaseUrl, DbOptions};
use crate::graphql::Limits;
use crate::graphql::transport::WsLimits;
use crate::graphql::transport::persisted::{Bounds, Manifest};
use crate::incident::identity::Role;
use crate::incident::webhooks::{Cipher, Destinations, WebhookSettings};
use crate::live::LiveOptions;
use crate::signin::{OidcSettings, OrgSource};
use crate::telemetry::LogFormat;
use crate::webhook::WorkerOptions;

#[derive(Debug, Parser)]
#[command(
    name = "incidentd",
    version,
    about = "Incident management server speaking GraphQL"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Mint a bearer token signed with the configured HS256 secret (or the dev secret).
    Token {
        #[arg(long)]
        org: uuid::Uuid,
        #[arg(long)]
        user: uuid::Uuid,
        #[arg(long, value_enum, default_value = "responder")]
        role: Role,
        /// Lifetime, e.g. `1h`, `30m`, `7d`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Print the trusted-documents manifest (Apollo's persisted-query manifest format) for the
    /// named operations in the `.graphql` files below DIR; serve it with
    /// `--persisted-operations-file`.
    PersistedManifest {
        /// The folder of `.graphql` operation files (searched recursively).
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "INCIDENTD_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,
    /// Database URL: `postgres://…` or `sqlite://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://incidentd.db",
        hide_env_values = true,
        global = true
    )]
    pub database_url: DatabaseUrl,
    /// PostgreSQL URL of the change listener's connection, when it must differ from
    /// `--database-url` (a transaction-pooling PgBouncer in front of the pool cannot LISTEN).
    #[arg(
        long,
        env = "INCIDENTD_LISTEN_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub listen_database_url: Option<DatabaseUrl>,
    /// How often the change listener proves its connection alive with a round trip; one not
    /// answered within this long makes it reconnect (and subscribers re-read).
    #[arg(long, env = "INCIDENTD_LISTEN_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration, global = true)]
    pub listen_heartbeat: Duration,
    /// Committed transactions waiting to be dispatched to subscribers, at most; beyond, they
    /// are dropped and counted, and every subscriber re-reads from the database.
    #[arg(
        long,
        env = "INCIDENTD_LIVE_QUEUE",
        default_value_t = 10_000,
        global = true
    )]
    pub live_queue: usize,
    /// Do not apply migrations at start-up.
    #[arg(long, env = "INCIDENTD_NO_MIGRATE", global = true)]
    pub no_migrate: bool,
    /// HS256 shared secret for bearer tokens. Without any JWT setting the server runs in dev mode.
    #[arg(
        long,
        env = "INCIDENTD_JWT_SECRET",
        hide_env_values = true,
        value_parser = secret,
        global = true
    )]
    pub jwt_secret: Option<SecretString>,
    /// PEM public key (RSA → RS256, EC P-256 → ES256) for bearer tokens.
    #[arg(long, env = "INCIDENTD_JWT_PUBLIC_KEY_FILE", global = true)]
    pub jwt_public_key_file: Option<PathBuf>,
    /// JWKS file (`{"keys":[…]}`): public keys chosen by the token's `kid`, re-read when it changes.
    #[arg(long, env = "INCIDENTD_JWT_JWKS_FILE", global = true)]
    pub jwt_jwks_file: Option<PathBuf>,
    /// The one signature algorithm tokens may use. Default: HS256 with a secret, the key's own with
    /// a PEM public key, RS256 with a JWKS file.
    #[arg(
        long,
        env = "INCIDENTD_JWT_ALGORITHM",
        value_enum,
        ignore_case = true,
        global = true
    )]
    pub jwt_algorithm: Option<JwtAlgorithm>,
    /// Required `iss` claim, checked when set.
    #[arg(long, env = "INCIDENTD_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, checked when set.
    #[arg(long, env = "INCIDENTD_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,
    /// Log output format.
    #[arg(
        long,
        env = "INCIDENTD_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,
    /// Largest database connection pool.
    #[arg(
        long,
        env = "INCIDENTD_DB_MAX_CONNECTIONS",
        default_value_t = 20,
        global = true
    )]
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before `DATABASE_UNAVAILABLE`.
    #[arg(long, env = "INCIDENTD_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub db_acquire_timeout: Duration,
    /// Longest a single SQL statement may run (PostgreSQL).
    #[arg(long, env = "INCIDENTD_DB_STATEMENT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub db_statement_timeout: Duration,
    /// Longest a write waits for its turn on a busy incident before `BUSY` (retry).
    #[arg(long, env = "INCIDENTD_DB_LOCK_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration, global = true)]
    pub db_lock_timeout: Duration,
    /// Largest request body.
    #[arg(long, env = "INCIDENTD_MAX_BODY_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_body_bytes: usize,
    /// Most bytes of text one GraphQL response may load and carry (`RESPONSE_TOO_LARGE` beyond).
    #[arg(long, env = "INCIDENTD_MAX_RESPONSE_BYTES", default_value_t = 16 * 1024 * 1024, global = true)]
    pub max_response_bytes: usize,
    /// Most bytes of text all GraphQL responses in flight may hold together; a request that
    /// would take more answers `BUSY` (retry). A request holds at most about twice
    /// `--max-response-bytes`, so the default keeps a 1 GiB replica well within its memory.
    #[arg(long, env = "INCIDENTD_MAX_INFLIGHT_RESPONSE_BYTES", default_value_t = 256 * 1024 * 1024, global = true)]
    pub max_inflight_response_bytes: usize,
    /// Longest an HTTP request may take.
    #[arg(long, env = "INCIDENTD_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub request_timeout: Duration,
    /// How long a WebSocket may wait before `connection_init` (closed with 4408 after).
    #[arg(long, env = "INCIDENTD_WS_INIT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub ws_init_timeout: Duration,
    /// Subscriptions one WebSocket connection may hold at once.
    #[arg(
        long,
        env = "INCIDENTD_WS_MAX_SUBSCRIPTIONS",
        default_value_t = 100,
        global = true
    )]
    pub ws_max_subscriptions: usize,
    /// Largest WebSocket message a client may send.
    #[arg(long, env = "INCIDENTD_WS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024, global = true)]
    pub ws_max_message_bytes: usize,
    /// WebSocket connections this server holds at once (503 beyond).
    #[arg(
        long,
        env = "INCIDENTD_WS_MAX_CONNECTIONS",
        default_value_t = 10_000,
        global = true
    )]
    pub ws_max_connections: usize,
    /// WebSocket connections that have not yet sent a valid `connection_init`, server-wide
    /// (503 beyond): a budget of their own, so unauthenticated sockets cannot take the slots.
    #[arg(
        long,
        env = "INCIDENTD_WS_MAX_PENDING",
        default_value_t = 512,
        global = true
    )]
    pub ws_max_pending: usize,
    /// Of those, how many one peer address may hold (503 beyond).
    #[arg(
        long,
        env = "INCIDENTD_WS_MAX_PENDING_PER_PEER",
        default_value_t = 64,
        global = true
    )]
    pub ws_max_pending_per_peer: usize,
    /// Streaming connections (WebSockets after `connection_init`, SSE streams) one
    /// organization may hold (503, or close 1013, beyond): no organization can take every
    /// place of `--ws-max-connections`.
    #[arg(
        long,
        env = "INCIDENTD_WS_MAX_CONNECTIONS_PER_ORG",
        default_value_t = 5_000,
        global = true
    )]
    pub ws_max_connections_per_org: usize,
    /// Of those, how many one caller (a token's subject in its organization) may hold.
    #[arg(
        long,
        env = "INCIDENTD_WS_MAX_CONNECTIONS_PER_CALLER",
        default_value_t = 500,
        global = true
    )]
    pub ws_max_connections_per_caller: usize,
    /// How long a send to a WebSocket client may block before the connection is dropped.
    #[arg(long, env = "INCIDENTD_WS_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub ws_write_timeout: Duration,
    /// How often the server pings a WebSocket client; no pong before the next ping closes it
    /// (4504). `0s`: no pings.
    #[arg(long, env = "INCIDENTD_WS_PING_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub ws_ping_interval: Duration,
    /// Largest WebSocket message the server sends; a larger one becomes a `RESPONSE_TOO_LARGE`
    /// error for its operation, and the socket stays up.
    #[arg(long, env = "INCIDENTD_WS_MAX_OUTGOING_BYTES", default_value_t = 4 * 1024 * 1024, global = true)]
    pub ws_max_outgoing_bytes: usize,
    /// How long a graceful shutdown may drain in-flight requests and WebSockets before it cuts them off.
    #[arg(long, env = "INCIDENTD_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration, global = true)]
    pub shutdown_timeout: Duration,
    /// Serve introspection queries (and "did you mean" suggestions).
    #[arg(long, env = "INCIDENTD_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub introspection: bool,
    /// Deepest selection nesting an operation may have (`QUERY_TOO_COMPLEX` beyond).
    #[arg(long, env = "INCIDENTD_MAX_DEPTH", default_value_t = 12, global = true)]
    pub max_depth: usize,
    /// Largest operation cost: one per field, connections multiply their children by `first`/`last`.
    #[arg(
        long,
        env = "INCIDENTD_MAX_COMPLEXITY",
        default_value_t = 50_000,
        global = true
    )]
    pub max_complexity: usize,
    /// Most aliases one document may use.
    #[arg(
        long,
        env = "INCIDENTD_MAX_ALIASES",
        default_value_t = 30,
        global = true
    )]
    pub max_aliases: usize,
    /// Largest GraphQL query text, in bytes.
    #[arg(long, env = "INCIDENTD_MAX_QUERY_BYTES", default_value_t = 32 * 1024, global = true)]
    pub max_query_bytes: usize,
    /// Serve `/metrics` on this address instead of the main listener, e.g. `127.0.0.1:9090`.
    #[arg(long, env = "INCIDENTD_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,
    /// Operation names that may become metric labels, comma-separated; any other is `other`.
    /// Without a list, the first `--metrics-max-operation-names` names seen are admitted.
    #[arg(
        long,
        env = "INCIDENTD_METRICS_OPERATION_NAMES",
        value_delimiter = ',',
        global = true
    )]
    pub metrics_operation_names: Vec<String>,
    /// How many distinct operation names become labels when no list is given.
    #[arg(
        long,
        env = "INCIDENTD_METRICS_MAX_OPERATION_NAMES",
        default_value_t = 100,
        global = true
    )]
    pub metrics_max_operation_names: usize,
    /// Browser origins allowed to call the API (CORS) and to open WebSockets, comma-separated,
    /// e.g. `https://desk.example.com`. None by default; same-origin WebSockets are always allowed.
    #[arg(
        long,
        env = "INCIDENTD_CORS_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub cors_origins: Vec<String>,
    /// Trusted-documents mode: run only the operations of this manifest (Apollo's
    /// persisted-query manifest format, as `incidentd persisted-manifest` prints it); any other
    /// document is refused with `PERSISTED_QUERY_NOT_ALLOWED`.
    #[arg(long, env = "INCIDENTD_PERSISTED_OPERATIONS_FILE", global = true)]
    pub persisted_operations_file: Option<PathBuf>,
    /// In trusted-documents mode, still run introspection queries and serve GraphiQL.
    #[arg(long, env = "INCIDENTD_PERSISTED_OPERATIONS_INTROSPECTION", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub persisted_operations_introspection: bool,
    /// Most bytes of document text the automatic-persisted-query store keeps, over every
    /// organization; past it, the least recently used documents are evicted.
    #[arg(long, env = "INCIDENTD_APQ_MAX_BYTES", default_value_t = 64 * 1024 * 1024, global = true)]
    pub apq_max_bytes: u64,
    /// Most bytes of document text one organization's callers may keep registered; past it,
    /// that organization's least recently used documents are evicted.
    #[arg(long, env = "INCIDENTD_APQ_MAX_BYTES_PER_ORG", default_value_t = 4 * 1024 * 1024, global = true)]
    pub apq_max_bytes_per_org: u64,
    /// `Cache-Control: max-age` of a successful query sent with GET (`Vary: Accept, Authorization`).
    #[arg(long, env = "INCIDENTD_GET_MAX_AGE", default_value = "0s", value_parser = humantime::parse_duration, global = true)]
    pub get_max_age: Duration,
    /// Serve GraphiQL's files (the pinned React, ReactDOM and GraphiQL builds) from this
    /// directory under `/graphql/assets/` instead of loading them from the public CDN.
    #[arg(
        long,
        env = "INCIDENTD_GRAPHIQL_ASSETS",
        value_name = "DIR",
        global = true
    )]
    pub graphiql_assets: Option<PathBuf>,
    /// The URL people open (scheme, host, port); the sign-in redirect URI is
    /// `{public-url}/auth/callback`, and links in webhook messages point into its desk. Default: `http://<listen address>`. With https the session
    /// cookie is `Secure` and `__Host-` prefixed.
    #[arg(long, env = "INCIDENTD_PUBLIC_URL", global = true)]
    pub public_url: Option<url::Url>,
    /// One webhook delivery attempt's limit.
    #[arg(long, env = "INCIDENTD_WEBHOOK_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration, global = true)]
    pub webhook_timeout: Duration,
    /// CIDRs that webhook endpoints may reach although private or loopback (e.g.
    /// `127.0.0.0/8`), comma-separated; `http` is allowed only to these.
    #[arg(
        long,
        env = "INCIDENTD_WEBHOOK_ALLOW_HOSTS",
        value_delimiter = ',',
        global = true
    )]
    pub webhook_allow_hosts: Vec<ipnet::IpNet>,
    /// Key that encrypts webhook signing secrets at rest (any text; without it they are
    /// stored as they are).
    #[arg(
        long,
        env = "INCIDENTD_WEBHOOK_SECRET_KEY",
        hide_env_values = true,
        value_parser = secret,
        global = true
    )]
    pub webhook_secret_key: Option<SecretString>,
    /// Concurrent webhook deliveries per replica.
    #[arg(
        long,
        env = "INCIDENTD_WEBHOOK_WORKERS",
        default_value_t = 4,
        global = true
    )]
    pub webhook_workers: usize,
    /// OpenID Connect issuer URL: sign-in is on when set (discovery from
    /// `{issuer}/.well-known/openid-configuration`).
    #[arg(long, env = "INCIDENTD_OIDC_ISSUER", global = true)]
    pub oidc_issuer: Option<String>,
    /// The client registered at the identity provider.
    #[arg(long, env = "INCIDENTD_OIDC_CLIENT_ID", global = true)]
    pub oidc_client_id: Option<String>,
    /// Its secret (sent with `client_secret_basic`).
    #[arg(
        long,
        env = "INCIDENTD_OIDC_CLIENT_SECRET",
        hide_env_values = true,
        value_parser = secret,
        global = true
    )]
    pub oidc_client_secret: Option<SecretString>,
    /// Scopes asked for, space-separated.
    #[arg(
        long,
        env = "INCIDENTD_OIDC_SCOPES",
        default_value = "openid profile email",
        global = true
    )]
    pub oidc_scopes: String,
    /// Every signed-in person belongs to this organization.
    #[arg(long, env = "INCIDENTD_OIDC_ORGANIZATION", global = true)]
    pub oidc_organization: Option<uuid::Uuid>,
    /// Or: the ID-token claim holding the organization's UUID.
    #[arg(long, env = "INCIDENTD_OIDC_ORG_CLAIM", global = true)]
    pub oidc_org_claim: Option<String>,
    /// The claim (a string or an array of strings) read for the role.
    #[arg(
        long,
        env = "INCIDENTD_OIDC_ROLE_CLAIM",
        default_value = "groups",
        global = true
    )]
    pub oidc_role_claim: String,
    /// `value=role,…` with `*=role` as the fallback, e.g. `sre-admins=admin,oncall=responder,*=viewer`;
    /// the highest matching role wins; no match and no `*`: sign-in refused.
    #[arg(long, env = "INCIDENTD_OIDC_ROLE_MAP", global = true)]
    pub oidc_role_map: Option<crate::signin::RoleMap>,
    /// A session unused this long ends (from `1s`).
    #[arg(long, env = "INCIDENTD_SESSION_IDLE_TIMEOUT", default_value = "8h", value_parser = session_duration, global = true)]
    pub session_idle_timeout: Duration,
    /// A session ends this long after sign-in, used or not (from `1s`).
    #[arg(long, env = "INCIDENTD_SESSION_MAX_AGE", default_value = "24h", value_parser = session_duration, global = true)]
    pub session_max_age: Duration,
    /// Interval of the keep-alive comments on Server-Sent Events streams.
    #[arg(long, env = "INCIDENTD_SSE_KEEP_ALIVE", default_value = "12s", value_parser = humantime::parse_duration, global = true)]
    pub sse_keep_alive: Duration,
}

fn session_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if duration < Duration::from_secs(1) {
        return Err("a session duration is at least 1s".into());
    }
    Ok(duration)
}

fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value.to_string()))
}

impl Config {
    /// The allowed browser origins, normalized (no trailing slash, no blanks), as CORS and the
    /// WebSocket `Origin` check both compare them.
    pub fn allowed_origins(&self) -> Vec<String> {
        self.cors_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect()
    }

    /// The GraphQL limits these settings ask for.
    pub fn limits(&self) -> Limits {
        Limits {
            depth: self.max_depth,
            complexity: self.max_complexity,
            aliases: self.max_aliases,
            query_bytes: self.max_query_bytes,
            introspection: self.introspection,
            operation_names: std::sync::Arc::new(crate::monitoring::OperationNames::new(
                &self.metrics_operation_names,
                self.metrics_max_operation_names,
            )),
            ..Limits::default()
        }
    }

    /// The bounds of the automatic-persisted-query store.
    pub fn apq_bounds(&self) -> Bounds {
        Bounds {
            total: self.apq_max_bytes,
            per_organization: self.apq_max_bytes_per_org,
        }
    }

    pub fn ws_limits(&self) -> WsLimits {
        WsLimits {
            init_timeout: self.ws_init_timeout,
            max_subscriptions: self.ws_max_subscriptions,
            max_message_bytes: self.ws_max_message_bytes,
            write_timeout: self.ws_write_timeout,
            ping_interval: self.ws_ping_interval,
            max_outgoing_bytes: self.ws_max_outgoing_bytes,
            max_pending: self.ws_max_pending,
            max_pending_per_peer: self.ws_max_pending_per_peer,
            max_per_org: self.ws_max_connections_per_org,
            max_per_caller: self.ws_max_connections_per_caller,
        }
    }

    /// The trusted-documents manifest, when one is configured.
    pub fn trusted_documents(&self) -> anyhow::Result<Option<Manifest>> {
        self.persisted_operations_file
            .as_deref()
            .map(Manifest::load)
            .transpose()
    }

    pub fn auth(&self) -> AuthSettings {
        AuthSettings {
            secret: self.jwt_secret.clone(),
            public_key_file: self.jwt_public_key_file.clone(),
            jwks_file: self.jwt_jwks_file.clone(),
            algorithm: self.jwt_algorithm,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            sign_in: self.oidc_issuer.is_some(),
        }
    }

    /// The URL people open: `--public-url`, or `http://` and the address the server listens
    /// on (`bound`, which knows the port when the configured one is 0).
    pub fn public_url(&self, bound: SocketAddr) -> url::Url {
        match &self.public_url {
            Some(url) => url.clone(),
            None => url::Url::parse(&format!("http://{bound}")).expect("an address makes a URL"),
        }
    }

    /// Sign-in with an identity provider, when `--oidc-issuer` is set; an incomplete
    /// configuration is an error at start-up rather than a failure at the first sign-in.
    pub fn oidc(&self, public_url: &url::Url) -> anyhow::Result<Option<OidcSettings>> {
        let Some(issuer) = &self.oidc_issuer else {
            return Ok(None);
        };
        let missing = |flag: &str| anyhow::anyhow!("--oidc-issuer is set: {flag} is needed too");
        let client_id = self
            .oidc_client_id
            .clone()
            .ok_or_else(|| missing("--oidc-client-id"))?;
        let client_secret = self
            .oidc_client_secret
            .clone()
            .ok_or_else(|| missing("--oidc-client-secret"))?;
        let role_map = self
            .oidc_role_map
            .clone()
            .ok_or_else(|| missing("--oidc-role-map"))?;
        let organization = match (self.oidc_organization, &self.oidc_org_claim) {
            (Some(id), None) => OrgSource::Fixed(id),
            (None, Some(claim)) => OrgSource::Claim(claim.clone()),
            _ => anyhow::bail!(
                "--oidc-issuer is set: give exactly one of --oidc-organization and --oidc-org-claim"
            ),
        };
        let base = public_url.as_str().trim_end_matches('/');
        Ok(Some(OidcSettings {
            issuer: issuer.clone(),
            client_id,
            client_secret,
            scopes: self
                .oidc_scopes
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            organization,
            role_claim: self.oidc_role_claim.clone(),
            role_map,
            redirect_uri: url::Url::parse(&format!("{base}/auth/callback"))?,
            after_logout: url::Url::parse(&format!("{base}/"))?,
        }))
    }

    /// How sessions live, for the server at `public_url`.
    pub fn sessions(&self, public_url: &url::Url) -> SessionSettings {
        let mut origins = vec![public_url.origin().ascii_serialization()];
        origins.extend(self.allowed_origins());
        SessionSettings {
            idle_timeout: self.session_idle_timeout,
            max_age: self.session_max_age,
            secure: public_url.scheme() == "https",
            origins,
        }
    }

    pub fn db_options(&self) -> DbOptions {
        DbOptions {
            url: self.database_url.clone(),
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
            statement_timeout: self.db_statement_timeout,
            lock_timeout: self.db_lock_timeout,
        }
    }

    pub fn live_options(&self) -> LiveOptions {
        LiveOptions {
            queue: self.live_queue,
            listen_url: self.listen_database_url.clone(),
            heartbeat: self.listen_heartbeat,
        }
    }

    /// What the domain's webhook half needs: links, allowed destinations, the secrets' key.
    pub fn webhook_settings(&self, public_url: &url::Url) -> WebhookSettings {
        use secrecy::ExposeSecret;
        WebhookSettings {
            public_url: public_url.as_str().trim_end_matches('/').to_string(),
            destinations: Destinations {
                allow: self.webhook_allow_hosts.clone(),
            },
            cipher: self
                .webhook_secret_key
                .as_ref()
                .map(|key| Cipher::new(key.expose_secret())),
            ..WebhookSettings::default()
        }
    }

    pub fn webhook_worker(&self) -> WorkerOptions {
        WorkerOptions {
            workers: self.webhook_workers,
            timeout: self.webhook_timeout,
            poll: Duration::from_secs(1),
        }
    }

    /// Settings for tests and embedding: every default, on the given database.
    pub fn for_database(database_url: &str) -> Config {
        let mut cli = Cli::parse_from(["incidentd"]);
        cli.config.database_url = DatabaseUrl::from(database_url);
        cli.config
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::Parser;

    #[test]
    fn debug_shows_no_secret() {
        let cli = Cli::parse_from([
            "incidentd",
            "--jwt-secret",
            "a-very-secret-value-of-thirty-two-bytes!",
            "--database-url",
            "postgres://incidentd:hunter2-password@db:5432/incidents",
        ]);
        let printed = format!(
            "{cli:?} {:?} {:?}",
            cli.config.auth(),
            cli.config.db_options()
        );
        assert!(!printed.contains("a-very-secret-value"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("postgres://incidentd:***@db:5432/incidents"),
            "{printed}"
        );
    }

    #[test]
    fn sign_in_needs_its_client_a_role_map_and_one_organization_source() {
        let public = url::Url::parse("https://incidents.example.com").unwrap();
        let config = |extra: &[&str]| {
            let mut args = vec!["incidentd", "--oidc-issuer", "https://login.example.com"];
            args.extend(extra);
            Cli::parse_from(args).config
        };
        let client = [
            "--oidc-client-id",
            "incidentd",
            "--oidc-client-secret",
            "s3cret",
            "--oidc-role-map",
            "oncall=responder",
        ];
        assert!(config(&[]).oidc(&public).is_err());
        assert!(config(&client).oidc(&public).is_err(), "no organization");
        let mut both = client.to_vec();
        both.extend([
            "--oidc-organization",
            "6f1c2b1e-8d43-4c55-9a57-0d6f3c1e2a10",
        ]);
        let settings = config(&both).oidc(&public).unwrap().unwrap();
        assert_eq!(
            settings.redirect_uri.as_str(),
            "https://incidents.example.com/auth/callback"
        );
        assert_eq!(settings.scopes, ["openid", "profile", "email"]);
        assert!(config(&both).sessions(&public).secure);
        both.extend(["--oidc-org-claim", "org"]);
        assert!(
            config(&both).oidc(&public).is_err(),
            "two organization sources"
        );
        assert!(!format!("{:?}", config(&client)).contains("s3cret"));
        assert!(
            Cli::try_parse_from(["incidentd", "--session-idle-timeout", "500ms"]).is_err(),
            "sessions last at least a second"
        );
    }
}
