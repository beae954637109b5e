//! Sign-in with the organization's identity provider (OpenID Connect) and the routes under
//! `/auth/`: login, callback, logout, who am I, and what the sign-in page offers. Sessions
//! themselves (the cookie, the rows, what a cookie may do) belong to `auth::sessions`.

mod mapping;
mod pending;
mod provider;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sea_orm::{ColumnTrait, QueryFilter};
use serde::Deserialize;
use serde_json::json;

use crate::auth::sessions::{Sessions, Use};
use crate::db::Db;
use crate::entity::person;
use crate::error::AppError;
use crate::incident::identity::Principal;
pub use mapping::{OrgSource, RoleMap};
use pending::PendingCookies;
pub use provider::OidcSettings;
use provider::{Provider, Refusal};

/// Where people land, after signing in or when anything else was asked for.
const HOME: &str = "/desk/incidents";

/// What the `/auth/` routes need.
#[derive(Clone)]
pub struct SignInState {
    pub oidc: Option<Arc<Oidc>>,
    pub sessions: Sessions,
    pub db: Db,
}

/// Sign-in, when configured.
pub struct Oidc {
    provider: Provider,
    pending: PendingCookies,
}

impl Oidc {
    pub fn new(settings: OidcSettings, secure: bool) -> anyhow::Result<Oidc> {
        use secrecy::ExposeSecret;
        let pending = PendingCookies::new(settings.client_secret.expose_secret(), secure);
        Ok(Oidc {
            provider: Provider::new(settings)?,
            pending,
        })
    }
}

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    SignInState: FromRef<S>,
{
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/auth/providers", get(providers))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// `next` when it is a path of this site, else the desk: no scheme, no authority (`//host`),
/// no backslash (browsers read `/\host` as `//host`), no control characters.
fn same_origin_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            path.to_string()
        }
        _ => HOME.to_string(),
    }
}

fn redirect(status: StatusCode, location: &str) -> Response {
    let mut response = status.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn refused(why: Refusal) -> Response {
    redirect(
        StatusCode::FOUND,
        &format!("{HOME}?signin_error={}", why.reason()),
    )
}

/// The REST error shape, `{"error": {"code", "message"}}`.
fn error(err: AppError) -> Response {
    let body = json!({ "error": { "code": err.code(), "message": err.to_string() } });
    (err.http_status(), axum::Json(body)).into_response()
}

fn not_configured() -> Response {
    error(AppError::NotFound(
        "sign-in with an identity provider is not configured (--oidc-issuer)",
    ))
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// `GET /auth/login?next=`: to the provider, with the login sealed in a cookie.
async fn login(State(state): State<SignInState>, Query(query): Query<LoginQuery>) -> Response {
    let Some(oidc) = &state.oidc else {
        return not_configured();
    };
    let next = same_origin_path(query.next.as_deref());
    match oidc.provider.begin(next, now_secs()).await {
        Ok((url, login)) => {
            let mut response = redirect(StatusCode::FOUND, url.as_str());
            response
                .headers_mut()
                .append(header::SET_COOKIE, oidc.pending.seal(&login));
            response
        }
        Err(why) => refused(why),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /auth/callback`: verifies, starts a session, and goes where the login asked.
async fn callback(
    State(state): State<SignInState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let Some(oidc) = &state.oidc else {
        return not_configured();
    };
    let outcome = sign_in(&state, oidc, &headers, query).await;
    let mut response = match outcome {
        Ok((next, cookie)) => {
            let mut response = redirect(StatusCode::FOUND, &next);
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(why) => {
            tracing::info!(reason = why.reason(), "sign-in refused");
            refused(why)
        }
    };
    // The login is used up either way.
    response
        .headers_mut()
        .append(header::SET_COOKIE, oidc.pending.clear());
    response
}

/// Where to go and the new session's `Set-Cookie`, or why nobody signs in.
async fn sign_in(
    state: &SignInState,
    oidc: &Oidc,
    headers: &HeaderMap,
    query: CallbackQuery,
) -> Result<(String, HeaderValue), Refusal> {
    let login = oidc
        .pending
        .open(headers, now_secs())
        .ok_or(Refusal::State)?;
    let sent = query.state.as_deref().unwrap_or("");
    if !crate::auth::sessions::same(sent.as_bytes(), login.state.as_bytes()) {
        return Err(Refusal::State);
    }
    if query.error.is_some() {
        return Err(Refusal::Denied);
    }
    let code = query.code.as_deref().ok_or(Refusal::CodeRejected)?;
    let signed_in = oidc.provider.finish(&login, code).await?;
    let unavailable = |e: AppError| {
        tracing::warn!(error = %e, "starting a session failed");
        Refusal::Unavailable
    };
    // A session the browser already had ends here: each sign-in gets a new id (no fixation).
    if let Some(old) = state.sessions.cookie(headers)
        && let Ok(Some(session)) = state.sessions.find(&old).await
    {
        state
            .sessions
            .end(session.principal.org_id, &old)
            .await
            .map_err(unavailable)?;
    }
    let scope = crate::incident::OrgScope::new(signed_in.org_id);
    let txn = state
        .db
        .begin_write()
        .await
        .map_err(|e| unavailable(e.into()))?;
    crate::incident::people::remember(&*txn, scope, &signed_in.person)
        .await
        .map_err(unavailable)?;
    txn.commit().await.map_err(|e| unavailable(e.into()))?;
    let (value, _) = state
        .sessions
        .start(signed_in.org_id, signed_in.person.id, signed_in.role)
        .await
        .map_err(unavailable)?;
    Ok((login.next, state.sessions.set_cookie(&value)))
}

/// `POST /auth/logout`: ends the session everywhere, then on to the provider's logout.
async fn logout(State(state): State<SignInState>, headers: HeaderMap) -> Response {
    let mut response = match state.sessions.cookie(&headers) {
        Some(value) => match state
            .sessions
            .authenticate(&value, &headers, Use::Write)
            .await
        {
            Ok(principal) => {
                if let Err(e) = state.sessions.end(principal.org_id, &value).await {
                    return error(e);
                }
                let to = match &state.oidc {
                    Some(oidc) => oidc.provider.logout_url().await,
                    None => "/".into(),
                };
                redirect(StatusCode::SEE_OTHER, &to)
            }
            Err(e @ AppError::Forbidden(_)) => return error(e),
            Err(e @ (AppError::DatabaseUnavailable(_) | AppError::Busy(_))) => return error(e),
            // Already ended: nothing to end.
            Err(_) => redirect(StatusCode::SEE_OTHER, "/"),
        },
        None => redirect(StatusCode::SEE_OTHER, "/"),
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.sessions.clear_cookie());
    response
}

/// `GET /auth/me`: the session's person, organization, role, CSRF token and end.
async fn me(State(state): State<SignInState>, headers: HeaderMap) -> Response {
    let unauthenticated = || {
        error(AppError::Unauthenticated(
            "no session: sign in at /auth/login".into(),
        ))
    };
    let Some(value) = state.sessions.cookie(&headers) else {
        return unauthenticated();
    };
    let session = match state.sessions.find(&value).await {
        Ok(Some(session)) => session,
        Ok(None) => return unauthenticated(),
        Err(e) => return error(e),
    };
    let Principal {
        user_id,
        org_id,
        role,
        ..
    } = session.principal;
    let person = match session
        .principal
        .scope()
        .people()
        .filter(person::Column::Id.eq(user_id))
        .one(&state.db)
        .await
    {
        Ok(person) => person,
        Err(e) => return error(e.into()),
    };
    let (name, email) = person.map(|p| (p.name, p.email)).unwrap_or_default();
    let mut response = axum::Json(json!({
        "person": { "id": user_id, "name": name, "email": email },
        "organizationId": org_id,
        "role": role,
        "csrfToken": session.csrf_token,
        "expiresAt": session.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /auth/providers`: what the sign-in page offers, and where signing out continues (the
/// desk ends its session with a `fetch`, which cannot follow the redirect to the provider).
async fn providers(State(state): State<SignInState>) -> Response {
    let body = match &state.oidc {
        Some(oidc) => json!({
            "oidc": true,
            "name": oidc.provider.name(),
            "logoutUrl": oidc.provider.logout_url().await,
        }),
        None => json!({ "oidc": false, "name": null, "logoutUrl": null }),
    };
    axum::Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::same_origin_path;

    #[test]
    fn next_is_a_path_of_this_site_or_the_desk() {
        for ok in ["/desk/postmortems", "/desk/incidents?x=1#y", "/"] {
            assert_eq!(same_origin_path(Some(ok)), ok);
        }
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "desk",
            "/desk\n",
            "/ /evil",
            "",
        ] {
            assert_eq!(same_origin_path(Some(bad)), "/desk/incidents", "{bad:?}");
        }
        assert_eq!(same_origin_path(None), "/desk/incidents");
    }
}
