//! The Kafka order sink: an idempotent producer (`enable.idempotence`,
//! `acks=all`) publishing one JSON message per order to `seckill.orders`,
//! keyed by item so one item's orders stay in order. Delivery reports come
//! back on librdkafka's thread and move the request to `order_created`.
//! A failed delivery leaves the order where it already is: in the WAL,
//! for replay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use seckill_pipeline::port::{Order, OrderSink, SinkError};
use seckill_pipeline::{RequestState, Status, StatusBoard};

pub const ORDERS_TOPIC: &str = "seckill.orders";
pub const ORDER_EVENTS_TOPIC: &str = "seckill.order-events";

/// The message on `seckill.orders`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderMessage {
    pub order_id: String,
    pub request_id: String,
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
    pub price_cents: u64,
    pub quantity: u32,
    pub created_ms: u64,
    pub lsn: u64,
}

/// What a delivery report needs to update the status board.
pub struct Pending {
    request_id: String,
    state: RequestState,
}

#[derive(Debug, Default)]
pub struct SinkStats {
    pub acked: AtomicU64,
    pub failed: AtomicU64,
}

pub struct DeliveryContext {
    board: Arc<StatusBoard>,
    stats: Arc<SinkStats>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        match result {
            Ok(_) => {
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
                self.board
                    .order_acknowledged(&pending.request_id, pending.state);
            }
            Err((err, _)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, request_id = %pending.request_id,
                    "order delivery failed; it stays in the WAL for replay");
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot create topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

pub fn base_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        // Loopback brokers: don't let a slow DNS or IPv6 attempt stall.
        .set("broker.address.family", "v4");
    c
}

/// Creates the topics if they do not exist.
pub async fn ensure_topics(brokers: &str, partitions: i32) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = base_config(brokers)
        .create()
        .map_err(KafkaSetupError::Client)?;
    let topics = [
        NewTopic::new(ORDERS_TOPIC, partitions, TopicReplication::Fixed(1)),
        NewTopic::new(ORDER_EVENTS_TOPIC, partitions, TopicReplication::Fixed(1)),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        admin
            .create_topics(&topics, &opts)
            .await
            .map_err(|e| KafkaSetupError::Topic {
                topic: ORDERS_TOPIC.into(),
                reason: e.to_string(),
            })?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaSetupError::Topic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

pub struct KafkaOrderSink {
    producer: ThreadedProducer<DeliveryContext>,
    pub stats: Arc<SinkStats>,
    buf: Vec<u8>,
}

impl KafkaOrderSink {
    pub fn new(
        brokers: &str,
        board: Arc<StatusBoard>,
        message_timeout: Duration,
    ) -> Result<KafkaOrderSink, KafkaSetupError> {
        let stats = Arc::new(SinkStats::default());
        let producer = base_config(brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set(
                "message.timeout.ms",
                message_timeout.as_millis().to_string(),
            )
            .set("queue.buffering.max.messages", "100000")
            .create_with_context(DeliveryContext {
                board,
                stats: Arc::clone(&stats),
            })
            .map_err(KafkaSetupError::Client)?;
        Ok(KafkaOrderSink {
            producer,
            stats,
            buf: Vec::with_capacity(512),
        })
    }

    /// Fetches metadata so the first real order does not pay for the
    /// connection set-up (a new producer's first delivery takes ~500 ms).
    pub fn warm_up(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .client()
            .fetch_metadata(Some(ORDERS_TOPIC), timeout)
            .map(|_| ())
    }
}

pub fn encode_order(order: &Order<'_>, buf: &mut Vec<u8>) {
    buf.clear();
    let msg = OrderMessage {
        order_id: order.order_id.to_string(),
        request_id: order.request_id.to_string(),
        sale_id: order.sale_id.to_string(),
        item_id: order.item_id.to_string(),
        user_id: order.user_id.to_string(),
        price_cents: order.price_cents,
        quantity: order.quantity,
        created_ms: order.created_ms,
        lsn: order.lsn,
    };
    // Serializing plain strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, &msg);
}

impl OrderSink for KafkaOrderSink {
    fn publish(&mut self, order: &Order<'_>) -> Result<(), SinkError> {
        encode_order(order, &mut self.buf);
        let key = format!("{}:{}", order.sale_id, order.item_id);
        let pending = Box::new(Pending {
            request_id: order.request_id.to_string(),
            state: RequestState {
                status: Status::OrderCreated,
                order_id: Some(order.order_id),
                sale_id: order.sale_id.to_string(),
                item_id: order.item_id.to_string(),
                user_id: order.user_id.to_string(),
            },
        });
        let record = BaseRecord::with_opaque_to(ORDERS_TOPIC, pending)
            .key(key.as_bytes())
            .payload(self.buf.as_slice());
        match self.producer.send(record) {
            Ok(()) => Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SinkError::QueueFull)
            }
            Err((e, _)) => Err(SinkError::Unavailable(e.to_string())),
        }
    }

    fn flush(&mut self, timeout: Duration) -> Result<(), SinkError> {
        self.producer
            .flush(timeout)
            .map_err(|e| SinkError::Unavailable(e.to_string()))
    }
}
