//! Bearer tokens → `Principal { user_id, org_id, role }`. HS256 with a shared secret, or RS256 /
//! ES256 with a PEM public key; dev mode signs with a fixed, public secret on loopback only.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::incident::OrgScope;

/// Publicly known: anyone can mint dev tokens, which is why dev mode only listens on loopback.
pub const DEV_SECRET: &str = "incidentd-dev-secret-not-for-production";
pub const DEV_ORG: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_00000000d0e0);
pub const DEV_USER: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_00000000d0e1);

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    async_graphql::Enum,
)]
#[serde(rename_all = "lowercase")]
#[graphql(rename_items = "lowercase")]
pub enum Role {
    Viewer,
    Responder,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub role: Role,
    /// The token's `exp` (seconds since the epoch): long-lived sockets close then.
    pub expires_at: u64,
}

/// What a responder (or admin) may do: write. Only `Principal::writer` makes one.
#[derive(Debug, Clone, Copy)]
pub struct Writer {
    pub user_id: Uuid,
    pub scope: OrgScope,
}

impl Principal {
    pub fn scope(&self) -> OrgScope {
        OrgScope::new(self.org_id)
    }

    pub fn writer(&self) -> AppResult<Writer> {
        if self.role >= Role::Responder {
            Ok(Writer {
                user_id: self.user_id,
                scope: self.scope(),
            })
        } else {
            Err(AppError::Forbidden(
                "this needs the responder or admin role".into(),
            ))
        }
    }

    pub fn require_admin(&self) -> AppResult<()> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AppError::Forbidden("this needs the admin role".into()))
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    org: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

pub struct Authenticator {
    decoding: DecodingKey,
    validation: Validation,
    /// Present for HS256 (and dev mode): what `incidentd token` signs with.
    encoding: Option<EncodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    pub dev_mode: bool,
}

impl Authenticator {
    pub fn from_config(config: &Config) -> anyhow::Result<Authenticator> {
        let (decoding, encoding, algorithm, dev_mode) =
            match (&config.jwt_secret, &config.jwt_public_key_file) {
                (Some(_), Some(_)) => anyhow::bail!(
                    "set either INCIDENTD_JWT_SECRET or INCIDENTD_JWT_PUBLIC_KEY_FILE, not both"
                ),
                (Some(secret), None) => {
                    if secret.len() < 32 {
                        anyhow::bail!("INCIDENTD_JWT_SECRET must be at least 32 bytes long");
                    }
                    (
                        DecodingKey::from_secret(secret.as_bytes()),
                        Some(EncodingKey::from_secret(secret.as_bytes())),
                        Algorithm::HS256,
                        false,
                    )
                }
                (None, Some(path)) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        anyhow::anyhow!("cannot read JWT public key {}: {e}", path.display())
                    })?;
                    let (key, alg) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                        (key, Algorithm::RS256)
                    } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                        (key, Algorithm::ES256)
                    } else {
                        anyhow::bail!(
                            "{} is neither an RSA nor an EC public key in PEM form",
                            path.display()
                        );
                    };
                    (key, None, alg, false)
                }
                (None, None) => (
                    DecodingKey::from_secret(DEV_SECRET.as_bytes()),
                    Some(EncodingKey::from_secret(DEV_SECRET.as_bytes())),
                    Algorithm::HS256,
                    true,
                ),
            };
        let mut validation = Validation::new(algorithm);
        validation.leeway = 30;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &config.jwt_issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &config.jwt_audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        } else {
            validation.validate_aud = false;
        }
        validation.set_required_spec_claims(&required);
        Ok(Authenticator {
            decoding,
            validation,
            encoding,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            dev_mode,
        })
    }

    pub fn authenticate(&self, token: &str) -> AppResult<Principal> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AppError::Unauthenticated(format!("invalid bearer token: {e}")))?;
        Ok(Principal {
            user_id: data.claims.sub,
            org_id: data.claims.org,
            role: data.claims.role.unwrap_or(Role::Viewer),
            expires_at: data.claims.exp,
        })
    }

    /// `Authorization` header value → principal.
    pub fn authenticate_header(&self, header: Option<&str>) -> AppResult<Principal> {
        let header = header.ok_or_else(|| {
            AppError::Unauthenticated("missing Authorization: Bearer <token> header".into())
        })?;
        let token = bearer_token(header).ok_or_else(|| {
            AppError::Unauthenticated("the Authorization header must be `Bearer <token>`".into())
        })?;
        self.authenticate(token)
    }

    pub fn mint(&self, org: Uuid, user: Uuid, role: Role, ttl: Duration) -> anyhow::Result<String> {
        let key = self.encoding.as_ref().ok_or_else(|| {
            anyhow::anyhow!("tokens can only be minted with an HS256 secret (INCIDENTD_JWT_SECRET)")
        })?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user,
            org,
            role: Some(role),
            exp: now + ttl.as_secs(),
            iat: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            key,
        )?)
    }
}

pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
