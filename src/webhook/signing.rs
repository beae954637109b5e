//! Standard Webhooks 1.0 signatures: `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`,
//! keyed with the decoded bytes of each `whsec_…` secret, space-separated when several sign.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `webhook-signature` header value for `keys` (the decoded secrets).
pub fn signature(message_id: &str, timestamp: i64, body: &[u8], keys: &[Vec<u8>]) -> String {
    keys.iter()
        .map(|key| {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(format!("{message_id}.{timestamp}.").as_bytes());
            mac.update(body);
            format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::signature;
    use crate::incident::webhooks::secret::key_bytes;

    #[test]
    fn the_published_test_vectors() {
        // The specification's example.
        let key = key_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#,
                &[key]
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // The reference library's.
        let key = key_bytes("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            signature(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#,
                &[key]
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn the_reference_library_verifies_ours_with_either_secret() {
        let (old, new) = (
            crate::incident::webhooks::secret::generate(),
            crate::incident::webhooks::secret::generate(),
        );
        // Its verify compares the timestamp with its own clock (5 minutes either way): now.
        let now = chrono::Utc::now().timestamp();
        let body = br#"{"type":"webhook.test"}"#;
        let header = signature(
            "msg_1",
            now,
            body,
            &[key_bytes(&new).unwrap(), key_bytes(&old).unwrap()],
        );
        assert_eq!(header.split(' ').count(), 2);
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", header.parse().unwrap());
        for secret in [&old, &new] {
            standardwebhooks::Webhook::new(secret)
                .unwrap()
                .verify(body, &headers)
                .unwrap();
        }
        let other = crate::incident::webhooks::secret::generate();
        assert!(
            standardwebhooks::Webhook::new(&other)
                .unwrap()
                .verify(body, &headers)
                .is_err()
        );
        // A tampered body fails.
        assert!(
            standardwebhooks::Webhook::new(&new)
                .unwrap()
                .verify(br#"{"type":"webhook.tesT"}"#, &headers)
                .is_err()
        );
    }
}
