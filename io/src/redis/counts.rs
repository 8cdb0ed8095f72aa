//! What Redis counts of items: the stock hash, the number of wins, the
//! wins themselves — for a sharded item, summed (or joined) over its
//! shards, so the sale page, the dashboard, the checker and the catalog
//! see the item's totals.

use redis::RedisError;

use super::catalog::RedisAdmin;
use super::conn::RedisConn;
use super::keys::tag_keys;
use super::layout::Tags;
use super::shards::expand;

/// The stock hash of one item (of a sharded item: the sum of its shards').
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StockHash {
    pub available: i64,
    pub locked: i64,
    pub sold: i64,
    pub total: i64,
}

impl StockHash {
    /// Two shards' counts together.
    pub fn plus(self, o: &StockHash) -> StockHash {
        StockHash {
            available: self.available.saturating_add(o.available),
            locked: self.locked.saturating_add(o.locked),
            sold: self.sold.saturating_add(o.sold),
            total: self.total.saturating_add(o.total),
        }
    }

    /// The stock hash's own arithmetic holds (seed 003 §9, the check before
    /// orders are created): `available + locked + sold = total`,
    /// `locked + sold ≤ total`, nothing negative. Otherwise, what is wrong.
    pub fn anomaly(&self) -> Option<String> {
        let StockHash {
            available,
            locked,
            sold,
            total,
        } = *self;
        if available < 0 || locked < 0 || sold < 0 || total < 0 {
            return Some(format!(
                "a negative count (available {available}, locked {locked}, sold {sold}, total {total})"
            ));
        }
        if locked.saturating_add(sold) > total {
            return Some(format!("locked {locked} + sold {sold} > total {total}"));
        }
        let sum = available.saturating_add(locked).saturating_add(sold);
        if sum != total {
            return Some(format!(
                "available {available} + locked {locked} + sold {sold} = {sum}, not total {total}"
            ));
        }
        None
    }
}

/// Adds the read of one stock hash (`available`, `locked`, `sold`,
/// `total`) to a pipeline; [`StockHash::read`] takes its answer.
pub(super) fn read_stock(pipe: &mut redis::Pipeline, key: &str) {
    pipe.cmd("HMGET")
        .arg(key)
        .arg("available")
        .arg("locked")
        .arg("sold")
        .arg("total");
}

impl StockHash {
    /// The answer of [`read_stock`]: `None` when the hash does not exist.
    pub(super) fn read(fields: &[Option<i64>]) -> Option<StockHash> {
        if fields.iter().all(Option::is_none) {
            return None;
        }
        let g = |i: usize| fields.get(i).copied().flatten().unwrap_or(0);
        Some(StockHash {
            available: g(0),
            locked: g(1),
            sold: g(2),
            total: g(3),
        })
    }
}

/// An item's shards summed; `None` when one of them has no stock hash.
pub fn sum(shards: &[Option<StockHash>]) -> Option<StockHash> {
    shards.iter().try_fold(StockHash::default(), |total, s| {
        Some(total.plus(s.as_ref()?))
    })
}

/// A win as the stock scripts recorded it in an `orders` hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWin {
    pub order_id: String,
    pub user_id: String,
    pub quantity: u32,
    pub request_id: String,
}

impl RedisAdmin {
    /// Every shard's stock hash of each item in `tags` (`None`: that
    /// shard has none), in one round trip.
    pub(super) fn shard_stocks(
        &self,
        c: &mut RedisConn,
        tags: &[Tags],
    ) -> Result<Vec<Vec<Option<StockHash>>>, RedisError> {
        let flat = expand(tags);
        if flat.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (_, tag) in &flat {
            read_stock(&mut pipe, &tag_keys(tag).stock);
        }
        let all: Vec<Vec<Option<i64>>> = pipe.query(c)?;
        let mut out: Vec<Vec<Option<StockHash>>> = tags.iter().map(|_| Vec::new()).collect();
        for ((i, _), v) in flat.iter().zip(all) {
            out[*i].push(StockHash::read(&v));
        }
        Ok(out)
    }

    /// Each item's stock hash summed over its shards; `None` when a shard
    /// has none (the item, or part of it, is not in Redis).
    pub(super) fn sum_stocks(
        &self,
        c: &mut RedisConn,
        tags: &[Tags],
    ) -> Result<Vec<Option<StockHash>>, RedisError> {
        Ok(self
            .shard_stocks(c, tags)?
            .iter()
            .map(|shards| sum(shards))
            .collect())
    }

    /// `available` (of a sharded item, the units its shards have) and the
    /// number of wins of every item, in one pipelined round trip (what
    /// each daemon reads once a second); `None` for an item Redis holds no
    /// stock hash of (for a sharded item: of one of its shards).
    pub fn item_counters(
        &self,
        items: &[(&str, &str)],
    ) -> Result<Vec<Option<(i64, u64)>>, RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let tags = self.tags(&mut c, items)?;
        let flat = expand(&tags);
        let mut pipe = redis::pipe();
        for (_, tag) in &flat {
            let k = tag_keys(tag);
            pipe.hget(&k.stock, "available");
            pipe.hlen(&k.orders);
        }
        let v: Vec<Option<i64>> = pipe.query(&mut *c)?;
        let mut out: Vec<Option<(i64, u64)>> = vec![Some((0, 0)); items.len()];
        for ((i, _), p) in flat.iter().zip(v.chunks(2)) {
            // No `available`: the shard has no stock hash.
            let available = p.first().copied().flatten();
            // The orders hash carries a placeholder field.
            let wins = p.get(1).copied().flatten().unwrap_or(0).max(1) as u64 - 1;
            out[*i] = match (out[*i], available) {
                // A shard below zero (a rebuild of an oversold record)
                // takes nothing from the others' units.
                (Some((a, w)), Some(avail)) => Some((a.saturating_add(avail.max(0)), w + wins)),
                _ => None,
            };
        }
        Ok(out)
    }

    pub fn stock(&self, sale_id: &str, item_id: &str) -> Result<Option<StockHash>, RedisError> {
        Ok(self.stocks(&[(sale_id, item_id)])?.pop().flatten())
    }

    /// The stock hashes of `items`, each summed over its shards (`None`:
    /// the item, or one of its shards, has none), in one round trip.
    pub fn stocks(&self, items: &[(&str, &str)]) -> Result<Vec<Option<StockHash>>, RedisError> {
        Ok(self
            .stocks_by_shard(items)?
            .into_iter()
            .map(|shards| sum(&shards))
            .collect())
    }

    /// Every shard's stock hash of each item (one element: not sharded).
    pub fn stocks_by_shard(
        &self,
        items: &[(&str, &str)],
    ) -> Result<Vec<Vec<Option<StockHash>>>, RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let tags = self.tags(&mut c, items)?;
        self.shard_stocks(&mut c, &tags)
    }

    /// How many wins each item has (`HLEN` of its orders hashes,
    /// placeholders excluded), in one round trip.
    pub fn win_counts(&self, items: &[(&str, &str)]) -> Result<Vec<u64>, RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let tags = self.tags(&mut c, items)?;
        let flat = expand(&tags);
        let mut pipe = redis::pipe();
        for (_, tag) in &flat {
            pipe.hlen(tag_keys(tag).orders);
        }
        let lens: Vec<u64> = pipe.query(&mut *c)?;
        let mut out = vec![0u64; items.len()];
        for ((i, _), n) in flat.iter().zip(lens) {
            out[*i] += n.saturating_sub(1);
        }
        Ok(out)
    }

    /// Every win of an item (of all its shards).
    pub fn wins(&self, sale_id: &str, item_id: &str) -> Result<Vec<StoredWin>, RedisError> {
        let mut c = self.conn()?;
        let tags = self.tags(&mut c, &[(sale_id, item_id)])?;
        let flat = expand(&tags);
        let mut pipe = redis::pipe();
        for (_, tag) in &flat {
            pipe.cmd("HGETALL").arg(tag_keys(tag).orders);
        }
        let all: Vec<std::collections::HashMap<String, String>> = pipe.query(&mut *c)?;
        Ok(all
            .into_iter()
            .flatten()
            .filter(|(oid, _)| !oid.is_empty())
            .filter_map(|(order_id, v)| {
                let mut parts = v.splitn(3, '|');
                let user_id = parts.next()?.to_string();
                let quantity = parts.next()?.parse().ok()?;
                let request_id = parts.next()?.to_string();
                Some(StoredWin {
                    order_id,
                    user_id,
                    quantity,
                    request_id,
                })
            })
            .collect())
    }
}
