//! Keys from a JWKS file, chosen by the token's `kid`: re-read when the file changes, keeping the
//! last good set when a changed file cannot be used, and skipping keys that do not fit the
//! pinned algorithm.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The JWKS file's modification time is checked at most this often (on the authentication path).
const JWKS_RECHECK: Duration = Duration::from_secs(1);

/// Keys from a JWKS file, by `kid`; re-read when the file changes, the last good set kept when a
/// changed file cannot be used.
pub(super) struct JwksKeys {
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
    pub(super) fn load(path: &Path, algorithm: Algorithm) -> anyhow::Result<JwksKeys> {
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

    pub(super) fn key(&self, kid: &str) -> Option<DecodingKey> {
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
