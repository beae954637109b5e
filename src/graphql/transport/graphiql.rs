//! GraphiQL: the page a browser gets from `GET /graphql`, and its files under
//! `/graphql/assets/{file}` when they are served from a local directory (`--graphiql-assets`).
//!
//! The page runs exact, production builds of GraphiQL, React and ReactDOM, each pinned by its
//! Subresource Integrity hash (checked against the npm packages by tests/api/graphiql.rs), and a
//! Content-Security-Policy that allows exactly those files and the page's own inline script and
//! style, by hash. In dev mode the page holds an admin token, so nothing else may run in it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256, Sha384};

/// One file the page loads: where it is in its npm package, and its SRI hash.
#[derive(Debug)]
pub struct Asset {
    pub package: &'static str,
    pub version: &'static str,
    /// The file's path inside the package.
    pub path: &'static str,
    /// Its name under `/graphql/assets/` and in a `--graphiql-assets` directory.
    pub file: &'static str,
    /// `sha384-…` of the file's bytes, as the `integrity` attribute carries it.
    pub integrity: &'static str,
    pub content_type: &'static str,
    pub kind: AssetKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    Script,
    Style,
}

impl Asset {
    /// Its address on the public CDN: exact version, exact file, never a redirect.
    pub fn cdn_url(&self) -> String {
        format!(
            "https://unpkg.com/{}@{}/{}",
            self.package, self.version, self.path
        )
    }
}

/// GraphiQL 4.1.2, the last major whose production bundle runs as a plain script (UMD; from 5
/// on it is ES modules only), on React 18.3.1, the last React with UMD production builds. The
/// scripts in the order the page loads them.
pub const ASSETS: &[Asset] = &[
    Asset {
        package: "react",
        version: "18.3.1",
        path: "umd/react.production.min.js",
        file: "react.production.min.js",
        integrity: "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z",
        content_type: "text/javascript; charset=utf-8",
        kind: AssetKind::Script,
    },
    Asset {
        package: "react-dom",
        version: "18.3.1",
        path: "umd/react-dom.production.min.js",
        file: "react-dom.production.min.js",
        integrity: "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1",
        content_type: "text/javascript; charset=utf-8",
        kind: AssetKind::Script,
    },
    Asset {
        package: "graphiql",
        version: "4.1.2",
        path: "graphiql.min.js",
        file: "graphiql.min.js",
        integrity: "sha384-9XdHu7ajgGJziD4J1zNBKQ842Q/+zZfDv+ib1eMhZWBH6hPAs806x+Jbcf0yNO6B",
        content_type: "text/javascript; charset=utf-8",
        kind: AssetKind::Script,
    },
    Asset {
        package: "graphiql",
        version: "4.1.2",
        path: "graphiql.min.css",
        file: "graphiql.min.css",
        integrity: "sha384-1el1QShFBnnXTx9x/Cprg82hZWKt0ry29OAYIXt05swbi0KcZDFoj0CWguMpopJr",
        content_type: "text/css; charset=utf-8",
        kind: AssetKind::Style,
    },
];

/// The page's one inline script: constant, so the policy allows it by hash. What differs per
/// server (the dev token) is read from the JSON block above it, which is data, never run.
const BOOT: &str = r#"
const config = JSON.parse(document.getElementById('graphiql-config').textContent);
const address = (path, socket) => {
  const url = new URL(path, window.location.href);
  if (socket) url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
};
const fetcher = GraphiQL.createFetcher({
  url: address(config.endpoint, false),
  subscriptionUrl: address(config.endpoint, true),
  headers: config.headers,
  wsConnectionParams: config.headers,
});
ReactDOM.createRoot(document.getElementById('graphiql')).render(
  React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true }),
);
"#;

/// The page's one inline style, allowed by hash like the script.
const STYLE: &str = "body { height: 100%; margin: 0; width: 100%; overflow: hidden; } \
    #graphiql { height: 100vh; }";

/// The style element the scroll lock of GraphiQL's dialogs adds (react-remove-scroll-bar,
/// bundled in graphiql.min.js). Its text carries the page's scrollbar width and body margins,
/// which the page's own style fixes at zero, so it is constant and allowed by hash; were it to
/// differ somewhere, the browser would refuse only that style (the lock) and report it.
const SCROLL_LOCK_STYLE: &str = "\n  .with-scroll-bars-hidden {\n   overflow: hidden !important;\n   padding-right: 0px !important;\n  }\n  body[data-scroll-locked] {\n    overflow: hidden !important;\n    overscroll-behavior: contain;\n    position: relative !important;\n    padding-left: 0px;\n    padding-top: 0px;\n    padding-right: 0px;\n    margin-left:0;\n    margin-top:0;\n    margin-right: 0px !important;\n    \n  }\n  \n  .right-scroll-bar-position {\n    right: 0px !important;\n  }\n  \n  .width-before-scroll-bar {\n    margin-right: 0px !important;\n  }\n  \n  .right-scroll-bar-position .right-scroll-bar-position {\n    right: 0 !important;\n  }\n  \n  .width-before-scroll-bar .width-before-scroll-bar {\n    margin-right: 0 !important;\n  }\n  \n  body[data-scroll-locked] {\n    --removed-body-scroll-bar-size: 0px;\n  }\n";

/// A pinned file read from `--graphiql-assets`, with its bytes.
type LocalFile = (&'static Asset, Arc<[u8]>);

/// The page, its policy, and the files when they are served from here; built once at start-up.
pub struct Graphiql {
    page: String,
    csp: HeaderValue,
    /// With `--graphiql-assets`: each pinned file's bytes, read and checked at start-up.
    local: Option<Vec<LocalFile>>,
}

impl Graphiql {
    /// The page for this server. `dev_token` is filled into the request headers; with
    /// `assets_dir` the files come from that directory (each must match its pinned hash, or the
    /// server does not start: a browser would refuse the file anyway), else from the CDN.
    pub fn new(dev_token: Option<&str>, assets_dir: Option<&Path>) -> anyhow::Result<Graphiql> {
        let local = assets_dir.map(read_assets).transpose()?;
        let src = |asset: &Asset| match local {
            Some(_) => format!("/graphql/assets/{}", asset.file),
            None => asset.cdn_url(),
        };
        let sources = |kind: AssetKind| -> Vec<String> {
            match local {
                Some(_) => vec!["'self'".to_owned()],
                None => ASSETS
                    .iter()
                    .filter(|a| a.kind == kind)
                    .map(Asset::cdn_url)
                    .collect(),
            }
        };
        let mut scripts = sources(AssetKind::Script);
        scripts.push(format!("'sha256-{}'", sha256(BOOT)));
        let mut styles = sources(AssetKind::Style);
        styles.push(format!("'sha256-{}'", sha256(STYLE)));
        styles.push(format!("'sha256-{}'", sha256(SCROLL_LOCK_STYLE)));
        // GraphiQL's stylesheet carries its fonts and icons as data: URLs; the API and its
        // WebSocket are on this origin.
        let csp = format!(
            "default-src 'none'; script-src {}; style-src {}; img-src 'self' data:; \
             font-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
            scripts.join(" "),
            styles.join(" ")
        );
        let headers = match dev_token {
            Some(token) => serde_json::json!({ "Authorization": format!("Bearer {token}") }),
            None => serde_json::json!({}),
        };
        let config = serde_json::json!({ "endpoint": "/graphql", "headers": headers });
        let mut tags = String::new();
        for asset in ASSETS {
            let tag = match asset.kind {
                AssetKind::Style => format!(
                    "    <link rel=\"stylesheet\" href=\"{}\" integrity=\"{}\" crossorigin=\"anonymous\">\n",
                    src(asset),
                    asset.integrity
                ),
                AssetKind::Script => format!(
                    "    <script src=\"{}\" integrity=\"{}\" crossorigin=\"anonymous\"></script>\n",
                    src(asset),
                    asset.integrity
                ),
            };
            tags.push_str(&tag);
        }
        let page = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n  <head>\n    <meta charset=\"utf-8\">\n    \
             <meta name=\"robots\" content=\"noindex\">\n    \
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n    \
             <title>incidentd · GraphiQL</title>\n    \
             <link rel=\"icon\" href=\"/desk/static/favicon.svg\">\n    <style>{STYLE}</style>\n{tags}  </head>\n  \
             <body>\n    <div id=\"graphiql\">Loading…</div>\n    \
             <script type=\"application/json\" id=\"graphiql-config\">{}</script>\n    \
             <script>{BOOT}</script>\n  </body>\n</html>\n",
            json_in_html(&config)
        );
        Ok(Graphiql {
            page,
            csp: HeaderValue::from_str(&csp).context("the GraphiQL policy is a header value")?,
            local,
        })
    }

    /// The Content-Security-Policy of the page and its files.
    pub fn csp(&self) -> &HeaderValue {
        &self.csp
    }

    /// `GET /graphql` for a browser.
    pub fn page(&self) -> Response {
        let mut response = Html(self.page.clone()).into_response();
        let headers = response.headers_mut();
        // The page may hold a token: never kept by a cache.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        crate::browser::secure(headers, self.csp.clone());
        response
    }

    /// `GET /graphql/assets/{file}`: only the pinned files, and only with `--graphiql-assets`.
    /// The name is looked up in the fixed list, never joined to a path, so nothing else can be
    /// reached.
    pub fn asset(&self, file: &str, headers: &HeaderMap) -> Response {
        let found = self
            .local
            .as_ref()
            .and_then(|files| files.iter().find(|(asset, _)| asset.file == file));
        let mut response = match found {
            None => (StatusCode::NOT_FOUND, "not found").into_response(),
            Some((asset, bytes)) => {
                // The file cannot change while the server runs: its hash is its ETag.
                let etag = format!("\"{}\"", asset.integrity);
                let cached = headers
                    .get(header::IF_NONE_MATCH)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
                let mut response = if cached {
                    StatusCode::NOT_MODIFIED.into_response()
                } else {
                    let mut r = bytes.to_vec().into_response();
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(asset.content_type),
                    );
                    r
                };
                let h = response.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&etag) {
                    h.insert(header::ETAG, v);
                }
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                response
            }
        };
        crate::browser::secure(response.headers_mut(), self.csp.clone());
        response
    }

    /// What a browser gets where GraphiQL is off: the same headers, no page.
    pub fn off(&self, message: &'static str) -> Response {
        let mut response = (StatusCode::NOT_FOUND, message).into_response();
        crate::browser::secure(response.headers_mut(), self.csp.clone());
        response
    }
}

/// Reads the pinned files from `dir` and checks each against its hash.
fn read_assets(dir: &Path) -> anyhow::Result<Vec<LocalFile>> {
    ASSETS
        .iter()
        .map(|asset| {
            let path = dir.join(asset.file);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "--graphiql-assets: cannot read {} (copy {} from the npm package {}@{})",
                    path.display(),
                    asset.path,
                    asset.package,
                    asset.version
                )
            })?;
            let integrity = sri(&bytes);
            anyhow::ensure!(
                integrity == asset.integrity,
                "--graphiql-assets: {} is not {}@{}'s {} ({integrity}, expected {})",
                path.display(),
                asset.package,
                asset.version,
                asset.path,
                asset.integrity
            );
            Ok((asset, Arc::from(bytes)))
        })
        .collect()
}

/// The Subresource Integrity value (`sha384-…`) of some bytes.
pub fn sri(bytes: &[u8]) -> String {
    format!("sha384-{}", STANDARD.encode(Sha384::digest(bytes)))
}

fn sha256(text: &str) -> String {
    STANDARD.encode(Sha256::digest(text.as_bytes()))
}

/// JSON that can sit inside a `<script type="application/json">` element: no `<`, `>` or `&`
/// that could end it early.
fn json_in_html(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_each_pinned_file_once_with_its_hash() {
        let graphiql = Graphiql::new(Some("a.b.c"), None).unwrap();
        for asset in ASSETS {
            let tag = format!("\"{}\" integrity=\"{}\"", asset.cdn_url(), asset.integrity);
            assert_eq!(graphiql.page.matches(&tag).count(), 1, "{tag}");
        }
        assert!(graphiql.page.contains(r#""Authorization":"Bearer a.b.c""#));
        assert_eq!(graphiql.page.matches("<script>").count(), 1);
        assert!(graphiql.page.contains(&format!("<script>{BOOT}</script>")));
        assert!(graphiql.page.contains(&format!("<style>{STYLE}</style>")));
    }

    #[test]
    fn config_cannot_close_its_element() {
        let text = json_in_html(&serde_json::json!({ "x": "</script><script>alert(1)" }));
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["x"], "</script><script>alert(1)");
    }
}
