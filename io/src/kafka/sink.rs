//! The Kafka order sink: an idempotent producer (`enable.idempotence`,
//! `acks=all`) publishing one JSON message per order to `seckill.orders`,
//! keyed by item so one item's orders stay in order. Delivery reports come
//! back on librdkafka's thread and move the request to `order_created`.
//! A failed delivery leaves the order where it already is: in the WAL,
//! for replay.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use seckill_pipeline::health::{Health, State};
use seckill_pipeline::port::{Order, OrderSink, SinkError};
use seckill_pipeline::progress::Outstanding;
use seckill_pipeline::StatusBoard;

use super::admin::{base_config, KafkaSetupError};
use super::message::{encode_order, Pending};
use super::poller::Poller;
use super::{classify, ErrorClass};

/// Failed orders kept for another try by default (each is also in the
/// WAL); `kafka_retry_queue_max` sets it.
pub const FAILED_MAX: usize = 1_000_000;
/// Pause between two retry passes over failed orders.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// An order the broker did not acknowledge, kept to be sent again.
struct Failed {
    key: Vec<u8>,
    payload: Vec<u8>,
    pending: Box<Pending>,
}

#[derive(Debug, Default)]
pub struct SinkStats {
    /// Failed orders the retry queue had no room for (each still in the
    /// WAL, its LSN holding the checkpoint back).
    pub dropped: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    /// Failed orders waiting in the retry queue.
    pub queued: AtomicU64,
    /// The lowest LSN of an order dropped since the WAL was last re-read
    /// for them (0: none).
    dropped_from: AtomicU64,
}

impl SinkStats {
    fn note_dropped(&self, lsn: u64) {
        if lsn == 0 {
            // A win with no journal position (republished after a salvage):
            // the next start's salvage reconcile publishes it again.
            return;
        }
        let _ = self
            .dropped_from
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur == 0 || lsn < cur).then_some(lsn)
            });
    }

    /// The lowest LSN dropped since the last call, if any: the WAL is to
    /// be re-read from there.
    pub fn take_dropped_from(&self) -> Option<u64> {
        match self.dropped_from.swap(0, Ordering::AcqRel) {
            0 => None,
            lsn => Some(lsn),
        }
    }

    /// Puts back a re-read that could not be done (yet).
    pub fn redo_dropped_from(&self, lsn: u64) {
        self.note_dropped(lsn);
    }
}

pub struct DeliveryContext {
    board: Arc<StatusBoard>,
    stats: Arc<SinkStats>,
    outstanding: Arc<Outstanding>,
    health: Arc<Health>,
    failed: Arc<Mutex<VecDeque<Failed>>>,
    failed_max: usize,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        match result {
            Ok(_) => {
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
                self.outstanding.finish(pending.lsn);
                let [request_id, sale_id, item_id, user_id] = pending.ids();
                self.board.order_acknowledged(
                    request_id,
                    pending.order_id,
                    sale_id,
                    item_id,
                    user_id,
                );
            }
            Err((err, msg)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.health.fail(&err.to_string());
                tracing::warn!(error = %err, request_id = %pending.request_id(), lsn = pending.lsn,
                    "order delivery failed; kept for another try (and in the WAL)");
                let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                if failed.len() < self.failed_max {
                    failed.push_back(Failed {
                        key: msg.key().map(<[u8]>::to_vec).unwrap_or_default(),
                        payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        pending,
                    });
                    self.stats
                        .queued
                        .store(failed.len() as u64, Ordering::Relaxed);
                } else {
                    // Past the bound the order leaves memory, never the
                    // WAL: its LSN stays outstanding (the checkpoint does
                    // not pass it), and once the retry queue is empty the
                    // WAL is re-read from the lowest dropped LSN.
                    let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    self.stats.note_dropped(pending.lsn);
                    if n == 1 || n.is_multiple_of(10_000) {
                        tracing::error!(dropped = n, lsn = pending.lsn, kept = self.failed_max,
                            "Kafka retry queue full: orders left to the WAL, re-read from it once the queue drains");
                    }
                }
            }
        }
    }
}

pub struct KafkaOrderSink {
    producer: Arc<BaseProducer<DeliveryContext>>,
    /// The orders topic's name.
    topic: String,
    poller: Poller,
    config: ClientConfig,
    shared: SinkShared,
    failed: Arc<Mutex<VecDeque<Failed>>>,
    failed_max: usize,
    pub stats: Arc<SinkStats>,
    buf: Vec<u8>,
    /// The message key being built (`sale:item`), reused.
    key: String,
    last_retry: Instant,
    /// Acknowledgements seen at the last retry pass, and since when
    /// deliveries have failed with none acknowledged.
    acked_at_last_pass: u64,
    failing_since: Option<Instant>,
    last_rebuild: Instant,
}

/// How long deliveries may fail with not one acknowledged before the
/// producer is rebuilt: its idempotence state may be stale (a broker that
/// restarted without the producer's id refuses every produce until the
/// message times out). During a plain outage a rebuild is harmless.
const STUCK_FOR: Duration = Duration::from_secs(5);
/// At most one rebuild per this interval.
const REBUILD_INTERVAL: Duration = Duration::from_secs(10);

/// What the sink reports to.
#[derive(Clone)]
pub struct SinkShared {
    pub board: Arc<StatusBoard>,
    pub outstanding: Arc<Outstanding>,
    pub health: Arc<Health>,
}

impl KafkaOrderSink {
    fn failed_len(&self) -> usize {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn new(
        brokers: &str,
        properties: &[(String, String)],
        topic: &str,
        shared: SinkShared,
        message_timeout: Duration,
        linger: Duration,
        failed_max: usize,
    ) -> Result<KafkaOrderSink, KafkaSetupError> {
        let stats = Arc::new(SinkStats::default());
        let failed = Arc::new(Mutex::new(VecDeque::new()));
        let mut config = base_config(brokers, properties);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", linger.as_millis().to_string())
            .set(
                "message.timeout.ms",
                message_timeout.as_millis().to_string(),
            )
            .set("queue.buffering.max.messages", "100000");
        let producer = Arc::new(Self::producer(
            &config, &shared, &stats, &failed, failed_max,
        )?);
        let poller = Poller::start(Arc::clone(&producer)).map_err(KafkaSetupError::Thread)?;
        Ok(KafkaOrderSink {
            producer,
            topic: topic.to_string(),
            poller,
            config,
            shared,
            failed,
            failed_max,
            stats,
            buf: Vec::with_capacity(512),
            key: String::with_capacity(64),
            last_retry: Instant::now(),
            acked_at_last_pass: 0,
            failing_since: None,
            last_rebuild: Instant::now(),
        })
    }

    fn producer(
        config: &ClientConfig,
        shared: &SinkShared,
        stats: &Arc<SinkStats>,
        failed: &Arc<Mutex<VecDeque<Failed>>>,
        failed_max: usize,
    ) -> Result<BaseProducer<DeliveryContext>, KafkaSetupError> {
        config
            .create_with_context(DeliveryContext {
                board: Arc::clone(&shared.board),
                stats: Arc::clone(stats),
                outstanding: Arc::clone(&shared.outstanding),
                health: Arc::clone(&shared.health),
                failed: Arc::clone(failed),
                failed_max,
            })
            .map_err(KafkaSetupError::Client)
    }

    /// Replaces the producer. What the old one still held comes back as
    /// failed deliveries (purged on drop) and is sent again by the new one.
    fn rebuild(&mut self) {
        let built = Self::producer(
            &self.config,
            &self.shared,
            &self.stats,
            &self.failed,
            self.failed_max,
        )
        .map(Arc::new)
        .and_then(|p| {
            let poller = Poller::start(Arc::clone(&p)).map_err(KafkaSetupError::Thread)?;
            Ok((p, poller))
        });
        match built {
            Ok((p, poller)) => {
                tracing::warn!("rebuilding the Kafka producer: deliveries keep failing");
                std::mem::replace(&mut self.poller, poller).stop();
                let old = std::mem::replace(&mut self.producer, p);
                drop(old);
            }
            Err(e) => tracing::error!(error = %e, "cannot rebuild the Kafka producer"),
        }
    }

    /// Fetches metadata so the first real order does not pay for the
    /// connection set-up (a new producer's first delivery takes ~500 ms).
    pub fn warm_up(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
            .map(|_| ())
    }
}

impl OrderSink for KafkaOrderSink {
    fn publish(&mut self, order: &Order<'_>) -> Result<(), SinkError> {
        fail::fail_point!("kafka::sink::send", |_| Err(SinkError::Unavailable(
            "fail point kafka::sink::send".into()
        )));
        encode_order(order, &mut self.buf);
        self.key.clear();
        self.key.push_str(order.sale_id);
        self.key.push(':');
        self.key.push_str(order.item_id);
        let pending = Box::new(Pending::new(order));
        let record = BaseRecord::with_opaque_to(&self.topic, pending)
            .key(self.key.as_bytes())
            .payload(self.buf.as_slice());
        match self.producer.send(record) {
            Ok(()) => {
                self.poller.nudge();
                Ok(())
            }
            Err((e, _)) => match classify(&e) {
                ErrorClass::QueueFull => Err(SinkError::QueueFull),
                ErrorClass::Retriable | ErrorClass::Fatal => {
                    Err(SinkError::Unavailable(e.to_string()))
                }
            },
        }
    }

    fn flush(&mut self, timeout: Duration) -> Result<(), SinkError> {
        let deadline = Instant::now() + timeout;
        loop {
            // Due now: the retry pass below must run.
            self.last_retry = Instant::now()
                .checked_sub(RETRY_INTERVAL)
                .unwrap_or_else(Instant::now);
            self.retry_failed();
            let left = deadline.saturating_duration_since(Instant::now());
            self.producer
                .flush(left)
                .map_err(|e| SinkError::Unavailable(e.to_string()))?;
            let failed = self.failed_len();
            if failed == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SinkError::Unavailable(format!(
                    "{failed} orders not acknowledged"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn retry_failed(&mut self) -> usize {
        if self.last_retry.elapsed() < RETRY_INTERVAL {
            return 0;
        }
        self.last_retry = Instant::now();
        let health = Arc::clone(&self.shared.health);
        let acked = self.stats.acked.load(Ordering::Relaxed);
        if acked > self.acked_at_last_pass {
            self.failing_since = None;
        }
        self.acked_at_last_pass = acked;
        let batch: Vec<Failed> = {
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            self.stats.queued.store(0, Ordering::Relaxed);
            failed.drain(..).collect()
        };
        if batch.is_empty() {
            if health.state() == State::Draining {
                health.transition(&[State::Draining], State::Up, "failed orders re-sent");
            }
            return 0;
        }
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= STUCK_FOR && self.last_rebuild.elapsed() >= REBUILD_INTERVAL {
            self.failing_since = None;
            self.last_rebuild = Instant::now();
            self.rebuild();
        }
        let mut sent = 0;
        let mut rest = batch.into_iter();
        for f in rest.by_ref() {
            let record = BaseRecord::with_opaque_to(&self.topic, f.pending)
                .key(f.key.as_slice())
                .payload(f.payload.as_slice());
            match self.producer.send(record) {
                Ok(()) => sent += 1,
                Err((_, record)) => {
                    let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                    failed.push_back(Failed {
                        key: f.key.clone(),
                        payload: f.payload.clone(),
                        pending: record.delivery_opaque,
                    });
                    self.stats
                        .queued
                        .store(failed.len() as u64, Ordering::Relaxed);
                    break;
                }
            }
        }
        if sent > 0 {
            self.poller.nudge();
        }
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.extend(rest);
        self.stats
            .queued
            .store(failed.len() as u64, Ordering::Relaxed);
        sent
    }
}
