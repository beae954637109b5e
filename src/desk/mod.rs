//! The desk: the built-in web pages (`/desk/incidents`, `/desk/postmortems`, and for admins
//! `/desk/settings/webhooks`) and their files,
//! embedded in the binary (read from disk in debug builds, so edits show on reload).
//!
//! The pages are static: HTML, CSS and JavaScript modules written for this project, no build
//! step, nothing fetched from another origin. They speak only to `/graphql` and `/auth/`. Every answer here
//! carries a strict Content-Security-Policy, an ETag, and is compressed when the client allows.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use tower_http::compression::CompressionLayer;

#[derive(RustEmbed)]
#[folder = "src/desk/static/"]
struct Assets;

/// Scripts and styles from this origin only, never inline; the API and its WebSocket on this
/// origin only; no frames, no plugins, no base or form targets elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

#[derive(Clone)]
struct DeskState {
    /// In dev mode: the demo organization's token, offered on the sign-in form.
    dev_token: Option<Arc<str>>,
}

/// The desk's routes, and `/` redirecting to it. Generic over the outer state: the desk needs
/// only the dev token.
pub fn router<S>(dev_token: Option<String>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let state = DeskState {
        dev_token: dev_token.map(Arc::from),
    };
    Router::new()
        .route("/", get(to_desk))
        .route("/desk", get(to_desk))
        .route("/desk/", get(to_desk))
        .route("/desk/incidents", get(page))
        .route("/desk/incidents/{id}", get(page))
        .route("/desk/postmortems", get(page))
        .route("/desk/postmortems/{id}", get(page))
        .route("/desk/settings/webhooks", get(page))
        .route("/desk/session.json", get(session))
        .route("/desk/static/{*path}", get(asset))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(CompressionLayer::new())
        .with_state(state)
}

async fn to_desk() -> Redirect {
    Redirect::temporary("/desk/incidents")
}

/// Every desk address is the same page; its script reads the path and the query.
async fn page(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// What the sign-in form may offer: the dev token in dev mode (the server listens on loopback
/// only then, and GraphiQL shows the same token), nothing otherwise.
async fn session(State(state): State<DeskState>) -> Response {
    let body = serde_json::json!({ "devToken": state.dev_token.as_deref() });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// A file with its ETag (its SHA-256); `304` when the client already has it. `no-cache` makes
/// the browser revalidate every time, so a desk never runs yesterday's script after an upgrade,
/// and the revalidation costs one small round trip.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!("\"{}\"", hex(&hash[..16]));
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = file.data.into_owned().into_response();
        let mime = HeaderValue::from_str(file.metadata.mimetype())
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        r.headers_mut().insert(header::CONTENT_TYPE, mime);
        r
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    crate::browser::secure(response.headers_mut(), HeaderValue::from_static(CSP));
    response
}
