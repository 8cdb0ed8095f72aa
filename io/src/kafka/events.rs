//! The order-event producer: a plain producer, polled only while a round
//! of outbox entries is being published, so it costs nothing while the
//! daemon is idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

use super::admin::base_config;
use super::{classify, ErrorClass};
use crate::redis::OutboxEntry;

/// Delivery reports of one publishing round: slot `i` is set when Kafka
/// answered for entry `i`.
type Acks = Arc<std::sync::Mutex<Vec<Option<bool>>>>;

pub struct EventContext;

impl ClientContext for EventContext {}

impl ProducerContext for EventContext {
    type DeliveryOpaque = Box<(usize, Acks)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let (i, acks) = *opaque;
        let mut acks = acks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = acks.get_mut(i) {
            *slot = Some(result.is_ok());
        }
    }
}

/// A plain producer, polled only while a round is being published: no
/// background thread waking up while the daemon is idle.
pub type EventProducer = BaseProducer<EventContext>;

/// How long one publishing round waits for Kafka; what is not acknowledged
/// stays in the outbox for the next round.
const ROUND_WAIT_MS: u64 = 5_000;

pub fn event_producer(
    brokers: &str,
    properties: &[(String, String)],
) -> Option<Arc<EventProducer>> {
    let mut c = base_config(brokers, properties);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", ROUND_WAIT_MS.to_string());
    match c.create_with_context(EventContext) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            tracing::error!(error = %e, "cannot create the order-event producer");
            None
        }
    }
}

/// Sends every entry and waits (polling) until each is acknowledged or
/// failed, or the round's time is up. Returns the acknowledged entries.
pub fn publish_round(producer: &EventProducer, topic: &str, entries: &[OutboxEntry]) -> Vec<bool> {
    let acks: Acks = Arc::new(std::sync::Mutex::new(vec![None; entries.len()]));
    let deadline = Instant::now() + Duration::from_millis(ROUND_WAIT_MS + 1_000);
    for (i, e) in entries.iter().enumerate() {
        let mut record = BaseRecord::with_opaque_to(topic, Box::new((i, Arc::clone(&acks))))
            .key(e.order_id.as_str())
            .payload(e.json.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((err, back)) => {
                    let full = classify(&err) == ErrorClass::QueueFull;
                    if !full || Instant::now() >= deadline {
                        if let Some(slot) =
                            acks.lock().unwrap_or_else(|e| e.into_inner()).get_mut(i)
                        {
                            *slot = Some(false);
                        }
                        break;
                    }
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
    }
    loop {
        producer.poll(Duration::from_millis(20));
        let done = acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .all(Option::is_some);
        if done || Instant::now() >= deadline {
            break;
        }
    }
    let acks = acks.lock().unwrap_or_else(|e| e.into_inner());
    acks.iter().map(|a| *a == Some(true)).collect()
}
