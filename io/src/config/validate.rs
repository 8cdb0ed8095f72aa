//! The checks a configuration passes before the daemon starts: ranges,
//! settings that go together or exclude each other, secrets, addresses.

use super::{host_port_list, Config, ConfigError};

impl Config {
    /// Every setting in range and consistent with the others; the first
    /// that is not, named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        if !self.ring_size.is_power_of_two() || self.ring_size < 2 {
            return bad("ring_size", "must be a power of two ≥ 2");
        }
        if self.batch_len_max == 0 || self.batch_len_max > 4096 {
            return bad("batch_len_max", "must be 1..=4096");
        }
        if self.stage_threads != 2 && self.stage_threads != 5 {
            return bad("stage_threads", "must be 2 or 5");
        }
        if self.worker_threads == 0 {
            return bad("worker_threads", "must be at least 1");
        }
        self.check_secrets()?;
        self.redis_target()?;
        if let Err(e) = self
            .trusted_proxies
            .parse::<crate::admission::TrustedProxies>()
        {
            return bad("trusted_proxies", &e.to_string());
        }
        if self.require_token && self.token_key.is_empty() {
            return bad(
                "token_key",
                "must be set while require_token is true (openssl rand -hex 32)",
            );
        }
        if !self.token_key.is_empty() || !self.token_key_previous.is_empty() {
            if let Err(e) =
                crate::admission::TokenKeys::new(&self.token_key, &self.token_key_previous)
            {
                return bad("token_key", &e.to_string());
            }
        }
        if self.status_board_len_max < 100 {
            return bad("status_board_len_max", "must be at least 100");
        }
        if self.kafka_retry_queue_max == 0 {
            return bad("kafka_retry_queue_max", "must be at least 1");
        }
        if self.sweep_interval_ms == 0 {
            return bad("sweep_interval_ms", "must be at least 1");
        }
        if self.body_bytes_max < 64 {
            return bad("body_bytes_max", "must be at least 64");
        }
        for (key, name) in [
            ("kafka_orders_topic", &self.kafka_orders_topic),
            ("kafka_events_topic", &self.kafka_events_topic),
        ] {
            if let Err(e) = crate::kafka::check_topic_name(name) {
                return bad(key, &e);
            }
        }
        if self.kafka_orders_topic == self.kafka_events_topic {
            return bad("kafka_events_topic", "must differ from kafka_orders_topic");
        }
        if let Err(e) = self.admin_addr() {
            return bad("admin_listen", &e);
        }
        if let Err(e) = self.peer_list() {
            return bad("peers", &e);
        }
        if let Err(e) = self.sentinel_list() {
            return bad("redis_sentinels", &e);
        }
        if let Err(e) = host_port_list(&self.redis_cluster_nodes) {
            return bad("redis_cluster_nodes", &e);
        }
        if !self.redis_cluster_nodes.trim().is_empty() && !self.redis_sentinels.trim().is_empty() {
            return bad(
                "redis_cluster_nodes",
                "a Redis Cluster fails over by itself: set redis_cluster_nodes or redis_sentinels, not both",
            );
        }
        if self.redis_sentinels.trim().is_empty() != self.redis_master_name.is_empty() {
            return bad(
                "redis_master_name",
                "redis_sentinels and redis_master_name go together",
            );
        }
        if self.redis_wait_replicas > 0 && self.redis_wait_timeout_ms == 0 {
            return bad(
                "redis_wait_timeout_ms",
                "must be at least 1 (0 would make WAIT block for ever)",
            );
        }
        if !self.peers.trim().is_empty() && self.admin_token.is_empty() {
            return bad(
                "peers",
                "peers are asked with the admin token: set admin_token",
            );
        }
        Ok(())
    }
}
