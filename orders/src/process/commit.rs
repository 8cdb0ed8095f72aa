//! Writing a batch: one transaction (or, for the `single` baseline, one
//! per message); what the database refuses is found by writing each part
//! of the batch alone, and becomes poison.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::{db, now_ms, Failure, Processor};
use crate::config::DbWrite;
use crate::store::{Applied, StoreError, Write, Written};

/// What a batch's write did: what was refused, the orders inserted (where
/// the engine tells), the orders the insert skipped without a word.
pub(super) type Committed = (Refused, Option<BTreeSet<String>>, Vec<String>);

impl Processor {
    /// Writes the batch in one transaction (or one per message for the
    /// `single` baseline); what the database refuses is found by writing
    /// each part alone.
    /// `one_by_one` (or `db_write = single`): a transaction per message
    /// from the start.
    pub(super) async fn commit(
        &self,
        w: &Write<'_>,
        one_by_one: bool,
    ) -> Result<Committed, Failure> {
        if w.is_empty() {
            return Ok((Refused::default(), None, Vec::new()));
        }
        let started = Instant::now();
        let done = if one_by_one || self.cfg.db_write == DbWrite::Single {
            self.one_by_one(w).await?
        } else {
            match self.store.write(w, now_ms() as i64).await {
                Ok(written) => {
                    self.applied(&written.applied);
                    (Refused::default(), written.inserted, written.missing)
                }
                Err(StoreError::Refused(why)) => {
                    tracing::warn!(%why, "the database refused a batch; writing its messages one by one");
                    self.one_by_one(w).await?
                }
                Err(e) => return Err(db(e)),
            }
        };
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.health.db_up.store(true, Relaxed);
        Ok(done)
    }

    async fn one_by_one(&self, w: &Write<'_>) -> Result<Committed, Failure> {
        let mut refused = Refused::default();
        let mut inserted: Option<BTreeSet<String>> = None;
        let mut missing = Vec::new();
        let now = now_ms() as i64;
        let parts = w
            .orders
            .iter()
            .map(|o| Write {
                orders: vec![o.clone()],
                ..Write::default()
            })
            .chain(w.closed.iter().map(|o| Write {
                closed: vec![o.clone()],
                ..Write::default()
            }))
            .chain(w.events.iter().map(|e| Write {
                events: vec![*e],
                ..Write::default()
            }))
            .chain(w.dlq.iter().map(|d| Write {
                dlq: vec![d.clone()],
                ..Write::default()
            }));
        for part in parts {
            match self.store.write(&part, now).await {
                Ok(Written {
                    applied,
                    inserted: ids,
                    missing: gone,
                }) => {
                    self.applied(&applied);
                    if let Some(ids) = ids {
                        inserted.get_or_insert_with(BTreeSet::new).extend(ids);
                    }
                    missing.extend(gone);
                }
                Err(StoreError::Refused(why)) => {
                    if let Some(o) = part.orders.first().or(part.closed.first()) {
                        refused.orders.push((o.order.order_id.clone(), why));
                    } else if let Some(e) = part.events.first() {
                        refused
                            .events
                            .push(((e.order_id.clone(), e.kind.as_str()), why));
                    } else if let Some(d) = part.dlq.first() {
                        // Nothing else can hold it: said loudly, counted.
                        tracing::error!(source = ?d.source, %why, "a dead letter cannot be recorded");
                        self.metrics.count("dlq_unrecordable", 1);
                    }
                }
                Err(e) => return Err(db(e)),
            }
        }
        Ok((refused, inserted, missing))
    }

    pub(super) fn applied(&self, a: &Applied) {
        self.metrics.count("event_applied", a.applied);
        for (order, state, event) in &a.conflicts {
            tracing::warn!(
                order,
                state,
                event,
                "an event found its order closed in another state"
            );
            self.metrics.event_conflicts.inc();
        }
    }
}

/// What the database refused, by order id and by (order id, event).
#[derive(Debug, Default)]
pub(super) struct Refused {
    pub(super) orders: Vec<(String, String)>,
    pub(super) events: Vec<((String, &'static str), String)>,
}
