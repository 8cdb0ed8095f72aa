//! The admin side of Redis: loading a sale, reading the catalog every
//! daemon refreshes from, stock and wins, and the probe.

use std::sync::Arc;
use std::time::Duration;

use redis::{Connection, RedisError};

use super::keys::{self, item_keys, CATALOG_VERSION};
use super::pool::{Pool, PoolStats, Pooled};
use super::target::{Connector, RedisTarget};

/// Latest sale end accepted (9999-12-31T23:59:59.999Z).
pub const SALE_END_MS_MAX: u64 = 253_402_300_799_999;

/// The stock hash of one item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StockHash {
    pub available: i64,
    pub locked: i64,
    pub sold: i64,
    pub total: i64,
}

/// Admin-side Redis access (loading sales, reading stock, probing).
#[derive(Clone)]
pub struct RedisAdmin {
    connector: Connector,
    timeout: Duration,
    /// Connections kept between calls (shared by the clones).
    pool: Arc<Pool>,
}

/// What the admin API writes for one item.
#[derive(Debug, Clone)]
pub struct ItemLoad<'a> {
    pub item_id: &'a str,
    pub title: &'a str,
    pub price_cents: u64,
    pub stock: u64,
    pub per_user_limit: u32,
}

impl<'a> From<&'a seckill_pipeline::Item> for ItemLoad<'a> {
    /// What the daemon's catalog knows of an item, to load it again.
    fn from(i: &'a seckill_pipeline::Item) -> ItemLoad<'a> {
        ItemLoad {
            item_id: &i.item_id,
            title: &i.title,
            price_cents: i.price_cents,
            stock: i.stock,
            per_user_limit: i.per_user_limit,
        }
    }
}

impl RedisAdmin {
    pub fn new(
        target: impl Into<RedisTarget>,
        timeout: Duration,
    ) -> Result<RedisAdmin, RedisError> {
        Ok(RedisAdmin {
            connector: target.into().connector()?,
            timeout,
            pool: Arc::default(),
        })
    }

    /// A connection from the pool (a kept one, or a new one).
    pub(super) fn conn(&self) -> Result<Pooled, RedisError> {
        self.pool.get(&self.connector, self.timeout)
    }

    /// A connection of its own, never pooled (a subscriber keeps it).
    pub(super) fn own_conn(&self) -> Result<Connection, RedisError> {
        self.connector.connect(self.timeout)
    }

    /// What the connection pool did.
    pub fn pool_stats(&self) -> &PoolStats {
        self.pool.stats()
    }

    pub fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.conn()?;
        redis::cmd("PING").query::<String>(&mut *c).map(|_| ())
    }

    /// When a sale stored in Redis starts, if one is (its keys live a day
    /// past its end, after the daemon may have forgotten it).
    pub fn stored_start(&self, sale_id: &str) -> Result<Option<u64>, RedisError> {
        let mut c = self.conn()?;
        redis::cmd("HGET")
            .arg(keys::round_info(sale_id))
            .arg("start_ms")
            .query(&mut *c)
    }

    /// Replaces a sale: resets every item's stock, buyers, stored outcomes
    /// and unpaid orders, and writes the sale and item metadata (the seed's
    /// round/info/products layout). Keys expire a day after the sale ends.
    pub fn load_sale(
        &self,
        sale_id: &str,
        start_ms: u64,
        end_ms: u64,
        items: &[ItemLoad<'_>],
    ) -> Result<(), RedisError> {
        let mut c = self.conn()?;
        load_pipe(&mut c, sale_id, start_ms, end_ms, items)?.query::<()>(&mut *c)
    }

    /// The catalog version: bumped by every sale load.
    pub fn catalog_version(&self) -> Result<u64, RedisError> {
        let mut c = self.conn()?;
        let v: Option<u64> = redis::cmd("GET").arg(CATALOG_VERSION).query(&mut *c)?;
        Ok(v.unwrap_or(0))
    }

    /// `available` and the number of wins of every item, in one pipelined
    /// round trip (what each daemon reads once a second); `None` for an
    /// item Redis holds no stock hash of.
    pub fn item_counters(
        &self,
        items: &[(&str, &str)],
    ) -> Result<Vec<Option<(i64, u64)>>, RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let mut pipe = redis::pipe();
        for (sale, item) in items {
            let k = item_keys(sale, item);
            pipe.hget(&k.stock, "available");
            pipe.hlen(&k.orders);
        }
        let v: Vec<Option<i64>> = pipe.query(&mut *c)?;
        Ok(v.chunks(2)
            .map(|p| {
                // No `available`: the item has no stock hash.
                let available = p.first().copied().flatten()?;
                // The orders hash carries a placeholder field.
                let wins = p.get(1).copied().flatten().unwrap_or(0).max(1) as u64 - 1;
                Some((available, wins))
            })
            .collect())
    }

    pub fn stock(&self, sale_id: &str, item_id: &str) -> Result<Option<StockHash>, RedisError> {
        Ok(self.stocks(&[(sale_id, item_id)])?.pop().flatten())
    }

    /// The stock hashes of `items` (`None`: the item has none), in one
    /// round trip.
    pub fn stocks(&self, items: &[(&str, &str)]) -> Result<Vec<Option<StockHash>>, RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let mut pipe = redis::pipe();
        for (sale, item) in items {
            pipe.cmd("HMGET")
                .arg(item_keys(sale, item).stock)
                .arg("available")
                .arg("locked")
                .arg("sold")
                .arg("total");
        }
        let all: Vec<Vec<Option<i64>>> = pipe.query(&mut *c)?;
        Ok(all
            .into_iter()
            .map(|v| {
                if v.iter().all(Option::is_none) {
                    return None;
                }
                let g = |i: usize| v.get(i).copied().flatten().unwrap_or(0);
                Some(StockHash {
                    available: g(0),
                    locked: g(1),
                    sold: g(2),
                    total: g(3),
                })
            })
            .collect())
    }
}

impl StockHash {
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

/// A sale as stored in Redis by the admin API.
#[derive(Debug)]
pub struct StoredSale {
    pub sale_id: String,
    pub items: Vec<seckill_pipeline::Item>,
}

impl RedisAdmin {
    /// Reads every sale round and its items (so a restarted daemon, or a
    /// second one, knows the sales another daemon created).
    pub fn load_sales(&self) -> Result<Vec<StoredSale>, RedisError> {
        let mut c = self.conn()?;
        // SCAN, not KEYS: never block a production Redis.
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(keys::ROUND_INFO_PATTERN)
                .arg("COUNT")
                .arg(1000)
                .query(&mut *c)?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let sale_ids: Vec<&str> = keys
            .iter()
            .filter_map(|k| keys::sale_of_round_info(k))
            .collect();
        // Two pipelined round trips however many sales and items there
        // are: every daemon runs this once a second.
        let mut pipe = redis::pipe();
        for sale_id in &sale_ids {
            pipe.cmd("LRANGE")
                .arg(keys::round_items(sale_id))
                .arg(0)
                .arg(-1);
        }
        let item_lists: Vec<Vec<String>> = if sale_ids.is_empty() {
            Vec::new()
        } else {
            pipe.query(&mut *c)?
        };
        let mut pipe = redis::pipe();
        for (sale_id, item_ids) in sale_ids.iter().zip(&item_lists) {
            for item_id in item_ids {
                let k = item_keys(sale_id, item_id);
                pipe.cmd("HGETALL").arg(&k.info);
                pipe.cmd("HMGET")
                    .arg(&k.stock)
                    .arg("total")
                    .arg("available");
            }
        }
        let replies: Vec<redis::Value> = if item_lists.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            pipe.query(&mut *c)?
        };
        let mut replies = replies.into_iter();
        let mut out = Vec::new();
        for (sale_id, item_ids) in sale_ids.iter().zip(item_lists) {
            let mut items = Vec::new();
            for item_id in item_ids {
                let (Some(info), Some(stock)) = (replies.next(), replies.next()) else {
                    break;
                };
                let info: std::collections::HashMap<String, String> =
                    redis::from_redis_value(info).unwrap_or_default();
                let stock: Vec<Option<i64>> = redis::from_redis_value(stock).unwrap_or_default();
                let num = |f: &str| info.get(f).and_then(|v| v.parse::<u64>().ok());
                let (Some(price), Some(limit), Some(start), Some(end)) = (
                    num("price_cents"),
                    num("per_user_limit"),
                    num("start_ms"),
                    num("end_ms"),
                ) else {
                    continue;
                };
                let total = stock.first().copied().flatten().unwrap_or(0).max(0) as u64;
                let available = stock.get(1).copied().flatten().unwrap_or(0);
                let item = seckill_pipeline::Item::new(
                    sale_id,
                    &item_id,
                    info.get("title").map_or("", String::as_str),
                    price,
                    total,
                    limit.min(u64::from(u32::MAX)) as u32,
                    start,
                    end,
                );
                item.set_remaining(available);
                items.push(item);
            }
            out.push(StoredSale {
                sale_id: sale_id.to_string(),
                items,
            });
        }
        Ok(out)
    }
}

/// A win as the stock script recorded it in `seckill:{S:I}:orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWin {
    pub order_id: String,
    pub user_id: String,
    pub quantity: u32,
    pub request_id: String,
}

impl RedisAdmin {
    /// How many wins each item has (`HLEN` of its orders hash, placeholder
    /// excluded), in one round trip.
    pub fn win_counts(&self, items: &[(&str, &str)]) -> Result<Vec<u64>, RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let mut pipe = redis::pipe();
        for (sale, item) in items {
            pipe.hlen(item_keys(sale, item).orders);
        }
        let lens: Vec<u64> = pipe.query(&mut *c)?;
        Ok(lens.into_iter().map(|n| n.saturating_sub(1)).collect())
    }

    /// Every win of an item.
    pub fn wins(&self, sale_id: &str, item_id: &str) -> Result<Vec<StoredWin>, RedisError> {
        let mut c = self.conn()?;
        let all: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(item_keys(sale_id, item_id).orders)
            .query(&mut *c)?;
        Ok(all
            .into_iter()
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

/// The commands that load a sale (one MULTI/EXEC, not yet sent): every
/// item's stock, buyers, stored outcomes and unpaid orders reset, the sale
/// and item metadata written, the catalog version bumped. Keys expire a
/// day after the sale ends.
pub(super) fn load_pipe(
    c: &mut Connection,
    sale_id: &str,
    start_ms: u64,
    end_ms: u64,
    items: &[ItemLoad<'_>],
) -> Result<redis::Pipeline, RedisError> {
    // Redis refuses expiry times past its range; the admin API bounds
    // `end_ms` to the year 9999, this keeps direct callers safe too.
    let expire_at_ms = end_ms.min(SALE_END_MS_MAX).saturating_add(24 * 3600 * 1000);
    let mut pipe = redis::pipe();
    pipe.atomic();
    let round_info = keys::round_info(sale_id);
    let round_items = keys::round_items(sale_id);
    // The rounds of a day (the seed's `seckill::#{date}::rounds`): a
    // replaced round leaves the list of its old day.
    let old_start: Option<u64> = redis::cmd("HGET")
        .arg(&round_info)
        .arg("start_ms")
        .query(c)?;
    if let Some(old) = old_start {
        pipe.lrem(keys::day_rounds(old), 0, sale_id).ignore();
    }
    let day_rounds = keys::day_rounds(start_ms);
    pipe.lrem(&day_rounds, 0, sale_id).ignore();
    pipe.rpush(&day_rounds, sale_id).ignore();
    pipe.cmd("PEXPIREAT")
        .arg(&day_rounds)
        .arg(expire_at_ms)
        .ignore();
    pipe.del(&round_items).ignore();
    pipe.hset_multiple(
        &round_info,
        &[
            ("start_ms", start_ms.to_string()),
            ("end_ms", end_ms.to_string()),
        ],
    )
    .ignore();
    for it in items {
        let k = item_keys(sale_id, it.item_id);
        pipe.del(&[
            &k.stock, &k.buyers, &k.req, &k.unpaid, &k.orders, &k.info, &k.closed, &k.events,
        ])
        .ignore();
        pipe.hset_multiple(
            &k.stock,
            &[
                ("available", it.stock),
                ("locked", 0),
                ("sold", 0),
                ("total", it.stock),
            ],
        )
        .ignore();
        pipe.hset_multiple(
            &k.info,
            &[
                ("title", it.title.to_string()),
                ("price_cents", it.price_cents.to_string()),
                ("per_user_limit", it.per_user_limit.to_string()),
                ("start_ms", start_ms.to_string()),
                ("end_ms", end_ms.to_string()),
            ],
        )
        .ignore();
        pipe.rpush(&round_items, it.item_id).ignore();
        // The script fills these hashes; a placeholder field (ids are
        // never empty) lets them carry the sale's expiry from the start.
        for key in [&k.buyers, &k.req, &k.orders, &k.closed] {
            pipe.hset(key, "", "").ignore();
        }
        for key in [&k.stock, &k.info, &k.buyers, &k.req, &k.orders, &k.closed] {
            pipe.cmd("PEXPIREAT").arg(key).arg(expire_at_ms).ignore();
        }
    }
    for key in [&round_info, &round_items] {
        pipe.cmd("PEXPIREAT").arg(key).arg(expire_at_ms).ignore();
    }
    // Every daemon re-reads the sale metadata when this moves.
    pipe.incr(CATALOG_VERSION, 1).ignore();
    Ok(pipe)
}
