//! Topics and client configuration: the topic names, the settings every
//! client shares, and creating the topics at start (and again when a
//! broker comes back empty).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub const ORDERS_TOPIC: &str = "seckill.orders";
pub const ORDER_EVENTS_TOPIC: &str = "seckill.order-events";

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
    c.set("bootstrap.servers", brokers)
        // Loopback brokers: don't let a slow DNS or IPv6 attempt stall.
        .set("broker.address.family", "v4");
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// Creates the daemon's topics if they do not exist.
pub async fn ensure_topics(
    brokers: &str,
    properties: &[(String, String)],
    partitions: i32,
) -> Result<(), KafkaSetupError> {
    create_topics(
        brokers,
        properties,
        &[ORDERS_TOPIC, ORDER_EVENTS_TOPIC],
        partitions,
    )
    .await
}

/// Creates `names` if they do not exist.
pub async fn create_topics(
    brokers: &str,
    properties: &[(String, String)],
    names: &[&str],
    partitions: i32,
) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = base_config(brokers, properties)
        .create()
        .map_err(KafkaSetupError::Client)?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(TOPIC_OPERATION_TIMEOUT));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .map_err(KafkaSetupError::Admin)?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaSetupError::Topic { topic, code }),
        }
    }
    Ok(())
}
