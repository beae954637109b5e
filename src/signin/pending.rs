//! A sign-in in progress (state, nonce, PKCE verifier, where to go after), kept in the
//! browser between `/auth/login` and `/auth/callback`, encrypted and authenticated
//! (AES-256-GCM) under a key every replica derives from the client secret.
//!
//! Why a cookie and not a table: any replica can finish a sign-in another one started, as with
//! a table, but an anonymous `GET /auth/login` writes nothing to the database, so nobody can
//! fill a table by asking to sign in. It expires after ten minutes and is removed at the
//! callback; a replayed copy can only present a code the provider has already redeemed (codes
//! are single use there, and the PKCE verifier binds the code to the login that asked for it).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::sessions::cookie_value;

const COOKIE: &str = "incidentd_signin";
const HOST_COOKIE: &str = "__Host-incidentd_signin";
/// How long a person may take at the provider's login page.
pub const LIFETIME_SECS: u64 = 600;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub next: String,
    /// Seconds since the epoch.
    pub expires: u64,
}

pub struct PendingCookies {
    cipher: Aes256Gcm,
    secure: bool,
}

impl PendingCookies {
    pub fn new(client_secret: &str, secure: bool) -> PendingCookies {
        let mut hasher = Sha256::new();
        hasher.update(b"incidentd sign-in state v1\0");
        hasher.update(client_secret.as_bytes());
        let key = hasher.finalize();
        PendingCookies {
            cipher: Aes256Gcm::new_from_slice(&key).expect("SHA-256 makes a 32-byte key"),
            secure,
        }
    }

    fn name(&self) -> &'static str {
        if self.secure { HOST_COOKIE } else { COOKIE }
    }

    /// `Set-Cookie` holding `login`, sealed.
    pub fn seal(&self, login: &PendingLogin) -> HeaderValue {
        let nonce: [u8; 12] = rand::random();
        let plain = serde_json::to_vec(login).expect("a pending login serializes");
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), plain.as_slice())
            .expect("AES-GCM encrypts any length we write");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        self.header(&format!("{}={value}; Max-Age={LIFETIME_SECS}", self.name()))
    }

    /// `Set-Cookie` removing it.
    pub fn clear(&self) -> HeaderValue {
        self.header(&format!("{}=; Max-Age=0", self.name()))
    }

    fn header(&self, start: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!("{start}; Path=/; HttpOnly; SameSite=Lax{secure}"))
            .expect("base64url cookie")
    }

    /// The request's pending login, if it has one that is ours, intact and not expired.
    pub fn open(&self, headers: &HeaderMap, now: u64) -> Option<PendingLogin> {
        let value = cookie_value(headers, self.name())?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        let plain = self.cipher.decrypt(&Nonce::from(nonce), sealed).ok()?;
        let login: PendingLogin = serde_json::from_slice(&plain).ok()?;
        (login.expires > now).then_some(login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    fn request_with(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(pair).unwrap());
        headers
    }

    #[test]
    fn a_sealed_login_opens_only_intact_unexpired_and_under_its_key() {
        let cookies = PendingCookies::new("secret", false);
        let login = PendingLogin {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            next: "/desk/incidents".into(),
            expires: 100,
        };
        let set = cookies.seal(&login);
        assert!(set.to_str().unwrap().contains("HttpOnly; SameSite=Lax"));
        let headers = request_with(&set);
        assert_eq!(cookies.open(&headers, 99), Some(login));
        assert_eq!(cookies.open(&headers, 100), None);
        assert_eq!(PendingCookies::new("other", false).open(&headers, 0), None);
        // One flipped bit anywhere: refused.
        let mut tampered = set.to_str().unwrap().to_string();
        let at = tampered.find('=').unwrap() + 20;
        let flipped = if &tampered[at..at + 1] == "A" {
            "B"
        } else {
            "A"
        };
        tampered.replace_range(at..at + 1, flipped);
        let headers = request_with(&HeaderValue::from_str(&tampered).unwrap());
        assert_eq!(cookies.open(&headers, 0), None);
    }
}
