//! Topics and client configuration: the topic names, the settings every
//! client shares, and creating the topics at start (and again when a
//! broker comes back empty).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The default name of the orders topic (`kafka_orders_topic`).
pub const ORDERS_TOPIC: &str = "seckill.orders";
/// The default name of the order-events topic (`kafka_events_topic`).
pub const ORDER_EVENTS_TOPIC: &str = "seckill.order-events";

/// The daemon's topics, by the names the operator gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Every win, keyed `sale:item`.
    pub orders: String,
    /// Paid, cancelled and expired orders.
    pub events: String,
}

impl Default for Topics {
    fn default() -> Topics {
        Topics {
            orders: ORDERS_TOPIC.into(),
            events: ORDER_EVENTS_TOPIC.into(),
        }
    }
}

/// Whether `name` is a topic name Kafka accepts: 1 to 249 of
/// `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    let legal = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > 249 || !legal || name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// How long the broker may take to create the topics.
const TOPIC_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot start the producer's polling thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The admin request itself failed (no broker answered in time).
    #[error("cannot create the topics: {0}")]
    Admin(#[source] KafkaError),
    /// The broker refused one topic.
    #[error("cannot create topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// The settings every client shares: the brokers, then the operator's
/// librdkafka `properties` (TLS, SASL, client.id …). What a client sets
/// after this for its own guarantees wins over them.
pub fn base_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// How topics are created: partitions, replication factor and
/// `min.insync.replicas` (0: chosen from the cluster — a replication factor
/// of 3 when it has 3 brokers or more, else as many as it has, and
/// min.insync.replicas 2 with 3 replicas or more, else 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub partitions: i32,
    pub replication: i32,
    pub min_insync: i32,
}

impl TopicSpec {
    /// `partitions` partitions, the rest chosen from the cluster.
    pub fn new(partitions: i32) -> TopicSpec {
        TopicSpec {
            partitions,
            replication: 0,
            min_insync: 0,
        }
    }

    /// The replication factor and min.insync.replicas for a cluster of
    /// `brokers` brokers.
    pub fn resolve(&self, brokers: usize) -> (i32, i32) {
        let brokers = i32::try_from(brokers).unwrap_or(i32::MAX).max(1);
        let replication = if self.replication > 0 {
            self.replication
        } else {
            brokers.min(3)
        };
        let min_insync = if self.min_insync > 0 {
            self.min_insync
        } else if replication >= 3 {
            2
        } else {
            1
        };
        (replication, min_insync)
    }
}

/// Creates the daemon's topics if they do not exist.
pub async fn ensure_topics(
    brokers: &str,
    properties: &[(String, String)],
    spec: &TopicSpec,
    topics: &Topics,
) -> Result<(), KafkaSetupError> {
    create_topics(
        brokers,
        properties,
        &[topics.orders.as_str(), topics.events.as_str()],
        spec,
    )
    .await
}

/// How many brokers the cluster has (its metadata), off the async threads.
async fn broker_count(config: ClientConfig) -> Result<usize, KafkaSetupError> {
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = config.create().map_err(KafkaSetupError::Client)?;
        let md = client
            .fetch_metadata(None, TOPIC_OPERATION_TIMEOUT)
            .map_err(KafkaSetupError::Admin)?;
        Ok(md.brokers().len())
    })
    .await
    .unwrap_or(Ok(1))
}

/// Creates `names` if they do not exist.
pub async fn create_topics(
    brokers: &str,
    properties: &[(String, String)],
    names: &[&str],
    spec: &TopicSpec,
) -> Result<(), KafkaSetupError> {
    let config = base_config(brokers, properties);
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(KafkaSetupError::Client)?;
    let cluster = broker_count(config).await?;
    let (replication, min_insync) = spec.resolve(cluster);
    let min_insync_text = min_insync.to_string();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| {
            NewTopic::new(n, spec.partitions, TopicReplication::Fixed(replication))
                .set("min.insync.replicas", &min_insync_text)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(TOPIC_OPERATION_TIMEOUT));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .map_err(KafkaSetupError::Admin)?;
    for r in results {
        match r {
            Ok(topic) => tracing::info!(
                %topic,
                partitions = spec.partitions,
                replication,
                min_insync,
                brokers = cluster,
                "topic created"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaSetupError::Topic { topic, code }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_follows_the_cluster_unless_set() {
        let auto = TopicSpec::new(3);
        assert_eq!(auto.resolve(1), (1, 1));
        assert_eq!(auto.resolve(2), (2, 1));
        assert_eq!(auto.resolve(5), (3, 2));
        let set = TopicSpec {
            partitions: 3,
            replication: 2,
            min_insync: 2,
        };
        assert_eq!(set.resolve(5), (2, 2));
    }

    /// librdkafka refuses, when a client is created, a security protocol
    /// or SASL mechanism it was built without ("OpenSSL not available at
    /// build time", "No provider for SASL mechanism GSSAPI"): a build
    /// without TLS or SASL fails here, before any broker is involved.
    #[test]
    fn tls_and_sasl_properties_are_accepted() {
        use rdkafka::producer::BaseProducer;
        let props = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        };
        for p in [
            props(&[("security.protocol", "SSL")]),
            props(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", "seckilld"),
                ("sasl.password", "secret"),
            ]),
            props(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "PLAIN"),
                ("sasl.username", "seckilld"),
                ("sasl.password", "secret"),
            ]),
            props(&[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanisms", "GSSAPI"),
                ("sasl.kerberos.service.name", "kafka"),
                // No Kerberos here: the ticket refresh command is a no-op.
                ("sasl.kerberos.kinit.cmd", "true"),
            ]),
        ] {
            let made: Result<BaseProducer, _> = base_config("127.0.0.1:1", &p).create();
            assert!(made.is_ok(), "{p:?}: {:?}", made.err());
        }
        let bad: Result<BaseProducer, _> = base_config(
            "127.0.0.1:1",
            &props(&[("security.protocol", "carrier-pigeon")]),
        )
        .create();
        assert!(bad.is_err(), "an unknown protocol is refused");
    }

    #[test]
    fn topic_names_are_checked_as_kafka_does() {
        assert!(check_topic_name("shop-a.seckill_orders").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
            assert!(check_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
