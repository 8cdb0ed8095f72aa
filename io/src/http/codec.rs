//! Request parsing and validation on bytes, and JSON answers. No sockets:
//! this is what the fuzz-style tests drive.

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Deserialize;

use super::error::{ApiError, ErrorCode};

pub type Resp = Response<Full<Bytes>>;

/// Longest sale or item id.
pub const ID_LEN_MAX: usize = 64;
/// Longest user or request id.
pub const CLIENT_ID_LEN_MAX: usize = 128;
/// Most units one purchase may ask for, whatever the item's limit.
pub const QUANTITY_MAX: u32 = 1000;

/// A purchase.
// `Cow` borrows from the body unless the JSON string had escapes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PurchaseBody<'a> {
    #[serde(borrow)]
    #[schema(value_type = String, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.:@-]+$")]
    pub user_id: Cow<'a, str>,
    /// The client's id for this click: a retry with the same id gets the
    /// same answer.
    #[serde(borrow)]
    #[schema(value_type = String, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.:@-]+$")]
    pub request_id: Cow<'a, str>,
    /// Units (default 1, at most the item's per-user limit).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: Option<u32>,
    /// The purchase token from the token endpoint (the hidden URL);
    /// required unless `require_token = false`.
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>)]
    pub token: Option<Cow<'a, str>>,
}

/// Checks an id: 1..=max bytes of `[A-Za-z0-9_.:@-]`.
pub fn check_id(field: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'));
    if !ok {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            format!("{field} may only hold letters, digits and _ - . : @"),
        ));
    }
    Ok(())
}

/// Maps a serde_json error to an answer: broken JSON vs. a wrong field.
pub fn json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::new(ErrorCode::InvalidField, e.to_string()),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(ErrorCode::MalformedJson, e.to_string())
        }
    }
}

/// Parses and validates a purchase body.
pub fn parse_purchase(body: &[u8]) -> Result<PurchaseBody<'_>, ApiError> {
    let p: PurchaseBody<'_> = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    check_id("user_id", &p.user_id, CLIENT_ID_LEN_MAX)?;
    check_id("request_id", &p.request_id, CLIENT_ID_LEN_MAX)?;
    if let Some(q) = p.quantity {
        if q == 0 || q > QUANTITY_MAX {
            return Err(ApiError::new(
                ErrorCode::InvalidQuantity,
                format!("quantity must be 1 to {QUANTITY_MAX}"),
            ));
        }
    }
    Ok(p)
}

pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn text(status: StatusCode, body: String, content_type: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purchase_bodies_are_validated() {
        let ok = parse_purchase(br#"{"user_id":"u1","request_id":"r-1"}"#).expect("valid");
        assert_eq!(ok.user_id, "u1");
        let code = |b: &[u8]| parse_purchase(b).err().map(|e| e.code);
        assert_eq!(code(b"{"), Some(ErrorCode::MalformedJson));
        assert_eq!(code(b"not json"), Some(ErrorCode::MalformedJson));
        assert_eq!(code(br#"{"user_id":"u1"}"#), Some(ErrorCode::InvalidField));
        assert_eq!(
            code(br#"{"user_id":5,"request_id":"r"}"#),
            Some(ErrorCode::InvalidField)
        );
        assert_eq!(
            code(br#"{"user_id":"","request_id":"r"}"#),
            Some(ErrorCode::InvalidField)
        );
        assert_eq!(
            code(br#"{"user_id":"a b","request_id":"r"}"#),
            Some(ErrorCode::InvalidField)
        );
        assert_eq!(
            code(br#"{"user_id":"u","request_id":"r","quantity":0}"#),
            Some(ErrorCode::InvalidQuantity)
        );
        assert_eq!(
            code(br#"{"user_id":"u","request_id":"r","quantity":99999999999}"#),
            Some(ErrorCode::InvalidField)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3_000))]

        /// Any bytes: an answer, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic_the_parser(bytes in proptest::collection::vec(0u8.., 0..300)) {
            let _ = parse_purchase(&bytes);
        }

        /// Any JSON object of the purchase's shape, with any strings and
        /// numbers: accepted exactly when every field is within its bounds.
        #[test]
        fn purchase_fields_are_accepted_exactly_within_their_bounds(
            user in "\\PC{0,140}",
            request in "[A-Za-z0-9_.:@-]{0,140}",
            quantity in proptest::option::of(0u64..2_000),
        ) {
            let mut v = serde_json::json!({ "user_id": user, "request_id": request });
            if let Some(q) = quantity {
                v["quantity"] = q.into();
            }
            let body = serde_json::to_vec(&v).expect("json");
            let ok_id = |s: &str| !s.is_empty() && s.len() <= CLIENT_ID_LEN_MAX
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b));
            let ok_q = quantity.is_none_or(|q| (1..=u64::from(QUANTITY_MAX)).contains(&q));
            match parse_purchase(&body) {
                Ok(p) => {
                    proptest::prop_assert!(ok_id(&user) && ok_id(&request) && ok_q);
                    proptest::prop_assert_eq!(p.user_id.as_ref(), user.as_str());
                }
                Err(e) => {
                    proptest::prop_assert!(!(ok_id(&user) && ok_id(&request) && ok_q));
                    proptest::prop_assert!(e.code.status().is_client_error());
                }
            }
        }
    }
}
