//! In-memory ports with scripted faults, for tests of the stages and the
//! whole pipeline without Redis, Kafka or a disk. The fake store follows
//! the stock script's rules exactly (see `io/src/redis/deduct.lua`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::outcome::{Decision, OrderId};
use crate::port::{
    DeductGroup, DeductOutcome, Journal, JournalError, Order, OrderSink, RecordKind, SinkError,
    StockStore, StoreError,
};

/// Stock of one item in the fake store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeStock {
    pub available: u64,
    pub locked: u64,
    pub sold: u64,
    /// User → units won (as the script's `buyers` hash).
    pub buyers: HashMap<String, u32>,
    pub outcomes: HashMap<String, DeductOutcome>,
}

#[derive(Debug, Default)]
pub struct FakeStoreState {
    pub items: HashMap<(String, String), FakeStock>,
    /// Number of `deduct` calls (one per batch is the contract).
    pub calls: u64,
}

/// A stock store in memory. Clone it to keep a handle for assertions.
#[derive(Debug, Clone, Default)]
pub struct FakeStore {
    pub state: Arc<Mutex<FakeStoreState>>,
    /// While set, every call fails with `Timeout` (a dead Redis).
    pub down: Arc<AtomicBool>,
}

/// The order id rule shared with the script's intent: a pure function of
/// sale, item, user and the user's units after the win.
pub fn fake_order_id(sale: &str, item: &str, user: &str, n: u32) -> OrderId {
    // FNV-1a, 64 bit.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [sale, item, user, &n.to_string()] {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    OrderId(h)
}

impl FakeStore {
    pub fn with_item(sale: &str, item: &str, stock: u64) -> FakeStore {
        let s = FakeStore::default();
        s.add_item(sale, item, stock);
        s
    }

    pub fn add_item(&self, sale: &str, item: &str, stock: u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.items.insert(
            (sale.to_string(), item.to_string()),
            FakeStock {
                available: stock,
                ..FakeStock::default()
            },
        );
    }

    pub fn stock(&self, sale: &str, item: &str) -> Option<FakeStock> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.items.get(&(sale.to_string(), item.to_string())).cloned()
    }

    pub fn calls(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).calls
    }
}

impl StockStore for FakeStore {
    fn deduct(
        &mut self,
        groups: &[DeductGroup<'_>],
        out: &mut Vec<DeductOutcome>,
    ) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Timeout);
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.calls += 1;
        for g in groups {
            let key = (g.sale_id.to_string(), g.item_id.to_string());
            let Some(stock) = st.items.get_mut(&key) else {
                out.extend(g.requests.iter().map(|_| DeductOutcome::UnknownItem));
                continue;
            };
            for r in g.requests {
                if let Some(prev) = stock.outcomes.get(r.request_id) {
                    out.push(*prev);
                    continue;
                }
                let n = stock.buyers.get(r.user_id).copied().unwrap_or(0);
                let q = u64::from(r.quantity);
                let outcome = if r.quantity > g.per_user_limit {
                    DeductOutcome::LimitExceeded
                } else if n + r.quantity > g.per_user_limit {
                    DeductOutcome::Duplicate
                } else if stock.available < q {
                    DeductOutcome::SoldOut
                } else {
                    // The user's units after this win, as the script
                    // counts them (`units + q`), not their number of wins.
                    let units = n + r.quantity;
                    stock.available -= q;
                    stock.locked += q;
                    stock.buyers.insert(r.user_id.to_string(), units);
                    DeductOutcome::Success(fake_order_id(g.sale_id, g.item_id, r.user_id, units))
                };
                stock.outcomes.insert(r.request_id.to_string(), outcome);
                out.push(outcome);
            }
        }
        Ok(())
    }
}

/// An order as the fake sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentOrder {
    pub order_id: OrderId,
    pub request_id: String,
    pub item_id: String,
    pub user_id: String,
    pub lsn: u64,
}

/// An order sink in memory; `full` makes it refuse like a full queue.
#[derive(Debug, Clone, Default)]
pub struct FakeSink {
    pub sent: Arc<Mutex<Vec<SentOrder>>>,
    pub full: Arc<AtomicBool>,
}

impl FakeSink {
    pub fn sent(&self) -> Vec<SentOrder> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl OrderSink for FakeSink {
    fn publish(&mut self, order: &Order<'_>) -> Result<(), SinkError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(SinkError::QueueFull);
        }
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SentOrder {
                order_id: order.order_id,
                request_id: order.request_id.to_string(),
                item_id: order.item_id.to_string(),
                user_id: order.user_id.to_string(),
                lsn: order.lsn,
            });
        Ok(())
    }

    fn flush(&mut self, _timeout: Duration) -> Result<(), SinkError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(SinkError::QueueFull);
        }
        Ok(())
    }
}

/// A journal in memory: appended records become "durable" at commit.
#[derive(Debug, Clone, Default)]
pub struct FakeJournal {
    pub pending: Arc<Mutex<Vec<Vec<u8>>>>,
    pub durable: Arc<Mutex<Vec<Vec<u8>>>>,
    pub commits: Arc<Mutex<u64>>,
    /// Kind of every durable record, in order.
    pub kinds: Arc<Mutex<Vec<RecordKind>>>,
    pub checkpoint: Arc<Mutex<u64>>,
    /// While set, appends fail like a full disk.
    pub full: Arc<AtomicBool>,
    next_lsn: Arc<Mutex<u64>>,
}

impl FakeJournal {
    pub fn durable_count(&self) -> usize {
        self.durable.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    pub fn commits(&self) -> u64 {
        *self.commits.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn kinds(&self) -> Vec<RecordKind> {
        self.kinds.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn decisions(&self) -> Vec<crate::outcome::OwnedDecision> {
        self.durable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|b| Decision::decode(b).ok().map(|d| (&d).into()))
            .collect()
    }
}

impl Journal for FakeJournal {
    fn append(&mut self, kind: RecordKind, decision: &Decision<'_>) -> Result<u64, JournalError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(JournalError::DiskFull);
        }
        self.kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(kind);
        let mut buf = Vec::new();
        decision.encode(&mut buf);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buf);
        let mut lsn = self.next_lsn.lock().unwrap_or_else(|e| e.into_inner());
        *lsn += 1;
        Ok(*lsn)
    }

    fn commit(&mut self) -> Result<Duration, JournalError> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.durable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut pending);
        *self.commits.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Ok(Duration::ZERO)
    }

    fn probe(&mut self) -> Result<(), JournalError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(JournalError::DiskFull);
        }
        Ok(())
    }

    fn checkpoint(&mut self, lsn: u64) -> Result<(), JournalError> {
        *self.checkpoint.lock().unwrap_or_else(|e| e.into_inner()) = lsn;
        Ok(())
    }
}
