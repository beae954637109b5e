//! Sign-in against a real OpenID Provider (oidc-provider, in tests/oidc), driven through its
//! login and consent pages by an HTTP client that keeps cookies and follows redirects itself;
//! and what a session cookie may and may not do afterwards. Nothing on our side is mocked.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::helpers::{TestApp, TestDb, spawn_app_with, test_config};
use incidentd::config::Config;
use incidentd_test_support::TestServer;

const CLIENT_SECRET: &str = "incidentd-test-secret";
const ROLE_MAP: &str = "sre-admins=admin,oncall=responder";

/// The test provider's folder, its packages installed from the lockfile on first use; `None`
/// only where there is no npm to install them with: skipped under `cargo test`, a failure
/// where `INCIDENTD_REQUIRE_IDP=1`.
pub fn provider_dir() -> Option<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    let npm = std::process::Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if npm.is_ok_and(|status| status.success()) {
        crate::ws_client::npm_ci(&dir);
        return Some(dir);
    }
    let why = "there is no npm to install the provider (oidc-provider, in tests/oidc) with";
    if std::env::var("INCIDENTD_REQUIRE_IDP").as_deref() == Ok("1") {
        panic!("INCIDENTD_REQUIRE_IDP=1 but {why}");
    }
    eprintln!("skipping the sign-in test: {why}");
    None
}

/// The identity provider: a node process, killed when dropped.
pub struct Idp {
    child: tokio::process::Child,
    port: u16,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Idp {
    pub async fn spawn(dir: &Path) -> Idp {
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("provider.mjs"))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = Idp::line(&mut lines, "port ").await.parse().unwrap();
        Idp { child, port, lines }
    }

    async fn line(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
        prefix: &str,
    ) -> String {
        let wait = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return rest.to_string();
                }
            }
            panic!("the provider ended before printing {prefix:?}");
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("the provider starts within 30 s")
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Registers the client for the server at `public` and starts the provider.
    pub async fn configure(&mut self, public: &str, org: Uuid, tamper: Option<&str>) {
        let line = json!({
            "redirect_uris": [format!("{public}/auth/callback")],
            "post_logout_redirect_uris": [format!("{public}/")],
            "org": org,
            "tamper": tamper,
        });
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        Idp::line(&mut self.lines, "ready").await;
    }
}

/// A server that signs people in at `idp`, and the provider, ready.
struct SignIn {
    app: TestApp,
    idp: Idp,
    org: Uuid,
}

pub fn oidc_config(url: &str, idp: &Idp) -> Config {
    let mut config = test_config(url);
    config.oidc_issuer = Some(idp.issuer());
    config.oidc_client_id = Some("incidentd".into());
    config.oidc_client_secret = Some(CLIENT_SECRET.to_string().into());
    config.oidc_org_claim = Some("org".into());
    config.oidc_role_map = Some(ROLE_MAP.parse().unwrap());
    config
}

async fn start(tamper: Option<&str>, tune: impl FnOnce(&mut Config)) -> Option<SignIn> {
    let dir = provider_dir()?;
    let mut idp = Idp::spawn(&dir).await;
    let (db, url) = TestDb::create().await;
    let mut config = oidc_config(&url, &idp);
    tune(&mut config);
    let app = spawn_app_with(db, config).await;
    let org = Uuid::new_v4();
    idp.configure(&app.url(""), org, tamper).await;
    Some(SignIn { app, idp, org })
}

/// A browser without a page: keeps cookies (by name; everything here is on 127.0.0.1, and a
/// browser shares cookies between ports too) and follows redirects only when told.
struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, String>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> String {
        self.headers[LOCATION].to_str().unwrap().to_string()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The `Set-Cookie` lines for `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            jar: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let request = match self.jar.is_empty() {
            true => request,
            false => request.header("cookie", self.cookie_header()),
        };
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let gone = value.is_empty()
                || set.to_ascii_lowercase().contains("max-age=0")
                || set.contains("1970");
            match gone {
                true => self.jar.remove(name.trim()),
                false => self.jar.insert(name.trim().into(), value.into()),
            };
        }
        let body = response.text().await.unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, url: &str) -> Answer {
        let request = self.http.get(url);
        self.send(request).await
    }

    /// From our `/auth/login` through the provider's login (as `user`) and consent pages, to
    /// the URL the provider sends the browser back to (not followed).
    async fn walk_to(&mut self, start: &str, user: &str, back: &str) -> String {
        let mut url = start.to_string();
        for _ in 0..20 {
            if url.starts_with(back) {
                return url;
            }
            let answer = self.get(&url).await;
            url = match answer.status {
                s if s.is_redirection() => absolute(&url, &answer.location()),
                StatusCode::OK => {
                    let (action, prompt) = form(&answer.body)
                        .unwrap_or_else(|| panic!("a form at {url}: {}", answer.body));
                    let mut fields = vec![("prompt", prompt.clone())];
                    if prompt == "login" {
                        fields.push(("login", user.to_string()));
                        fields.push(("password", "any".to_string()));
                    }
                    let request = self.http.post(absolute(&url, &action)).form(&fields);
                    let posted = self.send(request).await;
                    assert!(posted.status.is_redirection(), "{}", posted.body);
                    absolute(&url, &posted.location())
                }
                other => panic!("{other} at {url}: {}", answer.body),
            };
        }
        panic!("no way back to {back} within 20 steps");
    }
}

/// The form's action and its `prompt` field, from the provider's dev interaction page.
fn form(html: &str) -> Option<(String, String)> {
    let after = |text: &str, marker: &str| -> Option<String> {
        let start = text.find(marker)? + marker.len();
        let end = text[start..].find('"')? + start;
        Some(
            text[start..end]
                .replace("&#x2F;", "/")
                .replace("&amp;", "&"),
        )
    };
    let action = after(html, "action=\"")?;
    let prompt = after(html, "name=\"prompt\" value=\"")?;
    Some((action, prompt))
}

fn absolute(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| match k == name {
            true => (k.into_owned(), value.to_string()),
            false => (k.into_owned(), v.into_owned()),
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

impl SignIn {
    fn base(&self) -> String {
        self.app.url("")
    }

    /// Signs `user` in with a fresh browser; the callback's answer and the browser.
    async fn sign_in(&self, user: &str, next: &str) -> (Answer, Browser) {
        let mut browser = Browser::new();
        let answer = self.sign_in_with(&mut browser, user, next).await;
        (answer, browser)
    }

    async fn sign_in_with(&self, browser: &mut Browser, user: &str, next: &str) -> Answer {
        let callback = self.callback_url(browser, user, next).await;
        browser.get(&callback).await
    }

    async fn callback_url(&self, browser: &mut Browser, user: &str, next: &str) -> String {
        let login = format!("{}/auth/login?next={}", self.base(), urlencode(next));
        let callback = format!("{}/auth/callback", self.base());
        browser.walk_to(&login, user, &callback).await
    }

    async fn me(&self, browser: &mut Browser) -> Answer {
        browser.get(&self.app.url("/auth/me")).await
    }
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A refusal: to the desk with the reason, and no session cookie.
fn assert_refused(answer: &Answer, reason: &str) {
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.body);
    assert_eq!(
        answer.location(),
        format!("/desk/incidents?signin_error={reason}")
    );
    assert!(answer.set_cookie("incidentd_session").is_none());
}

async fn session_rows(app: &TestApp) -> Vec<(String, String)> {
    let db = sea_orm::Database::connect(&app.database_url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id_hash, csrf_token FROM sessions",
        ))
        .await
        .unwrap();
    let rows = rows
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "id_hash").unwrap(),
                r.try_get::<String>("", "csrf_token").unwrap(),
            )
        })
        .collect();
    db.close().await.ok();
    rows
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_person_signs_in_and_the_session_knows_them() {
    let Some(s) = start(None, |_| {}).await else {
        return;
    };
    let providers = Browser::new()
        .get(&s.app.url("/auth/providers"))
        .await
        .json();
    assert_eq!(
        (&providers["oidc"], &providers["name"]),
        (&json!(true), &json!("127.0.0.1"))
    );
    let logout = providers["logoutUrl"].as_str().unwrap();
    assert!(
        logout.starts_with(&format!(
            "{}/session/end?client_id=incidentd",
            s.idp.issuer()
        )),
        "{logout}"
    );

    let (answer, mut browser) = s.sign_in("alice", "/desk/postmortems?x=1").await;
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.body);
    assert_eq!(answer.location(), "/desk/postmortems?x=1");
    let cookie = answer
        .set_cookie("incidentd_session")
        .expect("a session cookie");
    assert!(
        cookie.contains("; Path=/; HttpOnly; SameSite=Lax") && !cookie.contains("Secure"),
        "{cookie}"
    );
    let value = browser.jar["incidentd_session"].clone();

    let me = s.me(&mut browser).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    let me = me.json();
    let person_id = Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("{}|alice", s.idp.issuer()).as_bytes(),
    );
    assert_eq!(
        me["person"],
        json!({ "id": person_id, "name": "Alice Admin", "email": "alice@example.test" })
    );
    assert_eq!(me["organizationId"], json!(s.org));
    assert_eq!(me["role"], "admin");
    let csrf = me["csrfToken"].as_str().unwrap().to_string();
    assert!(me["expiresAt"].as_str().unwrap().ends_with('Z'));

    // Only the hash of the cookie is stored.
    let rows = session_rows(&s.app).await;
    assert_eq!(rows, vec![(sha256_hex(&value), csrf.clone())]);
    assert_ne!(rows[0].0, value);

    // The cookie is a caller: GraphQL by GET needs no CSRF token.
    let viewer = browser
        .get(&s.app.url("/graphql?query=%7Bviewer%7Brole%7D%7D"))
        .await;
    assert!(
        viewer.headers["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private"),
        "a session's answer is no shared cache's business"
    );
    assert_eq!(viewer.headers["vary"], "Accept, Authorization, Cookie");
    assert_eq!(
        viewer.json()["data"]["viewer"]["role"],
        "admin",
        "{}",
        viewer.body
    );

    // Signing in again in the same browser: a new session id, and the old one has ended.
    let again = s
        .sign_in_with(&mut browser, "alice", "/desk/incidents")
        .await;
    assert_eq!(again.status, StatusCode::FOUND, "{}", again.body);
    let rotated = browser.jar["incidentd_session"].clone();
    assert_ne!(rotated, value);
    let mut old = Browser::new();
    old.jar.insert("incidentd_session".into(), value);
    assert_eq!(s.me(&mut old).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me(&mut browser).await.status, StatusCode::OK);
    assert_eq!(session_rows(&s.app).await.len(), 1);

    // Without a session: 401 in the REST shape.
    let anonymous = Browser::new().get(&s.app.url("/auth/me")).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.json()["error"]["code"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn forged_replayed_and_foreign_callbacks_sign_nobody_in() {
    let Some(s) = start(None, |_| {}).await else {
        return;
    };
    let callback = format!("{}/auth/callback", s.base());

    // A wrong state.
    let mut browser = Browser::new();
    let url = s.callback_url(&mut browser, "bob", "/desk/incidents").await;
    let forged = browser.get(&with_param(&url, "state", "forged")).await;
    assert_refused(&forged, "state_mismatch");

    // A callback without the login's cookie (another browser, or a forged link).
    let mut browser = Browser::new();
    let url = s.callback_url(&mut browser, "bob", "/desk/incidents").await;
    assert_refused(&Browser::new().get(&url).await, "state_mismatch");

    // A tampered login cookie (its PKCE verifier, state or next changed): it no longer opens.
    let mut browser = Browser::new();
    let url = s.callback_url(&mut browser, "bob", "/desk/incidents").await;
    let sealed = browser.jar["incidentd_signin"].clone();
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&sealed)
        .unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 1;
    browser.jar.insert(
        "incidentd_signin".into(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    );
    assert_refused(&browser.get(&url).await, "state_mismatch");

    // A replayed code: the same callback, with the same login cookie, a second time.
    let mut browser = Browser::new();
    let url = s.callback_url(&mut browser, "bob", "/desk/incidents").await;
    let login_cookie = browser.jar["incidentd_signin"].clone();
    let first = browser.get(&url).await;
    assert_eq!(first.status, StatusCode::FOUND);
    assert!(first.set_cookie("incidentd_session").is_some());
    let mut replay = Browser::new();
    replay.jar.insert("incidentd_signin".into(), login_cookie);
    assert_refused(&replay.get(&url).await, "code_rejected");

    // Another login's code, delivered to this login (its PKCE verifier does not match).
    let mut victim = Browser::new();
    let victim_url = s.callback_url(&mut victim, "bob", "/desk/incidents").await;
    let mut attacker = Browser::new();
    let attacker_url = s
        .callback_url(&mut attacker, "alice", "/desk/incidents")
        .await;
    let swapped = with_param(
        &victim_url,
        "code",
        &query_param(&attacker_url, "code").unwrap(),
    );
    assert_refused(&victim.get(&swapped).await, "code_rejected");

    // A code issued to another client of the provider.
    let mut other = Browser::new();
    let verifier = "a-verifier-of-the-other-client-that-is-long-enough-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let authorize = format!(
        "{}/auth?client_id=other&redirect_uri={}&response_type=code&scope=openid&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256",
        s.idp.issuer(),
        urlencode("http://127.0.0.1:9/other"),
    );
    let other_url = other
        .walk_to(&authorize, "alice", "http://127.0.0.1:9/other")
        .await;
    let foreign_code = query_param(&other_url, "code").expect("a code for the other client");
    let mut browser = Browser::new();
    let url = s.callback_url(&mut browser, "bob", "/desk/incidents").await;
    assert_refused(
        &browser.get(&with_param(&url, "code", &foreign_code)).await,
        "code_rejected",
    );

    // The provider's own refusal comes through as such.
    let mut browser = Browser::new();
    let url = s.callback_url(&mut browser, "bob", "/desk/incidents").await;
    let state = query_param(&url, "state").unwrap();
    let denied = browser
        .get(&format!("{callback}?error=access_denied&state={state}"))
        .await;
    assert_refused(&denied, "provider_denied");

    assert!(
        session_rows(&s.app).await.len() == 1,
        "only the one real sign-in"
    );
}

#[tokio::test]
async fn people_who_map_to_no_role_or_no_organization_are_refused_with_the_reason() {
    let Some(s) = start(None, |_| {}).await else {
        return;
    };
    let (carol, _) = s.sign_in("carol", "/desk/incidents").await;
    assert_refused(&carol, "no_role");
    let (dave, _) = s.sign_in("dave", "/desk/incidents").await;
    assert_refused(&dave, "no_organization");
    // The highest matching role wins: bob is in oncall only.
    let (bob, mut browser) = s.sign_in("bob", "/desk/incidents").await;
    assert_eq!(bob.status, StatusCode::FOUND);
    assert_eq!(s.me(&mut browser).await.json()["role"], "responder");
}

#[tokio::test]
async fn next_is_only_ever_a_path_of_this_site() {
    let Some(s) = start(None, |_| {}).await else {
        return;
    };
    for next in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let (answer, _) = s.sign_in("bob", next).await;
        assert_eq!(answer.status, StatusCode::FOUND, "{next}");
        assert_eq!(answer.location(), "/desk/incidents", "{next}");
    }
}

/// Each misbehaviour of the provider, on a provider of its own.
#[tokio::test]
async fn id_tokens_with_a_wrong_issuer_audience_or_expiry_are_refused() {
    for (tamper, reason) in [
        ("iss", "id_token_issuer"),
        ("aud", "id_token_audience"),
        ("expired", "id_token_expired"),
    ] {
        let Some(s) = start(Some(tamper), |_| {}).await else {
            return;
        };
        let (answer, _) = s.sign_in("alice", "/desk/incidents").await;
        assert_refused(&answer, reason);
        assert!(session_rows(&s.app).await.is_empty(), "{tamper}");
    }
}

#[tokio::test]
async fn a_token_signed_with_a_new_key_fetches_the_keys_again() {
    let Some(s) = start(Some("rotate"), |_| {}).await else {
        return;
    };
    let (answer, _) = s.sign_in("alice", "/desk/incidents").await;
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.body);
    assert_eq!(answer.location(), "/desk/incidents");
}

const CREATE: &str =
    r#"mutation { createIncident(input: { title: "By cookie", severity: SEV3 }) { id } }"#;

async fn incident_count(s: &SignIn, browser: &mut Browser) -> i64 {
    let answer = browser
        .get(&s.app.url("/graphql?query=%7Bincidents%7BtotalCount%7D%7D"))
        .await;
    answer.json()["data"]["incidents"]["totalCount"]
        .as_i64()
        .unwrap_or_else(|| panic!("{}", answer.body))
}

#[tokio::test]
async fn cookie_writes_need_the_csrf_token_and_bearer_requests_do_not() {
    let Some(s) = start(None, |_| {}).await else {
        return;
    };
    let (_, mut browser) = s.sign_in("bob", "/desk/incidents").await;
    let csrf = s.me(&mut browser).await.json()["csrfToken"]
        .as_str()
        .unwrap()
        .to_string();
    let graphql = s.app.url("/graphql");
    let body = json!({ "query": CREATE });

    for token in [None, Some("wrong"), Some("")] {
        let mut request = browser.http.post(&graphql).json(&body);
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        let answer = browser.send(request).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{token:?}: {}",
            answer.body
        );
        assert_eq!(
            answer.json()["errors"][0]["extensions"]["code"],
            "FORBIDDEN"
        );
        assert!(answer.json().get("data").is_none());

        let mut request = browser
            .http
            .post(s.app.url("/api/v1/incidents"))
            .json(&json!({ "title": "By cookie", "severity": "SEV3" }));
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        let answer = browser.send(request).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
        assert_eq!(answer.json()["error"]["code"], "FORBIDDEN");
    }
    assert_eq!(incident_count(&s, &mut browser).await, 0, "nothing changed");

    // Logout without the token ends nothing.
    let logout = browser
        .send(browser.http.post(s.app.url("/auth/logout")))
        .await;
    assert_eq!(logout.status, StatusCode::FORBIDDEN);
    assert_eq!(logout.json()["error"]["code"], "FORBIDDEN");
    assert_eq!(s.me(&mut browser).await.status, StatusCode::OK);

    // With the token: it works, over GraphQL and REST.
    let request = browser
        .http
        .post(&graphql)
        .header("x-csrf-token", &csrf)
        .json(&body);
    let answer = browser.send(request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.json()["data"]["createIncident"]["id"].is_string(),
        "{}",
        answer.body
    );
    let request = browser
        .http
        .post(s.app.url("/api/v1/incidents"))
        .header("x-csrf-token", &csrf)
        .json(&json!({ "title": "By cookie over REST", "severity": "SEV3" }));
    let answer = browser.send(request).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(incident_count(&s, &mut browser).await, 2);

    // A bearer token is judged alone: no CSRF token needed, the cookie beside it is ignored.
    let bearer = s.app.caller(
        Uuid::new_v4(),
        incidentd::incident::identity::Role::Responder,
    );
    let request = browser
        .http
        .post(&graphql)
        .bearer_auth(&bearer.token)
        .json(&body);
    let answer = browser.send(request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.json()["data"]["createIncident"]["id"].is_string());
    assert_eq!(
        incident_count(&s, &mut browser).await,
        2,
        "in the bearer's organization"
    );
}

/// A WebSocket opened with the session cookie from `origin`, after an empty `connection_init`,
/// and the server's first answer.
async fn cookie_ws(
    port: u16,
    origin: &str,
    host: &str,
    cookie: &str,
) -> (incidentd_test_support::ws::WsStream, Message) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}/graphql")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    headers.insert("origin", origin.parse().unwrap());
    headers.insert("host", host.parse().unwrap());
    headers.insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    ws.send(Message::Text(
        json!({ "type": "connection_init" }).to_string().into(),
    ))
    .await
    .unwrap();
    let reply = next_frame(&mut ws).await;
    (ws, reply)
}

async fn next_frame(ws: &mut incidentd_test_support::ws::WsStream) -> Message {
    tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("a frame within 20 s")
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn cookie_streams_come_only_from_our_origin() {
    let Some(s) = start(None, |_| {}).await else {
        return;
    };
    let (_, browser) = s.sign_in("bob", "/desk/incidents").await;
    let cookie = browser.cookie_header();
    let port = s.app.addr.port();

    // WebSocket: the same host under another name passes the general same-host check, but a
    // session cookie works only from the public URL's origin.
    for (origin, host, accepted) in [
        (
            format!("http://127.0.0.1:{port}"),
            format!("127.0.0.1:{port}"),
            true,
        ),
        (
            format!("http://localhost:{port}"),
            format!("localhost:{port}"),
            false,
        ),
    ] {
        let (_ws, reply) = cookie_ws(port, &origin, &host, &cookie).await;
        match reply {
            Message::Text(text) if accepted => {
                assert_eq!(
                    serde_json::from_str::<Value>(&text).unwrap()["type"],
                    "connection_ack"
                );
            }
            Message::Close(Some(frame)) if !accepted => {
                assert_eq!(u16::from(frame.code), 4403);
            }
            other => panic!("{origin}: {other:?}"),
        }
    }

    // Server-Sent Events.
    let sse = |origin: &str| {
        s.app
            .client
            .get(s.app.url("/graphql?query=%7Bviewer%7Brole%7D%7D"))
            .header("accept", "text/event-stream")
            .header("cookie", &cookie)
            .header("origin", origin)
    };
    let refused = sse("http://evil.example").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let ok = sse(&format!("http://127.0.0.1:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let text = tokio::time::timeout(Duration::from_secs(20), ok.text())
        .await
        .unwrap()
        .unwrap();
    assert!(text.contains("responder"), "{text}");
}

#[tokio::test]
async fn signing_out_on_one_replica_ends_the_session_on_the_other() {
    let Some(dir) = provider_dir() else {
        return;
    };
    let mut idp = Idp::spawn(&dir).await;
    let (db, url) = TestDb::create().await;
    // Streams look at their session every tenth of the idle timeout: two seconds here.
    let idle = Duration::from_secs(20);
    let mut config = oidc_config(&url, &idp);
    config.session_idle_timeout = idle;
    let a = spawn_app_with(db, config).await;
    let mut config = oidc_config(&url, &idp);
    config.session_idle_timeout = idle;
    config.public_url = Some(url::Url::parse(&a.url("")).unwrap());
    config.no_migrate = true;
    let b = TestServer::start(config).await;
    let org = Uuid::new_v4();
    idp.configure(&a.url(""), org, None).await;
    let s = SignIn { app: a, idp, org };

    let (_, mut browser) = s.sign_in("bob", "/desk/incidents").await;
    let csrf = s.me(&mut browser).await.json()["csrfToken"]
        .as_str()
        .unwrap()
        .to_string();
    let value = browser.jar["incidentd_session"].clone();
    let on_b = browser.get(&format!("{}/auth/me", b.http())).await;
    assert_eq!(
        on_b.status,
        StatusCode::OK,
        "any replica serves any session"
    );
    // A live WebSocket and an event stream on A, both by the cookie.
    let port = s.app.addr.port();
    let public = format!("http://127.0.0.1:{port}");
    let (mut ws, ack) = cookie_ws(
        port,
        &public,
        &format!("127.0.0.1:{port}"),
        &browser.cookie_header(),
    )
    .await;
    assert!(
        matches!(&ack, Message::Text(t) if t.contains("connection_ack")),
        "{ack:?}"
    );
    let sse = s
        .app
        .client
        .post(s.app.url("/graphql"))
        .header("accept", "text/event-stream")
        .header("cookie", browser.cookie_header())
        .header("x-csrf-token", &csrf)
        .json(&json!({ "query": "subscription { incidentChanged { kind } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::OK);

    let request = browser
        .http
        .post(format!("{}/auth/logout", b.http()))
        .header("x-csrf-token", &csrf);
    let logout = browser.send(request).await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER, "{}", logout.body);
    let to = logout.location();
    assert!(
        to.starts_with(&format!("{}/session/end", s.idp.issuer()))
            && to.contains("client_id=incidentd"),
        "{to}"
    );
    assert!(
        !browser.jar.contains_key("incidentd_session"),
        "the cookie is cleared"
    );
    assert!(session_rows(&s.app).await.is_empty());

    // The live connections on A end by themselves (4403 on the WebSocket).
    match next_frame(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4403),
        other => panic!("{other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(20), sse.text())
        .await
        .expect("the event stream ends within 20 s")
        .unwrap();

    // The same cookie, kept by someone, on the replica that did not sign out.
    let mut kept = Browser::new();
    kept.jar.insert("incidentd_session".into(), value);
    assert_eq!(s.me(&mut kept).await.status, StatusCode::UNAUTHORIZED);
    let graphql = kept
        .get(&s.app.url("/graphql?query=%7Bviewer%7Brole%7D%7D"))
        .await;
    assert_eq!(graphql.status, StatusCode::UNAUTHORIZED, "{}", graphql.body);
    b.stop().await;
}

/// Sessions end by the clock: idle for longer than the idle timeout, or older than the
/// absolute lifetime however used. An expiry is a passage of time: each wait is bounded, just
/// past the lifetime under test.
#[tokio::test]
async fn sessions_end_when_idle_and_at_their_absolute_lifetime() {
    let Some(s) = start(None, |c| {
        c.session_idle_timeout = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let (_, mut browser) = s.sign_in("bob", "/desk/incidents").await;
    assert_eq!(s.me(&mut browser).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(s.me(&mut browser).await.status, StatusCode::UNAUTHORIZED);
    assert!(
        session_rows(&s.app).await.is_empty(),
        "the ended session is gone"
    );
    drop(s);

    let Some(s) = start(None, |c| {
        c.session_max_age = Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let (_, mut browser) = s.sign_in("bob", "/desk/incidents").await;
    // Used all along, it still ends two seconds after sign-in.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(s.me(&mut browser).await.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(s.me(&mut browser).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn over_https_the_cookie_is_secure_and_host_prefixed() {
    let public = "https://incidentd.example";
    let Some(dir) = provider_dir() else {
        return;
    };
    let mut idp = Idp::spawn(&dir).await;
    let (db, url) = TestDb::create().await;
    let mut config = oidc_config(&url, &idp);
    config.public_url = Some(url::Url::parse(public).unwrap());
    let app = spawn_app_with(db, config).await;
    idp.configure(public, Uuid::new_v4(), None).await;
    let s = SignIn {
        app,
        idp,
        org: Uuid::nil(),
    };
    let mut browser = Browser::new();
    let login = format!("{}/auth/login", s.base());
    let back = browser
        .walk_to(&login, "bob", &format!("{public}/auth/callback"))
        .await;
    // The browser would be at the public URL; this test reaches the server directly.
    let here = back.replacen(public, &s.base(), 1);
    let answer = browser.get(&here).await;
    let cookie = answer
        .set_cookie("__Host-incidentd_session")
        .unwrap_or_else(|| panic!("{:?}", answer.headers));
    assert!(
        cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax; Secure") && !cookie.contains("Domain"),
        "{cookie}"
    );
    assert!(answer.set_cookie("incidentd_session").is_none());
}

/// A token signed with the public dev secret, for an admin of a fresh organization.
fn dev_secret_token() -> String {
    let dev =
        incidentd::auth::Authenticator::new(&incidentd::auth::AuthSettings::default()).unwrap();
    dev.mint(
        Uuid::new_v4(),
        Uuid::new_v4(),
        incidentd::incident::identity::Role::Admin,
        Duration::from_secs(600),
    )
    .unwrap()
}

/// Bearer tokens are refused as unauthenticated, over GraphQL and REST, saying why.
async fn assert_bearer_refused(s: &SignIn, token: &str) {
    let client = reqwest::Client::new();
    let answer = client
        .post(s.app.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": CREATE }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("bearer tokens are not configured on this server; sign in"),
        "{message}"
    );
    assert!(
        body.get("data").is_none() || body["data"].is_null(),
        "{body}"
    );

    let answer = client
        .get(s.app.url("/api/v1/incidents"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHENTICATED", "{body}");
}

/// People sign in, the bearer refusals hold, and a signed-in person writes by cookie.
async fn only_sign_in_works(s: &SignIn) {
    assert!(s.app.state.graphql.dev_token.is_none(), "no dev token");
    let page = reqwest::Client::new()
        .get(s.app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        !page.text().await.unwrap().contains("Bearer "),
        "GraphiQL carries no token"
    );

    assert_bearer_refused(s, &dev_secret_token()).await;
    assert_bearer_refused(s, "not-even-a-jwt").await;

    let (_, mut browser) = s.sign_in("bob", "/desk/incidents").await;
    let csrf = s.me(&mut browser).await.json()["csrfToken"]
        .as_str()
        .unwrap()
        .to_string();
    let request = browser
        .http
        .post(s.app.url("/graphql"))
        .header("x-csrf-token", &csrf)
        .json(&json!({ "query": CREATE }));
    let answer = browser.send(request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(
        answer.json()["data"]["createIncident"]["id"].is_string(),
        "{}",
        answer.body
    );
    assert_eq!(incident_count(s, &mut browser).await, 1);
}

/// Sign-in without a JWT key, behind a reverse proxy on loopback: not dev mode. Bearer
/// tokens are off (the dev secret's included), there is no dev token, and people sign in.
#[tokio::test]
async fn with_sign_in_and_no_jwt_key_bearer_tokens_are_off_not_dev_mode() {
    let Some(s) = start(None, |config| config.jwt_secret = None).await else {
        return;
    };
    only_sign_in_works(&s).await;
}

/// Sign-in without a JWT key starts on any address (here every interface), and works when
/// reached over 127.0.0.1.
#[tokio::test]
async fn with_sign_in_and_no_jwt_key_the_server_listens_on_any_address() {
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(dir) = provider_dir() else {
        return;
    };
    let mut idp = Idp::spawn(&dir).await;
    let (db, url) = TestDb::create().await;
    let mut config = oidc_config(&url, &idp);
    config.jwt_secret = None;
    config.listen = format!("0.0.0.0:{port}").parse().unwrap();
    let public = format!("http://127.0.0.1:{port}");
    config.public_url = Some(url::Url::parse(&public).unwrap());
    let mut app = spawn_app_with(db, config).await;
    assert!(app.addr.ip().is_unspecified(), "{}", app.addr);
    // Bound to every interface; talked to over loopback.
    app.addr = format!("127.0.0.1:{port}").parse().unwrap();
    let org = Uuid::new_v4();
    idp.configure(&public, org, None).await;
    let s = SignIn { app, idp, org };
    only_sign_in_works(&s).await;
}
