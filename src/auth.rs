//! Bearer tokens → `Principal { user_id, org_id, role }`. HS256 with a shared secret, RS256 /
//! ES256 with a PEM public key, or RS256 / ES256 with a JWKS file whose keys are chosen by the
//! token's `kid` (re-read when the file changes); dev mode signs with a fixed, public secret on
//! loopback only. The algorithm is pinned by configuration, never chosen by the token, and keys
//! named by the token itself (`jku`, `jwk`, `x5u`, `x5c` headers) are never fetched nor trusted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
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
}

/// The JWKS file's modification time is checked at most this often (on the authentication path).
const JWKS_RECHECK: Duration = Duration::from_secs(1);

/// Keys from a JWKS file, by `kid`; re-read when the file changes, the last good set kept when a
/// changed file cannot be used.
struct JwksKeys {
    path: PathBuf,
    algorithm: Algorithm,
    state: Mutex<JwksState>,
}

struct JwksState {
    keys: Arc<HashMap<String, DecodingKey>>,
    /// The file as last read (whether or not it could be used), so a bad file is reported once.
    seen: Option<FileStamp>,
    checked: Instant,
}

/// What tells a changed file: modification time, length and (on Unix) inode, which an atomic
/// rename changes even within one tick of the file system clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<FileStamp> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        })
    }
}

impl JwksKeys {
    fn load(path: &Path, algorithm: Algorithm) -> anyhow::Result<JwksKeys> {
        let (stamp, keys) = read_jwks(path, algorithm)?;
        if keys.is_empty() {
            anyhow::bail!(
                "the JWKS file {} holds no usable {algorithm:?} signing key with a `kid`",
                path.display()
            );
        }
        Ok(JwksKeys {
            path: path.to_path_buf(),
            algorithm,
            state: Mutex::new(JwksState {
                keys: Arc::new(keys),
                seen: Some(stamp),
                checked: Instant::now(),
            }),
        })
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        let keys = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.checked.elapsed() >= JWKS_RECHECK {
                state.checked = Instant::now();
                self.refresh(&mut state);
            }
            Arc::clone(&state.keys)
        };
        keys.get(kid).cloned()
    }

    fn refresh(&self, state: &mut JwksState) {
        let stamp = match FileStamp::of(&self.path) {
            Ok(stamp) => stamp,
            Err(e) => {
                if state.seen.take().is_some() {
                    tracing::warn!(path = %self.path.display(), error = %e,
                        "cannot read the JWKS file; keeping the previous keys");
                }
                return;
            }
        };
        if state.seen == Some(stamp) {
            return;
        }
        match read_jwks(&self.path, self.algorithm) {
            Ok((stamp, keys)) => {
                state.seen = Some(stamp);
                if keys.is_empty() {
                    tracing::warn!(path = %self.path.display(),
                        "the JWKS file now holds no usable key: every token is refused");
                } else {
                    tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS file reloaded");
                }
                state.keys = Arc::new(keys);
            }
            Err(e) => {
                state.seen = Some(stamp);
                tracing::error!(path = %self.path.display(), error = %e,
                    "the changed JWKS file cannot be used; keeping the previous keys");
            }
        }
    }
}

/// Reads and parses a JWKS file; the stamp is taken before the read, so a write racing the read
/// shows up as a change at the next check.
fn read_jwks(
    path: &Path,
    algorithm: Algorithm,
) -> anyhow::Result<(FileStamp, HashMap<String, DecodingKey>)> {
    let stamp = FileStamp::of(path)
        .map_err(|e| anyhow::anyhow!("cannot read the JWKS file {}: {e}", path.display()))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the JWKS file {}: {e}", path.display()))?;
    let keys = parse_jwks(&text, algorithm)
        .map_err(|e| anyhow::anyhow!("the JWKS file {} is invalid: {e}", path.display()))?;
    Ok((stamp, keys))
}

/// `{"keys":[…]}` → the keys usable for `algorithm`, by `kid`. Keys of other types, algorithms or
/// uses are skipped (a JWKS may publish them); a document that is not a JWKS, or two usable keys
/// with one `kid`, make the whole file unusable.
fn parse_jwks(text: &str, algorithm: Algorithm) -> anyhow::Result<HashMap<String, DecodingKey>> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet = serde_json::from_str(text)?;
    // Key by key, so one key of a kind this library does not know skips that key only.
    let set = JwkSet {
        keys: raw
            .keys
            .into_iter()
            .enumerate()
            .filter_map(|(i, key)| match serde_json::from_value::<Jwk>(key) {
                Ok(jwk) => Some(jwk),
                Err(e) => {
                    tracing::info!(index = i, error = %e, "JWKS entry skipped: not a supported key");
                    None
                }
            })
            .collect(),
    };
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.as_deref() else {
            tracing::info!("JWKS key without `kid` skipped");
            continue;
        };
        if let Some(reason) = unusable(jwk, algorithm) {
            tracing::info!(kid, reason, "JWKS key skipped");
            continue;
        }
        let key = match DecodingKey::from_jwk(jwk) {
            Ok(key) => key,
            Err(e) => {
                tracing::info!(kid, error = %e, "JWKS key skipped: invalid key material");
                continue;
            }
        };
        if keys.insert(kid.to_string(), key).is_some() {
            anyhow::bail!("two keys share the kid {kid:?}");
        }
    }
    Ok(keys)
}

/// Why a JWK cannot verify `algorithm` signatures, if it cannot.
fn unusable(jwk: &Jwk, algorithm: Algorithm) -> Option<&'static str> {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Some("not a signature key (`use`)");
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Some("not a verification key (`key_ops`)");
    }
    let pinned = match algorithm {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        _ => return Some("only RS256 and ES256 keys are read from a JWKS"),
    };
    if common.key_algorithm.is_some_and(|a| a != pinned) {
        return Some("its `alg` is not the configured algorithm");
    }
    match (&jwk.algorithm, algorithm) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => None,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256)
            if ec.curve == EllipticCurve::P256 =>
        {
            None
        }
        _ => Some("its key type does not fit the configured algorithm"),
    }
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
    pub fn from_config(config: &Config) -> anyhow::Result<Authenticator> {
        let sources = [
            config.jwt_secret.is_some(),
            config.jwt_public_key_file.is_some(),
            config.jwt_jwks_file.is_some(),
        ];
        if sources.iter().filter(|set| **set).count() > 1 {
            anyhow::bail!(
                "set only one of INCIDENTD_JWT_SECRET, INCIDENTD_JWT_PUBLIC_KEY_FILE and \
                 INCIDENTD_JWT_JWKS_FILE"
            );
        }
        let pinned = config.jwt_algorithm.map(JwtAlgorithm::algorithm);
        if let Some(path) = &config.jwt_jwks_file {
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
            match (&config.jwt_secret, &config.jwt_public_key_file) {
                (Some(_), Some(_)) => unreachable!("checked above"),
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
        config: &Config,
        dev_mode: bool,
    ) -> Authenticator {
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
        Authenticator {
            keys,
            validation,
            encoding,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            dev_mode,
        }
    }

    pub fn authenticate(&self, token: &str) -> AppResult<Principal> {
        let invalid = |e: jsonwebtoken::errors::Error| {
            AppError::Unauthenticated(format!("invalid bearer token: {e}"))
        };
        let data = match &self.keys {
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
