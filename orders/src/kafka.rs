//! Kafka for the order service: the topics, the consumer's settings and
//! context (rebalances, lag from librdkafka's statistics), and the
//! producer of what the service itself publishes — retries, dead letters
//! and `failed` events — each send awaited before offsets are committed.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext};

use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;

pub use seckill_io::kafka::{ORDERS_TOPIC, ORDER_EVENTS_TOPIC};

pub use crate::topics::Topics;

/// How long one send may wait in the producer before it counts as failed
/// (and is sent again, offsets still uncommitted).
const SEND_TIMEOUT_MS: u64 = 10_000;

fn client_config(cfg: &Config) -> ClientConfig {
    seckill_io::kafka::base_config(&cfg.kafka_brokers, &cfg.kafka_properties.0)
}

/// Creates the four topics if they do not exist (the daemon creates the
/// first two too; whichever starts first wins, the other finds them).
/// When the metadata already lists all four, no admin request is sent (a
/// cluster may well refuse this service the right to create topics).
pub async fn ensure_topics(
    cfg: &Config,
    producer: &Producer,
) -> Result<(), seckill_io::kafka::KafkaSetupError> {
    let client = producer.inner.clone();
    let topics = cfg.topics();
    let names = topics.clone();
    let present = tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|md| {
                names.all().iter().all(|t| {
                    md.topics()
                        .iter()
                        .any(|m| m.name() == *t && !m.partitions().is_empty())
                })
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    if present {
        return Ok(());
    }
    seckill_io::kafka::create_topics(
        &cfg.kafka_brokers,
        &cfg.kafka_properties.0,
        &topics.all(),
        &seckill_io::kafka::TopicSpec {
            partitions: cfg.kafka_partitions,
            replication: cfg.kafka_replication_factor,
            min_insync: cfg.kafka_min_insync_replicas,
        },
    )
    .await
}

/// What the consumer tells the service about itself from librdkafka's
/// callbacks (run inside `poll`, on the consumer's thread).
pub struct Ctx {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Bumped by every rebalance: the consumer loop drops what it held of
    /// partitions that are read again from their committed offsets.
    pub rebalances: Arc<AtomicU64>,
    /// The topics read (their lag is reported).
    pub topics: Topics,
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        let lag: i64 = s
            .topics
            .iter()
            .filter(|(name, _)| self.topics.all().contains(&name.as_str()))
            .flat_map(|(_, t)| t.partitions.iter())
            .filter(|(p, _)| **p >= 0)
            .map(|(_, p)| p.consumer_lag.max(0))
            .sum();
        self.metrics.lag.set(lag);
    }
}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                // The pause state is set on every assignment: librdkafka
                // keeps a partition's pause across an unassignment, so a
                // partition paused during an outage, moved away and given
                // back later would otherwise never be read again.
                // Partitions that arrive while the service waits on a
                // dependency wait like the others.
                let r = if self.health.paused.load(Relaxed) {
                    consumer.pause(tpl)
                } else {
                    consumer.resume(tpl)
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot set the new partitions' pause state");
                }
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
        self.rebalances.fetch_add(1, Relaxed);
        let n = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.health.assigned.store(n, Relaxed);
    }
}

pub type OrderConsumer = BaseConsumer<Ctx>;

/// The consumer of the service's group: offsets are committed by hand,
/// only after the batch they end is in the database.
pub fn consumer(cfg: &Config, ctx: Ctx) -> Result<OrderConsumer, rdkafka::error::KafkaError> {
    let mut c = client_config(cfg);
    c.set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // A broker may hold a fetch until this long has passed (tansu does,
        // with data waiting): the bound of what the fetch adds to the
        // decision-to-row lag.
        .set("fetch.wait.max.ms", "50")
        .set("statistics.interval.ms", "5000");
    c.create_with_context(ctx)
}

/// A message the service publishes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Option<OwnedHeaders>,
}

/// The producer of retries, dead letters and `failed` events.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    pub fn new(cfg: &Config) -> Result<Producer, rdkafka::error::KafkaError> {
        let mut c = client_config(cfg);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            // One message per record batch: the retry topic is read with
            // seeks to a message that is not due yet, and a seek into the
            // middle of a batch is where brokers differ (tansu, for one,
            // fetches from the next batch). Retries are rare; the batch
            // size costs nothing here.
            .set("batch.num.messages", "1")
            .set("message.timeout.ms", SEND_TIMEOUT_MS.to_string());
        Ok(Producer { inner: c.create()? })
    }

    /// Sends every message and waits for Kafka's answer to each. Returns
    /// the ones that were not acknowledged (to send again), with the first
    /// error.
    pub async fn send_all(&self, msgs: Vec<Outgoing>) -> Result<(), (String, Vec<Outgoing>)> {
        if msgs.is_empty() {
            return Ok(());
        }
        let mut waits = Vec::with_capacity(msgs.len());
        for m in &msgs {
            let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&m.topic);
            if let Some(k) = &m.key {
                r = r.key(k.as_slice());
            }
            if let Some(p) = &m.payload {
                r = r.payload(p.as_slice());
            }
            if let Some(h) = &m.headers {
                r = r.headers(h.clone());
            }
            waits.push(self.inner.send(r, Duration::from_millis(SEND_TIMEOUT_MS)));
        }
        let results = futures_util::future::join_all(waits).await;
        let mut first_error = None;
        let failed: Vec<Outgoing> = msgs
            .into_iter()
            .zip(results)
            .filter_map(|(m, r)| match r {
                Ok(_) => None,
                Err((e, _)) => {
                    first_error.get_or_insert_with(|| e.to_string());
                    Some(m)
                }
            })
            .collect();
        match first_error {
            None => Ok(()),
            Some(e) => Err((e, failed)),
        }
    }

    /// Waits for what is in flight (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.inner.flush(timeout) {
            tracing::warn!(error = %e, "producer flush at shutdown");
        }
    }
}
