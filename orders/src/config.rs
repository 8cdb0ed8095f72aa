//! The order service's settings, read like seckilld's: a TOML file
//! (`--config`), overridden by `SECKILL_*` environment variables,
//! overridden by flags. `seckill-orders --help` lists every one with its
//! default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use seckill_io::config::{load_toml, read_secret_file, ConfigError, KafkaProperties, LogFormat};

/// How the batch is written (`db_write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbWrite {
    /// One transaction per poll batch, one multi-row statement per table.
    Batch,
    /// One transaction and one `INSERT` per message: the baseline of the
    /// benchmark, never faster.
    Single,
}

impl seckill_io::config::help::Shown for DbWrite {
    fn shown(&self) -> Option<String> {
        use clap::ValueEnum;
        self.to_possible_value().map(|v| v.get_name().to_string())
    }
}

seckill_io::settings! {
    /// Kafka bootstrap brokers (comma separated).
    kafka_brokers: String = "127.0.0.1:9092".into(), "SECKILL_KAFKA_BROKERS";
    /// librdkafka properties for every Kafka client, as `key=value` pairs
    /// separated by commas (a table in TOML): security.protocol, sasl.*,
    /// ssl.*, client.id … The service's own guarantees (manual offset
    /// commits, idempotence, acks=all) are set after them and win.
    kafka_properties: KafkaProperties = KafkaProperties::default(), "SECKILL_KAFKA_PROPERTIES";
    /// The topic of the wins (the daemons' `kafka_orders_topic`).
    kafka_orders_topic: String = seckill_io::kafka::ORDERS_TOPIC.into(), "SECKILL_KAFKA_ORDERS_TOPIC";
    /// The topic of the order events (the daemons' `kafka_events_topic`).
    kafka_events_topic: String = seckill_io::kafka::ORDER_EVENTS_TOPIC.into(), "SECKILL_KAFKA_EVENTS_TOPIC";
    /// The retry topic; empty: the orders topic's name + `.retry`.
    kafka_retry_topic: String = String::new(), "SECKILL_KAFKA_RETRY_TOPIC";
    /// The dead-letter topic; empty: the orders topic's name + `.dlq`.
    kafka_dlq_topic: String = String::new(), "SECKILL_KAFKA_DLQ_TOPIC";
    /// Partitions of the topics when this service creates them.
    kafka_partitions: i32 = 3, "SECKILL_KAFKA_PARTITIONS";
    /// Replication factor of the topics it creates; 0: 3 when the cluster
    /// has 3 brokers or more, else as many as it has.
    kafka_replication_factor: i32 = 0, "SECKILL_KAFKA_REPLICATION_FACTOR";
    /// `min.insync.replicas` of the topics it creates; 0: 2 with 3 or more
    /// replicas, else 1.
    kafka_min_insync_replicas: i32 = 0, "SECKILL_KAFKA_MIN_INSYNC_REPLICAS";
    /// Consumer group; several services in one group share the partitions.
    group_id: String = "seckill-orders".into(), "SECKILL_ORDERS_GROUP";
    /// Redis URL of the stock authority (for the stock check and the
    /// backlog release).
    redis_url: String = "redis://127.0.0.1:6379/".into(), "SECKILL_REDIS_URL";
    /// A file holding the Redis URL; instead of `redis_url`.
    redis_url_file: PathBuf = PathBuf::new(), "SECKILL_REDIS_URL_FILE";
    /// Redis password (`AUTH`), replacing the URL's; empty: the URL's.
    redis_password: String = String::new(), "SECKILL_REDIS_PASSWORD";
    /// A file holding the Redis password; instead of `redis_password`.
    redis_password_file: PathBuf = PathBuf::new(), "SECKILL_REDIS_PASSWORD_FILE";
    /// PEM file of the CA of the Redis server's certificate (`rediss://`);
    /// empty: the system's trust store.
    redis_tls_ca_file: PathBuf = PathBuf::new(), "SECKILL_REDIS_TLS_CA_FILE";
    /// PEM file of a client certificate (with `redis_tls_key_file`).
    redis_tls_cert_file: PathBuf = PathBuf::new(), "SECKILL_REDIS_TLS_CERT_FILE";
    /// PEM file of the client certificate's private key.
    redis_tls_key_file: PathBuf = PathBuf::new(), "SECKILL_REDIS_TLS_KEY_FILE";
    /// Redis Sentinels (`host:port`, comma separated) that know where the
    /// master named `redis_master_name` is (as the daemon's); empty:
    /// `redis_url`'s host.
    redis_sentinels: String = String::new(), "SECKILL_REDIS_SENTINELS";
    /// The master's name in the Sentinels' configuration.
    redis_master_name: String = String::new(), "SECKILL_REDIS_MASTER_NAME";
    /// Nodes of a Redis Cluster (`host:port`, comma separated), as the
    /// daemon's; empty: not a cluster.
    redis_cluster_nodes: String = String::new(), "SECKILL_REDIS_CLUSTER_NODES";
    /// Redis connect/read/write timeout in ms.
    redis_timeout_ms: u64 = 1_000, "SECKILL_REDIS_TIMEOUT_MS";
    /// The database of the orders: `postgres://user:password@host/db` or
    /// `mysql://user:password@host/db` (MySQL or MariaDB).
    database_url: String = String::new(), "SECKILL_DATABASE_URL";
    /// A file holding the database URL; instead of `database_url`.
    database_url_file: PathBuf = PathBuf::new(), "SECKILL_DATABASE_URL_FILE";
    /// Most database connections.
    db_pool_max: u32 = 8, "SECKILL_DB_POOL_MAX";
    /// How long one database statement may take before it counts as a
    /// failure (and the batch is retried), ms.
    db_timeout_ms: u64 = 10_000, "SECKILL_DB_TIMEOUT_MS";
    /// "batch": one transaction and one multi-row statement per poll batch;
    /// "single": one transaction per message (the benchmark's baseline).
    db_write: DbWrite = DbWrite::Batch, "SECKILL_DB_WRITE";
    /// Longest wait between two tries of a batch the database (or Redis,
    /// or Kafka) refused, ms; tries start 100 ms apart and double, with
    /// jitter.
    retry_backoff_max_ms: u64 = 10_000, "SECKILL_RETRY_BACKOFF_MAX_MS";
    /// Address of the HTTP side: /healthz, /readyz, /metrics, order queries.
    orders_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8090)), "SECKILL_ORDERS_LISTEN";
    /// Most messages in one poll batch (one transaction).
    batch_len_max: usize = 500, "SECKILL_ORDERS_BATCH_LEN_MAX";
    /// How long a batch waits for more messages after its first, ms.
    batch_wait_ms: u64 = 20, "SECKILL_ORDERS_BATCH_WAIT_MS";
    /// Release a win whose message is older than `backlog_release_after_ms`
    /// when consumed instead of creating its order (seed 003 §5.6).
    backlog_release: bool = true, "SECKILL_BACKLOG_RELEASE";
    /// The age (from the win's decision) past which a win is released, ms.
    backlog_release_after_ms: u64 = 120_000, "SECKILL_BACKLOG_RELEASE_AFTER_MS";
    /// Check an item's stock hash before creating its orders; on an
    /// anomaly its orders go to the dead-letter queue for a human.
    stock_check: bool = true, "SECKILL_STOCK_CHECK";
    /// Tries of a poison message on the retry topic before the
    /// dead-letter queue.
    retry_attempts_max: u32 = 3, "SECKILL_RETRY_ATTEMPTS_MAX";
    /// Delay before the first retry, ms; each later one waits 4× longer.
    retry_delay_ms: u64 = 1_000, "SECKILL_RETRY_DELAY_MS";
    /// How often the dead-letter queue is fed back through the retry
    /// topic, ms (seed 003: hourly); 0: only by `dlq redrive`.
    dlq_redrive_interval_ms: u64 = 3_600_000, "SECKILL_DLQ_REDRIVE_INTERVAL_MS";
    /// Log filter (tracing env-filter syntax); when unset, `RUST_LOG`.
    log: String = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()), "SECKILL_LOG";
    /// "text" or "json" (one object per line).
    log_format: LogFormat = LogFormat::Text, "SECKILL_LOG_FORMAT";
}

impl Settings {
    /// The file (if any) under these settings, the secret files read, the
    /// defaults filled in, and the result checked.
    pub fn into_config(self, file: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let file: Settings = match file {
            Some(p) => load_toml(p)?,
            None => Settings::default(),
        };
        let mut s = self.over(file);
        read_secret_file("redis_url", &mut s.redis_url, &s.redis_url_file)?;
        read_secret_file(
            "redis_password",
            &mut s.redis_password,
            &s.redis_password_file,
        )?;
        read_secret_file("database_url", &mut s.database_url, &s.database_url_file)?;
        let cfg = s.resolve();
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Config {
    pub fn defaults() -> Config {
        Settings::default().resolve()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        let db = &self.database_url;
        if !(db.starts_with("postgres://")
            || db.starts_with("postgresql://")
            || db.starts_with("mysql://")
            || db.starts_with("mariadb://"))
        {
            return bad(
                "database_url",
                "must be a postgres://… or mysql://… URL (SECKILL_DATABASE_URL)",
            );
        }
        self.redis_target()?;
        if self.batch_len_max == 0 || self.batch_len_max > 10_000 {
            return bad("batch_len_max", "must be 1..=10000");
        }
        if self.db_pool_max == 0 {
            return bad("db_pool_max", "must be at least 1");
        }
        if self.group_id.is_empty() {
            return bad("group_id", "must not be empty");
        }
        if self.retry_attempts_max > 20 {
            return bad("retry_attempts_max", "must be at most 20");
        }
        let topics = self.topics();
        for (key, name) in [
            ("kafka_orders_topic", &topics.orders),
            ("kafka_events_topic", &topics.events),
            ("kafka_retry_topic", &topics.retry),
            ("kafka_dlq_topic", &topics.dlq),
        ] {
            if let Err(e) = seckill_io::kafka::check_topic_name(name) {
                return bad(key, &e);
            }
        }
        let keys = [
            "kafka_orders_topic",
            "kafka_events_topic",
            "kafka_retry_topic",
            "kafka_dlq_topic",
        ];
        let all = topics.all();
        for i in 1..all.len() {
            if let Some(j) = all[..i].iter().position(|t| *t == all[i]) {
                return bad(
                    keys[i],
                    &format!("names the same topic as {} ({})", keys[j], all[i]),
                );
            }
        }
        // The retry topic is read in order: a long delay holds every
        // retry behind it.
        if self.retry_delay(self.retry_attempts_max) > Duration::from_secs(3600) {
            return bad(
                "retry_delay_ms",
                "the last retry (retry_delay_ms × 4^(retry_attempts_max − 1)) must wait at most an hour",
            );
        }
        Ok(())
    }

    /// The delay before retry number `attempt` (1-based): 1×, 4×, 16× … the
    /// base, at most a day.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let factor = 4u64.saturating_pow(attempt.saturating_sub(1));
        Duration::from_millis(
            self.retry_delay_ms
                .saturating_mul(factor)
                .min(24 * 3600 * 1000),
        )
    }

    /// How to reach Redis (the TLS files read).
    pub fn redis_target(&self) -> Result<seckill_io::redis::RedisTarget, ConfigError> {
        let mut target = seckill_io::config::redis_target(
            &self.redis_url,
            &self.redis_password,
            &self.redis_tls_ca_file,
            &self.redis_tls_cert_file,
            &self.redis_tls_key_file,
        )?;
        target.sentinels =
            seckill_io::config::host_port_list(&self.redis_sentinels).map_err(|reason| {
                ConfigError::Invalid {
                    key: "redis_sentinels",
                    reason,
                }
            })?;
        if target.sentinels.is_empty() != self.redis_master_name.is_empty() {
            return Err(ConfigError::Invalid {
                key: "redis_master_name",
                reason: "redis_sentinels and redis_master_name go together".into(),
            });
        }
        target.master_name = self.redis_master_name.clone();
        target.cluster_nodes = seckill_io::config::host_port_list(&self.redis_cluster_nodes)
            .map_err(|reason| ConfigError::Invalid {
                key: "redis_cluster_nodes",
                reason,
            })?;
        if target.is_cluster() && target.is_sentinel() {
            return Err(ConfigError::Invalid {
                key: "redis_cluster_nodes",
                reason: "set redis_cluster_nodes or redis_sentinels, not both".into(),
            });
        }
        Ok(target)
    }

    /// The topics' names, the empty ones derived from the orders topic.
    pub fn topics(&self) -> crate::topics::Topics {
        let or = |name: &str, suffix: &str| {
            if name.is_empty() {
                format!("{}{suffix}", self.kafka_orders_topic)
            } else {
                name.to_string()
            }
        };
        crate::topics::Topics {
            orders: self.kafka_orders_topic.clone(),
            events: self.kafka_events_topic.clone(),
            retry: or(&self.kafka_retry_topic, ".retry"),
            dlq: or(&self.kafka_dlq_topic, ".dlq"),
        }
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_required_and_delays_grow() {
        assert!(Config::defaults().validate().is_err());
        let mut cfg = Config::defaults();
        cfg.database_url = "postgres://u@127.0.0.1/db".into();
        cfg.validate().expect("valid");
        assert_eq!(cfg.retry_delay(1), Duration::from_secs(1));
        assert_eq!(cfg.retry_delay(3), Duration::from_secs(16));
        assert_eq!(cfg.retry_delay(60), Duration::from_secs(24 * 3600));
        cfg.retry_attempts_max = 8;
        assert!(cfg.validate().is_err(), "16384 s for the last retry");
    }

    #[test]
    fn topic_names_follow_the_orders_topic_unless_given() {
        let mut cfg = Config::defaults();
        cfg.database_url = "postgres://u@127.0.0.1/db".into();
        assert_eq!(
            cfg.topics().all(),
            [
                "seckill.orders",
                "seckill.order-events",
                "seckill.orders.retry",
                "seckill.orders.dlq"
            ]
        );
        cfg.kafka_orders_topic = "shop.wins".into();
        cfg.kafka_dlq_topic = "shop.parked".into();
        assert_eq!(cfg.topics().retry, "shop.wins.retry");
        assert_eq!(cfg.topics().dlq, "shop.parked");
        cfg.validate().expect("valid");
        cfg.kafka_dlq_topic = "shop.wins".into();
        assert!(cfg.validate().is_err(), "two topics of one name");
        cfg.kafka_dlq_topic = "shop parked".into();
        assert!(cfg.validate().is_err(), "not a topic name");
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let s: Settings = toml::from_str(include_str!("../../seckill-orders.example.toml"))
            .expect("example parses");
        let cfg = s.resolve();
        cfg.validate().expect("the example is valid");
        assert_eq!(cfg.kafka_properties.0.len(), 1);
    }

    #[test]
    fn the_file_is_under_the_flags() {
        let file: Settings =
            toml::from_str("batch_len_max = 100\n[kafka_properties]\n\"client.id\" = \"o\"\n")
                .expect("toml");
        let flags = Settings {
            batch_len_max: Some(7),
            ..Settings::default()
        };
        let cfg = flags.over(file).resolve();
        assert_eq!(cfg.batch_len_max, 7);
        assert_eq!(cfg.kafka_properties.0.len(), 1);
        assert!(toml::from_str::<Settings>("nope = 1").is_err());
    }
}
