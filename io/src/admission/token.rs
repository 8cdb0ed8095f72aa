//! Purchase tokens: the "hidden URL" of the seed. A token binds a user, a
//! sale, an item and an expiry, signed with HMAC-SHA256. The token endpoint
//! hands them out no earlier than a minute before the start; the purchase
//! endpoint checks them before anything reaches the ring.
//!
//! Format: `<expires_ms>.<hex mac>` where the MAC covers a version tag, the
//! user, sale and item ids and the expiry. The ids are not in the token:
//! the purchase request carries them and the check recomputes the MAC, so a
//! token copied to another user, sale or item simply does not verify.
//!
//! Rotation: tokens are signed with the current key and verified against
//! the current and the previous one, so a key can be replaced without
//! failing the tokens handed out just before.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const TAG: &[u8] = b"seckill-token-v1";
const MAC_HEX_LEN: usize = 64;
/// Longest token accepted (20 digits, a dot, the MAC).
pub const TOKEN_LEN_MAX: usize = 20 + 1 + MAC_HEX_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the purchase token is missing")]
    Missing,
    #[error("the purchase token is malformed")]
    Malformed,
    #[error("the purchase token has expired")]
    Expired,
    #[error("the purchase token is not valid for this user, sale and item")]
    Invalid,
}

#[derive(Debug, thiserror::Error)]
#[error("token keys must be at least 16 bytes")]
pub struct KeyTooShort;

/// The signing key and the previous one, still accepted.
#[derive(Clone)]
pub struct TokenKeys {
    current: HmacSha256,
    previous: Option<HmacSha256>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

/// Shortest key accepted.
pub const KEY_LEN_MIN: usize = 16;

fn keyed(key: &str) -> Result<HmacSha256, KeyTooShort> {
    if key.len() < KEY_LEN_MIN {
        return Err(KeyTooShort);
    }
    HmacSha256::new_from_slice(key.as_bytes()).map_err(|_| KeyTooShort)
}

fn feed(mac: &mut HmacSha256, user: &str, sale: &str, item: &str, expires_ms: u64) {
    mac.update(TAG);
    for part in [user, sale, item] {
        mac.update(&[0]);
        mac.update(part.as_bytes());
    }
    mac.update(&[0]);
    mac.update(&expires_ms.to_be_bytes());
}

impl TokenKeys {
    /// `previous` empty: no previous key.
    pub fn new(current: &str, previous: &str) -> Result<TokenKeys, KeyTooShort> {
        Ok(TokenKeys {
            current: keyed(current)?,
            previous: if previous.is_empty() {
                None
            } else {
                Some(keyed(previous)?)
            },
        })
    }

    pub fn sign(&self, user: &str, sale: &str, item: &str, expires_ms: u64) -> String {
        let mut mac = self.current.clone();
        feed(&mut mac, user, sale, item, expires_ms);
        let tag = mac.finalize().into_bytes();
        let mut out = String::with_capacity(TOKEN_LEN_MAX);
        out.push_str(&expires_ms.to_string());
        out.push('.');
        out.push_str(&hex::encode(tag));
        out
    }

    /// Checks a token for this user, sale and item at `now_ms`. The MAC is
    /// compared in constant time.
    pub fn verify(
        &self,
        token: &str,
        user: &str,
        sale: &str,
        item: &str,
        now_ms: u64,
    ) -> Result<(), TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let (exp, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        if exp.is_empty() || exp.len() > 20 || tag.len() != MAC_HEX_LEN {
            return Err(TokenError::Malformed);
        }
        let expires_ms: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
        let mut raw = [0u8; MAC_HEX_LEN / 2];
        hex::decode_to_slice(tag, &mut raw).map_err(|_| TokenError::Malformed)?;
        let ok = |key: &HmacSha256| {
            let mut mac = key.clone();
            feed(&mut mac, user, sale, item, expires_ms);
            mac.verify_slice(&raw).is_ok()
        };
        let signed = ok(&self.current) || self.previous.as_ref().is_some_and(ok);
        if !signed {
            return Err(TokenError::Invalid);
        }
        // Only a genuine token learns that it expired.
        if now_ms >= expires_ms {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "0123456789abcdef-key-one";
    const K2: &str = "0123456789abcdef-key-two";

    #[test]
    fn a_signed_token_verifies_for_its_user_sale_and_item_only() {
        let keys = TokenKeys::new(K1, "").expect("key");
        let t = keys.sign("u1", "s", "i", 2_000);
        assert_eq!(keys.verify(&t, "u1", "s", "i", 1_000), Ok(()));
        assert_eq!(
            keys.verify(&t, "u2", "s", "i", 1_000),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            keys.verify(&t, "u1", "s2", "i", 1_000),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            keys.verify(&t, "u1", "s", "i2", 1_000),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            keys.verify(&t, "u1", "s", "i", 2_000),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn ids_cannot_be_shifted_between_fields() {
        let keys = TokenKeys::new(K1, "").expect("key");
        let t = keys.sign("ab", "c", "d", 9);
        assert_eq!(keys.verify(&t, "a", "bc", "d", 1), Err(TokenError::Invalid));
    }

    #[test]
    fn a_changed_expiry_or_mac_fails() {
        let keys = TokenKeys::new(K1, "").expect("key");
        let t = keys.sign("u", "s", "i", 5_000);
        let (_, mac) = t.split_once('.').expect("dot");
        let later = format!("9999999.{mac}");
        assert_eq!(
            keys.verify(&later, "u", "s", "i", 1),
            Err(TokenError::Invalid)
        );
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(
            keys.verify(&flipped, "u", "s", "i", 1),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn rotation_accepts_the_previous_key_and_nothing_older() {
        let old = TokenKeys::new(K1, "").expect("key");
        let t = old.sign("u", "s", "i", 10);
        let rotated = TokenKeys::new(K2, K1).expect("keys");
        assert_eq!(rotated.verify(&t, "u", "s", "i", 1), Ok(()));
        let again = TokenKeys::new("0123456789abcdef-key-three", K2).expect("keys");
        assert_eq!(again.verify(&t, "u", "s", "i", 1), Err(TokenError::Invalid));
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let keys = TokenKeys::new(K1, "").expect("key");
        for t in [
            "",
            ".",
            "abc",
            "1.",
            ".ff",
            "x.00",
            "99999999999999999999999.00",
            "1.zz",
        ] {
            assert!(keys.verify(t, "u", "s", "i", 0).is_err(), "{t:?}");
        }
        let long_hex = format!("1.{}", "g".repeat(64));
        assert_eq!(
            keys.verify(&long_hex, "u", "s", "i", 0),
            Err(TokenError::Malformed)
        );
        assert!(TokenKeys::new("short", "").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// Any string as a token: refused (or, by chance, never) without a
        /// panic; a token signed for one user never verifies for another.
        #[test]
        fn arbitrary_tokens_are_refused_without_a_panic(token in "\\PC{0,200}", user in "[a-z]{1,8}") {
            let keys = TokenKeys::new(K1, "").expect("key");
            proptest::prop_assert!(keys.verify(&token, &user, "s", "i", 1).is_err());
            let signed = keys.sign(&user, "s", "i", 1_000);
            proptest::prop_assert!(keys.verify(&signed, &user, "s", "i", 999).is_ok());
            let other = format!("{user}x");
            proptest::prop_assert!(keys.verify(&signed, &other, "s", "i", 999).is_err());
        }
    }
}
