//! Talking to the server as a client would: bearer tokens (minted here from the HS256 secret, or
//! given), GraphQL over HTTP, and `/metrics`.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use uuid::Uuid;

/// Where the tokens come from: one given token (its organization only) or the shared secret.
#[derive(Clone)]
pub enum Credentials {
    Token(String),
    Secret(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret or the token itself.
        f.write_str(match self {
            Credentials::Token(_) => "Credentials::Token(…)",
            Credentials::Secret(_) => "Credentials::Secret(…)",
        })
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    sub: Uuid,
    org: Uuid,
    role: String,
    exp: u64,
}

impl Credentials {
    /// A responder token for `org` (with a secret), or the given token.
    pub fn token(&self, org: Uuid, user: Uuid) -> anyhow::Result<String> {
        match self {
            Credentials::Token(t) => Ok(t.clone()),
            Credentials::Secret(secret) => {
                let claims = Claims {
                    sub: user,
                    org,
                    role: "responder".into(),
                    exp: jsonwebtoken::get_current_timestamp() + 24 * 3600,
                };
                Ok(jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                )?)
            }
        }
    }

    /// The organization a given token is for (read, not verified: the server verifies).
    pub fn token_org(&self) -> Option<Uuid> {
        let Credentials::Token(t) = self else {
            return None;
        };
        use base64::Engine as _;
        let payload = t.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let claims: Value = serde_json::from_slice(&bytes).ok()?;
        claims["org"].as_str()?.parse().ok()
    }
}

/// One HTTP/1.1 keep-alive connection's worth of client: each worker owns one, so a scenario
/// runs on exactly the connections it asks for.
#[derive(Clone)]
pub struct Gql {
    http: reqwest::Client,
    endpoint: String,
    /// `Authorization`'s value; none for a peer that has no authentication.
    auth: Option<String>,
}

impl Gql {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Gql> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Gql {
            http,
            endpoint: format!("{}/graphql", base.trim_end_matches('/')),
            auth: Some(format!("Bearer {token}")),
        })
    }

    /// A client that sends no credentials (the peer server has no authentication).
    pub fn anonymous(base: &str) -> anyhow::Result<Gql> {
        let mut gql = Gql::new(base, "")?;
        gql.auth = None;
        Ok(gql)
    }

    /// The same connection pool, acting with another token.
    pub fn with_token(&self, token: &str) -> Gql {
        Gql {
            http: self.http.clone(),
            endpoint: self.endpoint.clone(),
            auth: Some(format!("Bearer {token}")),
        }
    }

    /// Sends an operation; the body, or why it failed (transport, or an HTTP status other than 200).
    async fn send(&self, query: &str, variables: &Value) -> Result<bytes::Bytes, String> {
        let mut request = self.http.post(&self.endpoint);
        if let Some(auth) = &self.auth {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        let sent = request
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await;
        let response = sent.map_err(|e| format!("transport: {e}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        if status != reqwest::StatusCode::OK {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        Ok(body)
    }

    /// Runs an operation and checks that it succeeded (no GraphQL `errors`) without building its
    /// data: the load generator shares the machine and must stay cheap. The body's size.
    pub async fn check(&self, query: &str, variables: &Value) -> Result<u64, String> {
        #[derive(serde::Deserialize)]
        struct Checked {
            #[serde(default)]
            errors: Option<Vec<Value>>,
            #[serde(default, rename = "data")]
            _data: serde::de::IgnoredAny,
        }
        let body = self.send(query, variables).await?;
        let checked: Checked =
            serde_json::from_slice(&body).map_err(|e| format!("bad JSON: {e}"))?;
        match checked.errors {
            Some(errors) if !errors.is_empty() => Err(describe(&errors[0])),
            _ => Ok(body.len() as u64),
        }
    }

    /// Runs an operation; its `data`.
    pub async fn run(&self, query: &str, variables: &Value) -> Result<Value, String> {
        let body = self.send(query, variables).await?;
        let body: Value = serde_json::from_slice(&body).map_err(|e| format!("bad JSON: {e}"))?;
        match body.get("errors").and_then(Value::as_array) {
            Some(errors) if !errors.is_empty() => Err(describe(&errors[0])),
            _ => Ok(body["data"].clone()),
        }
    }
}

fn describe(error: &Value) -> String {
    let code = error["extensions"]["code"].as_str().unwrap_or("no code");
    format!("GraphQL {code}: {}", error["message"])
}

/// `incidentd_db_statements_total` from `/metrics` (0 when the server does not export it).
pub async fn statements_total(base: &str) -> anyhow::Result<Option<f64>> {
    let text = reqwest::get(format!("{}/metrics", base.trim_end_matches('/')))
        .await
        .context("GET /metrics")?
        .text()
        .await?;
    Ok(metric(&text, "incidentd_db_statements_total"))
}

/// A metric's value (summed over its label sets) from Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}
