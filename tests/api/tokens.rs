//! Bearer tokens from a platform's identity provider:
//! RS256 / ES256 from a PEM public key, a JWKS file with keys chosen by `kid` and rotated without a
//! restart, the algorithm pinned by configuration. Every forgery is refused over HTTP (401,
//! `UNAUTHENTICATED`) and over WebSocket `connection_init` (close 4403), next to a control token
//! that the same server accepts. Keys are generated at test time; no private key is committed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use incidentd::auth::{Authenticator, JwtAlgorithm};
use incidentd::config::Config;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, TestDb, Ws, WsEvent, code, spawn_app_with, test_config};

const ISSUER: &str = "https://idp.example.com/";
const AUDIENCE: &str = "incidentd";
const VIEWER_QUERY: &str = "{ viewer { userId organizationId role } }";

/// A key pair: PEMs for jsonwebtoken and the public key as a JWK (without `kid`).
struct KeyPair {
    private_pem: String,
    public_pem: String,
    jwk: Value,
    algorithm: Algorithm,
}

impl KeyPair {
    fn encoding(&self) -> EncodingKey {
        match self.algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(self.private_pem.as_bytes()).unwrap(),
        }
    }

    /// The public JWK with a `kid` (and `alg`, when given).
    fn jwk(&self, kid: &str, alg: Option<&str>) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    /// Signs `claims` with this key; `kid` in the header when given.
    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding()).expect("token signs")
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RSA 2048 generation is slow in debug builds: one trusted and one attacker pair per test binary.
fn rsa_pairs() -> &'static [KeyPair; 2] {
    static PAIRS: OnceLock<[KeyPair; 2]> = OnceLock::new();
    PAIRS.get_or_init(|| [rsa_pair(), rsa_pair()])
}

fn rsa_pair() -> KeyPair {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
    let public = private.to_public_key();
    KeyPair {
        private_pem: private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
        jwk: json!({
            "kty": "RSA",
            "n": b64(&public.n().to_bytes_be()),
            "e": b64(&public.e().to_bytes_be()),
        }),
        algorithm: Algorithm::RS256,
    }
}

fn ec_pair() -> KeyPair {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let private = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let public = private.public_key();
    let point = public.to_encoded_point(false);
    KeyPair {
        private_pem: private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
        jwk: json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64(point.x().unwrap()),
            "y": b64(point.y().unwrap()),
        }),
        algorithm: Algorithm::ES256,
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims a server configured with `ISSUER` / `AUDIENCE` accepts.
fn valid_claims(org: Uuid, user: Uuid) -> Value {
    json!({
        "sub": user, "org": org, "role": "responder",
        "iss": ISSUER, "aud": AUDIENCE,
        "iat": now(), "exp": now() + 600,
    })
}

/// `claims` with `key` set to `value` (or removed when `value` is null).
fn with(claims: &Value, key: &str, value: Value) -> Value {
    let mut claims = claims.clone();
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(key);
    } else {
        claims[key] = value;
    }
    claims
}

/// An unsigned token, built by hand: jsonwebtoken cannot even express `alg: none`.
fn alg_none(kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({ "alg": "none", "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// The same token with one bit of its signature flipped.
fn tampered(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[0] ^= 0x01;
    format!("{signed}.{}", b64(&bytes))
}

/// Signed with the attacker's own key, which the header names (`jku`, `x5u`) and embeds (`jwk`).
fn self_signed(attacker: &KeyPair, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(attacker.algorithm);
    header.kid = kid.map(str::to_string);
    header.jku = Some("https://attacker.example/.well-known/jwks.json".into());
    header.x5u = Some("https://attacker.example/cert.pem".into());
    header.jwk =
        Some(serde_json::from_value(attacker.jwk(kid.unwrap_or("attacker"), None)).unwrap());
    jsonwebtoken::encode(&header, claims, &attacker.encoding()).expect("token signs")
}

/// HS256 with the server's public key (PEM or JWKS bytes) as the HMAC secret.
fn hmac_with(public: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(public)).unwrap()
}

/// A server with no secret, configured by `configure`, checking `ISSUER` and `AUDIENCE`.
async fn spawn(configure: impl FnOnce(&mut Config)) -> TestApp {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.jwt_secret = None;
    config.jwt_issuer = Some(ISSUER.into());
    config.jwt_audience = Some(AUDIENCE.into());
    configure(&mut config);
    spawn_app_with(db, config).await
}

async fn over_http(app: &TestApp, token: &str) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": VIEWER_QUERY }))
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON body"))
}

/// `connection_init` with `token`: `Ok(())` on `connection_ack`, `Err(close code)` on a close.
async fn over_ws(app: &TestApp, token: &str) -> Result<(), Option<u16>> {
    let mut ws = Ws::connect(app.addr, "graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
        .await;
    match ws.next().await {
        WsEvent::Message(m) if m["type"] == "connection_ack" => Ok(()),
        WsEvent::Message(m) => panic!("unexpected message after connection_init: {m}"),
        WsEvent::Closed(code, _) => Err(code),
    }
}

async fn assert_accepted(app: &TestApp, what: &str, token: &str, org: Uuid, user: Uuid) {
    let (status, body) = over_http(app, token).await;
    assert_eq!(status, 200, "{what}: {body}");
    assert_eq!(
        body["data"]["viewer"],
        json!({ "userId": user, "organizationId": org, "role": "responder" }),
        "{what}: {body}"
    );
    assert_eq!(over_ws(app, token).await, Ok(()), "{what} over WebSocket");
}

async fn assert_rejected(app: &TestApp, what: &str, token: &str) {
    let (status, body) = over_http(app, token).await;
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(
        code(&body["errors"][0]),
        "UNAUTHENTICATED",
        "{what}: {body}"
    );
    assert!(
        body.get("data").is_none_or(Value::is_null),
        "{what}: no data: {body}"
    );
    assert_eq!(
        over_ws(app, token).await,
        Err(Some(4403)),
        "{what} over WebSocket"
    );
}

/// The forgeries every configuration refuses, made from the trusted `key` (with `kid`), the
/// server's `public` key bytes and an `attacker` key of the same kind.
fn forgeries(
    key: &KeyPair,
    kid: Option<&str>,
    public: &[u8],
    attacker: &KeyPair,
    org: Uuid,
    user: Uuid,
) -> Vec<(&'static str, String)> {
    let claims = valid_claims(org, user);
    vec![
        ("alg none", alg_none(kid, &claims)),
        (
            "HS256 with the public key as the secret",
            hmac_with(public, kid, &claims),
        ),
        ("tampered signature", tampered(&key.sign(kid, &claims))),
        (
            "expired beyond the leeway",
            key.sign(kid, &with(&claims, "exp", json!(now() - 120))),
        ),
        (
            "not valid for another hour",
            key.sign(kid, &with(&claims, "nbf", json!(now() + 3600))),
        ),
        (
            "wrong issuer",
            key.sign(kid, &with(&claims, "iss", json!("https://evil.example/"))),
        ),
        (
            "no issuer",
            key.sign(kid, &with(&claims, "iss", Value::Null)),
        ),
        (
            "wrong audience",
            key.sign(kid, &with(&claims, "aud", json!("another-service"))),
        ),
        (
            "no audience",
            key.sign(kid, &with(&claims, "aud", Value::Null)),
        ),
        ("no org", key.sign(kid, &with(&claims, "org", Value::Null))),
        (
            "non-UUID org",
            key.sign(kid, &with(&claims, "org", json!("acme"))),
        ),
        (
            "jku / x5u / jwk headers naming the attacker's key",
            self_signed(attacker, kid, &claims),
        ),
        (
            "signed by another key of the same kind",
            attacker.sign(kid, &claims),
        ),
    ]
}

fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Replaces the JWKS file the way a rotation job should: write aside, then rename over it.
fn replace_jwks(path: &Path, keys: &[Value]) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, json!({ "keys": keys }).to_string()).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Polls until `token` is accepted over HTTP (the JWKS file is re-checked at most once a second).
async fn eventually_accepted(app: &TestApp, what: &str, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = over_http(app, token).await;
        if status == 200 {
            return;
        }
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            Instant::now() < deadline,
            "{what}: still refused at the deadline: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rs256_pem_accepts_its_tokens_and_refuses_forgeries() {
    let [key, attacker] = rsa_pairs();
    let dir = tempfile::tempdir().unwrap();
    let pem = write_file(dir.path(), "public.pem", &key.public_pem);
    let app = spawn(|c| c.jwt_public_key_file = Some(pem)).await;
    let (org, user) = (Uuid::new_v4(), Uuid::new_v4());

    assert_accepted(
        &app,
        "RS256 from the PEM key",
        &key.sign(None, &valid_claims(org, user)),
        org,
        user,
    )
    .await;
    // nbf in the past and exp within the leeway are fine.
    let lenient = with(
        &with(&valid_claims(org, user), "nbf", json!(now() - 60)),
        "exp",
        json!(now() - 5),
    );
    let (status, body) = over_http(&app, &key.sign(None, &lenient)).await;
    assert_eq!(status, 200, "exp 5 s ago (leeway 30 s): {body}");

    // `aud` may be an array (RFC 7519 §4.1.3), as Auth0 and Keycloak issue it.
    let listed = with(
        &valid_claims(org, user),
        "aud",
        json!(["https://api.example.com", AUDIENCE]),
    );
    assert_accepted(
        &app,
        "aud as an array naming us",
        &key.sign(None, &listed),
        org,
        user,
    )
    .await;
    let unlisted = with(&valid_claims(org, user), "aud", json!(["another-service"]));
    assert_rejected(
        &app,
        "aud as an array without us",
        &key.sign(None, &unlisted),
    )
    .await;

    for (what, token) in forgeries(key, None, key.public_pem.as_bytes(), attacker, org, user) {
        assert_rejected(&app, what, &token).await;
    }
    let ec = ec_pair();
    assert_rejected(
        &app,
        "ES256 against a server pinned to RS256",
        &ec.sign(None, &valid_claims(org, user)),
    )
    .await;
}

#[tokio::test]
async fn es256_pem_accepts_its_tokens_and_refuses_forgeries() {
    let (key, attacker) = (ec_pair(), ec_pair());
    let dir = tempfile::tempdir().unwrap();
    let pem = write_file(dir.path(), "public.pem", &key.public_pem);
    let app = spawn(|c| {
        c.jwt_public_key_file = Some(pem);
        c.jwt_algorithm = Some(JwtAlgorithm::Es256);
    })
    .await;
    let (org, user) = (Uuid::new_v4(), Uuid::new_v4());

    assert_accepted(
        &app,
        "ES256 from the PEM key",
        &key.sign(None, &valid_claims(org, user)),
        org,
        user,
    )
    .await;
    for (what, token) in forgeries(&key, None, key.public_pem.as_bytes(), &attacker, org, user) {
        assert_rejected(&app, what, &token).await;
    }
}

#[tokio::test]
async fn jwks_picks_the_key_by_kid_and_uses_only_keys_of_the_pinned_algorithm() {
    let (a, b, attacker) = (ec_pair(), ec_pair(), ec_pair());
    let other_alg = ec_pair();
    let [rsa_key, _] = rsa_pairs();
    let mut encryption = attacker.jwk("key-enc", None);
    encryption["use"] = json!("enc");
    let dir = tempfile::tempdir().unwrap();
    let jwks = json!({ "keys": [
        a.jwk("key-a", Some("ES256")),
        b.jwk("key-b", None),
        // Not usable when ES256 is pinned: another algorithm, another key type, an encryption key.
        other_alg.jwk("key-es384", Some("ES384")),
        rsa_key.jwk("key-rsa", Some("RS256")),
        encryption,
    ] })
    .to_string();
    let path = write_file(dir.path(), "jwks.json", &jwks);
    let app = spawn(|c| {
        c.jwt_jwks_file = Some(path);
        c.jwt_algorithm = Some(JwtAlgorithm::Es256);
    })
    .await;
    let (org, user) = (Uuid::new_v4(), Uuid::new_v4());
    let claims = valid_claims(org, user);

    assert_accepted(
        &app,
        "kid key-a",
        &a.sign(Some("key-a"), &claims),
        org,
        user,
    )
    .await;
    assert_accepted(
        &app,
        "kid key-b",
        &b.sign(Some("key-b"), &claims),
        org,
        user,
    )
    .await;

    let cases = [
        ("unknown kid", a.sign(Some("key-z"), &claims)),
        ("no kid", a.sign(None, &claims)),
        ("kid of another key", a.sign(Some("key-b"), &claims)),
        (
            "a JWK whose alg is not the pinned one",
            other_alg.sign(Some("key-es384"), &claims),
        ),
        (
            "a JWK meant for encryption",
            attacker.sign(Some("key-enc"), &claims),
        ),
        (
            "an RS256 key when ES256 is pinned",
            rsa_key.sign(Some("key-rsa"), &claims),
        ),
        (
            "jwk header with a kid the server does not know",
            self_signed(&attacker, Some("attacker"), &claims),
        ),
        (
            "jwk header without kid",
            self_signed(&attacker, None, &claims),
        ),
    ];
    for (what, token) in cases {
        assert_rejected(&app, what, &token).await;
    }
    for (what, token) in forgeries(&a, Some("key-a"), jwks.as_bytes(), &attacker, org, user) {
        assert_rejected(&app, what, &token).await;
    }
}

#[tokio::test]
async fn jwks_defaults_to_rs256() {
    let [key, attacker] = rsa_pairs();
    let ec = ec_pair();
    let dir = tempfile::tempdir().unwrap();
    let jwks =
        json!({ "keys": [key.jwk("rsa-1", None), ec.jwk("ec-1", Some("ES256"))] }).to_string();
    let path = write_file(dir.path(), "jwks.json", &jwks);
    let app = spawn(|c| c.jwt_jwks_file = Some(path)).await;
    let (org, user) = (Uuid::new_v4(), Uuid::new_v4());
    let claims = valid_claims(org, user);

    assert_accepted(
        &app,
        "RS256 with kid",
        &key.sign(Some("rsa-1"), &claims),
        org,
        user,
    )
    .await;
    assert_rejected(
        &app,
        "ES256 key in the set when RS256 is pinned",
        &ec.sign(Some("ec-1"), &claims),
    )
    .await;
    for (what, token) in forgeries(key, Some("rsa-1"), jwks.as_bytes(), attacker, org, user) {
        assert_rejected(&app, what, &token).await;
    }
    let public = key.public_pem.as_bytes();
    assert_rejected(
        &app,
        "HS256 with the PEM of the JWKS key as the secret",
        &hmac_with(public, Some("rsa-1"), &claims),
    )
    .await;
}

#[tokio::test]
async fn jwks_keys_rotate_without_a_restart() {
    let (a, b, c, d) = (ec_pair(), ec_pair(), ec_pair(), ec_pair());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    replace_jwks(&path, &[a.jwk("a", None), b.jwk("b", None)]);
    let app = spawn(|cfg| {
        cfg.jwt_jwks_file = Some(path.clone());
        cfg.jwt_algorithm = Some(JwtAlgorithm::Es256);
    })
    .await;
    let (org, user) = (Uuid::new_v4(), Uuid::new_v4());
    let claims = valid_claims(org, user);
    let (token_a, token_b) = (a.sign(Some("a"), &claims), b.sign(Some("b"), &claims));
    let (token_c, token_d) = (c.sign(Some("c"), &claims), d.sign(Some("d"), &claims));
    assert_accepted(&app, "key a before the rotation", &token_a, org, user).await;
    assert_rejected(&app, "key c before the rotation", &token_c).await;

    // Rotation: drop a, add c.
    replace_jwks(&path, &[b.jwk("b", None), c.jwk("c", None)]);
    eventually_accepted(&app, "key c after the rotation", &token_c).await;
    assert_accepted(&app, "key c after the rotation", &token_c, org, user).await;
    assert_accepted(&app, "key b kept", &token_b, org, user).await;
    assert_rejected(&app, "key a after the rotation", &token_a).await;

    // A broken file (written in place, as a careless job would) keeps the last good keys: for
    // longer than the re-check interval, c stays accepted and a stays refused.
    std::fs::write(&path, "{\"keys\": [ {\"kty\": ").unwrap();
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let (status, body) = over_http(&app, &token_c).await;
        assert_eq!(status, 200, "key c with a broken JWKS file: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_accepted(&app, "key c with a broken file", &token_c, org, user).await;
    assert_rejected(&app, "key a with a broken file", &token_a).await;

    // The next good file is picked up again.
    std::fs::write(&path, json!({ "keys": [d.jwk("d", None)] }).to_string()).unwrap();
    eventually_accepted(&app, "key d after the repair", &token_d).await;
    assert_accepted(&app, "key d after the repair", &token_d, org, user).await;
    assert_rejected(&app, "key c after the repair", &token_c).await;
}

#[test]
fn conflicting_jwt_settings_refuse_to_start() {
    let [key, _] = rsa_pairs();
    let dir = tempfile::tempdir().unwrap();
    let pem = write_file(dir.path(), "public.pem", &key.public_pem);
    let jwks_text = json!({ "keys": [key.jwk("k", None)] }).to_string();
    let jwks = write_file(dir.path(), "jwks.json", &jwks_text);
    let empty = write_file(dir.path(), "empty.json", r#"{"keys":[]}"#);
    let broken = write_file(dir.path(), "broken.json", "not json");
    let base = || {
        let mut config = test_config("sqlite::memory:");
        config.jwt_secret = None;
        config
    };
    let error = |config: Config| match Authenticator::new(&config.auth()) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };

    // The controls: each source alone starts.
    let mut ok = base();
    ok.jwt_public_key_file = Some(pem.clone());
    assert_eq!(error(ok), None, "PEM alone");
    let mut ok = base();
    ok.jwt_jwks_file = Some(jwks.clone());
    ok.jwt_algorithm = Some(JwtAlgorithm::Rs256);
    assert_eq!(error(ok), None, "JWKS alone");
    assert_eq!(error(test_config("sqlite::memory:")), None, "secret alone");

    let mut two = test_config("sqlite::memory:");
    two.jwt_jwks_file = Some(jwks.clone());
    let message = error(two).expect("secret and JWKS together refuse");
    assert!(message.contains("INCIDENTD_JWT_JWKS_FILE"), "{message}");
    let mut two = base();
    two.jwt_public_key_file = Some(pem.clone());
    two.jwt_jwks_file = Some(jwks.clone());
    assert!(error(two).is_some(), "PEM and JWKS together refuse");

    let mut mismatch = base();
    mismatch.jwt_public_key_file = Some(pem);
    mismatch.jwt_algorithm = Some(JwtAlgorithm::Es256);
    assert!(
        error(mismatch).is_some(),
        "an RSA PEM key with ES256 pinned"
    );
    let mut mismatch = test_config("sqlite::memory:");
    mismatch.jwt_algorithm = Some(JwtAlgorithm::Rs256);
    assert!(error(mismatch).is_some(), "a secret with RS256 pinned");
    let mut mismatch = base();
    mismatch.jwt_jwks_file = Some(jwks.clone());
    mismatch.jwt_algorithm = Some(JwtAlgorithm::Hs256);
    assert!(error(mismatch).is_some(), "a JWKS with HS256 pinned");
    let mut mismatch = base();
    mismatch.jwt_jwks_file = Some(jwks);
    mismatch.jwt_algorithm = Some(JwtAlgorithm::Es256);
    assert!(error(mismatch).is_some(), "a JWKS without a key for ES256");
    let mut bad = base();
    bad.jwt_jwks_file = Some(empty);
    assert!(error(bad).is_some(), "an empty JWKS");
    let mut bad = base();
    bad.jwt_jwks_file = Some(broken);
    assert!(error(bad).is_some(), "a JWKS that does not parse");
}

#[test]
fn the_algorithm_flag_takes_the_jwa_names() {
    use clap::Parser;
    let parse = |value: &str| {
        incidentd::config::Cli::try_parse_from(["incidentd", "--jwt-algorithm", value])
            .map(|cli| cli.config.jwt_algorithm)
            .map_err(|e| e.to_string())
    };
    assert_eq!(parse("RS256"), Ok(Some(JwtAlgorithm::Rs256)));
    assert_eq!(parse("es256"), Ok(Some(JwtAlgorithm::Es256)));
    assert_eq!(parse("HS256"), Ok(Some(JwtAlgorithm::Hs256)));
    assert!(parse("none").is_err());
    assert!(parse("HS512").is_err());
}
