//! Sales and items as the ingress and the stages see them: an in-process
//! copy of what the admin API wrote to Redis, so a purchase never reads
//! sale metadata from the network.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// One item of a sale.
#[derive(Debug)]
pub struct Item {
    pub sale_id: String,
    pub item_id: String,
    pub title: String,
    pub price_cents: u64,
    pub stock: u64,
    pub per_user_limit: u32,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Stock shards the item's stock is split over (1: not split). A
    /// sharded item is sold out only when every shard is: the store
    /// answers `sold_out` only then.
    pub shards: u32,
    /// Set when the stock script answers `sold_out`; the ingress and the
    /// dedupe stage answer from it without touching Redis. Relaxed: a stale
    /// read only means one more trip to the script, which decides anyway.
    sold_out: AtomicBool,
    /// Units still `available` as last read from Redis (the public item
    /// page shows it; refreshed about once a second, never per request).
    remaining: AtomicI64,
    /// Set once units of this item were seen won (sticky): only such items
    /// can have orders to sweep or events to publish.
    touched: AtomicBool,
    /// Set once the status board let go of wins of this item (its bound):
    /// a request id it no longer knows may be one of them, so once sold
    /// out an unknown request goes to the stock script, which returns the
    /// stored outcome, instead of being answered `sold_out` here.
    wins_forgotten: AtomicBool,
    /// Wall-clock ms at which this daemon first saw the item sold out (0:
    /// not yet): the sale summary's time to sell out.
    sold_out_at_ms: AtomicU64,
    /// Redis holds no stock for this item although it was loaded (a Redis
    /// restarted empty, a failover to a replica that never got the sale):
    /// nothing may be answered from Redis's silence — not `sold_out`, not
    /// `rejected` — until the sale is rebuilt or loaded again.
    data_lost: AtomicBool,
    /// Wall-clock ms before which no unpaid order of the item can be due,
    /// as the last sweep found it (0: sweep at the next pass): the
    /// sweeper visits only items whose next deadline has come.
    next_sweep_ms: AtomicU64,
    /// This daemon wrote order events for the item (a pay, a cancel, an
    /// expiry) that its outbox may still hold: the outbox publisher reads
    /// these items every pass, the others less often.
    events_pending: AtomicBool,
}

impl Item {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sale_id: &str,
        item_id: &str,
        title: &str,
        price_cents: u64,
        stock: u64,
        per_user_limit: u32,
        start_ms: u64,
        end_ms: u64,
    ) -> Item {
        Item {
            sale_id: sale_id.to_string(),
            item_id: item_id.to_string(),
            title: title.to_string(),
            price_cents,
            stock,
            per_user_limit,
            start_ms,
            end_ms,
            shards: 1,
            sold_out: AtomicBool::new(stock == 0),
            remaining: AtomicI64::new(i64::try_from(stock).unwrap_or(i64::MAX)),
            touched: AtomicBool::new(false),
            wins_forgotten: AtomicBool::new(false),
            sold_out_at_ms: AtomicU64::new(0),
            data_lost: AtomicBool::new(false),
            next_sweep_ms: AtomicU64::new(0),
            events_pending: AtomicBool::new(false),
        }
    }

    /// Whether an unpaid order of the item may be due at `now_ms`.
    pub fn sweep_due(&self, now_ms: u64) -> bool {
        self.next_sweep_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// No unpaid order of the item is due before `ms` (a sweep's finding:
    /// its earliest deadline, or now plus the payment window when none is
    /// waiting — every later win's deadline is at least that).
    pub fn set_next_sweep(&self, ms: u64) {
        self.next_sweep_ms.store(ms, Ordering::Relaxed);
    }

    /// This daemon wrote order events for the item.
    pub fn note_events(&self) {
        self.events_pending.store(true, Ordering::Relaxed);
    }

    /// Whether this daemon wrote order events it has not seen published.
    pub fn events_pending(&self) -> bool {
        self.events_pending.load(Ordering::Relaxed)
    }

    /// The item's outbox was found empty.
    pub fn clear_events(&self) {
        self.events_pending.store(false, Ordering::Relaxed);
    }

    /// The item with its stock split over `shards` shards.
    pub fn with_shards(mut self, shards: u32) -> Item {
        self.shards = shards.max(1);
        self
    }

    /// Redis lost this item's stock (see the field).
    pub fn data_lost(&self) -> bool {
        self.data_lost.load(Ordering::Relaxed)
    }

    /// Marks the item's Redis data lost or found again; true when this
    /// call found it lost (for the one alert per loss).
    pub fn set_data_lost(&self, lost: bool) -> bool {
        if lost {
            !self.data_lost.swap(true, Ordering::Relaxed)
        } else {
            self.data_lost.store(false, Ordering::Relaxed);
            false
        }
    }

    /// Sold out, and every win of it known here: a request id the board
    /// does not know may be answered `sold_out` without Redis.
    pub fn answers_sold_out(&self) -> bool {
        self.is_sold_out() && !self.wins_forgotten.load(Ordering::Relaxed) && !self.data_lost()
    }

    /// The board let go of (or never loaded) some wins of this item: only
    /// the stock script can tell a retried win from a new request.
    pub fn wins_forgotten(&self) -> bool {
        self.wins_forgotten.load(Ordering::Relaxed)
    }

    /// The board let go of (or never loaded) some wins of this item.
    pub fn forget_wins(&self) {
        self.wins_forgotten.store(true, Ordering::Relaxed);
    }

    pub fn is_sold_out(&self) -> bool {
        self.sold_out.load(Ordering::Relaxed)
    }

    pub fn set_sold_out(&self, v: bool) {
        // Read first (the flag is set over and over during a storm), then
        // swapped: only the first time it turns sold out reads the clock.
        if v && !self.sold_out.load(Ordering::Relaxed)
            && !self.sold_out.swap(true, Ordering::Relaxed)
        {
            let _ = self.sold_out_at_ms.compare_exchange(
                0,
                crate::clock::now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else if !v {
            // Re-opened (released stock): a later sell-out is stamped anew.
            self.sold_out.store(false, Ordering::Relaxed);
            self.sold_out_at_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Wall-clock ms at which this daemon first saw the item sold out; 0
    /// when it has not.
    pub fn sold_out_at_ms(&self) -> u64 {
        self.sold_out_at_ms.load(Ordering::Relaxed)
    }

    pub fn remaining(&self) -> i64 {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Takes the `available` count read from Redis: the sold-out flag
    /// follows it (set at 0, re-opened when released stock is back).
    pub fn set_remaining(&self, available: i64) {
        self.remaining.store(available, Ordering::Relaxed);
        self.set_sold_out(available <= 0);
        if available < i64::try_from(self.stock).unwrap_or(i64::MAX) {
            self.touch();
        }
    }

    /// Marks the item as having had wins.
    pub fn touch(&self) {
        self.touched.store(true, Ordering::Relaxed);
    }

    pub fn touched(&self) -> bool {
        self.touched.load(Ordering::Relaxed)
    }
}

/// Sale id → item id → item. Reads take a shared lock for a hash lookup by
/// `&str` (no allocation); writes are rare (admin).
#[derive(Debug, Default)]
pub struct Catalog {
    sales: RwLock<HashMap<String, HashMap<String, Arc<Item>>>>,
}

impl Catalog {
    pub fn item(&self, sale_id: &str, item_id: &str) -> Option<Arc<Item>> {
        let sales = self.sales.read().unwrap_or_else(|p| p.into_inner());
        sales.get(sale_id)?.get(item_id).cloned()
    }

    pub fn sale_ids(&self) -> Vec<String> {
        let sales = self.sales.read().unwrap_or_else(|p| p.into_inner());
        sales.keys().cloned().collect()
    }

    pub fn sale_items(&self, sale_id: &str) -> Option<Vec<Arc<Item>>> {
        let sales = self.sales.read().unwrap_or_else(|p| p.into_inner());
        sales.get(sale_id).map(|m| m.values().cloned().collect())
    }

    /// Takes a sale as read from Redis (written by any daemon's admin API):
    /// items whose terms did not change keep their `Arc` and sold-out flag.
    pub fn refresh_sale(&self, sale_id: &str, items: Vec<Item>) {
        let mut sales = self.sales.write().unwrap_or_else(|p| p.into_inner());
        let old = sales.remove(sale_id).unwrap_or_default();
        let map = items
            .into_iter()
            .map(|i| {
                let keep = old.get(&i.item_id).filter(|o| {
                    o.start_ms == i.start_ms
                        && o.end_ms == i.end_ms
                        && o.price_cents == i.price_cents
                        && o.per_user_limit == i.per_user_limit
                        && o.stock == i.stock
                        && o.shards == i.shards
                });
                // Whatever the terms, what the board forgot stays forgotten.
                if let Some(o) = old.get(&i.item_id) {
                    if o.wins_forgotten() {
                        i.forget_wins();
                    }
                    if o.touched() {
                        i.touch();
                    }
                }
                let item = match keep {
                    Some(o) => {
                        o.set_remaining(i.remaining());
                        if i.touched() {
                            o.touch();
                        }
                        if i.wins_forgotten.load(Ordering::Relaxed) {
                            o.forget_wins();
                        }
                        Arc::clone(o)
                    }
                    None => Arc::new(i),
                };
                (item.item_id.clone(), item)
            })
            .collect();
        sales.insert(sale_id.to_string(), map);
    }

    /// Every sale with its items (sorted by sale id, then item id).
    pub fn sales(&self) -> Vec<(String, Vec<Arc<Item>>)> {
        let sales = self.sales.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, Vec<Arc<Item>>)> = sales
            .iter()
            .map(|(id, items)| {
                let mut v: Vec<Arc<Item>> = items.values().cloned().collect();
                v.sort_by(|a, b| a.item_id.cmp(&b.item_id));
                (id.clone(), v)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Drops a sale (it ended long ago): the daemon forgets it.
    pub fn remove_sale(&self, sale_id: &str) -> bool {
        let mut sales = self.sales.write().unwrap_or_else(|p| p.into_inner());
        sales.remove(sale_id).is_some()
    }

    /// Replaces a sale and all its items.
    pub fn put_sale(&self, sale_id: &str, items: Vec<Item>) {
        let map = items
            .into_iter()
            .map(|i| (i.item_id.clone(), Arc::new(i)))
            .collect();
        let mut sales = self.sales.write().unwrap_or_else(|p| p.into_inner());
        sales.insert(sale_id.to_string(), map);
    }
}
