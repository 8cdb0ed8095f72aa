//! Test support: real `redis-server` and Kafka-protocol broker (tansu)
//! processes on free loopback ports, killed when dropped, so a test can
//! stop and restart them mid-sale.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Logs of the in-process daemon go to the test's captured output (shown
/// when a test fails): health transitions and warnings by default, or the
/// filter in `SECKILL_TEST_LOG`.
pub fn init_logs() {
    let filter = std::env::var("SECKILL_TEST_LOG").unwrap_or_else(|_| {
        "warn,seckill_io=info,seckill_pipeline=info,rdkafka=off,librdkafka=off".into()
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Whether something accepts connections on the loopback `port` within
/// `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Sends a signal to a child process (`STOP` freezes it, `CONT` thaws it).
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} failed");
}

/// A child process a test may freeze, thaw or kill; killed when dropped.
#[derive(Default)]
pub struct Proc(Option<Child>);

impl Proc {
    pub fn set(&mut self, child: Child) {
        self.kill();
        self.0 = Some(child);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process holds its sockets but answers nothing.
    pub fn freeze(&self) {
        if let Some(c) = &self.0 {
            signal(c, "STOP");
        }
    }

    pub fn thaw(&self) {
        if let Some(c) = &self.0 {
            signal(c, "CONT");
        }
    }

    /// SIGTERM and wait; whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.0.take() else {
            return false;
        };
        signal(&c, "TERM");
        c.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server` of our own.
pub struct RedisServer {
    pub port: u16,
    child: Proc,
    dir: tempfile::TempDir,
    /// Append-only file fsynced on every write: a SIGKILL loses nothing
    /// Redis acknowledged, so the server can be killed and restarted.
    persistent: bool,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// A server that keeps its data across `kill` + `restart`.
    pub fn start_persistent() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut r = RedisServer {
            port: free_port(),
            child: Proc::default(),
            dir,
            persistent,
        };
        r.restart();
        r
    }

    /// Freezes the server (SIGSTOP): clients see timeouts, not refusals.
    pub fn freeze(&self) {
        self.child.freeze();
    }

    pub fn thaw(&self) {
        self.child.thaw();
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server again on the same port (after `kill`).
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        self.child.set(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(c) = redis::Client::open(self.url()) {
                if let Ok(mut conn) = c.get_connection_with_timeout(Duration::from_millis(200)) {
                    if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not come up on port {}", self.port);
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect to the test redis")
    }
}

/// Where the broker binary is: `SECKILL_TANSU_BIN`, else `tansu` on PATH,
/// else cargo's bin directory.
pub fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SECKILL_TANSU_BIN") {
        return PathBuf::from(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("tansu");
            if p.is_file() {
                return p;
            }
        }
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    home.join("bin").join("tansu")
}

/// A Kafka-protocol broker process (tansu, in-memory storage).
pub struct Broker {
    pub port: u16,
    /// The port the broker tells clients to connect to (its own, or a
    /// proxy's in front of it).
    advertised: u16,
    child: Proc,
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        Broker::start_advertising(port, port)
    }

    /// A broker on `port` that advertises `advertised` in its metadata
    /// (a TLS proxy's port in front of it).
    pub fn start_advertising(port: u16, advertised: u16) -> Broker {
        let mut b = Broker {
            port,
            advertised,
            child: Proc::default(),
        };
        b.restart();
        b
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        self.kill();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised);
        let bin = tansu_bin();
        let child = Command::new(&bin)
            .arg("broker")
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the broker {} ({e}); install it with \
                     `cargo install tansu --locked --features dynostore`",
                    bin.display()
                )
            });
        self.child.set(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(20)),
            "broker did not listen on {}",
            self.port
        );
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Freezes the broker (SIGSTOP): in-flight requests time out.
    pub fn freeze(&self) {
        self.child.freeze();
    }

    pub fn thaw(&self) {
        self.child.thaw();
    }
}

/// A daemon configuration for tests: port 0, a fresh WAL directory.
pub fn daemon_config(
    redis: &RedisServer,
    broker: &Broker,
    wal_dir: &std::path::Path,
) -> seckill_io::Config {
    daemon_config_at(&redis.url(), broker, wal_dir)
}

/// [`daemon_config`] for the Redis at `redis_url`.
pub fn daemon_config_at(
    redis_url: &str,
    broker: &Broker,
    wal_dir: &std::path::Path,
) -> seckill_io::Config {
    init_logs();
    let mut cfg = seckill_io::Config::defaults();
    cfg.listen = "127.0.0.1:0".parse().expect("literal address");
    cfg.redis_url = redis_url.to_string();
    cfg.kafka_brokers = broker.brokers();
    cfg.wal_dir = wal_dir.to_path_buf();
    cfg.wal_segment_bytes = 4 << 20;
    cfg.admin_token = "test-admin-token".into();
    cfg.token_key = TOKEN_KEY.into();
    // Tests send bursts from one user on purpose (retries, duplicate
    // clicks); the limits have tests of their own.
    cfg.rate_user_per_s = 0;
    cfg.kafka_partitions = 1;
    cfg
}

pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The purchase-token key of test daemons.
pub const TOKEN_KEY: &str = "test-token-key-0123456789abcdefgh";

/// The `seckilld` binary of this build (built on first use).
pub fn seckilld_bin() -> PathBuf {
    workspace_bin("seckilld")
}

/// A binary of the workspace from this build (built on first use).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/seckilld
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir")
        .to_path_buf();
    let bin = dir.join(name);
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        // Every binary of the workspace (seckilld, seckill-replay, …), with
        // the features the test run was built with (scripts/test.sh says
        // which), so this finds them fresh instead of rebuilding them.
        cmd.args(["build", "-q", "--workspace", "--bins"]);
        if let Some(f) = std::env::var_os("SECKILL_TEST_FEATURES") {
            cmd.arg("--features").arg(f);
        }
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
    });
    bin
}

/// `seckilld` as a child process, killable with SIGKILL.
pub struct DaemonProcess {
    child: Proc,
    pub addr: String,
}

impl DaemonProcess {
    /// Starts the daemon with `cfg` as environment and waits until it serves.
    pub fn start(cfg: &seckill_io::Config, log: &std::path::Path) -> DaemonProcess {
        let log_file = std::fs::File::create(log).expect("daemon log");
        let child = Command::new(seckilld_bin())
            .env("SECKILL_LISTEN", cfg.listen.to_string())
            .env("SECKILL_REDIS_URL", &cfg.redis_url)
            .env("SECKILL_KAFKA_BROKERS", &cfg.kafka_brokers)
            .env("SECKILL_WAL_DIR", &cfg.wal_dir)
            .env("SECKILL_ADMIN_TOKEN", &cfg.admin_token)
            .env("SECKILL_TOKEN_KEY", &cfg.token_key)
            .env("SECKILL_RATE_USER_PER_S", cfg.rate_user_per_s.to_string())
            .env(
                "SECKILL_WAL_SEGMENT_BYTES",
                cfg.wal_segment_bytes.to_string(),
            )
            .env("SECKILL_KAFKA_PARTITIONS", cfg.kafka_partitions.to_string())
            .env(
                "SECKILL_KAFKA_MESSAGE_TIMEOUT_MS",
                cfg.kafka_message_timeout_ms.to_string(),
            )
            .env("SECKILL_ADMIN_LISTEN", &cfg.admin_listen)
            .env("SECKILL_PEERS", &cfg.peers)
            .env("SECKILL_TRUSTED_PROXIES", &cfg.trusted_proxies)
            .env("SECKILL_REQUIRE_TOKEN", cfg.require_token.to_string())
            .env("SECKILL_REDIS_SENTINELS", &cfg.redis_sentinels)
            .env("SECKILL_REDIS_MASTER_NAME", &cfg.redis_master_name)
            .env("SECKILL_REDIS_CLUSTER_NODES", &cfg.redis_cluster_nodes)
            .env(
                "SECKILL_REDIS_WAIT_REPLICAS",
                cfg.redis_wait_replicas.to_string(),
            )
            .env(
                "SECKILL_REDIS_WAIT_TIMEOUT_MS",
                cfg.redis_wait_timeout_ms.to_string(),
            )
            .env("SECKILL_KAFKA_ORDERS_TOPIC", &cfg.kafka_orders_topic)
            .env("SECKILL_KAFKA_EVENTS_TOPIC", &cfg.kafka_events_topic)
            .env(
                "SECKILL_SHUTDOWN_DRAIN_MS",
                cfg.shutdown_drain_ms.to_string(),
            )
            .envs(
                [
                    ("SECKILL_REDIS_PASSWORD_FILE", &cfg.redis_password_file),
                    ("SECKILL_REDIS_TLS_CA_FILE", &cfg.redis_tls_ca_file),
                    ("SECKILL_REDIS_TLS_CERT_FILE", &cfg.redis_tls_cert_file),
                    ("SECKILL_REDIS_TLS_KEY_FILE", &cfg.redis_tls_key_file),
                ]
                .into_iter()
                // An empty path is no setting (and no value to clap).
                .filter(|(_, p)| !p.as_os_str().is_empty()),
            )
            .env("SECKILL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn seckilld");
        let port = cfg.listen.port();
        assert!(
            wait_for_port(port, Duration::from_secs(60)),
            "seckilld did not listen on {port}; see {}",
            log.display()
        );
        DaemonProcess {
            child: Proc(Some(child)),
            addr: format!("127.0.0.1:{port}"),
        }
    }

    /// SIGKILL: no drain, no flush, no checkpoint.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGTERM and wait for the graceful exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        self.child.terminate()
    }
}

pub mod browser;
pub mod cluster;
mod nginx;
mod observe;
pub mod orders;
mod records;
pub mod sentinel;
pub mod shards;
pub mod sql;
mod stack;
pub mod tls;
mod verdict;

pub use nginx::Nginx;
pub use observe::{scrape, wait_acknowledged};
pub use records::restored;
pub use stack::{another_daemon, Stack};
pub use verdict::{distinct_requests, open_checked_sale, verdict_at, verdict_within, CHECKED_ITEM};

/// Creates sale `sale` with one item `i` of `stock` units, per-user limit
/// 1, from `start_ms` for ten minutes (through the admin API).
pub async fn one_item_sale(
    client: &seckill_benches::load::HttpClient,
    base: &str,
    sale: &str,
    start_ms: u64,
    stock: u64,
) {
    seckill_benches::load::create_sale(
        client,
        base,
        ADMIN_TOKEN,
        sale,
        start_ms,
        start_ms + 600_000,
        &[seckill_benches::load::ItemSpec {
            item_id: "i".into(),
            title: "item".into(),
            price_cents: 100,
            stock,
            per_user_limit: 1,
            shards: 1,
        }],
    )
    .await
    .expect("sale created");
}

pub mod settle {
    //! Turning answers into final answers, as a patient client would (the
    //! load generator's own logic).
    pub use seckill_benches::settle::{ready, redis_up, settle};
}
