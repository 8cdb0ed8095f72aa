//! Configuration: a TOML file, overridden by `SECKILL_*` environment
//! variables, overridden by command-line flags. Every key is documented in
//! `seckilld --help`; the TOML keys are the flag names with `_`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

#[doc(hidden)]
pub mod help;
mod modes;
mod secrets;
mod validate;

pub use modes::{Durability, KafkaProperties, LogFormat, RateScope, WriteMode};
pub use secrets::{
    read_secret_file, redact_url, redis_target, ADMIN_TOKEN_LEN_MIN, TOKEN_KEY_LEN_MIN,
};

/// One struct for all three sources: every field optional, merged in order
/// flag > environment > file > default. Exported so the other programs of
/// the system (the order service) read their settings the same way; the
/// calling crate needs `clap` and `serde` (derive) as dependencies.
#[macro_export]
macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $default:expr, $env:literal; )*) => {
        #[derive(Debug, Clone, Default, ::clap::Args, ::serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $(
                $(#[doc = $doc])*
                // Values from the environment are never shown in `--help`
                // (several are secrets); the defaults are.
                #[arg(long, env = $env, hide_env_values = true,
                      help = $crate::config::help::text(&[$($doc),*], &{ let d: $ty = $default; d }),
                      long_help = $crate::config::help::text(&[$($doc),*], &{ let d: $ty = $default; d }))]
                pub $name: Option<$ty>,
            )*
        }

        /// The resolved configuration.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Settings {
            /// `self` wins over `lower`.
            pub fn over(self, lower: Settings) -> Settings {
                Settings { $( $name: self.$name.or(lower.$name), )* }
            }

            pub fn resolve(self) -> Config {
                Config { $( $name: self.$name.unwrap_or_else(|| $default), )* }
            }
        }
    };
}

settings! {
    /// Address the HTTP ingress listens on (port 0 picks a free one).
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), "SECKILL_LISTEN";
    /// Address of a second socket for the admin API, `/metrics`, the
    /// dashboard and the peers' lookups (`/internal/v1`); the public socket
    /// then serves only `/api/v1` and the health checks. Empty: one socket
    /// serves everything.
    admin_listen: String = String::new(), "SECKILL_ADMIN_LISTEN";
    /// The other daemons of the fleet, as `host:port` of their admin
    /// socket (or their only one), comma separated: a status poll for a
    /// request this daemon does not know, and Redis does not either, asks
    /// them (a request left `pending` lives in one daemon's journal). The
    /// peers are asked with the admin token. Empty: no peers.
    peers: String = String::new(), "SECKILL_PEERS";
    /// How long a peer gets to answer a lookup, ms; a peer that does not
    /// makes the poll answer 503 with Retry-After, never a wrong 404.
    peer_timeout_ms: u64 = 300, "SECKILL_PEER_TIMEOUT_MS";
    /// Redis URL of the stock authority: `redis://host:port/db`, or
    /// `rediss://…` for TLS (a password may go in its userinfo).
    redis_url: String = "redis://127.0.0.1:6379/".into(), "SECKILL_REDIS_URL";
    /// A file holding the Redis URL (it may carry a password); instead of
    /// `redis_url`.
    redis_url_file: PathBuf = PathBuf::new(), "SECKILL_REDIS_URL_FILE";
    /// Redis password (`AUTH`), replacing the URL's; empty: the URL's.
    redis_password: String = String::new(), "SECKILL_REDIS_PASSWORD";
    /// A file holding the Redis password; instead of `redis_password`.
    redis_password_file: PathBuf = PathBuf::new(), "SECKILL_REDIS_PASSWORD_FILE";
    /// PEM file of the CA that signed the Redis server's certificate
    /// (`rediss://`); empty: the system's trust store.
    redis_tls_ca_file: PathBuf = PathBuf::new(), "SECKILL_REDIS_TLS_CA_FILE";
    /// PEM file of a client certificate, for a Redis that asks for one
    /// (`tls-auth-clients`); with `redis_tls_key_file`.
    redis_tls_cert_file: PathBuf = PathBuf::new(), "SECKILL_REDIS_TLS_CERT_FILE";
    /// PEM file of the client certificate's private key.
    redis_tls_key_file: PathBuf = PathBuf::new(), "SECKILL_REDIS_TLS_KEY_FILE";
    /// Redis Sentinels (`host:port`, comma separated) that know where the
    /// master named `redis_master_name` is: every new connection asks them,
    /// so the daemon follows a failover; `redis_url` then gives only the
    /// scheme, database and credentials. Empty: `redis_url`'s host.
    redis_sentinels: String = String::new(), "SECKILL_REDIS_SENTINELS";
    /// The master's name in the Sentinels' configuration
    /// (`sentinel monitor <name> …`).
    redis_master_name: String = String::new(), "SECKILL_REDIS_MASTER_NAME";
    /// Nodes of a Redis Cluster (`host:port`, comma separated; a few are
    /// enough): the slot map is read from them, each item's script goes
    /// to the master of its slot, MOVED / ASK redirections are followed.
    /// `redis_url` then gives only the scheme and the credentials. Empty:
    /// not a cluster. Excludes `redis_sentinels`.
    redis_cluster_nodes: String = String::new(), "SECKILL_REDIS_CLUSTER_NODES";
    /// Kafka bootstrap brokers (comma separated).
    kafka_brokers: String = "127.0.0.1:9092".into(), "SECKILL_KAFKA_BROKERS";
    /// librdkafka properties for every Kafka client, as `key=value` pairs
    /// separated by commas (a table in TOML, the way to give a value that
    /// holds a comma): security.protocol, sasl.*, ssl.*, client.id … The
    /// daemon's own guarantees (idempotence, acks=all, its timeouts) are
    /// set after them and win.
    kafka_properties: KafkaProperties = KafkaProperties::default(), "SECKILL_KAFKA_PROPERTIES";
    /// Directory of the write-ahead log (created if missing).
    wal_dir: PathBuf = PathBuf::from("seckill-wal"), "SECKILL_WAL_DIR";
    /// Bearer token for /admin/v1, at least 16 bytes (empty: the admin API
    /// is disabled).
    admin_token: String = String::new(), "SECKILL_ADMIN_TOKEN";
    /// A file holding the admin token (systemd credentials, Kubernetes
    /// secrets); instead of `admin_token`.
    admin_token_file: PathBuf = PathBuf::new(), "SECKILL_ADMIN_TOKEN_FILE";
    /// Read-only bearer token for /dashboard's data, at least 16 bytes
    /// (the admin token is accepted too; empty: admin token only).
    dashboard_token: String = String::new(), "SECKILL_DASHBOARD_TOKEN";
    /// A file holding the dashboard token; instead of `dashboard_token`.
    dashboard_token_file: PathBuf = PathBuf::new(), "SECKILL_DASHBOARD_TOKEN_FILE";
    /// "fsync": each batch reaches the disk (fdatasync or msync, as the
    /// write mode says) before anyone is answered; "os": page cache only
    /// (survives a process crash, not a power cut).
    durability: Durability = Durability::Fsync, "SECKILL_DURABILITY";
    /// Size of each WAL segment file in bytes.
    wal_segment_bytes: u64 = 64 << 20, "SECKILL_WAL_SEGMENT_BYTES";
    /// How the WAL writes: "pwrite" (buffer + pwrite + fdatasync per batch)
    /// or "mmap" (stores into the mapping + msync); see docs/wal.md.
    wal_write_mode: WriteMode = WriteMode::Pwrite, "SECKILL_WAL_WRITE_MODE";
    /// Ring slots (a power of two); a full ring answers 503.
    ring_size: usize = 4096, "SECKILL_RING_SIZE";
    /// Most requests one stage takes per batch (one Redis call, one flush).
    batch_len_max: u64 = 64, "SECKILL_BATCH_LEN_MAX";
    /// Threads the ring's stages run on: 2 (the decision — dedupe, deduct
    /// — and the commit — journal, reply, publish — overlapping), or 5
    /// (a thread per stage: three more hand-offs per batch).
    stage_threads: u8 = 2, "SECKILL_STAGE_THREADS";
    /// One stock-script call per item (all in one pipelined round trip)
    /// instead of one call per ring batch covering every item: for a Redis
    /// Cluster proxy, where one script may touch only one hash slot.
    redis_script_per_item: bool = false, "SECKILL_REDIS_SCRIPT_PER_ITEM";
    /// Redis connect/read/write timeout in ms; a timeout decides `pending`.
    redis_timeout_ms: u64 = 250, "SECKILL_REDIS_TIMEOUT_MS";
    /// Replicas that must hold each ring batch's stock writes before its
    /// decisions are journaled and answered (one `WAIT` per batch, in the
    /// batch's round trip): a win then survives the master's loss. Fewer in
    /// time: the batch is decided `pending` and re-driven. 0: no WAIT.
    redis_wait_replicas: u32 = 0, "SECKILL_REDIS_WAIT_REPLICAS";
    /// How long that WAIT may block, ms.
    redis_wait_timeout_ms: u64 = 100, "SECKILL_REDIS_WAIT_TIMEOUT_MS";
    /// Kafka message.timeout.ms: how long the producer retries one order.
    kafka_message_timeout_ms: u64 = 30_000, "SECKILL_KAFKA_MESSAGE_TIMEOUT_MS";
    /// Kafka linger.ms of the orders producer: how long it gathers orders
    /// into one produce request. Answers never wait for Kafka, so a few ms
    /// cost no purchase latency and save broker round trips under load.
    kafka_linger_ms: u64 = 5, "SECKILL_KAFKA_LINGER_MS";
    /// Failed orders kept in memory for another send; past it an order is
    /// left to the WAL and re-read from there once the queue drains.
    kafka_retry_queue_max: usize = crate::kafka::FAILED_MAX, "SECKILL_KAFKA_RETRY_QUEUE_MAX";
    /// Name of the topic every win is published on.
    kafka_orders_topic: String = crate::kafka::ORDERS_TOPIC.into(), "SECKILL_KAFKA_ORDERS_TOPIC";
    /// Name of the topic paid, cancelled and expired orders are published on.
    kafka_events_topic: String = crate::kafka::ORDER_EVENTS_TOPIC.into(), "SECKILL_KAFKA_EVENTS_TOPIC";
    /// Partitions of the topics when seckilld creates them.
    kafka_partitions: i32 = 3, "SECKILL_KAFKA_PARTITIONS";
    /// Replication factor of the topics when seckilld creates them; 0:
    /// 3 when the cluster has 3 brokers or more, else as many as it has
    /// (logged at creation).
    kafka_replication_factor: i32 = 0, "SECKILL_KAFKA_REPLICATION_FACTOR";
    /// `min.insync.replicas` of the topics it creates; 0: 2 with 3 or more
    /// replicas, else 1. With acks=all, a win is acknowledged only once
    /// this many replicas hold it.
    kafka_min_insync_replicas: i32 = 0, "SECKILL_KAFKA_MIN_INSYNC_REPLICAS";
    /// How long a win waits for payment before its unit is released, ms.
    pay_timeout_ms: u64 = 15 * 60 * 1000, "SECKILL_PAY_TIMEOUT_MS";
    /// How long the ingress waits for the ring's answer before 504, ms.
    reply_timeout_ms: u64 = 10_000, "SECKILL_REPLY_TIMEOUT_MS";
    /// Largest request body accepted, bytes (larger: 413).
    body_bytes_max: usize = 4096, "SECKILL_BODY_BYTES_MAX";
    /// Most open client connections; past it a connection is answered 503
    /// `too_many_connections` and closed.
    connections_max: usize = 10_000, "SECKILL_CONNECTIONS_MAX";
    /// Time a client gets to send its request headers, ms.
    header_timeout_ms: u64 = 5_000, "SECKILL_HEADER_TIMEOUT_MS";
    /// HMAC key signing purchase tokens (at least 32 bytes, e.g. `openssl
    /// rand -hex 32`; the same on every daemon of a sale).
    token_key: String = String::new(), "SECKILL_TOKEN_KEY";
    /// A file holding the token key; instead of `token_key`.
    token_key_file: PathBuf = PathBuf::new(), "SECKILL_TOKEN_KEY_FILE";
    /// The previous token key, still accepted while tokens signed with it
    /// live (key rotation); empty: none.
    token_key_previous: String = String::new(), "SECKILL_TOKEN_KEY_PREVIOUS";
    /// A file holding the previous token key; instead of `token_key_previous`.
    token_key_previous_file: PathBuf = PathBuf::new(), "SECKILL_TOKEN_KEY_PREVIOUS_FILE";
    /// Purchases need a token from the token endpoint (the hidden URL).
    require_token: bool = true, "SECKILL_REQUIRE_TOKEN";
    /// How long before the start tokens are handed out, ms.
    token_lead_ms: u64 = 60_000, "SECKILL_TOKEN_LEAD_MS";
    /// How long a token is valid (never past the sale's end), ms.
    token_ttl_ms: u64 = 10 * 60 * 1000, "SECKILL_TOKEN_TTL_MS";
    /// Requests per second admitted in total (purchases and tokens); 0: no limit.
    rate_global_per_s: u32 = 0, "SECKILL_RATE_GLOBAL_PER_S";
    /// Burst of the global limit (0: one second's worth).
    rate_global_burst: u32 = 0, "SECKILL_RATE_GLOBAL_BURST";
    /// Requests per second per client IP; 0: no limit.
    rate_ip_per_s: u32 = 0, "SECKILL_RATE_IP_PER_S";
    /// Burst of the per-IP limit (0: one second's worth).
    rate_ip_burst: u32 = 0, "SECKILL_RATE_IP_BURST";
    /// Purchases per second per user; 0: no limit.
    rate_user_per_s: u32 = 5, "SECKILL_RATE_USER_PER_S";
    /// Burst of the per-user limit (0: one second's worth).
    rate_user_burst: u32 = 10, "SECKILL_RATE_USER_BURST";
    /// "fleet": the `rate_*` limits are the whole fleet's — each of the n
    /// daemons alive (heard from in Redis within 5 s) admits 1/n of every
    /// rate and burst, which holds behind a balancer that spreads requests
    /// evenly; "daemon": each daemon's own (a sticky balancer).
    rate_limit_scope: RateScope = RateScope::Fleet, "SECKILL_RATE_LIMIT_SCOPE";
    /// The proxies in front of the daemon that append to X-Forwarded-For:
    /// a count ("1" behind one nginx) or a list of networks
    /// ("10.0.0.0/8,127.0.0.1"); empty: none, the TCP peer is the client.
    /// The client is the first address, read from the right, that is not a
    /// trusted proxy: what a client writes in the header itself is ignored.
    trusted_proxies: String = String::new(), "SECKILL_TRUSTED_PROXIES";
    /// Most requests the status board remembers; past it the decided ones
    /// go first (oldest first): a retry or a status poll is then answered
    /// from the outcome Redis stored. About 300 bytes each with the
    /// winners hint (the default holds at ~380 MB resident).
    status_board_len_max: usize = 1_000_000, "SECKILL_STATUS_BOARD_LEN_MAX";
    /// How long after its end a sale stays in memory (catalog, status
    /// board), ms; its Redis keys expire a day after the end.
    ended_sale_retention_ms: u64 = 60 * 60 * 1000, "SECKILL_ENDED_SALE_RETENTION_MS";
    /// How often unpaid orders past their deadline are released and order
    /// events are published, ms.
    sweep_interval_ms: u64 = 1_000, "SECKILL_SWEEP_INTERVAL_MS";
    /// On SIGTERM, how long `/readyz` fails while purchases are still
    /// served (so a load balancer stops sending first), ms; then intake
    /// stops and the ring drains. Set it above the balancer's check
    /// interval × its failure threshold.
    shutdown_drain_ms: u64 = 0, "SECKILL_SHUTDOWN_DRAIN_MS";
    /// tokio worker threads for the ingress.
    worker_threads: usize = 2, "SECKILL_WORKER_THREADS";
    /// Log filter (tracing env-filter syntax), e.g. "info" or
    /// "seckill_io=debug"; when unset, `RUST_LOG` is honoured.
    log: String = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()), "SECKILL_LOG";
    /// "text" (coloured on a terminal only) or "json" (one object per
    /// line, for log shippers).
    log_format: LogFormat = LogFormat::Text, "SECKILL_LOG_FORMAT";
}

/// seckilld — the seckill flash-sale daemon.
///
/// Decides who wins a flash sale: HTTP ingress → ring → dedupe → Redis
/// (batched Lua) → WAL → Kafka. Every option can be set in the TOML file
/// (`--config`), by its SECKILL_* environment variable, or by its flag;
/// flags win over the environment, which wins over the file.
#[derive(Debug, Parser)]
#[command(name = "seckilld", version)]
pub struct Cli {
    /// TOML configuration file (keys as the flags, with `_`).
    #[arg(long, env = "SECKILL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Check the configuration (file, environment, flags, secret files)
    /// and exit: 0 when it is valid, 2 when it is not.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("cannot read the secret file {path} ({key}): {source}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub fn load_file(path: &Path) -> Result<Settings, ConfigError> {
    load_toml(path)
}

/// Reads a TOML settings file (of any program of the system).
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

impl Cli {
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(p) => load_file(p)?,
            None => Settings::default(),
        };
        let cfg = self.settings.over(file).read_secret_files()?.resolve();
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Config {
    /// Defaults, as if no file, variable or flag were given.
    pub fn defaults() -> Config {
        Settings::default().resolve()
    }

    /// The admin socket's address, if it has one of its own.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, String> {
        let a = self.admin_listen.trim();
        if a.is_empty() {
            return Ok(None);
        }
        a.parse()
            .map(Some)
            .map_err(|e| format!("{a:?} is not an address (host:port): {e}"))
    }

    /// The peers, each a `host:port` (a name is resolved when asked).
    pub fn peer_list(&self) -> Result<Vec<String>, String> {
        host_port_list(&self.peers)
    }

    /// The Redis Sentinels, each a `host:port`.
    pub fn sentinel_list(&self) -> Result<Vec<String>, String> {
        host_port_list(&self.redis_sentinels)
    }

    /// The WAL options these settings ask for.
    pub fn wal_options(&self) -> seckill_wal::Options {
        seckill_wal::Options {
            segment_bytes: self.wal_segment_bytes,
            durability: self.durability.into(),
            write_mode: self.wal_write_mode.into(),
        }
    }

    pub fn limit_config(&self) -> crate::admission::limits::LimitConfig {
        let burst = |b: u32, r: u32| if b == 0 { r } else { b };
        crate::admission::limits::LimitConfig {
            global_per_s: self.rate_global_per_s,
            global_burst: burst(self.rate_global_burst, self.rate_global_per_s),
            ip_per_s: self.rate_ip_per_s,
            ip_burst: burst(self.rate_ip_burst, self.rate_ip_per_s),
            user_per_s: self.rate_user_per_s,
            user_burst: burst(self.rate_user_burst, self.rate_user_per_s),
        }
    }

    /// How seckilld creates its topics.
    pub fn topic_spec(&self) -> crate::kafka::TopicSpec {
        crate::kafka::TopicSpec {
            partitions: self.kafka_partitions,
            replication: self.kafka_replication_factor,
            min_insync: self.kafka_min_insync_replicas,
        }
    }

    /// The topics' names.
    pub fn topics(&self) -> crate::kafka::Topics {
        crate::kafka::Topics {
            orders: self.kafka_orders_topic.clone(),
            events: self.kafka_events_topic.clone(),
        }
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.max(1))
    }
}

#[cfg(test)]
mod tests;

/// A comma-separated list of `host:port` (empty entries skipped).
pub fn host_port_list(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ok = p
            .rsplit_once(':')
            .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
        if !ok || p.contains('/') {
            return Err(format!("{p:?} is not host:port"));
        }
        out.push(p.to_string());
    }
    Ok(out)
}
