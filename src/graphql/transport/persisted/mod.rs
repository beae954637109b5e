//! Persisted operations: automatic persisted queries (APQ) kept in the database, so every
//! replica knows a hash one of them learned, and the trusted-documents manifest that, when
//! configured, is the list of the only operations the server runs.

pub mod manifest;
mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

pub use manifest::Manifest;

use crate::db::Db;
use crate::error::{AppError, AppResult};

/// Documents known by hash in this process; they never change, so they are kept without expiry
/// up to this many, then the cache starts over.
const CACHE_ENTRIES: usize = 2_000;

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
}

/// The persisted-documents policy and store, shared by every GraphQL transport.
#[derive(Clone)]
pub struct Documents {
    db: Db,
    trusted: Option<Arc<Manifest>>,
    /// The largest document APQ stores (the GraphQL query-size limit).
    max_bytes: usize,
    cache: Arc<Mutex<HashMap<String, Arc<str>>>>,
}

impl Documents {
    pub fn new(db: Db, trusted: Option<Manifest>, max_bytes: usize) -> Documents {
        Documents {
            db,
            trusted: trusted.map(Arc::new),
            max_bytes,
            cache: Arc::default(),
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
    /// - With a hash and text: the hash must be the text's (refused otherwise); APQ stores it.
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
            (Some(text), Some(pq), None) => {
                self.register(&pq.sha256, &text).await?;
                Ok(Document::Run(text))
            }
            (None, Some(pq), None) => match self.lookup(&pq.sha256).await? {
                Some(text) => Ok(Document::Run(text.to_string())),
                None => Err(AppError::PersistedQueryNotFound),
            },
        }
    }

    async fn lookup(&self, sha256: &str) -> AppResult<Option<Arc<str>>> {
        if let Some(text) = self.cache.lock().ok().and_then(|c| c.get(sha256).cloned()) {
            return Ok(Some(text));
        }
        let Some(text) = store::get(&self.db, sha256).await? else {
            return Ok(None);
        };
        let text: Arc<str> = text.into();
        self.remember(sha256, text.clone());
        Ok(Some(text))
    }

    /// Stores a document whose hash was checked. Text larger than the query-size limit is not
    /// stored (it could never run), nor text that does not parse as GraphQL, so the table holds
    /// only documents that could be sent again.
    async fn register(&self, sha256: &str, text: &str) -> AppResult<()> {
        if text.len() > self.max_bytes || async_graphql::parser::parse_query(text).is_err() {
            return Ok(());
        }
        if self.cache.lock().is_ok_and(|c| c.contains_key(sha256)) {
            return Ok(());
        }
        store::put(&self.db, sha256, text).await?;
        self.remember(sha256, text.into());
        Ok(())
    }

    fn remember(&self, sha256: &str, text: Arc<str>) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(sha256.to_string(), text);
        }
    }
}
