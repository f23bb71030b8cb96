//! Response headers every answer carries, and the pages' Content Security Policy.
//!
//! - `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer` on everything;
//! - `Cache-Control: no-store` on the API (token responses, user data: nothing of it may
//!   sit in a shared cache or the browser's);
//! - on HTML pages, `X-Frame-Options: DENY` and a CSP with `frame-ancestors 'none'`
//!   (no clickjacking of the camera page). The camera page's CSP allows exactly its own
//!   inline script and style, by hash, and nothing from elsewhere; the vendored API
//!   documentation pages (Swagger UI, ReDoc) get a same-origin policy.

use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The camera page, as served.
pub const CAMERA_PAGE: &str = include_str!("../../static/index.html");

const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Adds the headers above to `next`'s response.
pub async fn secure(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if path.starts_with("/api/") || OPENID_PRIVATE_PATHS.contains(&path.as_str()) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    if is_html {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        let csp = if path == "/" {
            camera_page_csp().clone()
        } else if path == "/authorize" {
            authorize_page_csp().clone()
        } else {
            HeaderValue::from_static(DOCS_CSP)
        };
        h.insert(HeaderName::from_static("content-security-policy"), csp);
    }
    response
}

/// OpenID endpoints whose answers (tokens, user data, the login page) no cache may keep.
const OPENID_PRIVATE_PATHS: &[&str] = &[
    "/authorize",
    "/authorize/face",
    "/authorize/password",
    "/token",
    "/userinfo",
    "/introspect",
    "/revoke",
    "/logout",
];

/// The camera page's CSP: its inline `<script>` and `<style>` by SHA-256, the camera
/// stream and snapshots (`blob:`, `mediastream:`), requests to this origin only.
pub fn camera_page_csp() -> &'static HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| page_csp(CAMERA_PAGE))
}

/// The OpenID login page's CSP, built the same way.
pub fn authorize_page_csp() -> &'static HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| page_csp(crate::http::routes::openid::AUTHORIZE_PAGE))
}

fn page_csp(page: &str) -> HeaderValue {
    let hashes = |tag: &str| -> String {
        inline_blocks(page, tag)
            .map(|body| {
                let digest = Sha256::digest(body.as_bytes());
                format!(
                    " 'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                )
            })
            .collect()
    };
    let policy = format!(
        "default-src 'none'; script-src{}; style-src{}; img-src 'self' data: blob:; \
         media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style")
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(DOCS_CSP))
}

/// The bodies of `<tag>...</tag>` blocks without attributes (the page's inline ones).
fn inline_blocks<'a>(html: &'a str, tag: &str) -> impl Iterator<Item = &'a str> + 'a {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let starts: Vec<usize> = html
        .match_indices(open.as_str())
        .map(|(start, _)| start + open.len())
        .collect();
    starts.into_iter().filter_map(move |body_start| {
        html[body_start..]
            .find(close.as_str())
            .map(|end| &html[body_start..body_start + end])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_camera_page_policy_names_its_inline_blocks_by_hash() {
        let csp = camera_page_csp().to_str().unwrap_or_default().to_owned();
        assert_eq!(inline_blocks(CAMERA_PAGE, "script").count(), 1, "{csp}");
        assert_eq!(inline_blocks(CAMERA_PAGE, "style").count(), 1, "{csp}");
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }

    #[test]
    fn inline_blocks_are_found_whole() {
        let html = "<p><script>a()</script><script src=x></script><script>b()</script>";
        let found: Vec<&str> = inline_blocks(html, "script").collect();
        assert_eq!(found, ["a()", "b()"]);
    }
}
