//! The in-process stacks the end-to-end tests start from: a Redis, a
//! broker, a WAL directory and a daemon — and a second daemon on the same
//! Redis and broker.

use crate::{daemon_config, Broker, RedisServer};

/// A second in-process daemon on the same Redis and broker (its own WAL
/// directory, returned so it lives as long as the daemon): the daemon, the
/// directory and its base URL.
pub async fn another_daemon(
    redis: &RedisServer,
    broker: &Broker,
    tweak: impl FnOnce(&mut seckill_io::Config),
) -> (seckill_io::Daemon, tempfile::TempDir, String) {
    let wal = tempfile::tempdir().expect("tmp");
    let mut cfg = daemon_config(redis, broker, wal.path());
    tweak(&mut cfg);
    let daemon = seckill_io::Daemon::start(cfg)
        .await
        .expect("second daemon starts");
    let base = format!("http://{}", daemon.addr);
    (daemon, wal, base)
}

/// A Redis, a broker, a WAL directory and the daemon in-process: what most
/// end-to-end tests start from. Destructure it binding every field
/// (`wal: _wal`): a field left to `..` is dropped at once — the servers
/// killed, the WAL directory deleted under the running daemon.
pub struct Stack {
    pub redis: RedisServer,
    pub broker: Broker,
    pub wal: tempfile::TempDir,
    pub daemon: seckill_io::Daemon,
    pub base: String,
    pub client: seckill_benches::load::HttpClient,
}

impl Stack {
    /// `tweak` adjusts the daemon's configuration before it starts.
    pub async fn start(
        persistent_redis: bool,
        tweak: impl FnOnce(&mut seckill_io::Config),
    ) -> Stack {
        Stack::start_with_clock(
            persistent_redis,
            seckill_pipeline::SystemClock::shared(),
            tweak,
        )
        .await
    }

    /// The same, the daemon reading the time from `clock` (a
    /// `ManualClock` moves deadlines and expiries without sleeping).
    pub async fn start_with_clock(
        persistent_redis: bool,
        clock: seckill_pipeline::SharedClock,
        tweak: impl FnOnce(&mut seckill_io::Config),
    ) -> Stack {
        let redis = if persistent_redis {
            RedisServer::start_persistent()
        } else {
            RedisServer::start()
        };
        let broker = Broker::start();
        let wal = tempfile::tempdir().expect("tmp");
        let mut cfg = daemon_config(&redis, &broker, wal.path());
        tweak(&mut cfg);
        let daemon = seckill_io::Daemon::start_with_clock(cfg, clock)
            .await
            .expect("daemon starts");
        let base = format!("http://{}", daemon.addr);
        Stack {
            redis,
            broker,
            wal,
            daemon,
            base,
            client: seckill_benches::load::client(32),
        }
    }
}
