//! Persisted operations: automatic persisted queries (APQ) kept in the database, so every
//! replica knows a hash one of them learned, and the trusted-documents manifest that, when
//! configured, is the list of the only operations the server runs.
//!
//! The APQ store is bounded (`store::Bounds`: a total and a share per organization, in bytes)
//! and evicts the least recently used documents past either bound rather than refusing new
//! ones: APQ recovers from a missing hash by itself (the client sends the text again, one
//! round trip), whereas refusing would leave an organization at its bound paying that round
//! trip on every request for each operation it registered too late. Each organization's share
//! means one that floods the store evicts only its own documents.

pub mod manifest;
mod store;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use manifest::Manifest;
pub use store::Bounds;

use crate::db::Db;
use crate::error::{AppError, AppResult};

/// Documents known by hash in this process, least recently used dropped first past either
/// bound: at most this many, and at most `CACHE_BYTES` of text.
const CACHE_ENTRIES: NonZeroUsize = NonZeroUsize::new(2_000).expect("not zero");
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// How often a replica records that a document it keeps is still used: the eviction order is
/// this coarse, and a busy replica writes at most one touch per document per interval.
const TOUCH_INTERVAL: Duration = Duration::from_secs(600);

struct Cached {
    text: Arc<str>,
    touched: Instant,
}

/// The process's documents by hash, with the bytes of text they hold.
struct Cache {
    entries: LruCache<String, Cached>,
    bytes: usize,
}

/// The lowercase hex SHA-256 of a document's text, as Apollo Client and urql compute it.
pub fn sha256_hex(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// What a request says about persisted documents (`extensions.persistedQuery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedQuery {
    /// 64 lowercase hex digits.
    pub sha256: String,
}

impl PersistedQuery {
    /// Parses `{"version": 1, "sha256Hash": "…"}`.
    pub fn parse(value: &serde_json::Value) -> AppResult<PersistedQuery> {
        let field = "extensions.persistedQuery";
        let version = value.get("version").and_then(|v| v.as_i64());
        if version != Some(1) {
            return Err(AppError::bad_input(
                field,
                "persistedQuery.version must be 1 (the only version of the protocol)",
            ));
        }
        let hash = value
            .get("sha256Hash")
            .and_then(|v| v.as_str())
            .ok_or_else(|| AppError::bad_input(field, "persistedQuery.sha256Hash is missing"))?;
        Ok(PersistedQuery {
            sha256: hash.to_ascii_lowercase(),
        })
    }
}

/// What a request will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// Text this server may run.
    Run(String),
    /// Trusted-documents mode: text the manifest does not list. The transport decides whether
    /// it is an exception (introspection, when allowed) or refuses it.
    Unlisted(String),
    /// APQ: text sent with its hash (checked) that is not stored; the operation path stores
    /// it with `register` once it passes the checks an operation must pass to run.
    Unregistered { text: String, sha256: String },
}

/// The persisted-documents policy and store, shared by every GraphQL transport.
#[derive(Clone)]
pub struct Documents {
    db: Db,
    trusted: Option<Arc<Manifest>>,
    /// The largest document APQ stores (the GraphQL query-size limit).
    max_bytes: usize,
    bounds: Bounds,
    cache: Arc<Mutex<Cache>>,
}

impl Documents {
    pub fn new(db: Db, trusted: Option<Manifest>, max_bytes: usize, bounds: Bounds) -> Documents {
        Documents {
            db,
            trusted: trusted.map(Arc::new),
            max_bytes,
            bounds,
            cache: Arc::new(Mutex::new(Cache {
                entries: LruCache::new(CACHE_ENTRIES),
                bytes: 0,
            })),
        }
    }

    /// Whether only the manifest's operations run.
    pub fn trusted_only(&self) -> bool {
        self.trusted.is_some()
    }

    /// The document of a request: its text, the text its hash names, or a refusal.
    ///
    /// - With a hash and no text: the stored text, or `PERSISTED_QUERY_NOT_FOUND` (APQ: the
    ///   client retries with the text); in trusted mode the manifest's, or
    ///   `PERSISTED_QUERY_NOT_ALLOWED`.
    /// - With a hash and text: the hash must be the text's (refused otherwise); `Unregistered`
    ///   when APQ does not hold it yet.
    /// - With text only: the text (in trusted mode, `Unlisted` unless the manifest lists it).
    pub async fn resolve(
        &self,
        text: Option<String>,
        persisted: Option<PersistedQuery>,
    ) -> AppResult<Document> {
        let text = text.filter(|t| !t.trim().is_empty());
        match (text, persisted, &self.trusted) {
            (None, None, _) => Err(AppError::bad_input("query", "the request has no `query`")),
            (Some(text), Some(pq), _) if sha256_hex(&text) != pq.sha256 => {
                Err(AppError::bad_input(
                    "extensions.persistedQuery.sha256Hash",
                    "persistedQuery.sha256Hash is not the SHA-256 of the query text",
                ))
            }
            (Some(text), _, Some(manifest)) => Ok(if manifest.lists_text(&text) {
                Document::Run(text)
            } else {
                Document::Unlisted(text)
            }),
            (None, Some(pq), Some(manifest)) => match manifest.body(&pq.sha256) {
                Some(body) => Ok(Document::Run(body.to_string())),
                None => Err(AppError::PersistedQueryNotAllowed(
                    "this server runs only the operations of its persisted-operations manifest, \
                     and none has this id"
                        .into(),
                )),
            },
            (Some(text), None, None) => Ok(Document::Run(text)),
            (Some(text), Some(pq), None) => Ok(if self.cached(&pq.sha256).is_some() {
                Document::Run(text)
            } else {
                Document::Unregistered {
                    text,
                    sha256: pq.sha256,
                }
            }),
            (None, Some(pq), None) => match self.lookup(&pq.sha256).await? {
                Some(text) => Ok(Document::Run(text.to_string())),
                None => Err(AppError::PersistedQueryNotFound),
            },
        }
    }

    async fn lookup(&self, sha256: &str) -> AppResult<Option<Arc<str>>> {
        if let Some(text) = self.cached(sha256) {
            return Ok(Some(text));
        }
        let Some(text) = store::get(&self.db, sha256).await? else {
            return Ok(None);
        };
        let text: Arc<str> = text.into();
        self.remember(sha256, text.clone());
        self.touch(sha256);
        Ok(Some(text))
    }

    /// The text kept in this process for `sha256`, marking it used.
    fn cached(&self, sha256: &str) -> Option<Arc<str>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let cached = cache.entries.get_mut(sha256)?;
        let text = cached.text.clone();
        if cached.touched.elapsed() >= TOUCH_INTERVAL {
            cached.touched = Instant::now();
            drop(cache);
            self.touch(sha256);
        }
        Some(text)
    }

    /// Records, off the request's path, that the document is still used.
    fn touch(&self, sha256: &str) {
        let (db, sha256) = (self.db.clone(), sha256.to_string());
        tokio::spawn(async move {
            if let Err(e) = store::touch(&db, &sha256, chrono::Utc::now()).await {
                tracing::debug!(error = %e, "could not mark a persisted document used");
            }
        });
    }

    /// Stores a document whose hash was checked and which passed the checks an operation must
    /// pass to run, for `organization`. Text larger than the query-size limit is not stored
    /// (it could never run).
    pub async fn register(&self, organization: Uuid, sha256: &str, text: &str) -> AppResult<()> {
        if text.len() > self.max_bytes {
            return Ok(());
        }
        store::put(&self.db, organization, sha256, text, self.bounds).await?;
        self.remember(sha256, text.into());
        Ok(())
    }

    fn remember(&self, sha256: &str, text: Arc<str>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = text.len();
        let replaced = cache.entries.push(
            sha256.to_string(),
            Cached {
                text,
                touched: Instant::now(),
            },
        );
        cache.bytes += bytes;
        if let Some((_, old)) = replaced {
            cache.bytes -= old.text.len();
        }
        while cache.bytes > CACHE_BYTES {
            match cache.entries.pop_lru() {
                Some((_, old)) => cache.bytes -= old.text.len(),
                None => break,
            }
        }
    }
}
