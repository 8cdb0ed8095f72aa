//! # seckill-io: the adapters and the daemon
//!
//! Implements the pipeline's ports on real systems — the Redis stock store
//! (one batched Lua call per ring batch), the Kafka order sink (idempotent
//! producer), the WAL journal — and the hyper ingress that feeds the ring.
//! `seckilld` (in `src/bin`) wires them together.

pub mod check;
pub mod config;
pub mod daemon;
pub mod http;
pub mod journal;
pub mod kafka;
pub mod limits;
pub mod load;
pub mod offline;
pub mod orders;
pub mod redis;
pub mod token;

pub use config::{Cli, Config};
pub use daemon::{App, Daemon, DaemonError};
