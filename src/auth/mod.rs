//! Bearer tokens → `Principal { user_id, org_id, role }`. HS256 with a shared secret, RS256 /
//! ES256 with a PEM public key, or RS256 / ES256 with a JWKS file whose keys are chosen by the
//! token's `kid` (re-read when the file changes); dev mode signs with a fixed, public secret on
//! loopback only. With sign-in through an identity provider and no key, bearer tokens are off. The algorithm is pinned by configuration, never chosen by the token, and keys
//! named by the token itself (`jku`, `jwk`, `x5u`, `x5c` headers) are never fetched nor trusted.

mod jwks;
pub mod sessions;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::incident::identity::{Principal, Role};
use crate::incident::people::PersonClaims;
use jwks::JwksKeys;
use sessions::{Sessions, Use};

/// Publicly known: anyone can mint dev tokens, which is why dev mode only listens on loopback.
pub const DEV_SECRET: &str = "incidentd-dev-secret-not-for-production";
pub const DEV_ORG: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_00000000d0e0);
pub const DEV_USER: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_00000000d0e1);
/// The demo user's name, in the dev token and the demo organization's directory.
pub const DEV_USER_NAME: &str = "Dana Demo";
pub const DEV_USER_EMAIL: &str = "dana.demo@example.com";

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
    /// Checked by `Validation`, which accepts a string or an array (RFC 7519 §4.1.3); never read here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<Audience>,
    /// Who the person is (OpenID Connect's standard claims): the people directory is filled
    /// from them. Anything but a string is ignored rather than refused.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_string"
    )]
    name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_string"
    )]
    email: Option<String>,
}

/// A string claim, or `None` for any other JSON value: a token service that writes `"name":
/// null` or a number must not lock its users out.
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// What a minted token says about its person, beyond its id.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// How bearer tokens are verified: exactly one key source (or none: dev mode, or no bearer
/// tokens at all when people sign in), the pinned algorithm, and the claims checked when set.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub secret: Option<SecretString>,
    pub public_key_file: Option<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub algorithm: Option<JwtAlgorithm>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// People sign in through an identity provider (`--oidc-issuer`): without a key source,
    /// bearer tokens are then off rather than dev mode.
    pub sign_in: bool,
}

/// What bearer tokens do under these settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerMode {
    /// Verified with the configured key.
    Configured,
    /// Signed with the public `DEV_SECRET`, on loopback only.
    Dev,
    /// Refused: people sign in, and no key is configured.
    Off,
}

impl AuthSettings {
    pub fn bearer_mode(&self) -> BearerMode {
        let keyed =
            self.secret.is_some() || self.public_key_file.is_some() || self.jwks_file.is_some();
        match (keyed, self.sign_in) {
            (true, _) => BearerMode::Configured,
            (false, false) => BearerMode::Dev,
            (false, true) => BearerMode::Off,
        }
    }
}

/// The refusal of every bearer token when they are off.
const BEARER_OFF: &str = "bearer tokens are not configured on this server; sign in";

/// The signature algorithms `--jwt-algorithm` can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JwtAlgorithm {
    #[value(name = "HS256")]
    Hs256,
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
}

impl JwtAlgorithm {
    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// Where the verification key comes from.
enum Keys {
    /// One key for every token: the HS256 secret, the PEM public key, the dev secret.
    Single(DecodingKey),
    /// The key named by the token's `kid`, from a JWKS file.
    Jwks(JwksKeys),
    /// No key: bearer tokens are refused (people sign in instead).
    Off,
}

pub struct Authenticator {
    keys: Keys,
    validation: Validation,
    /// Present for HS256 (and dev mode): what `incidentd token` signs with.
    encoding: Option<EncodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    pub dev_mode: bool,
}

impl Authenticator {
    pub fn new(config: &AuthSettings) -> anyhow::Result<Authenticator> {
        let sources = [
            config.secret.is_some(),
            config.public_key_file.is_some(),
            config.jwks_file.is_some(),
        ];
        if sources.iter().filter(|set| **set).count() > 1 {
            anyhow::bail!(
                "set only one of INCIDENTD_JWT_SECRET, INCIDENTD_JWT_PUBLIC_KEY_FILE and \
                 INCIDENTD_JWT_JWKS_FILE"
            );
        }
        let pinned = config.algorithm.map(JwtAlgorithm::algorithm);
        if config.bearer_mode() == BearerMode::Off {
            let algorithm = pinned.unwrap_or(Algorithm::HS256);
            return Ok(Self::with(Keys::Off, None, algorithm, config, false));
        }
        if let Some(path) = &config.jwks_file {
            let algorithm = pinned.unwrap_or(Algorithm::RS256);
            if algorithm == Algorithm::HS256 {
                anyhow::bail!(
                    "a JWKS file holds public keys: INCIDENTD_JWT_ALGORITHM must be RS256 or ES256"
                );
            }
            let jwks = JwksKeys::load(path, algorithm)?;
            return Ok(Self::with(Keys::Jwks(jwks), None, algorithm, config, false));
        }
        let (decoding, encoding, algorithm, dev_mode) =
            match (&config.secret, &config.public_key_file) {
                (Some(_), Some(_)) => unreachable!("checked above"),
                (Some(secret), None) => {
                    let secret = secret.expose_secret();
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
        if let Some(pinned) = pinned.filter(|p| *p != algorithm) {
            anyhow::bail!(
                "INCIDENTD_JWT_ALGORITHM is {pinned:?} but the configured key is for {algorithm:?}"
            );
        }
        Ok(Self::with(
            Keys::Single(decoding),
            encoding,
            algorithm,
            config,
            dev_mode,
        ))
    }

    fn with(
        keys: Keys,
        encoding: Option<EncodingKey>,
        algorithm: Algorithm,
        config: &AuthSettings,
        dev_mode: bool,
    ) -> Authenticator {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 30;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &config.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        } else {
            validation.validate_aud = false;
        }
        validation.set_required_spec_claims(&required);
        Authenticator {
            keys,
            validation,
            encoding,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            dev_mode,
        }
    }

    pub fn authenticate(&self, token: &str) -> AppResult<Principal> {
        let invalid = |e: jsonwebtoken::errors::Error| {
            AppError::Unauthenticated(format!("invalid bearer token: {e}"))
        };
        let data = match &self.keys {
            Keys::Off => return Err(AppError::Unauthenticated(BEARER_OFF.into())),
            Keys::Single(key) => jsonwebtoken::decode::<Claims>(token, key, &self.validation),
            Keys::Jwks(jwks) => {
                // Only `kid` is read from the header, to pick one of the configured keys; keys the
                // token names or carries itself (`jku`, `jwk`, `x5u`, `x5c`) are never used.
                let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
                let kid = header.kid.ok_or_else(|| {
                    AppError::Unauthenticated("invalid bearer token: no `kid` header".into())
                })?;
                let key = jwks.key(&kid).ok_or_else(|| {
                    AppError::Unauthenticated("invalid bearer token: unknown `kid`".into())
                })?;
                jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            }
        }
        .map_err(invalid)?;
        let claims = data.claims;
        let person = PersonClaims::from_token(claims.sub, claims.iss, claims.name, claims.email);
        Ok(Principal {
            user_id: claims.sub,
            org_id: claims.org,
            role: claims.role.unwrap_or(Role::Viewer),
            expires_at: claims.exp,
            person: person.map(Arc::new),
        })
    }

    /// `Authorization` header value → principal.
    pub fn authenticate_header(&self, header: Option<&str>) -> AppResult<Principal> {
        if matches!(self.keys, Keys::Off) {
            return Err(AppError::Unauthenticated(match header {
                Some(_) => BEARER_OFF.into(),
                None => "not signed in: sign in through the identity provider".into(),
            }));
        }
        let header = header.ok_or_else(|| {
            AppError::Unauthenticated("missing Authorization: Bearer <token> header".into())
        })?;
        let token = bearer_token(header).ok_or_else(|| {
            AppError::Unauthenticated("the Authorization header must be `Bearer <token>`".into())
        })?;
        self.authenticate(token)
    }

    pub fn mint(&self, org: Uuid, user: Uuid, role: Role, ttl: Duration) -> anyhow::Result<String> {
        self.mint_for(org, user, role, ttl, Profile::default())
    }

    /// A token that also names its person (the `name` and `email` claims).
    pub fn mint_for(
        &self,
        org: Uuid,
        user: Uuid,
        role: Role,
        ttl: Duration,
        profile: Profile,
    ) -> anyhow::Result<String> {
        if matches!(self.keys, Keys::Off) {
            anyhow::bail!(
                "bearer tokens are off: people sign in through the identity provider; set \
                 INCIDENTD_JWT_SECRET to mint tokens for automation"
            );
        }
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
            aud: self.audience.clone().map(Audience::One),
            name: profile.name,
            email: profile.email,
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

/// Who sent this HTTP request (or WebSocket upgrade): the bearer token when there is an
/// `Authorization` header, judged alone exactly as without sessions; otherwise the session
/// cookie, with what `usage` needs besides it (see `Use`). Every transport calls this.
pub async fn authenticate_request(
    tokens: &Authenticator,
    sessions: &Sessions,
    headers: &axum::http::HeaderMap,
    usage: Use,
) -> AppResult<Principal> {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if authorization.is_none()
        && let Some(value) = sessions.cookie(headers)
    {
        return sessions.authenticate(&value, headers, usage).await;
    }
    tokens.authenticate_header(authorization)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes!!";

    fn dev_token() -> String {
        let dev = Authenticator::new(&AuthSettings::default()).unwrap();
        dev.mint(DEV_ORG, DEV_USER, Role::Admin, Duration::from_secs(60))
            .unwrap()
    }

    #[test]
    fn the_settings_decide_the_bearer_mode() {
        let keyed = AuthSettings {
            secret: Some(SECRET.into()),
            ..AuthSettings::default()
        };
        let signing_in = AuthSettings {
            sign_in: true,
            ..AuthSettings::default()
        };
        let both = AuthSettings {
            sign_in: true,
            ..keyed.clone()
        };
        assert_eq!(AuthSettings::default().bearer_mode(), BearerMode::Dev);
        assert_eq!(keyed.bearer_mode(), BearerMode::Configured);
        assert_eq!(signing_in.bearer_mode(), BearerMode::Off);
        assert_eq!(both.bearer_mode(), BearerMode::Configured);

        // Sign-in without a key: no dev mode, every token refused, nothing minted.
        let off = Authenticator::new(&signing_in).unwrap();
        assert!(!off.dev_mode);
        let header = format!("Bearer {}", dev_token());
        match off.authenticate_header(Some(&header)) {
            Err(AppError::Unauthenticated(message)) => {
                assert!(
                    message.contains("bearer tokens are not configured"),
                    "{message}"
                )
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(
            off.mint(DEV_ORG, DEV_USER, Role::Admin, Duration::from_secs(60))
                .is_err()
        );

        // Sign-in with a key: its tokens work, the dev secret's do not.
        let keyed_in = Authenticator::new(&both).unwrap();
        assert!(!keyed_in.dev_mode);
        let token = keyed_in
            .mint(DEV_ORG, DEV_USER, Role::Admin, Duration::from_secs(60))
            .unwrap();
        assert_eq!(keyed_in.authenticate(&token).unwrap().user_id, DEV_USER);
        assert!(keyed_in.authenticate(&dev_token()).is_err());

        // Neither: dev mode, as always.
        let dev = Authenticator::new(&AuthSettings::default()).unwrap();
        assert!(dev.dev_mode);
        assert_eq!(dev.authenticate(&dev_token()).unwrap().user_id, DEV_USER);
    }
}
