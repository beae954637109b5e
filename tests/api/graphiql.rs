//! GraphiQL: the page's headers and policy, its pinned files (checked against the npm packages
//! in tests/graphiql), the files served from a local directory, the standard introspection
//! query under the default limits, and the page in a real headless Chromium.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use incidentd::app::Application;
use incidentd::graphql::transport::graphiql::{ASSETS, AssetKind, sri};
use incidentd::incident::identity::Role;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{TestDb, code, spawn_app, spawn_app_with, test_config};
use crate::ws_client::npm_ci;

fn npm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/graphiql")
}

/// The npm packages' files, installed from the lockfile on first use.
fn node_modules() -> PathBuf {
    npm_ci(&npm_dir());
    npm_dir().join("node_modules")
}

async fn html(app: &crate::helpers::TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap()
}

/// The text of the first element `<tag>…</tag>` written without attributes.
fn inline<'a>(page: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = page.find(&open).expect(&open) + open.len();
    let end = start + page[start..].find(&format!("</{tag}>")).unwrap();
    &page[start..end]
}

fn sha256(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
}

/// Every value of `attr="…"` in the page.
fn attributes(page: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    page.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &page[at + needle.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// The hash of the style element GraphiQL's dialogs add (their scroll lock), as Chromium reports
/// it when the policy refuses it; the browser test opens a dialog.
const SCROLL_LOCK: &str = "sha256-nzTgYzXYDNe6BAHiiI7NNlfK8n/auuOAhh2t92YvuXo=";

/// The policy a page with these script and style sources must carry, word for word.
fn expected_csp(page: &str, scripts: &[String], styles: &[String]) -> String {
    format!(
        "default-src 'none'; script-src {} 'sha256-{}'; style-src {} 'sha256-{}' '{SCROLL_LOCK}'; \
         img-src 'self' data:; font-src data:; connect-src 'self'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'",
        scripts.join(" "),
        sha256(inline(page, "script")),
        styles.join(" "),
        sha256(inline(page, "style")),
    )
}

fn urls(kind: AssetKind) -> Vec<String> {
    ASSETS
        .iter()
        .filter(|a| a.kind == kind)
        .map(|a| a.cdn_url())
        .collect()
}

/// The headers every browser-facing answer carries, the desk's and GraphiQL's alike.
fn assert_browser_headers(h: &reqwest::header::HeaderMap, what: &str) {
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(h["cross-origin-opener-policy"], "same-origin", "{what}");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
}

#[tokio::test]
async fn the_page_carries_the_desks_headers_and_a_policy_of_exactly_its_pinned_files() {
    let app = spawn_app().await;
    let page = html(&app, "/graphql").await;
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(h["cache-control"], "no-store");
    assert_browser_headers(&h, "GraphiQL");
    let text = page.text().await.unwrap();

    // The policy names exactly the pinned files and the page's one inline script and style.
    let csp = h["content-security-policy"].to_str().unwrap();
    assert_eq!(
        csp,
        expected_csp(&text, &urls(AssetKind::Script), &urls(AssetKind::Style))
    );

    // Each file once, at its exact version, with its integrity hash; production builds only.
    let sources: BTreeSet<String> = attributes(&text, "src")
        .into_iter()
        .chain(attributes(&text, "href"))
        .collect();
    let mut pinned: BTreeSet<String> = ASSETS.iter().map(|a| a.cdn_url()).collect();
    // The desk's icon, from this origin.
    pinned.insert("/desk/static/favicon.svg".into());
    assert_eq!(sources, pinned);
    let integrity: BTreeSet<String> = attributes(&text, "integrity").into_iter().collect();
    let hashes: BTreeSet<String> = ASSETS.iter().map(|a| a.integrity.to_string()).collect();
    assert_eq!(integrity, hashes);
    for asset in ASSETS {
        assert!(
            text.contains(&format!(
                "\"{}\" integrity=\"{}\" crossorigin=\"anonymous\"",
                asset.cdn_url(),
                asset.integrity
            )),
            "{} is not pinned in {text}",
            asset.file
        );
    }
    assert!(!text.contains("development"), "{text}");
    // Scripts: the pinned files, the data block, and the one inline script the hash allows.
    for tag in text.split("<script").skip(1) {
        assert!(
            tag.starts_with(" src=\"https://unpkg.com/")
                || tag.starts_with(" type=\"application/json\"")
                || tag.starts_with('>'),
            "{tag}"
        );
    }
    assert_eq!(text.matches("<script>").count(), 1);
    // Outside dev mode the page holds no token.
    assert!(!text.contains("Bearer"), "{text}");

    // The desk's pages carry the same browser headers (each with a policy of its own).
    let desk = app
        .client
        .get(app.url("/desk/incidents"))
        .send()
        .await
        .unwrap();
    assert_browser_headers(desk.headers(), "the desk");

    // Without `--graphiql-assets` nothing is served under /graphql/assets.
    let none = app
        .client
        .get(app.url("/graphql/assets/graphiql.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
}

#[tokio::test]
async fn in_dev_mode_the_page_holds_the_token_in_data_not_in_script() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.jwt_secret = None;
    let app = spawn_app_with(db, config).await;
    let token = app.state.graphql.dev_token.clone().expect("a dev token");
    let page = html(&app, "/graphql").await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let text = page.text().await.unwrap();
    let config_block = text
        .split("<script type=\"application/json\" id=\"graphiql-config\">")
        .nth(1)
        .and_then(|rest| rest.split("</script>").next())
        .expect("the config block");
    let config: Value = serde_json::from_str(config_block).unwrap();
    assert_eq!(
        config,
        json!({ "endpoint": "/graphql", "headers": { "Authorization": format!("Bearer {token}") } })
    );
    // The inline script is the same on every server: the policy's hash does not change.
    assert!(!inline(&text, "script").contains(&token));
    assert_eq!(
        csp,
        expected_csp(&text, &urls(AssetKind::Script), &urls(AssetKind::Style))
    );
}

/// A directory holding the four pinned files, copied from the npm packages as the README says,
/// inside a parent that holds a file nobody may read through the server.
fn assets_dir(node_modules: &Path) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("secret.txt"), "not for the browser").unwrap();
    let dir = root.path().join("graphiql");
    std::fs::create_dir(&dir).unwrap();
    for asset in ASSETS {
        std::fs::copy(
            node_modules.join(asset.package).join(asset.path),
            dir.join(asset.file),
        )
        .unwrap();
    }
    // Files the packages hold but the page does not use are never served.
    std::fs::copy(
        node_modules.join("graphiql/graphiql.min.js.map"),
        dir.join("graphiql.min.js.map"),
    )
    .unwrap();
    (root, dir)
}

#[tokio::test]
async fn with_graphiql_assets_the_files_come_from_the_directory_under_the_same_headers() {
    let node_modules = node_modules();
    let (_root, dir) = assets_dir(&node_modules);
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.graphiql_assets = Some(dir.clone());
    let app = spawn_app_with(db, config).await;

    let page = html(&app, "/graphql").await;
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_browser_headers(&h, "GraphiQL");
    let text = page.text().await.unwrap();
    let own = vec!["'self'".to_string()];
    assert_eq!(
        h["content-security-policy"].to_str().unwrap(),
        expected_csp(&text, &own, &own)
    );
    assert!(!text.contains("https://"), "{text}");
    for asset in ASSETS {
        let tag = format!(
            "\"/graphql/assets/{}\" integrity=\"{}\"",
            asset.file, asset.integrity
        );
        assert!(text.contains(&tag), "{tag} in {text}");
    }

    for asset in ASSETS {
        let path = format!("/graphql/assets/{}", asset.file);
        let file = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(file.status(), 200, "{path}");
        let h = file.headers().clone();
        assert_browser_headers(&h, &path);
        assert_eq!(h["content-type"], asset.content_type, "{path}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
        let bytes = file.bytes().await.unwrap();
        assert_eq!(
            bytes,
            std::fs::read(dir.join(asset.file)).unwrap(),
            "{path}"
        );
        assert_eq!(sri(&bytes), asset.integrity, "{path}");
        let again = app
            .client
            .get(app.url(&path))
            .header("if-none-match", h["etag"].clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }

    // Only the pinned names: other files of the directory, other names, and every way out of
    // it answer 404, with the same headers.
    for path in [
        "/graphql/assets/graphiql.min.js.map",
        "/graphql/assets/graphiql.js",
        "/graphql/assets/nope.js",
        "/graphql/assets/..%2fsecret.txt",
        "/graphql/assets/%2e%2e%2fsecret.txt",
        "/graphql/assets/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/graphql/assets/%2fetc%2fpasswd",
        "/graphql/assets/graphiql.min.js%00",
        "/graphql/assets/GRAPHIQL.MIN.JS",
    ] {
        let refused = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(refused.status(), 404, "{path}");
        assert_browser_headers(refused.headers(), path);
        let body = refused.text().await.unwrap();
        assert!(!body.contains("not for the browser"), "{path}");
    }
}

#[tokio::test]
async fn a_directory_without_the_pinned_files_stops_the_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.graphiql_assets = Some(dir.path().to_path_buf());
    let err = Application::build(config.clone())
        .await
        .err()
        .expect("missing files refused");
    assert!(
        format!("{err:#}").contains("react.production.min.js"),
        "{err:#}"
    );

    // Present but not the pinned bytes (another version, a tampered copy): refused by name.
    for asset in ASSETS {
        std::fs::write(dir.path().join(asset.file), "window.alert(1)").unwrap();
    }
    let err = Application::build(config)
        .await
        .err()
        .expect("wrong files refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("react.production.min.js") && text.contains(ASSETS[0].integrity),
        "{text}"
    );
}

#[test]
fn the_npm_folder_pins_the_served_versions() {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(npm_dir().join("package.json")).unwrap())
            .unwrap();
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(npm_dir().join("package-lock.json")).unwrap(),
    )
    .unwrap();
    for asset in ASSETS {
        assert_eq!(
            manifest["dependencies"][asset.package], asset.version,
            "{}",
            asset.package
        );
        assert_eq!(
            lock["packages"][format!("node_modules/{}", asset.package)]["version"],
            asset.version,
            "{}",
            asset.package
        );
    }
}

#[test]
fn the_pinned_hashes_are_the_npm_packages_files() {
    let node_modules = node_modules();
    for asset in ASSETS {
        let package: Value = serde_json::from_str(
            &std::fs::read_to_string(node_modules.join(asset.package).join("package.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(package["version"], asset.version, "{}", asset.package);
        let bytes = std::fs::read(node_modules.join(asset.package).join(asset.path)).unwrap();
        assert_eq!(
            sri(&bytes),
            asset.integrity,
            "{}@{}/{}",
            asset.package,
            asset.version,
            asset.path
        );
        // Production builds: minified, no development warnings.
        assert!(asset.path.contains(".min."), "{}", asset.path);
    }
}

/// graphql-js's `getIntrospectionQuery()` (16.x), which GraphiQL sends to learn the schema.
fn standard_introspection() -> String {
    std::fs::read_to_string(npm_dir().join("introspection.graphql")).unwrap()
}

#[tokio::test]
async fn the_standard_introspection_query_passes_the_default_limits() {
    let app = spawn_app().await;
    let alice = app.caller(uuid::Uuid::new_v4(), Role::Viewer);
    let data = app.ok(&alice, &standard_introspection(), json!({})).await;
    let types = data["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "Incident"), "{types:?}");
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
}

/// `ofType { … }` nested `levels` times around `kind name`.
fn type_ref(levels: usize) -> String {
    let mut text = "kind name".to_string();
    for _ in 0..levels {
        text = format!("kind name ofType {{ {text} }}");
    }
    text
}

#[tokio::test]
async fn only_schema_reads_of_linear_cost_get_past_the_depth_limit() {
    let app = spawn_app().await;
    let alice = app.caller(uuid::Uuid::new_v4(), Role::Viewer);
    let refused = async |query: String| {
        let error = app.err(&alice, &query, json!({})).await;
        assert_eq!(code(&error), "QUERY_TOO_COMPLEX", "{query}: {error}");
    };
    // 15 deep, as the standard query: allowed.
    let fifteen = format!(
        "{{ __schema {{ types {{ fields {{ args {{ type {{ {} }} }} }} }} }} }}",
        type_ref(9)
    );
    app.ok(&alice, &fifteen, json!({})).await;
    // 16 deep: past what the standard query needs.
    refused(format!(
        "{{ __schema {{ types {{ fields {{ args {{ type {{ {} }} }} }} }} }} }}",
        type_ref(10)
    ))
    .await;
    // A data field beside it: the ordinary limit.
    refused(format!(
        "{{ viewer {{ role }} __schema {{ types {{ fields {{ args {{ type {{ {} }} }} }} }} }} }}",
        type_ref(9)
    ))
    .await;
    // Two operations in one document, one of them reading data: the ordinary limit.
    refused(format!(
        "query A {{ __schema {{ types {{ fields {{ args {{ type {{ {} }} }} }} }} }} }} \
         query B {{ viewer {{ role }} }}",
        type_ref(9)
    ))
    .await;
    // Fields of the fields' types (a cost that multiplies at each turn): the ordinary limit,
    // also through a fragment.
    refused(
        "{ __schema { types { fields { type { fields { type { fields { type { ofType { ofType { \
         ofType { ofType { ofType { name } } } } } } } } } } } } } }"
            .into(),
    )
    .await;
    refused(
        "query { __type(name: \"Incident\") { ...T } } \
         fragment T on __Type { fields { type { ofType { ofType { ofType { ofType { \
         ofType { ofType { ofType { ofType { possibleTypes { name } } } } } } } } } } } }"
            .into(),
    )
    .await;
    // A data query keeps the ordinary limit of 12 (14 deep here, each level one value).
    let mut deep = "id".to_string();
    for _ in 0..6 {
        deep = format!("postmortem {{ incident {{ {deep} }} }}");
    }
    refused(format!(
        "{{ incident(id: \"0195f3a0-0000-7000-8000-000000000000\") {{ {deep} }} }}"
    ))
    .await;
}

#[tokio::test]
async fn graphiql_loads_and_runs_in_a_real_browser_with_no_policy_violation() {
    let chromium =
        std::env::var("INCIDENTD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let required = std::env::var("INCIDENTD_REQUIRE_BROWSER").as_deref() == Ok("1");
    if !Path::new(&chromium).exists() {
        assert!(
            !required,
            "INCIDENTD_REQUIRE_BROWSER=1 but no Chromium at {chromium}"
        );
        eprintln!("skipping the browser test: no Chromium at {chromium}");
        return;
    }
    let node_modules = node_modules();
    // No internet here: the files come from a local directory, under the same policy.
    let (_root, dir) = assets_dir(&node_modules);
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.jwt_secret = None;
    config.graphiql_assets = Some(dir);
    let app = spawn_app_with(db, config).await;

    let child = tokio::process::Command::new("node")
        .arg(npm_dir().join("graphiql.mjs"))
        .arg(format!("http://{}/graphql", app.addr))
        .env("INCIDENTD_CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the browser test finishes within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the GraphiQL browser test failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.lines().last(), Some("ok"));
}
