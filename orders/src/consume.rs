//! The consumer loop, on a thread of its own: poll a batch, write it,
//! publish what it leaves, commit its offsets — in that order, so an
//! offset is committed only once everything before it is in the database
//! (and its retries, dead letters and events are on Kafka).
//!
//! ```text
//!   poll ≤ batch_len_max ──► write (Redis, one transaction) ──► publish ──► commit offsets
//!        ▲                         │ refused / down                 │
//!        │                         ▼                                ▼
//!        └── resume ◄── pause every partition, back off (jitter), poll to stay in the group
//! ```
//!
//! The retry topic's messages carry the time they are due: one that is not
//! due yet stops its partition (seek back to it, pause) until then.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{OrderConsumer, RETRY_TOPIC, TOPICS};
use crate::meta::Meta;
use crate::process::{now_ms, Failure, Outbox, Polled, Processor};

/// How long an idle poll waits (also the loop's tick for resumes and stop).
const IDLE_POLL: Duration = Duration::from_millis(100);
/// The first wait after a refused batch; doubled each time up to
/// `retry_backoff_max_ms`.
const BACKOFF_MIN: Duration = Duration::from_millis(100);

pub struct Loop {
    pub consumer: OrderConsumer,
    pub processor: Processor,
    pub rt: tokio::runtime::Handle,
    pub stop: Arc<AtomicBool>,
    /// Retry partitions paused until their head message is due (ms).
    held: HashMap<(String, i32), u64>,
}

impl Loop {
    pub fn new(
        consumer: OrderConsumer,
        processor: Processor,
        rt: tokio::runtime::Handle,
        stop: Arc<AtomicBool>,
    ) -> Loop {
        Loop {
            consumer,
            processor,
            rt,
            stop,
            held: HashMap::new(),
        }
    }

    /// Runs until `stop`; the batch in hand is finished (or left
    /// uncommitted, for the next owner) first.
    pub fn run(mut self) {
        if let Err(e) = self.consumer.subscribe(&TOPICS) {
            tracing::error!(error = %e, "cannot subscribe");
            self.processor.health.set_error(&e.to_string());
            return;
        }
        while !self.stop.load(Relaxed) {
            let batch = self.collect();
            self.resume_due();
            if batch.is_empty() {
                continue;
            }
            self.processor.metrics.batch_len.observe(batch.len() as f64);
            if self.handle(&batch) {
                self.commit(&batch);
            }
        }
        self.consumer.unsubscribe();
        self.processor.producer.flush(Duration::from_secs(5));
        tracing::info!("consumer stopped");
    }

    /// Polls up to `batch_len_max` messages: waits `IDLE_POLL` for the
    /// first, then at most `batch_wait_ms` for the rest.
    fn collect(&mut self) -> Vec<Polled> {
        let cfg = std::sync::Arc::clone(&self.processor.cfg);
        let mut out = Vec::new();
        let mut deadline: Option<Instant> = None;
        while out.len() < cfg.batch_len_max {
            let wait = match deadline {
                None => IDLE_POLL,
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            if deadline.is_some() && wait.is_zero() {
                break;
            }
            let m = match self.consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "consumer error");
                    continue;
                }
                Some(Ok(m)) => m,
            };
            let key = (m.topic().to_string(), m.partition());
            if self.held.contains_key(&key) {
                // Fetched before the pause took effect: read again later.
                continue;
            }
            let meta = Meta::read(m.headers());
            if m.topic() == RETRY_TOPIC && meta.due_ms > now_ms() {
                self.hold(&key, m.offset(), meta.due_ms);
                continue;
            }
            out.push(Polled {
                topic: key.0,
                partition: key.1,
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                meta,
            });
            deadline
                .get_or_insert_with(|| Instant::now() + Duration::from_millis(cfg.batch_wait_ms));
        }
        out
    }

    /// Stops a retry partition at a message that is not due yet.
    fn hold(&mut self, key: &(String, i32), offset: i64, due_ms: u64) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&key.0, key.1);
        if let Err(e) = self.consumer.seek(
            &key.0,
            key.1,
            Offset::Offset(offset),
            Duration::from_secs(5),
        ) {
            tracing::warn!(error = %e, "cannot seek back to a retry that is not due");
        }
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::warn!(error = %e, "cannot pause a retry partition");
        }
        self.held.insert(key.clone(), due_ms);
    }

    fn resume_due(&mut self) {
        if self.held.is_empty() || self.processor.health.paused.load(Relaxed) {
            return;
        }
        let now = now_ms();
        let due: Vec<(String, i32)> = self
            .held
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.held.remove(&key);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&key.0, key.1);
            if let Err(e) = self.consumer.resume(&tpl) {
                tracing::debug!(error = %e, "cannot resume a retry partition (revoked?)");
            }
        }
    }

    /// Writes and publishes the batch, waiting out every refusal. False
    /// when stopped before it was done (its offsets stay uncommitted).
    fn handle(&mut self, batch: &[Polled]) -> bool {
        let mut tries = 0u32;
        let outbox = loop {
            match self.rt.block_on(self.processor.write(batch)) {
                Ok(o) => break o,
                Err(f) => {
                    if !self.wait_out(&f, tries) {
                        return false;
                    }
                    tries += 1;
                }
            }
        };
        let mut left: Outbox = outbox;
        loop {
            match self.rt.block_on(self.processor.publish(left)) {
                Ok(()) => break,
                Err((f, rest)) => {
                    left = rest;
                    if !self.wait_out(&f, tries) {
                        return false;
                    }
                    tries += 1;
                }
            }
        }
        if self.processor.health.paused.swap(false, Relaxed) {
            self.resume_all();
        }
        true
    }

    /// After a refused batch: marks the dependency down, pauses fetching
    /// (once), and waits the backoff while still polling (to stay in the
    /// group). False when stopped meanwhile.
    fn wait_out(&mut self, f: &Failure, tries: u32) -> bool {
        let p = &self.processor;
        let dep = f.dependency();
        match f {
            Failure::Database(_) => p.health.db_up.store(false, Relaxed),
            Failure::Redis(_) => p.health.redis_up.store(false, Relaxed),
            Failure::Kafka(_) => p.health.kafka_up.store(false, Relaxed),
        }
        p.health.set_error(&format!("{dep}: {}", f.message()));
        p.metrics.retries.with_label_values(&[dep]).inc();
        if tries == 0 || tries.is_power_of_two() {
            tracing::warn!(
                dependency = dep,
                error = f.message(),
                tries,
                "batch refused; fetching paused, trying again"
            );
        }
        if !p.health.paused.swap(true, Relaxed) {
            p.metrics.paused.set(1);
            if let Ok(a) = self.consumer.assignment() {
                if let Err(e) = self.consumer.pause(&a) {
                    tracing::warn!(error = %e, "cannot pause the partitions");
                }
            }
        }
        let max = Duration::from_millis(p.cfg.retry_backoff_max_ms.max(100));
        let full = BACKOFF_MIN.saturating_mul(1u32 << tries.min(16)).min(max);
        // Full jitter over the upper half: consumers refused together do
        // not come back together.
        let wait = full / 2 + full.mul_f64(fastrand::f64() / 2.0);
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.stop.load(Relaxed) {
                return false;
            }
            // Paused: nothing should arrive. A partition assigned before
            // the pause reached it may still deliver: put it back.
            if let Some(Ok(m)) = self.consumer.poll(IDLE_POLL.min(until - Instant::now())) {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(m.topic(), m.partition());
                let _ = self.consumer.seek(
                    m.topic(),
                    m.partition(),
                    Offset::Offset(m.offset()),
                    Duration::from_secs(5),
                );
                let _ = self.consumer.pause(&tpl);
            }
        }
        true
    }

    fn resume_all(&mut self) {
        self.processor.metrics.paused.set(0);
        let Ok(a) = self.consumer.assignment() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for e in a.elements() {
            if !self
                .held
                .contains_key(&(e.topic().to_string(), e.partition()))
            {
                tpl.add_partition(e.topic(), e.partition());
            }
        }
        if let Err(e) = self.consumer.resume(&tpl) {
            tracing::warn!(error = %e, "cannot resume the partitions");
        }
        tracing::info!("batch written; fetching resumed");
    }

    /// Commits the offsets after the batch, on the partitions still ours.
    fn commit(&mut self, batch: &[Polled]) {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for p in batch {
            let e = next.entry((&p.topic, p.partition)).or_insert(0);
            *e = (*e).max(p.offset + 1);
        }
        let owned = self.consumer.assignment().ok();
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            let ours = owned
                .as_ref()
                .is_none_or(|a| a.find_partition(topic, partition).is_some());
            if ours {
                let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => self
                .processor
                .health
                .last_commit_ms
                .store(now_ms(), Relaxed),
            // The rows are in: a redelivery after this is a no-op.
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; the batch may be read again")
            }
        }
    }
}
