//! The headers every page served to a browser carries (the desk, GraphiQL and their files):
//! one place, so the two cannot drift apart. Each caller brings its own Content-Security-Policy.

use axum::http::{HeaderMap, HeaderValue, header};

/// Sets `csp` and the headers that go with it: no framing by anyone (`frame-ancestors 'none'`
/// in the policy, `X-Frame-Options` for browsers that predate it), no MIME sniffing, no
/// `Referer` to other sites (a GraphiQL or desk address may carry ids), and a browsing context
/// of its own (`Cross-Origin-Opener-Policy`), so an opener cannot reach into the page.
pub fn secure(headers: &mut HeaderMap, csp: HeaderValue) {
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}
