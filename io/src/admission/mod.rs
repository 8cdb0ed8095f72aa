//! Admission: what the ingress checks before a request may reach the ring,
//! all in-process — who the client is behind proxies (`proxies`), the rate
//! limits and the blacklist (`limits`) and the purchase token (`token`). No HTTP here: the handlers turn a refusal
//! into an answer.

pub mod limits;
pub mod proxies;
pub mod token;

pub use limits::{retry_after_secs, Limits, Refusal};
pub use proxies::TrustedProxies;
pub use token::{TokenError, TokenKeys};
