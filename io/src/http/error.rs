//! Every error answer of the API. One [`ErrorCode`] enum is the single
//! source of the HTTP status, the machine-readable code string and the
//! text the OpenAPI document shows for it; [`ApiError`] is a code with a
//! message (and, for some, when to come back).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::admission::limits::Limited;
use crate::admission::{retry_after_secs, Refusal, TokenError};

macro_rules! error_codes {
    ($($variant:ident = $code:literal, $status:ident, $text:literal;)+) => {
        /// What went wrong, as the client sees it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(#[doc = $text] $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code string of the `error` field.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The HTTP status answered with this code.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)+
                }
            }

            /// What it means and what the client should do (the OpenAPI text).
            pub fn description(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)+
                }
            }
        }
    };
}

error_codes! {
    InvalidField = "invalid_field", BAD_REQUEST, "A field is missing, of the wrong type, too long, or holds characters other than letters, digits and _ - . : @.";
    MalformedJson = "malformed_json", BAD_REQUEST, "The body is not JSON.";
    InvalidQuantity = "invalid_quantity", BAD_REQUEST, "quantity must be 1 to 1000.";
    InvalidOrderId = "invalid_order_id", BAD_REQUEST, "An order id is 16 hex digits.";
    InvalidDate = "invalid_date", BAD_REQUEST, "date must be YYYY-MM-DD.";
    InvalidIp = "invalid_ip", BAD_REQUEST, "Not an IP address.";
    InvalidWindow = "invalid_window", BAD_REQUEST, "end_ms must be after start_ms and before the year 10000.";
    InvalidItems = "invalid_items", BAD_REQUEST, "A sale has 1 to 10000 items, each id once.";
    InvalidStock = "invalid_stock", BAD_REQUEST, "stock may be at most 1000000000.";
    InvalidLimit = "invalid_limit", BAD_REQUEST, "per_user_limit must be 1 to 1000.";
    InvalidShards = "invalid_shards", BAD_REQUEST, "shards must be 1 to 64.";
    InvalidTitle = "invalid_title", BAD_REQUEST, "title may be at most 512 bytes.";
    InvalidPrice = "invalid_price", BAD_REQUEST, "price_cents may be at most 1000000000000.";
    BodyRead = "body_read", BAD_REQUEST, "The body could not be read.";
    BadToken = "bad_token", UNAUTHORIZED, "Missing or wrong admin bearer token.";
    AdminDisabled = "admin_disabled", FORBIDDEN, "No admin token is configured: the admin API is off.";
    Blacklisted = "blacklisted", FORBIDDEN, "This user or address may not take part in sales.";
    TokenMissing = "token_missing", FORBIDDEN, "The purchase needs a token from the token endpoint.";
    TokenInvalid = "token_invalid", FORBIDDEN, "The token is not valid for this user, sale and item.";
    TokenExpired = "token_expired", FORBIDDEN, "The token expired: fetch a new one.";
    TooEarly = "too_early", FORBIDDEN, "Tokens are not handed out yet (Retry-After says when).";
    SaleEnded = "sale_ended", FORBIDDEN, "The sale has ended.";
    NotYourOrder = "not_your_order", FORBIDDEN, "The order belongs to another user.";
    NotFound = "not_found", NOT_FOUND, "No such endpoint.";
    UnknownItem = "unknown_item", NOT_FOUND, "No such item in this sale.";
    UnknownSale = "unknown_sale", NOT_FOUND, "No such sale.";
    UnknownRequest = "unknown_request", NOT_FOUND, "No request with this id is known.";
    UnknownOrder = "unknown_order", NOT_FOUND, "No order with this id.";
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED, "The endpoint exists, not with this method.";
    BodyTimeout = "body_timeout", REQUEST_TIMEOUT, "The body did not arrive in time.";
    TokensDisabled = "tokens_disabled", CONFLICT, "This daemon has no token key: purchases need no token.";
    SaleStarted = "sale_started", CONFLICT, "A sale that has started cannot be replaced.";
    OrderClosed = "order_closed", CONFLICT, "The order is already paid, cancelled or expired.";
    SaleNotLost = "sale_not_lost", CONFLICT, "Redis holds the stock of every item of this sale (or some shards of a sharded item): nothing to rebuild without overwriting live state.";
    NoSummary = "no_summary", CONFLICT, "The sale has neither sold out nor ended yet: no summary.";
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE, "The body is larger than this endpoint takes.";
    RateLimitedGlobal = "rate_limited_global", TOO_MANY_REQUESTS, "The daemon's global rate is used up (Retry-After).";
    RateLimitedIp = "rate_limited_ip", TOO_MANY_REQUESTS, "This address's rate is used up (Retry-After).";
    RateLimitedUser = "rate_limited_user", TOO_MANY_REQUESTS, "This user's rate is used up (Retry-After).";
    Internal = "internal", INTERNAL_SERVER_ERROR, "A bug: the daemon failed to answer.";
    RedisUnavailable = "redis_unavailable", SERVICE_UNAVAILABLE, "Redis did not answer; retry (Retry-After). Purchases are not refused for this: they are answered pending.";
    PeerUnavailable = "peer_unavailable", SERVICE_UNAVAILABLE, "The request may be held by another daemon of the fleet that did not answer; poll again (Retry-After).";
    SaleDataLost = "sale_data_lost", SERVICE_UNAVAILABLE, "Redis holds no stock for this loaded item (it restarted empty, or failed over to a replica that never got the sale): nothing is decided for it until its Redis state is rebuilt; retry later (Retry-After).";
    RecordIncomplete = "record_incomplete", SERVICE_UNAVAILABLE, "Kafka cannot be read, or this daemon still holds wins Kafka has not acknowledged: the record a rebuild starts from is not complete; retry (Retry-After).";
    RingFull = "ring_full", SERVICE_UNAVAILABLE, "Too many requests in flight; retry shortly (Retry-After).";
    ShuttingDown = "shutting_down", SERVICE_UNAVAILABLE, "The daemon is shutting down; retry on another (Retry-After).";
    TooManyConnections = "too_many_connections", SERVICE_UNAVAILABLE, "The daemon holds `connections_max` open connections; retry shortly (Retry-After).";
    DecisionTimeout = "decision_timeout", GATEWAY_TIMEOUT, "No decision in time; retry with the same request_id.";
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        let mut text = String::from("Machine-readable error code:\n");
        for c in ErrorCode::ALL {
            text.push_str(&format!(
                "- `{}` ({}): {}\n",
                c.as_str(),
                c.status().as_u16(),
                c.description()
            ));
        }
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .description(Some(text))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

impl From<Limited> for ErrorCode {
    fn from(l: Limited) -> ErrorCode {
        match l {
            Limited::Global => ErrorCode::RateLimitedGlobal,
            Limited::Ip => ErrorCode::RateLimitedIp,
            Limited::User => ErrorCode::RateLimitedUser,
        }
    }
}

impl From<TokenError> for ErrorCode {
    fn from(e: TokenError) -> ErrorCode {
        match e {
            TokenError::Missing => ErrorCode::TokenMissing,
            TokenError::Malformed | TokenError::Invalid => ErrorCode::TokenInvalid,
            TokenError::Expired => ErrorCode::TokenExpired,
        }
    }
}

/// An error answer: a code (which fixes the status), a message for
/// people, and, for some, when to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// `Retry-After` seconds (503 and 429 answers default to 1).
    pub retry_after_s: Option<u64>,
    /// The `Allow` header of a 405: the methods the path takes.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after_s: None,
            allow: None,
        }
    }

    pub fn allow(mut self, methods: &'static str) -> ApiError {
        self.allow = Some(methods);
        self
    }

    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after_s = Some(secs.max(1));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// A rate limit's refusal.
    pub fn limited(r: Refusal) -> ApiError {
        ApiError::new(r.limit.into(), "too many requests; slow down")
            .retry_after(retry_after_secs(r.retry_after))
    }

    /// Redis did not answer an API call that needs it.
    pub fn redis_down(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::RedisUnavailable, e.to_string())
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::Internal, e.to_string())
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> Vec<u8> {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
            retry_after_s: self.retry_after_s,
        };
        // Serializing a code and two plain values cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let retry = matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        );
        let body = self.body();
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(allow) = self.allow {
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        let secs = self.retry_after_s.or(retry.then_some(1));
        if let Some(secs) = secs {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(RETRY_AFTER, v);
            }
        }
        r
    }
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorCode,
    pub message: &'a str,
    /// Seconds to wait before retrying (also in the `Retry-After` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_unique_and_an_error_status() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{} twice", c.as_str());
            assert!(c.status().is_client_error() || c.status().is_server_error());
            assert!(!c.description().is_empty());
        }
    }

    #[test]
    fn an_error_answer_carries_its_code_status_and_retry_after() {
        let r = ApiError::new(ErrorCode::RingFull, "busy").into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers().get(RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let r = ApiError::new(ErrorCode::TooEarly, "wait")
            .retry_after(7)
            .into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers().get(RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
    }
}

#[cfg(test)]
mod docs {
    use super::ErrorCode;

    /// docs/api.md lists every code with its status, as the enum says.
    #[test]
    fn the_api_doc_lists_every_code_with_its_status() {
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"));
        for c in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", c.as_str(), c.status().as_u16());
            assert!(doc.contains(&row), "docs/api.md lacks the row {row}");
        }
        let rows = doc.lines().filter(|l| l.starts_with("| `")).count();
        assert!(rows >= ErrorCode::ALL.len());
    }
}
