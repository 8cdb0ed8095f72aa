//! One batch, from what was polled to what is left to publish:
//!
//! ```text
//!  decode ─► business check ─► stock check ─► backlog release ─► ONE transaction ─► outbox
//!  (bytes)   (rows by order     (Redis: one    (Redis: the        (orders, closed,   (retries, dead
//!             and request id)    HMGET each     cancel rules,      events, DLQ        letters, failed
//!                                item)          state failed)      entries)           events)
//! ```
//!
//! Every step can be done again with the same result: the release script
//! answers "again", the rows are inserted unless present, the events are
//! kept once per (order, event). So when anything fails the consumer just
//! tries the whole batch again, offsets still uncommitted, and a crash
//! anywhere in here loses and doubles nothing.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use seckill_io::redis::{Action, OrderAction, OrderState, RedisAdmin};

use crate::config::Config;
use crate::health::Health;
use crate::kafka::{Outgoing, Producer, Topics};
use crate::message::{failed_event, Poison};
use crate::meta::Meta;
use crate::metrics::Metrics;
use crate::plan::{self, Kind};
use crate::store::{Store, StoreError, Write};

mod commit;
mod decode;

pub use decode::{decode, Polled};
use decode::{fit, ids_of, new_order};

/// The reason a backlog-released order carries.
pub const BACKLOG: &str = "backlog";
/// Longest error text carried in headers and the DLQ.
const ERROR_LEN_MAX: usize = 1000;

/// A dependency that refused a batch: the batch waits and is tried again.
#[derive(Debug, Clone)]
pub enum Failure {
    Database(String),
    Redis(String),
    Kafka(String),
}

impl Failure {
    pub fn dependency(&self) -> &'static str {
        match self {
            Failure::Database(_) => "database",
            Failure::Redis(_) => "redis",
            Failure::Kafka(_) => "kafka",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Database(m) | Failure::Redis(m) | Failure::Kafka(m) => m,
        }
    }
}

fn db(e: StoreError) -> Failure {
    Failure::Database(e.to_string())
}

/// What the batch still has to publish once its rows are committed.
#[derive(Debug, Default)]
pub struct Outbox(pub Vec<Outgoing>);

pub struct Processor {
    pub store: Arc<Store>,
    pub redis: RedisAdmin,
    pub producer: Producer,
    pub cfg: Arc<Config>,
    /// `cfg.topics()`, resolved once.
    pub topics: Arc<Topics>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

pub use seckill_pipeline::now_ms;

impl Processor {
    /// Everything but the publishing: decode, check, release, write.
    /// `one_by_one`: one transaction per message (a batch refused for a
    /// reason the database does not name as the message's).
    pub async fn write(&self, batch: &[Polled], one_by_one: bool) -> Result<Outbox, Failure> {
        let now = now_ms();
        let kinds: Vec<Kind> = batch.iter().map(|p| decode(p, &self.topics, now)).collect();
        // MySQL cannot say which rows an insert skipped: its batches look
        // their wins up first. PostgreSQL's insert says (below).
        let first = self.store.looks_up_first();
        let stored = if first {
            let all: Vec<usize> = (0..kinds.len()).collect();
            let (ids, rids) = ids_of(&kinds, &all);
            self.store.existing(&ids, &rids).await.map_err(db)?
        } else {
            Vec::new()
        };
        self.health.db_up.store(true, Relaxed);
        let mut checked = plan::check(&kinds, &stored);
        let anomalies = self.stock_check(&kinds, &checked.candidates)?;
        let release_after = self
            .cfg
            .backlog_release
            .then_some(self.cfg.backlog_release_after_ms);
        // A win back from the retry topic (retried, or redriven from the
        // DLQ by a human) is created however old it is: it is late because
        // it failed, not because the service is behind.
        let retried = |i: usize| batch[i].meta.source.is_some();
        let mut split = plan::split(
            &kinds,
            &checked.candidates,
            &anomalies,
            release_after,
            now,
            &retried,
        );
        if !first {
            // Without the lookup before: the wins about to be released or
            // parked are looked up now (a redelivery is neither).
            let late = self.lookup(&kinds, &split.release).await?;
            split.release = late.candidates;
            checked.duplicates.extend(late.duplicates);
            checked.poison.extend(late.poison);
            let parked: Vec<usize> = split.park.iter().map(|(i, _)| *i).collect();
            let late = self.lookup(&kinds, &parked).await?;
            split.park.retain(|(i, _)| late.candidates.contains(i));
            checked.duplicates.extend(late.duplicates);
            checked.poison.extend(late.poison);
        }

        let mut poison: Vec<(usize, Poison)> = checked.poison;
        poison.extend(split.park);
        for (i, k) in kinds.iter().enumerate() {
            if let Kind::Poison(p) = k {
                poison.push((i, p.clone()));
            }
        }
        let mut w = Write {
            orders: split
                .create
                .iter()
                .filter_map(|&i| new_order(batch, &kinds, i, OrderState::AwaitingPayment, None))
                .collect(),
            ..Write::default()
        };
        let released = self.release(batch, &kinds, &split.release, now, &mut w, &mut poison)?;
        let (events, event_dups) = plan::events(&kinds);
        w.events = events;
        w.dlq = plan::dead_letters(&kinds);

        let (refused, inserted, missing) = self.commit(&w, one_by_one).await?;
        // What the database refused is poison, found by writing alone
        // (the batch's wins and events are unique by now).
        for (o, why) in refused.orders {
            let at = split
                .create
                .iter()
                .chain(&split.release)
                .copied()
                .find(|&i| matches!(kinds.get(i), Some(Kind::Order(x)) if x.order_id == o));
            poison.extend(at.map(|i| (i, Poison::Constraint(why))));
        }
        for ((order, event), why) in refused.events {
            let at = kinds.iter().position(
                |k| matches!(k, Kind::Event(x) if x.order_id == order && x.kind.as_str() == event),
            );
            poison.extend(at.map(|i| (i, Poison::Constraint(why))));
        }
        for o in missing {
            let at = split
                .create
                .iter()
                .copied()
                .find(|&i| matches!(kinds.get(i), Some(Kind::Order(x)) if x.order_id == o));
            poison.extend(at.map(|i| {
                (
                    i,
                    Poison::Constraint(format!(
                        "order {o} was not written: its request id belongs to another order"
                    )),
                )
            }));
        }
        let refused_ids: Vec<String> = poison
            .iter()
            .filter_map(|(i, _)| match kinds.get(*i) {
                Some(Kind::Order(o)) => Some(o.order_id.clone()),
                _ => None,
            })
            .collect();
        let mut created = w.orders.len().saturating_sub(refused_ids.len());
        if let Some(inserted) = inserted {
            // The wins the insert skipped: present already (a redelivery),
            // or present with other content.
            let skipped: Vec<usize> = split
                .create
                .iter()
                .copied()
                .filter(|&i| {
                    matches!(kinds.get(i), Some(Kind::Order(o))
                        if !inserted.contains(&o.order_id) && !refused_ids.contains(&o.order_id))
                })
                .collect();
            created = inserted.len();
            if !skipped.is_empty() {
                let late = self.lookup(&kinds, &skipped).await?;
                checked.duplicates.extend(late.duplicates);
                poison.extend(late.poison);
                for i in late.candidates {
                    poison.push((
                        i,
                        Poison::Constraint("the insert skipped it and no row holds it".into()),
                    ));
                }
            }
        }
        // A `failed` event only for a release whose row was written.
        let failed_events: Vec<Outgoing> = released
            .into_iter()
            .filter(|(order, _)| !refused_ids.contains(order))
            .map(|(_, e)| e)
            .collect();
        let m = &self.metrics;
        m.count("created", created);
        m.count("duplicate", checked.duplicates.len() + event_dups);
        m.count("released", failed_events.len());
        m.count("closed", w.closed.len().saturating_sub(failed_events.len()));
        m.count("event", w.events.len());
        m.count("dlq_recorded", w.dlq.len());
        let done = now_ms();
        for o in w.orders.iter().chain(&w.closed) {
            m.decision_to_row_seconds
                .observe(done.saturating_sub(o.order.created_ms) as f64 / 1000.0);
        }

        let mut out = failed_events;
        for (i, p) in poison {
            out.push(self.forward(&batch[i], &p, now));
        }
        Ok(Outbox(out))
    }

    /// Releases the old wins in Redis (the cancel rules, state `failed`)
    /// and adds their rows to `w`; returns each release's `failed` event.
    fn release<'a>(
        &self,
        batch: &[Polled],
        kinds: &'a [Kind],
        at: &[usize],
        now: u64,
        w: &mut Write<'a>,
        poison: &mut Vec<(usize, Poison)>,
    ) -> Result<Vec<(String, Outgoing)>, Failure> {
        let mut events = Vec::new();
        for &i in at {
            let Some(Kind::Order(o)) = kinds.get(i) else {
                continue;
            };
            let r = self
                .redis
                .order_action(&o.sale_id, &o.item_id, &o.order_id, Action::Fail, "", now)
                .map_err(|e| Failure::Redis(e.to_string()))?;
            self.health.redis_up.store(true, Relaxed);
            match r {
                OrderAction::Done(OrderState::Failed) | OrderAction::Again(OrderState::Failed) => {
                    w.closed.extend(new_order(
                        batch,
                        kinds,
                        i,
                        OrderState::Failed,
                        Some(BACKLOG),
                    ));
                    events.push((
                        o.order_id.clone(),
                        Outgoing {
                            topic: self.topics.events.clone(),
                            key: Some(o.order_id.clone().into_bytes()),
                            payload: Some(failed_event(o, BACKLOG, now)),
                            headers: None,
                        },
                    ));
                }
                // Closed before the release got to it (paid, cancelled or
                // expired on a daemon): the row takes that state, and the
                // daemon's outbox publishes its event.
                OrderAction::Done(s) | OrderAction::Again(s) | OrderAction::Conflict(s) => {
                    w.closed.extend(new_order(batch, kinds, i, s, None));
                }
                OrderAction::Unknown | OrderAction::Forbidden => poison.push((
                    i,
                    Poison::UnknownOrder(format!(
                        "Redis holds no order {} of {}/{} to release",
                        o.order_id, o.sale_id, o.item_id
                    )),
                )),
            }
        }
        Ok(events)
    }

    /// The wins at `at` checked against their rows, looked up now.
    async fn lookup(&self, kinds: &[Kind], at: &[usize]) -> Result<plan::Checked, Failure> {
        if at.is_empty() {
            return Ok(plan::Checked::default());
        }
        let (ids, rids) = ids_of(kinds, at);
        let rows = self.store.existing(&ids, &rids).await.map_err(db)?;
        Ok(plan::against(kinds, at, &rows))
    }

    /// Checks the stock hash of every item the candidates belong to: the
    /// anomalous items, with what is wrong.
    fn stock_check(
        &self,
        kinds: &[Kind],
        candidates: &[usize],
    ) -> Result<HashMap<(String, String), String>, Failure> {
        let mut anomalies = HashMap::new();
        if !self.cfg.stock_check || candidates.is_empty() {
            return Ok(anomalies);
        }
        let items = plan::items(kinds, candidates);
        let stocks = self
            .redis
            .stocks(&items)
            .map_err(|e| Failure::Redis(e.to_string()))?;
        self.health.redis_up.store(true, Relaxed);
        for ((sale, item), stock) in items.iter().zip(stocks) {
            let why = match stock {
                None => Some("the item has no stock hash in Redis".to_string()),
                Some(s) => s.anomaly(),
            };
            let gauge = self.metrics.stock_anomaly.with_label_values(&[sale, item]);
            match why {
                Some(why) => {
                    if gauge.get() == 0 {
                        tracing::error!(sale, item, %why, "stock anomaly: the item's orders are kept in the dead-letter queue");
                    }
                    gauge.set(1);
                    anomalies.insert((sale.to_string(), item.to_string()), why);
                }
                None => gauge.set(0),
            }
        }
        Ok(anomalies)
    }

    /// A poison message's next stop: the retry topic (with its delay) or
    /// the dead-letter queue.
    fn forward(&self, p: &Polled, why: &Poison, now: u64) -> Outgoing {
        let attempt = p.meta.attempt.saturating_add(1);
        let to_dlq = why.for_a_human() || attempt > self.cfg.retry_attempts_max;
        let error = fit(&why.to_string(), ERROR_LEN_MAX);
        let meta = Meta {
            attempt,
            due_ms: if to_dlq {
                0
            } else {
                now.saturating_add(self.cfg.retry_delay(attempt).as_millis() as u64)
            },
            source: Some(p.source()),
            error_kind: why.kind().to_string(),
            error,
            first_failed_ms: if p.meta.first_failed_ms == 0 {
                now
            } else {
                p.meta.first_failed_ms
            },
        };
        self.metrics
            .count(if to_dlq { "dead_lettered" } else { "retried" }, 1);
        tracing::warn!(source = ?meta.source, reason = why.kind(), error = %meta.error, attempt, to_dlq, "poison message");
        Outgoing {
            topic: if to_dlq {
                self.topics.dlq.clone()
            } else {
                self.topics.retry.clone()
            },
            key: p.key.clone(),
            payload: p.payload.clone(),
            headers: Some(meta.headers()),
        }
    }

    /// Publishes the outbox; what Kafka did not acknowledge comes back.
    pub async fn publish(&self, out: Outbox) -> Result<(), (Failure, Outbox)> {
        match self.producer.send_all(out.0).await {
            Ok(()) => {
                self.health.kafka_up.store(true, Relaxed);
                Ok(())
            }
            Err((e, rest)) => Err((Failure::Kafka(e), Outbox(rest))),
        }
    }
}
