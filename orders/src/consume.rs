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
//! Nothing polled is ever dropped or sought back to: a message is in the
//! batch, in `carry` (polled while a batch waited; first in the next
//! batch) or in `held` (a retry not due yet, with whatever its partition
//! delivered after it). Pausing a partition makes librdkafka fetch, on
//! resume, from just after the last message it handed over — which is in
//! one of those three places — so no seek is needed, and none can fail.
//! A rebalance drops `held` (the partitions are read again from their
//! committed offsets, which never pass a held message).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{OrderConsumer, Topics};
use crate::meta::Meta;
use crate::process::{now_ms, Failure, Outbox, Polled, Processor};

/// How long an idle poll waits (also the loop's tick for resumes and stop).
const IDLE_POLL: Duration = Duration::from_millis(100);
/// The first wait after a refused batch; doubled each time up to
/// `retry_backoff_max_ms`.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Tries of a refused batch after which it is written message by message
/// (a batch some statement of which the database will never take, under
/// a code that does not say so, still gets through).
const TRIES_BEFORE_ONE_BY_ONE: u32 = 3;

/// A retry partition stopped at a message not due yet.
struct Held {
    due_ms: u64,
    /// The message and what its partition delivered after it, in order.
    msgs: Vec<Polled>,
}

pub struct Loop {
    pub consumer: OrderConsumer,
    pub processor: Processor,
    pub rt: tokio::runtime::Handle,
    pub stop: Arc<AtomicBool>,
    /// Bumped by every rebalance (the consumer's context).
    rebalances: Arc<AtomicU64>,
    seen_rebalances: u64,
    held: HashMap<(String, i32), Held>,
    carry: Vec<Polled>,
}

fn owned(m: &BorrowedMessage<'_>, topics: &Topics) -> Polled {
    // Only the service's own topics carry its headers; on the others a
    // header named like ours is not ours.
    let meta = if m.topic() == topics.retry || m.topic() == topics.dlq {
        Meta::read(m.headers())
    } else {
        Meta::default()
    };
    Polled {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        meta,
    }
}

impl Loop {
    pub fn new(
        consumer: OrderConsumer,
        processor: Processor,
        rt: tokio::runtime::Handle,
        stop: Arc<AtomicBool>,
        rebalances: Arc<AtomicU64>,
    ) -> Loop {
        Loop {
            consumer,
            processor,
            rt,
            stop,
            rebalances,
            seen_rebalances: 0,
            held: HashMap::new(),
            carry: Vec::new(),
        }
    }

    /// Runs until `stop`; the batch in hand is finished (or left
    /// uncommitted, for the next owner) first.
    pub fn run(mut self) {
        let topics = Arc::clone(&self.processor.topics);
        if let Err(e) = self.consumer.subscribe(&topics.all()) {
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

    /// After a rebalance the held messages are stale: their partitions are
    /// read again from the committed offsets (or by another member).
    fn after_rebalance(&mut self) {
        let n = self.rebalances.load(Relaxed);
        if n != self.seen_rebalances {
            self.seen_rebalances = n;
            self.held.clear();
        }
    }

    /// Where one message goes: the batch, or the held messages of its
    /// partition (a retry not due yet, or anything behind one).
    fn admit(&mut self, p: Polled, out: &mut Vec<Polled>) {
        let key = (p.topic.clone(), p.partition);
        if let Some(h) = self.held.get_mut(&key) {
            h.msgs.push(p);
            return;
        }
        if p.topic == self.processor.topics.retry && p.meta.due_ms > now_ms() {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&key.0, key.1);
            if let Err(e) = self.consumer.pause(&tpl) {
                // Still held: what the partition delivers meanwhile waits
                // behind the message in memory.
                tracing::warn!(error = %e, "cannot pause a retry partition");
            }
            let due_ms = p.meta.due_ms;
            self.held.insert(
                key,
                Held {
                    due_ms,
                    msgs: vec![p],
                },
            );
            return;
        }
        out.push(p);
    }

    /// Polls up to `batch_len_max` messages (after what was carried over):
    /// waits `IDLE_POLL` for the first, then at most `batch_wait_ms`.
    fn collect(&mut self) -> Vec<Polled> {
        self.after_rebalance();
        let cfg = Arc::clone(&self.processor.cfg);
        let mut out = Vec::new();
        for p in std::mem::take(&mut self.carry) {
            self.admit(p, &mut out);
        }
        let mut deadline: Option<Instant> =
            (!out.is_empty()).then(|| Instant::now() + Duration::from_millis(cfg.batch_wait_ms));
        while out.len() < cfg.batch_len_max {
            let wait = match deadline {
                None => IDLE_POLL,
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            if deadline.is_some() && wait.is_zero() {
                break;
            }
            let p = match self.consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "consumer error");
                    continue;
                }
                Some(Ok(m)) => owned(&m, &self.processor.topics),
            };
            self.after_rebalance();
            self.admit(p, &mut out);
            if !out.is_empty() {
                deadline.get_or_insert_with(|| {
                    Instant::now() + Duration::from_millis(cfg.batch_wait_ms)
                });
            }
        }
        out
    }

    /// Retry partitions whose head is due: their messages go first in the
    /// next batch, and fetching resumes behind them.
    fn resume_due(&mut self) {
        if self.held.is_empty() || self.processor.health.paused.load(Relaxed) {
            return;
        }
        let now = now_ms();
        let due: Vec<(String, i32)> = self
            .held
            .iter()
            .filter(|(_, h)| h.due_ms <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(h) = self.held.remove(&key) else {
                continue;
            };
            self.carry.extend(h.msgs);
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
            let one_by_one = tries >= TRIES_BEFORE_ONE_BY_ONE;
            match self.rt.block_on(self.processor.write(batch, one_by_one)) {
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

    fn pause_assignment(&self) {
        if let Ok(a) = self.consumer.assignment() {
            if let Err(e) = self.consumer.pause(&a) {
                tracing::warn!(error = %e, "cannot pause the partitions");
            }
        }
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
            self.pause_assignment();
        }
        let max = Duration::from_millis(self.processor.cfg.retry_backoff_max_ms.max(100));
        let full = BACKOFF_MIN.saturating_mul(1u32 << tries.min(16)).min(max);
        // Drawn in the upper half: consumers refused together do not come
        // back together.
        let wait = full / 2 + full.mul_f64(fastrand::f64() / 2.0);
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.stop.load(Relaxed) {
                return false;
            }
            // Paused: nothing should arrive. What a partition delivers
            // before its pause took effect waits for the next batch.
            if let Some(Ok(m)) = self.consumer.poll(IDLE_POLL.min(until - Instant::now())) {
                self.carry.push(owned(&m, &self.processor.topics));
                drop(m);
                self.pause_assignment();
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
