//! The daemon's error: what can stop it from starting, or from shutting
//! down cleanly. Each variant keeps its typed source.

use std::net::SocketAddr;

/// Why the daemon (or the offline replay) could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Wal(#[from] seckill_wal::WalError),
    #[error(transparent)]
    Replay(#[from] seckill_replay::ReplayError),
    /// The Redis URL is not one the client accepts (an unreachable Redis
    /// is not an error: the daemon degrades).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The stock store could not be built from the configuration.
    #[error("redis stock store: {0}")]
    Store(#[from] seckill_pipeline::port::StoreError),
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaSetupError),
    #[error(transparent)]
    Pipeline(#[from] seckill_pipeline::PipelineError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The pipeline was started without a producer handle.
    #[error("the pipeline has no submitter")]
    NoSubmitter,
    /// A setting the daemon cannot use (it is also checked at load).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("purchase token key: {0}")]
    TokenKey(#[from] crate::admission::token::KeyTooShort),
}
