//! Extractors: the client's address, bearer and admin credentials, and multipart forms
//! read with limits and strict validation.

use std::net::{IpAddr, SocketAddr};

use axum::extract::multipart::MultipartRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Multipart};
use axum::http::header::{AUTHORIZATION, USER_AGENT};
use axum::http::request::Parts;
use bytes::Bytes;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::error::ApiError;
use super::error::seconds_until;
use crate::domain::tokens::{AccessClaims, TokenError};
use crate::flows::{self, SessionStatus};
use crate::state::AppState;

/// Who is calling: client IP and user agent, for rate limits and the fraud record.
#[derive(Clone, Debug)]
pub struct Client {
    /// Client IP: the socket peer, or from `X-Forwarded-For` behind trusted proxies.
    pub ip: String,
    /// What limits and lockouts count by: the IPv4 address, or the /64 network of an IPv6
    /// address (one subscriber gets a whole /64, so counting single IPv6 addresses would
    /// give an attacker 2^64 fresh budgets).
    pub key: String,
    /// User agent, truncated to 512 characters.
    pub user_agent: String,
}

/// The client IP: the socket address unless `hops` trusted proxies stand in front, in
/// which case the address they appended to `X-Forwarded-For` (the `hops`-th from the
/// right, over every `X-Forwarded-For` line in order, as RFC 7230 joins repeated
/// headers). Addresses further left are client-controlled and ignored. Entries may be
/// `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`; an entry that is none of these (or too few
/// entries) means the header cannot be trusted, and the socket address is used.
pub fn client_ip<'a>(
    peer: Option<SocketAddr>,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    hops: u8,
) -> Option<IpAddr> {
    let peer_ip = peer.map(|p| p.ip());
    if hops == 0 {
        return peer_ip;
    }
    let entries: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    entries
        .len()
        .checked_sub(usize::from(hops))
        .and_then(|i| entries.get(i))
        .and_then(|s| parse_forwarded_address(s))
        .or(peer_ip)
}

/// An `X-Forwarded-For` entry: `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`.
fn parse_forwarded_address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// The key limits and lockouts count a client by: an IPv4 address (or an IPv4-mapped
/// IPv6 one) as is, an IPv6 address as its /64 network.
pub fn client_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(network))
        }
        None => "unknown".to_owned(),
    }
}

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        let user_agent: String = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(512)
            .collect();
        let ip = client_ip(peer, forwarded, state.config().trusted_proxy_hops);
        Ok(Client {
            ip: ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_canonical().to_string()),
            key: client_key(ip),
            user_agent,
        })
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A user authenticated by an access token.
#[derive(Clone, Copy, Debug)]
pub struct AuthUser {
    /// The user's id (`sub`).
    pub id: Uuid,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized("missing bearer token"))?;
        match state.tokens().verify_access(token) {
            Ok(claims) => check_session(state, &claims).await,
            Err(TokenError::Expired) => {
                tracing::info!(
                    event = "token_rejected",
                    reason = "expired",
                    "access token rejected"
                );
                Err(ApiError::Unauthorized("access token expired"))
            }
            Err(TokenError::Invalid) => {
                tracing::info!(
                    event = "token_rejected",
                    reason = "invalid",
                    "access token rejected"
                );
                Err(ApiError::Unauthorized("invalid access token"))
            }
        }
    }
}

/// The token's user must still be able to use it ([`flows::session_status`]).
async fn check_session(state: &AppState, claims: &AccessClaims) -> Result<AuthUser, ApiError> {
    let now = chrono::Utc::now();
    match flows::session_status(state, claims.sub, claims.r#gen, now).await? {
        SessionStatus::Valid => Ok(AuthUser { id: claims.sub }),
        SessionStatus::Gone => Err(ApiError::Unauthorized("the account no longer exists")),
        SessionStatus::Revoked => {
            tracing::info!(
                event = "token_rejected",
                reason = "revoked",
                "access token rejected"
            );
            Err(ApiError::Unauthorized("access token revoked"))
        }
        SessionStatus::Inactive => Err(ApiError::Inactive),
        SessionStatus::Locked(until) => Err(ApiError::Locked {
            retry_after: until.map(|u| seconds_until(u, now)),
        }),
    }
}

/// The tenant's administrator, authenticated by `Authorization: Bearer <ADMIN_API_KEY>`.
/// A valid user access token is refused with 403, anything else with 401.
#[derive(Clone, Copy, Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized("missing admin credentials"))?;
        let expected = state.config().admin_api_key.as_bytes();
        // Constant time in the key's content; lengths differing is not secret.
        if bool::from(token.as_bytes().ct_eq(expected)) {
            return Ok(Admin);
        }
        if state.tokens().verify_access(token).is_ok() {
            tracing::warn!(
                event = "admin_forbidden",
                "user token presented to an admin endpoint"
            );
            return Err(ApiError::Forbidden("admin credentials required"));
        }
        tracing::warn!(event = "admin_rejected", "invalid admin credentials");
        Err(ApiError::Unauthorized("invalid admin credentials"))
    }
}

/// Longest accepted text field, in bytes.
const MAX_TEXT_FIELD: usize = 1024;

/// The fields read from a multipart form.
#[derive(Debug, Default)]
pub struct Form {
    texts: Vec<(String, String)>,
    files: Vec<(String, Bytes)>,
}

impl Form {
    /// Reads every part of `multipart`, accepting only the `text` and `file` field names.
    /// Unknown fields are skipped; a repeated known field is refused.
    pub async fn read(
        multipart: Result<Multipart, MultipartRejection>,
        text: &[&str],
        file: &[&str],
        max_bytes: u64,
    ) -> Result<Self, ApiError> {
        let mut multipart = multipart
            .map_err(|_| ApiError::UnsupportedMediaType("expected a multipart/form-data body"))?;
        let mut form = Form::default();
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(multipart_error(&e, max_bytes)),
            };
            let Some(name) = field.name().map(str::to_owned) else {
                continue;
            };
            let is_text = text.contains(&name.as_str());
            let is_file = file.contains(&name.as_str());
            if !is_text && !is_file {
                continue;
            }
            if form.texts.iter().any(|(n, _)| *n == name)
                || form.files.iter().any(|(n, _)| *n == name)
            {
                return Err(ApiError::Validation(format!(
                    "field {name:?} given more than once"
                )));
            }
            let data = field
                .bytes()
                .await
                .map_err(|e| multipart_error(&e, max_bytes))?;
            if is_text {
                if data.len() > MAX_TEXT_FIELD {
                    return Err(ApiError::Validation(format!(
                        "field {name:?} is longer than {MAX_TEXT_FIELD} bytes"
                    )));
                }
                let value = String::from_utf8(data.to_vec()).map_err(|_| {
                    ApiError::Validation(format!("field {name:?} is not UTF-8 text"))
                })?;
                form.texts.push((name, value));
            } else {
                form.files.push((name, data));
            }
        }
        Ok(form)
    }

    /// A required text field.
    pub fn text(&self, name: &str) -> Result<&str, ApiError> {
        self.optional_text(name)
            .ok_or_else(|| ApiError::Validation(format!("field {name:?} is required")))
    }

    /// An optional text field (blank counts as absent).
    pub fn optional_text(&self, name: &str) -> Option<&str> {
        self.texts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }

    /// A required, non-empty file field.
    pub fn file(&self, name: &str) -> Result<Bytes, ApiError> {
        match self.files.iter().find(|(n, _)| n == name) {
            Some((_, data)) if !data.is_empty() => Ok(data.clone()),
            Some(_) => Err(ApiError::Validation(format!(
                "field {name:?} is an empty file"
            ))),
            None => Err(ApiError::Validation(format!(
                "field {name:?} (an image file) is required"
            ))),
        }
    }
}

fn multipart_error(e: &axum::extract::multipart::MultipartError, max_bytes: u64) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(max_bytes)
    } else {
        ApiError::Validation(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// Checks a username: 3-64 characters from letters, digits, `_`, `.` and `-`.
pub fn validate_username(s: &str) -> Result<&str, ApiError> {
    let s = s.trim();
    let ok = (3..=64).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(s)
    } else {
        Err(ApiError::Validation(
            "username must be 3-64 characters from letters, digits, '_', '.' and '-'".to_owned(),
        ))
    }
}

/// Checks an e-mail address for a plausible shape (a local part, one `@`, a dotted
/// domain; no spaces or control characters; at most 254 characters).
pub fn validate_email(s: &str) -> Result<&str, ApiError> {
    let s = s.trim();
    let bad = || ApiError::Validation("email is not a valid address".to_owned());
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = s.split_once('@').ok_or_else(bad)?;
    let domain_ok = !domain.contains('@')
        && domain.contains('.')
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(bad());
    }
    Ok(s)
}

/// Checks a password: 8-128 characters.
pub fn validate_password(s: &str) -> Result<&str, ApiError> {
    if (8..=128).contains(&s.chars().count()) {
        Ok(s)
    } else {
        Err(ApiError::Validation(
            "password must be 8-128 characters".to_owned(),
        ))
    }
}

/// Parses a user id from a path segment.
pub fn parse_user_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::Validation("user id must be a UUID".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(lines: &[&str], hops: u8) -> String {
        let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        client_ip(Some(peer), lines.iter().copied(), hops)
            .unwrap()
            .to_string()
    }

    #[test]
    fn client_ip_ignores_forwarded_for_without_trusted_proxies() {
        assert_eq!(ip(&["1.2.3.4"], 0), "10.0.0.9");
        assert_eq!(ip(&["6.6.6.6, 1.2.3.4"], 1), "1.2.3.4");
        assert_eq!(ip(&["6.6.6.6, 1.2.3.4, 10.0.0.2"], 2), "1.2.3.4");
        assert_eq!(ip(&["garbage"], 1), "10.0.0.9");
        assert_eq!(ip(&["1.2.3.4"], 3), "10.0.0.9");
        assert_eq!(ip(&[], 1), "10.0.0.9");
    }

    #[test]
    fn client_ip_reads_every_header_line_and_address_form() {
        // A client-sent line first, then the line the trusted proxy added.
        assert_eq!(ip(&["6.6.6.6", "1.2.3.4"], 1), "1.2.3.4");
        assert_eq!(ip(&["6.6.6.6, 7.7.7.7", "1.2.3.4, 10.0.0.2"], 2), "1.2.3.4");
        assert_eq!(ip(&["1.2.3.4:5678"], 1), "1.2.3.4");
        assert_eq!(ip(&["2001:db8::1"], 1), "2001:db8::1");
        assert_eq!(ip(&["[2001:db8::1]"], 1), "2001:db8::1");
        assert_eq!(ip(&["[2001:db8::1]:443"], 1), "2001:db8::1");
        assert_eq!(ip(&["1.2.3.4:port"], 1), "10.0.0.9");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let key = |s: &str| client_key(Some(s.parse().unwrap()));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(client_key(None), "unknown");
    }

    #[test]
    fn usernames_and_emails_are_checked() {
        assert!(validate_username("alice_01").is_ok());
        for bad in [
            "al",
            "robert'); DROP TABLE users;--",
            "ålice",
            "a b c",
            &"x".repeat(65),
        ] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
        assert!(validate_email("alice@example.com").is_ok());
        for bad in [
            "alice",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "@x.com",
            "a@x..com",
            "a\n@x.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?}");
        }
        assert!(validate_password("correct horse").is_ok());
        assert!(validate_password("short").is_err());
    }
}
