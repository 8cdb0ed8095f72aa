use std::sync::Arc;

use crate::clock::SharedClock;
use crate::event::{Event, Origin};
use crate::health::{Health, State};
use crate::outcome::Status;
use crate::port::{DeductGroup, DeductOutcome, DeductRequest, StockStore, StoreError};
use crate::progress::{item_key, Backlog, Rescued};
use crate::stage::Stage;
use crate::stats::Stats;
use crate::status::{winner_key, StatusBoard};

/// Sends every undecided request of the batch to the stock store in ONE
/// call: grouped by item, arrival order kept within an item.
///
/// It is also Redis's circuit breaker. A failed call turns the store's
/// health `down` and decides the batch `pending` (journaled, answered 202);
/// while `down`, requests are decided `pending` without a call. While an
/// item has pending intents (the backlog), new requests for it are decided
/// `pending` too, so they wait behind the older ones; replay re-drives the
/// backlog in LSN order (`Origin::Redrive` slots) once the probe saw Redis
/// again.
///
/// It also stops taking stock while the journal cannot write (a full
/// disk): a win that no journal holds is a win nobody may hear of, so
/// client requests are answered 503 (`unavailable`) without a call. One
/// batch every [`JOURNAL_PROBE_INTERVAL`] still goes through when the
/// journal holds no unwritten win, as the probe that finds the disk back.
pub struct Deduct {
    store: Box<dyn StockStore>,
    board: Arc<StatusBoard>,
    stats: Arc<Stats>,
    health: Arc<Health>,
    backlog: Arc<Backlog>,
    journal: Arc<Health>,
    rescued: Arc<Rescued>,
    /// When a batch last went to Redis while the journal was down.
    last_probe: std::time::Duration,
    pay_timeout_ms: u64,
    clock: SharedClock,
    order: Vec<usize>,
    outcomes: Vec<DeductOutcome>,
    key: String,
}

/// What the deduct stage shares with the rest of the daemon.
#[derive(Clone)]
pub struct DeductShared {
    pub board: Arc<StatusBoard>,
    pub stats: Arc<Stats>,
    pub health: Arc<Health>,
    pub backlog: Arc<Backlog>,
    pub journal: Arc<Health>,
    pub rescued: Arc<Rescued>,
}

/// While the journal is down, how often one batch still goes to Redis (and
/// then to the journal) to find out whether it writes again.
pub const JOURNAL_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

impl Deduct {
    pub fn new(
        store: Box<dyn StockStore>,
        shared: DeductShared,
        pay_timeout_ms: u64,
        clock: SharedClock,
    ) -> Deduct {
        Deduct {
            store,
            board: shared.board,
            stats: shared.stats,
            health: shared.health,
            backlog: shared.backlog,
            journal: shared.journal,
            rescued: shared.rescued,
            last_probe: std::time::Duration::ZERO,
            pay_timeout_ms,
            clock,
            order: Vec::with_capacity(256),
            outcomes: Vec::with_capacity(256),
            key: String::with_capacity(128),
        }
    }

    /// The journal is down and this batch is not its probe: no stock is
    /// taken (the journal stage retries its held wins by itself).
    fn journal_closed(&mut self) -> bool {
        if self.journal.state() != State::Down {
            return false;
        }
        let now = self.clock.monotonic();
        if self.rescued.held() == 0 && now.saturating_sub(self.last_probe) >= JOURNAL_PROBE_INTERVAL
        {
            self.last_probe = now;
            return false;
        }
        true
    }

    /// Decides `pending`; a client's request joins its item's backlog.
    fn defer(&mut self, e: &Event) {
        e.decide(Status::Pending, None);
        match e.origin {
            Origin::Client => {
                item_key(&mut self.key, &e.sale_id, &e.item_id);
                self.backlog.add(&self.key);
            }
            Origin::Redrive { .. } => self.backlog.note_redriven(),
            Origin::Republish { .. } => {}
        }
    }

    fn call(&mut self, events: &[&Event]) -> Result<(), StoreError> {
        let deadline = self.clock.now_ms().saturating_add(self.pay_timeout_ms);
        // The requests in item order, then one group per run of an item
        // (two allocations per batch, whatever its size).
        let requests: Vec<DeductRequest<'_>> = self
            .order
            .iter()
            .map(|&i| DeductRequest {
                request_id: &events[i].request_id,
                user_id: &events[i].user_id,
                quantity: events[i].quantity,
            })
            .collect();
        let mut groups: Vec<DeductGroup<'_>> = Vec::with_capacity(self.order.len());
        let mut start = 0;
        for (k, &i) in self.order.iter().enumerate() {
            let e = events[i];
            let next_same = self
                .order
                .get(k + 1)
                .is_some_and(|&j| events[j].sale_id == e.sale_id && events[j].item_id == e.item_id);
            if !next_same {
                groups.push(DeductGroup {
                    sale_id: &e.sale_id,
                    item_id: &e.item_id,
                    per_user_limit: e.per_user_limit.max(1),
                    pay_deadline_ms: deadline,
                    requests: &requests[start..=k],
                });
                start = k + 1;
            }
        }
        self.outcomes.clear();
        let started = std::time::Instant::now();
        let result = self.store.deduct(&groups, &mut self.outcomes);
        self.stats
            .record_store_call(self.order.len(), started.elapsed());
        result?;
        if self.outcomes.len() != self.order.len() {
            return Err(StoreError::Protocol(format!(
                "{} outcomes for {} requests",
                self.outcomes.len(),
                self.order.len()
            )));
        }
        Ok(())
    }

    fn apply(&mut self, events: &[&Event]) {
        // Taken out for the loop (it defers through `self`), put back after.
        let (order, outcomes) = (
            std::mem::take(&mut self.order),
            std::mem::take(&mut self.outcomes),
        );
        for (&i, outcome) in order.iter().zip(&outcomes) {
            let e = events[i];
            match *outcome {
                DeductOutcome::Success(id) => {
                    if let Some(item) = &e.item {
                        item.touch();
                    }
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
                DeductOutcome::UnknownItem => {
                    let Some(item) = &e.item else {
                        e.decide(Status::Rejected, None);
                        continue;
                    };
                    // Loaded, yet Redis has no stock for it: Redis lost the
                    // sale. Not a refusal: a client is told to come back,
                    // an intent stays pending until the sale is rebuilt.
                    if item.set_data_lost(true) {
                        tracing::error!(sale = %e.sale_id, item = %e.item_id,
                            "Redis holds no stock for a loaded item: its data was lost; answering 503 until the sale is rebuilt");
                    }
                    match e.origin {
                        Origin::Client => e.decide(Status::Unavailable, None),
                        _ => self.defer(e),
                    }
                    continue;
                }
            }
            if let Origin::Redrive { .. } = e.origin {
                item_key(&mut self.key, &e.sale_id, &e.item_id);
                self.backlog.resolve(&self.key);
                self.backlog.note_redriven();
            }
        }
        (self.order, self.outcomes) = (order, outcomes);
    }
}

impl Stage for Deduct {
    fn name(&self) -> &'static str {
        "deduct"
    }

    fn on_batch(&mut self, events: &[&Event]) {
        self.order.clear();
        if self.journal_closed() {
            for e in events {
                if e.status() != Status::Undecided {
                    continue;
                }
                match e.origin {
                    Origin::Client => e.decide(Status::Unavailable, None),
                    // Stays pending (and in the backlog): re-driven again
                    // once the journal writes.
                    Origin::Redrive { .. } => self.defer(e),
                    Origin::Republish { .. } => {}
                }
            }
        }
        let down = self.health.state() == State::Down;
        for (i, e) in events.iter().enumerate() {
            if e.status() != Status::Undecided {
                continue;
            }
            if down {
                // Circuit open: no request waits on a dead Redis.
                self.defer(e);
                continue;
            }
            if e.is_client() && self.backlog.total() > 0 {
                item_key(&mut self.key, &e.sale_id, &e.item_id);
                if self.backlog.has(&self.key) {
                    // Fairness: older pending intents of this item go first.
                    self.defer(e);
                    continue;
                }
            }
            self.order.push(i);
        }
        if self.order.is_empty() {
            return;
        }
        // Stable: within one item, arrival order is kept.
        self.order.sort_by(|&a, &b| {
            let (a, b) = (events[a], events[b]);
            (a.sale_id.as_str(), a.item_id.as_str()).cmp(&(b.sale_id.as_str(), b.item_id.as_str()))
        });
        match self.call(events) {
            Ok(()) => self.apply(events),
            Err(err) => {
                self.stats.record_store_error();
                if self.health.fail(&err.to_string()) {
                    tracing::warn!(error = %err, requests = self.order.len(),
                        "stock store failed; deciding pending until it is back");
                }
                let order = std::mem::take(&mut self.order);
                for &i in &order {
                    self.defer(events[i]);
                }
                self.order = order;
            }
        }
    }
}
