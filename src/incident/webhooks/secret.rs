//! Signing secrets: `whsec_` + base64 of 32 random bytes, shown once and stored so that they can
//! sign: encrypted with AES-256-GCM under `--webhook-secret-key` when it is set, as is otherwise.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

const PREFIX: &str = "whsec_";
/// Marks a stored secret that is encrypted (a plain one starts with `whsec_`).
const SEALED: &str = "enc1:";

/// A fresh secret.
pub fn generate() -> String {
    format!("{PREFIX}{}", B64.encode(rand::random::<[u8; 32]>()))
}

/// The HMAC key of a `whsec_…` secret: its base64 part, decoded.
pub fn key_bytes(secret: &str) -> Option<Vec<u8>> {
    B64.decode(secret.strip_prefix(PREFIX).unwrap_or(secret))
        .ok()
}

/// The key secrets are encrypted with at rest: SHA-256 of the configured text.
#[derive(Clone)]
pub struct Cipher(Aes256Gcm);

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(***)")
    }
}

impl Cipher {
    pub fn new(key: &str) -> Cipher {
        let digest = Sha256::digest(key.as_bytes());
        Cipher(Aes256Gcm::new_from_slice(&digest).expect("32 bytes"))
    }
}

/// The text stored for `secret`.
pub fn seal(cipher: Option<&Cipher>, secret: &str) -> String {
    let Some(Cipher(aead)) = cipher else {
        return secret.to_string();
    };
    let nonce_bytes = rand::random::<[u8; 12]>();
    let sealed = aead
        .encrypt(&Nonce::from(nonce_bytes), secret.as_bytes())
        .expect("AES-GCM encrypts any length we store");
    let mut out = nonce_bytes.to_vec();
    out.extend(sealed);
    format!("{SEALED}{}", B64.encode(out))
}

/// The secret a stored text holds; `None` when it is sealed and no (or another) key is configured.
pub fn open(cipher: Option<&Cipher>, stored: &str) -> Option<String> {
    let Some(sealed) = stored.strip_prefix(SEALED) else {
        return Some(stored.to_string());
    };
    let Cipher(aead) = cipher?;
    let bytes = B64.decode(sealed).ok()?;
    if bytes.len() < 12 {
        return None;
    }
    let (nonce, body) = bytes.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    let plain = aead.decrypt(&Nonce::from(nonce), body).ok()?;
    String::from_utf8(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_32_random_bytes_and_seal_round_trips() {
        let s = generate();
        assert!(s.starts_with("whsec_"));
        assert_eq!(key_bytes(&s).unwrap().len(), 32);
        assert_ne!(s, generate());
        let cipher = Cipher::new("a key");
        let stored = seal(Some(&cipher), &s);
        assert!(!stored.contains(&s[6..]));
        assert_eq!(open(Some(&cipher), &stored).as_deref(), Some(s.as_str()));
        assert_eq!(open(Some(&Cipher::new("another")), &stored), None);
        assert_eq!(open(None, &stored), None);
        assert_eq!(seal(None, &s), s);
        assert_eq!(open(None, &s).as_deref(), Some(s.as_str()));
    }
}
