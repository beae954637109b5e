//! The desk: its pages and headers over plain HTTP, and the whole desk in two real headless
//! Chromium windows (tests/desk/desk.mjs through playwright-core).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use incidentd::incident::identity::Role;
use serde_json::{Value, json};

use crate::helpers::{TestDb, spawn_app, spawn_app_with, test_config};
use crate::ws_client::npm_ci;

#[tokio::test]
async fn desk_pages_carry_csp_etag_cache_and_compression() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let root = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(root.status(), 307);
    assert_eq!(root.headers()["location"], "/desk/incidents");

    for path in [
        "/desk/incidents",
        "/desk/incidents/0195f3a0-0000-7000-8000-000000000000",
        "/desk/postmortems",
        "/desk/postmortems/anything",
        "/desk/settings/webhooks",
    ] {
        let page = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let h = page.headers().clone();
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "no-cache");
        let html = page.text().await.unwrap();
        // No inline script, and nothing from another origin.
        for tag in html.split("<script").skip(1) {
            assert!(
                tag.trim_start()
                    .starts_with("type=\"module\" src=\"/desk/static/"),
                "{tag}"
            );
        }
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
    }

    // ETag: the same file answers 304 to a client that has it.
    let js = client
        .get(app.url("/desk/static/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let etag = js.headers()["etag"].clone();
    let again = client
        .get(app.url("/desk/static/app.js"))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag);

    // Compressed when the client allows it.
    let gz = client
        .get(app.url("/desk/static/incidents.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.status(), 200);
    assert_eq!(gz.headers()["content-encoding"], "gzip");

    let missing = client
        .get(app.url("/desk/static/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // An encoded slash keeps `..` inside one segment, past URL normalization, to the handler.
    for path in [
        "/desk/static/..%2fmod.rs",
        "/desk/static/..%2f..%2f..%2fCargo.toml",
    ] {
        let escape = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(escape.status(), 404, "{path}");
    }

    // Outside dev mode the sign-in form gets no token.
    let session: Value = client
        .get(app.url("/desk/session.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session, json!({ "devToken": null }));
}

#[tokio::test]
async fn in_dev_mode_the_sign_in_form_is_offered_the_dev_token() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.jwt_secret = None;
    let app = spawn_app_with(db, config).await;
    let session: Value = app
        .client
        .get(app.url("/desk/session.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["devToken"].as_str().expect("a dev token");
    assert_eq!(Some(token), app.state.graphql.dev_token.as_deref());
    // The demo user has a name, in the directory from the start: the first request with the
    // token finds it there and writes nothing.
    let db = &app.state.graphql.domain.db;
    let before = db.statement_count();
    let (status, body) = app
        .post(Some(token), "{ viewer { role } }", json!({}))
        .await;
    assert_eq!(
        (status, &body["data"]["viewer"]["role"]),
        (200, &json!("admin"))
    );
    assert_eq!(db.statement_count(), before, "remembered at start-up");
    let (_, body) = app
        .post(Some(token), "{ viewer { person { name } } }", json!({}))
        .await;
    assert_eq!(
        body["data"]["viewer"]["person"]["name"],
        incidentd::auth::DEV_USER_NAME
    );
}

/// The system's Chromium, or why there is none.
pub(crate) fn chromium() -> Result<String, String> {
    let path = std::env::var("INCIDENTD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if Path::new(&path).exists() {
        Ok(path)
    } else {
        Err(format!(
            "no Chromium at {path} (install the Debian packages chromium and chromium-driver, or set INCIDENTD_CHROMIUM)"
        ))
    }
}

/// Runs `tests/desk/<script>` in node against the system's Chromium, with `args`, the
/// screenshot folder, then `after`, and checks that it ended with `ok`: its output and that
/// folder.
/// `None` when there is no Chromium here (a failure under `INCIDENTD_REQUIRE_BROWSER=1`).
pub(crate) async fn browser_script(
    script: &str,
    args: &[&str],
    after: &[&str],
) -> Option<(String, std::path::PathBuf)> {
    let chromium = match chromium() {
        Ok(path) => path,
        Err(why) if std::env::var("INCIDENTD_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("INCIDENTD_REQUIRE_BROWSER=1 but {why}")
        }
        Err(why) => {
            eprintln!("skipping the browser test: {why}");
            return None;
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/desk");
    npm_ci(&dir);
    let shots = root.join("target/desk-screenshots");
    let child = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .arg(&shots)
        .args(after)
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
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        shots.display()
    );
    assert_eq!(stdout.lines().last(), Some("ok"));
    Some((stdout, shots))
}

#[tokio::test]
async fn the_desk_works_in_two_real_browsers() {
    // Window one signs in through the identity provider's login page when the provider's
    // packages are there (CI requires them), window two with a pasted token.
    let (db, url) = TestDb::create().await;
    let mut idp = match crate::signin::provider_dir() {
        Some(dir) => Some(crate::signin::Idp::spawn(&dir).await),
        None => None,
    };
    let config = match &idp {
        Some(idp) => crate::signin::oidc_config(&url, idp),
        None => test_config(&url),
    };
    let app = spawn_app_with(db, config).await;
    // Two named people of one organization, each in a browser of their own.
    let org = uuid::Uuid::new_v4();
    let (one, two) = (
        app.named(org, Role::Responder, "Olive One", Some("olive@example.com")),
        app.named(org, Role::Responder, "Theo Two", Some("theo@example.com")),
    );
    if let Some(idp) = &mut idp {
        idp.configure(&app.url(""), org, None).await;
    }
    let base = format!("http://{}", app.addr);
    let issuer = idp.as_ref().map(|idp| idp.issuer());
    let after: Vec<&str> = issuer.iter().map(|i| i.as_ref()).collect();
    let Some((_, shots)) =
        browser_script("desk.mjs", &[&base, &one.token, &two.token], &after).await
    else {
        return;
    };
    for shot in [
        "incidents-1280.png",
        "incidents-390.png",
        "postmortems-1280.png",
        "postmortems-390.png",
    ] {
        let meta = std::fs::metadata(shots.join(shot)).expect(shot);
        assert!(meta.len() > 10_000, "{shot} is nearly empty");
    }
}
