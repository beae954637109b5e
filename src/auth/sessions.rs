//! Sign-in sessions: the cookie a browser holds after signing in, and the database rows behind
//! it. Any replica serves any session and ending one ends it everywhere, because every request
//! reads the row; only a SHA-256 of the cookie's value is stored, so a copy of the table signs
//! nobody in.
//!
//! Database access here is exempt from `OrgScope` (see `tenancy_is_structural`): a session is
//! looked up by its hash before anyone is known, which is what makes the caller known; every
//! other statement names the session's organization.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, ExprTrait as _, QueryFilter};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::Db;
use crate::entity::session;
use crate::error::{AppError, AppResult};
use crate::incident::identity::{Principal, Role};

/// The header a cookie-authenticated write carries, equal to the session's token.
pub const CSRF_HEADER: &str = "x-csrf-token";

const COOKIE: &str = "incidentd_session";
const HOST_COOKIE: &str = "__Host-incidentd_session";

/// What a request authenticated by the session cookie is about to do, which decides what it
/// must show besides the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A GET that only reads: the cookie alone.
    Read,
    /// A state-changing request (POST, PUT, DELETE): also `X-CSRF-Token`.
    Write,
    /// A WebSocket or an event stream: also an `Origin` that is ours.
    Stream,
}

/// How long sessions live, and where the cookie may be used from.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub idle_timeout: Duration,
    pub max_age: Duration,
    /// `--public-url` is https: the cookie is `Secure` and `__Host-`.
    pub secure: bool,
    /// The public URL's origin and `--cors-origins`: where cookie-authenticated streams may
    /// come from.
    pub origins: Vec<String>,
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Sessions {
    db: Db,
    settings: Arc<SessionSettings>,
}

impl Sessions {
    pub fn new(db: Db, settings: SessionSettings) -> Sessions {
        Sessions {
            db,
            settings: Arc::new(settings),
        }
    }

    pub fn cookie_name(&self) -> &'static str {
        if self.settings.secure {
            HOST_COOKIE
        } else {
            COOKIE
        }
    }

    /// `Set-Cookie` for a new session: `HttpOnly; SameSite=Lax; Path=/` (+ `Secure`). Lax, not
    /// Strict: a Strict cookie set on the callback would not be sent on the redirect after it.
    pub fn set_cookie(&self, value: &str) -> HeaderValue {
        let max_age = Ord::max(self.settings.max_age.as_secs(), 1);
        self.cookie_header(&format!(
            "{}={value}; Max-Age={max_age}",
            self.cookie_name()
        ))
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie_header(&format!("{}=; Max-Age=0", self.cookie_name()))
    }

    fn cookie_header(&self, start: &str) -> HeaderValue {
        let secure = if self.settings.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!("{start}; Path=/; HttpOnly; SameSite=Lax{secure}"))
            .expect("cookie values are base64url")
    }

    /// The session cookie's value, if the request has one.
    pub fn cookie(&self, headers: &HeaderMap) -> Option<String> {
        cookie_value(headers, self.cookie_name())
    }

    /// Starts a session for a person who just signed in. Returns the cookie's value (never
    /// stored) and the session.
    #[tracing::instrument(skip(self))]
    pub async fn start(
        &self,
        org_id: Uuid,
        person_id: Uuid,
        role: Role,
    ) -> AppResult<(String, Session)> {
        let value = random_token();
        let csrf_token = random_token();
        let now = crate::incident::now();
        let expires_at = now + chrono_duration(self.settings.max_age);
        let row = session::ActiveModel {
            id_hash: Set(hash(&value)),
            organization_id: Set(org_id),
            person_id: Set(person_id),
            role: Set(role.as_str().to_string()),
            csrf_token: Set(csrf_token.clone()),
            created_at: Set(now),
            last_used_at: Set(now),
            expires_at: Set(expires_at),
        };
        let txn = self.db.begin_write().await?;
        // Ended sessions of every organization go as new ones arrive: nobody acts here, it is
        // housekeeping, so the sweep names no organization.
        let idle_cutoff = now - chrono_duration(self.settings.idle_timeout);
        session::Entity::delete_many()
            .filter(
                session::Column::ExpiresAt
                    .lte(now)
                    .or(session::Column::LastUsedAt.lte(idle_cutoff)),
            )
            .exec(&*txn)
            .await?;
        session::Entity::insert(row)
            .exec_without_returning(&*txn)
            .await?;
        txn.commit().await?;
        let session = Session {
            principal: principal(org_id, person_id, role, expires_at),
            csrf_token,
            expires_at,
        };
        Ok((value, session))
    }

    /// The live session this cookie value names, or `None` (unknown, ended, idle too long).
    /// `last_used_at` is written at most every `touch_interval`, not on every request.
    pub async fn find(&self, value: &str) -> AppResult<Option<Session>> {
        let id_hash = hash(value);
        let Some(row) = session::Entity::find_by_id(id_hash.clone())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let now = crate::incident::now();
        let idle_until = row.last_used_at + chrono_duration(self.settings.idle_timeout);
        let role = match <Role as clap::ValueEnum>::from_str(&row.role, false) {
            Ok(role) => role,
            Err(_) => return Ok(None),
        };
        if now >= row.expires_at || now >= idle_until {
            self.end(row.organization_id, value).await?;
            return Ok(None);
        }
        if now - row.last_used_at >= chrono_duration(self.touch_interval()) {
            let txn = self.db.begin_write().await?;
            session::Entity::update_many()
                .col_expr(
                    session::Column::LastUsedAt,
                    sea_orm::sea_query::Expr::value(now),
                )
                .filter(session::Column::OrganizationId.eq(row.organization_id))
                .filter(session::Column::IdHash.eq(id_hash))
                .exec(&*txn)
                .await?;
            txn.commit().await?;
        }
        Ok(Some(Session {
            principal: principal(row.organization_id, row.person_id, role, row.expires_at),
            csrf_token: row.csrf_token,
            expires_at: row.expires_at,
        }))
    }

    /// Ends the session this cookie value names, on every replica (the row is gone).
    pub async fn end(&self, org_id: Uuid, value: &str) -> AppResult<()> {
        let txn = self.db.begin_write().await?;
        session::Entity::delete_many()
            .filter(session::Column::OrganizationId.eq(org_id))
            .filter(session::Column::IdHash.eq(hash(value)))
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Resolves once the session this cookie value names has ended (signed out on any replica,
    /// idle too long, past its lifetime), looked up every touch interval: a WebSocket or an event
    /// stream opened by the cookie closes then, and while it is open the session counts as used.
    /// Never resolves for `None` (a stream opened with a bearer token).
    pub fn ended(
        &self,
        value: Option<String>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let sessions = self.clone();
        async move {
            let Some(value) = value else {
                return std::future::pending().await;
            };
            let mut checks = tokio::time::interval(sessions.touch_interval());
            checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            checks.tick().await;
            loop {
                checks.tick().await;
                // A database that does not answer ends nothing: the next look decides.
                if let Ok(None) = sessions.find(&value).await {
                    return;
                }
            }
        }
    }

    /// The cookie's value when the request is authenticated by it (no `Authorization` header).
    pub fn cookie_caller(&self, headers: &HeaderMap) -> Option<String> {
        match headers.contains_key(header::AUTHORIZATION) {
            true => None,
            false => self.cookie(headers),
        }
    }

    /// How stale `last_used_at` may get: a minute, or a tenth of the idle timeout when that is
    /// shorter, so a session in use never looks idle.
    fn touch_interval(&self) -> Duration {
        (self.settings.idle_timeout / 10).min(Duration::from_secs(60))
    }

    /// The caller a cookie-authenticated request acts as, once the session is live and the
    /// request shows what its use needs (a CSRF token for writes, our origin for streams).
    pub async fn authenticate(
        &self,
        value: &str,
        headers: &HeaderMap,
        usage: Use,
    ) -> AppResult<Principal> {
        let session = self.find(value).await?.ok_or_else(|| {
            AppError::Unauthenticated("the session has ended: sign in again".into())
        })?;
        match usage {
            Use::Read => {}
            Use::Write => {
                let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                if !sent.is_some_and(|sent| same(sent.as_bytes(), session.csrf_token.as_bytes())) {
                    return Err(AppError::Forbidden(
                        "a request authenticated by the session cookie must carry X-CSRF-Token \
                         equal to the session's token (from /auth/me)"
                            .into(),
                    ));
                }
            }
            Use::Stream => {
                let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
                // Browsers send `Origin` on every WebSocket and every cross-origin request; a
                // same-origin event stream may come without one.
                let allowed = match origin {
                    Some(origin) => self.origin_allowed(origin),
                    None => !headers.contains_key(header::UPGRADE),
                };
                if !allowed {
                    return Err(AppError::Forbidden(
                        "a stream authenticated by the session cookie must come from the \
                         server's public origin or an allowed origin"
                            .into(),
                    ));
                }
            }
        }
        Ok(session.principal)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        self.settings
            .origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }
}

fn principal(org_id: Uuid, person_id: Uuid, role: Role, expires_at: DateTime<Utc>) -> Principal {
    Principal {
        user_id: person_id,
        org_id,
        role,
        expires_at: u64::try_from(expires_at.timestamp()).unwrap_or(0),
        // Sign-in wrote the person into the directory; a session adds nothing to it.
        person: None,
    }
}

fn chrono_duration(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}

/// 256 random bits, base64url.
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// What the database keeps of a session's cookie value.
pub fn hash(value: &str) -> String {
    hex(&Sha256::digest(value.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality whose time does not depend on where the values differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; xincidentd_session=no; incidentd_session=abc"),
        );
        assert_eq!(cookie_value(&headers, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&headers, HOST_COOKIE), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert_ne!(random_token(), random_token());
        assert_eq!(hash("x").len(), 64);
    }
}
