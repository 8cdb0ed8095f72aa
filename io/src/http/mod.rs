//! The hyper ingress.
//!
//! ```text
//! server.rs (accept loop) ──► router.rs ──► handlers/<area>.rs ──► App, ring, Redis
//!                                  extract.rs: body, client address, admin token, admission
//!                                  codec.rs:   purchase body parsed on bytes, JSON answers
//!                                  error.rs:   ErrorCode → status, code string, OpenAPI text
//!                                  stream.rs:  the dashboard's server-sent event body
//! ```

pub mod codec;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod openapi;
mod router;
mod server;
pub mod stream;

pub use error::{ApiError, ErrorCode};
pub use router::Door;
pub use server::serve;
