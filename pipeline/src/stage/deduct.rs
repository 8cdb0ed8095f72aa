use std::sync::Arc;

use crate::event::Event;
use crate::outcome::Status;
use crate::port::{DeductGroup, DeductOutcome, DeductRequest, StockStore};
use crate::stage::Stage;
use crate::stats::Stats;
use crate::status::{winner_key, StatusBoard};

/// Sends every undecided request of the batch to the stock store in ONE
/// call: grouped by item, arrival order kept within an item. When the store
/// fails, the batch is decided `pending` (journaled, answered 202) and
/// re-driven by replay once the store is back.
pub struct Deduct {
    store: Box<dyn StockStore>,
    board: Arc<StatusBoard>,
    stats: Arc<Stats>,
    pay_timeout_ms: u64,
    now_ms: fn() -> u64,
    order: Vec<usize>,
    outcomes: Vec<DeductOutcome>,
    key: String,
}

impl Deduct {
    pub fn new(
        store: Box<dyn StockStore>,
        board: Arc<StatusBoard>,
        stats: Arc<Stats>,
        pay_timeout_ms: u64,
        now_ms: fn() -> u64,
    ) -> Deduct {
        Deduct {
            store,
            board,
            stats,
            pay_timeout_ms,
            now_ms,
            order: Vec::with_capacity(256),
            outcomes: Vec::with_capacity(256),
            key: String::with_capacity(128),
        }
    }
}

impl Stage for Deduct {
    fn name(&self) -> &'static str {
        "deduct"
    }

    fn on_batch(&mut self, events: &[&Event]) {
        self.order.clear();
        self.order
            .extend((0..events.len()).filter(|&i| events[i].status() == Status::Undecided));
        if self.order.is_empty() {
            return;
        }
        // Stable: within one item, arrival order is kept (fairness).
        self.order.sort_by(|&a, &b| {
            let (a, b) = (events[a], events[b]);
            (a.sale_id.as_str(), a.item_id.as_str()).cmp(&(b.sale_id.as_str(), b.item_id.as_str()))
        });
        let deadline = (self.now_ms)() + self.pay_timeout_ms;
        let mut groups: Vec<DeductGroup<'_>> = Vec::new();
        for &i in &self.order {
            let e = events[i];
            let same = groups
                .last()
                .is_some_and(|g| g.sale_id == e.sale_id && g.item_id == e.item_id);
            if !same {
                groups.push(DeductGroup {
                    sale_id: &e.sale_id,
                    item_id: &e.item_id,
                    per_user_limit: e.item.as_ref().map_or(1, |i| i.per_user_limit),
                    pay_deadline_ms: deadline,
                    requests: Vec::new(),
                });
            }
            if let Some(g) = groups.last_mut() {
                g.requests.push(DeductRequest {
                    request_id: &e.request_id,
                    user_id: &e.user_id,
                    quantity: e.quantity,
                });
            }
        }
        self.outcomes.clear();
        let result = self.store.deduct(&groups, &mut self.outcomes);
        self.stats.record_store_call(self.order.len());
        let result = result.and_then(|()| {
            if self.outcomes.len() == self.order.len() {
                Ok(())
            } else {
                Err(crate::port::StoreError::Protocol(format!(
                    "{} outcomes for {} requests",
                    self.outcomes.len(),
                    self.order.len()
                )))
            }
        });
        match result {
            Ok(()) => {
                for (&i, outcome) in self.order.iter().zip(&self.outcomes) {
                    let e = events[i];
                    match *outcome {
                        DeductOutcome::Success(id) => {
                            winner_key(&mut self.key, &e.sale_id, &e.item_id, &e.user_id);
                            self.board.add_win(&self.key);
                            e.decide(Status::Success, Some(id));
                        }
                        DeductOutcome::SoldOut => {
                            if let Some(item) = &e.item {
                                item.set_sold_out(true);
                            }
                            e.decide(Status::SoldOut, None);
                        }
                        DeductOutcome::Duplicate => e.decide(Status::Duplicate, None),
                        DeductOutcome::LimitExceeded => e.decide(Status::LimitExceeded, None),
                        DeductOutcome::UnknownItem => e.decide(Status::Rejected, None),
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, requests = self.order.len(), "stock store failed; batch decided pending");
                self.stats.record_store_error();
                for &i in &self.order {
                    events[i].decide(Status::Pending, None);
                }
            }
        }
    }
}
