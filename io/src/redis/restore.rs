//! Rebuilding a sale that Redis lost: the sale loaded again and, in the
//! same MULTI/EXEC, every win of its record — the stored outcome of its
//! request, its order, its buyer's count, its unpaid deadline or how it
//! closed — with the stock counts that follow from them.

use std::collections::HashMap;

use redis::RedisError;

use super::catalog::{load_pipe, ItemLoad, RedisAdmin, StockHash};
use super::keys::{self, item_keys};

/// One win to put back.
#[derive(Debug, Clone)]
pub struct RestoredWin<'a> {
    pub order_id: &'a str,
    pub request_id: &'a str,
    pub user_id: &'a str,
    pub quantity: u32,
    /// When an unpaid order expires.
    pub deadline_ms: u64,
    /// How it closed (`paid`, `cancelled`, `expired`, `failed`) and when;
    /// `None`: still awaiting payment.
    pub closed: Option<(&'a str, u64)>,
}

impl RedisAdmin {
    /// Loads the sale again with `items` and restores `wins` (per item id)
    /// atomically: no purchase sees the fresh stock before the wins are
    /// taken out of it. Returns each item's stock hash as written, or
    /// `None` — nothing written — when Redis holds the stock of any item
    /// (live state: never overwritten), also if it appeared while this
    /// call ran (the stock keys are `WATCH`ed from before the check to
    /// `EXEC`). A win for an item not in `items` is ignored. Wins beyond an
    /// item's stock (sold twice before: a failover without `WAIT`) leave
    /// `available` negative, so a later release does not sell past it.
    pub fn restore_sale(
        &self,
        sale_id: &str,
        start_ms: u64,
        end_ms: u64,
        items: &[ItemLoad<'_>],
        wins: &HashMap<&str, Vec<RestoredWin<'_>>>,
    ) -> Result<Option<Vec<StockHash>>, RedisError> {
        let mut c = self.conn()?;
        let stock_keys: Vec<String> = items
            .iter()
            .map(|it| item_keys(sale_id, it.item_id).stock)
            .collect();
        redis::cmd("WATCH")
            .arg(&stock_keys)
            .arg(keys::round_info(sale_id))
            .query::<()>(&mut *c)?;
        let mut exists = redis::pipe();
        for k in &stock_keys {
            exists.exists(k);
        }
        let live: Vec<bool> = exists.query(&mut *c)?;
        if live.iter().any(|&l| l) {
            redis::cmd("UNWATCH").query::<()>(&mut *c)?;
            return Ok(None);
        }
        let mut pipe = load_pipe(&mut c, sale_id, start_ms, end_ms, items)?;
        let mut stocks = Vec::with_capacity(items.len());
        for it in items {
            let k = item_keys(sale_id, it.item_id);
            let (mut locked, mut sold) = (0i64, 0i64);
            let mut units: HashMap<&str, u64> = HashMap::new();
            for w in wins.get(it.item_id).map(Vec::as_slice).unwrap_or(&[]) {
                let q = i64::from(w.quantity);
                *units.entry(w.user_id).or_insert(0) += u64::from(w.quantity);
                pipe.hset(&k.req, w.request_id, format!("ok:{}", w.order_id))
                    .ignore();
                pipe.hset(
                    &k.orders,
                    w.order_id,
                    format!("{}|{}|{}", w.user_id, w.quantity, w.request_id),
                )
                .ignore();
                match w.closed {
                    None => {
                        locked += q;
                        pipe.zadd(&k.unpaid, w.order_id, w.deadline_ms).ignore();
                    }
                    Some((state, at_ms)) => {
                        if state == "paid" {
                            sold += q;
                        }
                        pipe.hset(&k.closed, w.order_id, format!("{state}:{at_ms}"))
                            .ignore();
                    }
                }
            }
            for (user, n) in units {
                pipe.hset(&k.buyers, user, n).ignore();
            }
            let total = i64::try_from(it.stock).unwrap_or(i64::MAX);
            let stock = StockHash {
                available: total - locked - sold,
                locked,
                sold,
                total,
            };
            pipe.hset_multiple(
                &k.stock,
                &[
                    ("available", stock.available),
                    ("locked", stock.locked),
                    ("sold", stock.sold),
                ],
            )
            .ignore();
            stocks.push(stock);
        }
        // Nil: a watched key changed since the check.
        Ok(pipe.query::<Option<()>>(&mut *c)?.map(|()| stocks))
    }
}
