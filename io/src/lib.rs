//! # seckill-io: the adapters and the daemon
//!
//! Implements the pipeline's ports on real systems — the Redis stock store
//! (one batched Lua call per ring batch), the Kafka order sink (idempotent
//! producer), the WAL journal — and the hyper ingress that feeds the ring.
//! `daemon.rs` starts and stops them (with `wiring.rs`, shared with the
//! offline replay); `src/bin/seckilld.rs` is the binary. docs/architecture.md has
//! the map of this crate: which folder holds what and what it may import.

pub mod admission;
pub mod app;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod error;
pub mod http;
pub mod journal;
pub mod kafka;
pub mod metrics;
pub mod offline;
pub mod peers;
pub mod redis;
pub mod shutdown;
pub mod tasks;
pub mod wiring;

pub use app::App;
pub use config::{Cli, Config};
pub use daemon::Daemon;
pub use error::DaemonError;
