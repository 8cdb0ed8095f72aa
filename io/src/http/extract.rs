//! What handlers take from a request before they decide anything: the
//! body (bounded in size and time), the client's address, the admin
//! bearer token, query parameters, and the admission checks (limits,
//! blacklist, purchase token) turned into answers.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::Request;
use serde::Deserialize;
use utoipa::ToSchema;

use super::codec::{self, check_id, CLIENT_ID_LEN_MAX, ID_LEN_MAX};
use super::error::{ApiError, ErrorCode};
use crate::app::App;

/// Small bodies: a user id.
pub const USER_BODY_BYTES_MAX: usize = 1024;

pub async fn read_body(app: &App, req: Request<Incoming>, max: usize) -> Result<Bytes, ApiError> {
    // A declared length past the bound is refused before waiting for it.
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(body_too_large(max));
    }
    let limited = Limited::new(req.into_body(), max);
    let timeout = Duration::from_millis(app.cfg.header_timeout_ms.max(1));
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            ErrorCode::BodyTimeout,
            "the request body did not arrive in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(body_too_large(max)),
        Ok(Err(e)) => Err(ApiError::new(ErrorCode::BodyRead, e.to_string())),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

fn body_too_large(max: usize) -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        format!("the body may be at most {max} bytes"),
    )
}

/// The client's address: the TCP peer, or behind trusted proxies the
/// address the nearest untrusted hop had (see `admission::proxies`).
pub fn client_ip(app: &App, peer: IpAddr, req: &Request<Incoming>) -> IpAddr {
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    app.proxies.client(peer, forwarded)
}

/// Global and per-IP limits and the IP blacklist: before any body is read.
pub fn admit(app: &App, ip: IpAddr) -> Result<(), ApiError> {
    app.limits.admit(ip).map_err(ApiError::limited)?;
    if app.limits.ip_blocked(ip) {
        return Err(blacklisted());
    }
    Ok(())
}

/// What every per-item POST starts with: the ids, the global and IP
/// limits and the IP blacklist, then the body (at most `max` bytes).
pub async fn item_request(
    app: &App,
    ip: IpAddr,
    sale: &str,
    item: &str,
    req: Request<Incoming>,
    max: usize,
) -> Result<bytes::Bytes, ApiError> {
    check_id("sale", sale, ID_LEN_MAX)?;
    check_id("item", item, ID_LEN_MAX)?;
    admit(app, ip)?;
    read_body(app, req, max).await
}

pub fn blacklisted() -> ApiError {
    ApiError::new(
        ErrorCode::Blacklisted,
        "this client may not take part in sales",
    )
}

pub fn unknown_item(sale: &str, item: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownItem,
        format!("no item {item} in sale {sale}"),
    )
}

pub fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Who asks (the token endpoint, pay, cancel). Behind a login gateway that
/// sets it from the session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    pub user_id: String,
}

pub fn parse_user(body: &[u8]) -> Result<String, ApiError> {
    let u: UserBody = serde_json::from_slice(body).map_err(|e| codec::json_error(&e))?;
    check_id("user_id", &u.user_id, CLIENT_ID_LEN_MAX)?;
    Ok(u.user_id)
}

pub fn authorize(app: &App, req: &Request<Incoming>) -> Result<(), ApiError> {
    let token = &app.cfg.admin_token;
    if token.is_empty() {
        return Err(ApiError::new(
            ErrorCode::AdminDisabled,
            "no admin token is configured",
        ));
    }
    if !same_secret(bearer(req), token) {
        return Err(ApiError::new(
            ErrorCode::BadToken,
            "missing or wrong admin bearer token",
        ));
    }
    Ok(())
}

/// The `Authorization: Bearer` token of a request ("" when there is none).
pub fn bearer(req: &Request<Incoming>) -> &str {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Compares a secret in constant time: both sides are hashed first, so
/// neither a wrong length nor the first differing byte ends the
/// comparison early.
pub fn same_secret(given: &str, secret: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(secret.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The token and user checks of a purchase, after the body is parsed.
pub fn check_purchase(
    app: &App,
    sale: &str,
    item: &str,
    user: &str,
    token: Option<&str>,
    now_ms: u64,
) -> Result<(), ApiError> {
    if app.limits.user_blocked(user) {
        return Err(blacklisted());
    }
    if app.cfg.require_token {
        let keys = app
            .tokens
            .as_ref()
            .ok_or_else(|| ApiError::new(ErrorCode::TokenInvalid, "no token key is configured"))?;
        keys.verify(token.unwrap_or(""), user, sale, item, now_ms)
            .map_err(|e| ApiError::new(e.into(), e.to_string()))?;
    }
    app.limits.admit_user(user).map_err(ApiError::limited)
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_match_only_when_equal_whatever_their_lengths() {
        let s = "an-admin-token-of-some-length";
        assert!(same_secret(s, s));
        assert!(!same_secret("", s));
        assert!(!same_secret(&s[..10], s));
        assert!(!same_secret(&format!("{s}x"), s));
        assert!(!same_secret("an-admin-token-of-some-lengtH", s));
    }
}
