//! A sale's record on Kafka, read from the start of each topic to its end
//! as of the call: every win (the orders topic) and every order that closed
//! (paid, cancelled or expired, the events topic). What a Redis that lost
//! the sale is rebuilt from.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::admin::{base_config, Topics};
use super::message::OrderMessage;

/// How an order closed, as its event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// `paid`, `cancelled`, `expired` or `failed` (the order service's
    /// release of a win it could not take).
    pub state: String,
    pub at_ms: u64,
}

/// A sale's wins (one per order id) and how those that closed closed.
#[derive(Debug, Default)]
pub struct SaleHistory {
    pub wins: Vec<OrderMessage>,
    pub closed: HashMap<String, Closed>,
}

#[derive(serde::Deserialize)]
struct EventMessage {
    event: String,
    order_id: String,
    sale_id: String,
    #[serde(default)]
    at_ms: u64,
}

/// Reads both topics to their ends for `sale` (blocking; bounded by
/// `timeout`). Messages of other sales and ones that do not parse are
/// skipped; a win seen twice (a republish) counts once.
pub fn read_sale_history(
    brokers: &str,
    properties: &[(String, String)],
    topics: &Topics,
    sale: &str,
    timeout: Duration,
) -> Result<SaleHistory, KafkaError> {
    let deadline = Instant::now() + timeout;
    let mut history = SaleHistory::default();
    let mut seen = std::collections::HashSet::new();
    read_to_end(brokers, properties, &topics.orders, deadline, |payload| {
        if let Ok(m) = serde_json::from_slice::<OrderMessage>(payload) {
            if m.sale_id == sale && seen.insert(m.order_id.clone()) {
                history.wins.push(m);
            }
        }
    })?;
    read_to_end(brokers, properties, &topics.events, deadline, |payload| {
        if let Ok(e) = serde_json::from_slice::<EventMessage>(payload) {
            if e.sale_id == sale
                && matches!(
                    e.event.as_str(),
                    "paid" | "cancelled" | "expired" | "failed"
                )
            {
                history.closed.entry(e.order_id).or_insert(Closed {
                    state: e.event,
                    at_ms: e.at_ms,
                });
            }
        }
    })?;
    Ok(history)
}

/// Every message of `topic` up to each partition's high watermark at the
/// call, to `each`.
fn read_to_end(
    brokers: &str,
    properties: &[(String, String)],
    topic: &str,
    deadline: Instant,
    mut each: impl FnMut(&[u8]),
) -> Result<(), KafkaError> {
    let consumer: BaseConsumer = base_config(brokers, properties)
        .set("group.id", "seckill-rebuild")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let left = |d: Instant| d.saturating_duration_since(Instant::now());
    let meta = consumer.fetch_metadata(Some(topic), left(deadline))?;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), left(deadline))?;
            if high > low {
                ends.insert(p.id(), high);
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
            }
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer.assign(&tpl)?;
    // To each partition's high watermark, then on for a short grace
    // period: a broker may report the base offset of its last batch as the
    // watermark (tansu does), and the orders decided just before the call
    // may still be arriving. Bounded: later messages (other sales selling)
    // do not keep the read going.
    let mut grace_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        if ends.is_empty() {
            let until = *grace_until.get_or_insert(now + GRACE);
            if now >= until {
                return Ok(());
            }
        }
        let Some(r) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = r?;
        if let Some(payload) = m.payload() {
            each(payload);
        }
        if ends
            .get(&m.partition())
            .is_some_and(|&end| m.offset() + 1 >= end)
        {
            ends.remove(&m.partition());
        }
    }
}

/// How long the read goes on past the high watermarks.
const GRACE: Duration = Duration::from_millis(1_000);
