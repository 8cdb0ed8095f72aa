//! The admin side of Redis: the client every admin, order, status and
//! background call goes through ([`RedisAdmin`]), the catalog every
//! daemon refreshes from, and the probe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::{Connection, RedisError};

use super::conn::{Connector, RedisConn};
use super::keys::{self, item_keys, CATALOG_VERSION, ROUNDS};
use super::layout::{item_tag, parse_tags, Layouts, Tags};
use super::pool::{Pool, PoolStats, Pooled};
use super::target::RedisTarget;

/// Latest sale end accepted (9999-12-31T23:59:59.999Z).
pub const SALE_END_MS_MAX: u64 = 253_402_300_799_999;

/// Admin-side Redis access (loading sales, reading stock, probing).
#[derive(Clone)]
pub struct RedisAdmin {
    connector: Connector,
    timeout: Duration,
    /// Connections kept between calls (shared by the clones).
    pool: Arc<Pool>,
    /// The [`ROUNDS`] index was checked for rounds loaded before it
    /// existed (once per process).
    rounds_indexed: Arc<AtomicBool>,
    /// Which items are split into stock shards, and where.
    pub(super) layouts: Arc<Layouts>,
}

/// What the admin API writes for one item.
#[derive(Debug, Clone)]
pub struct ItemLoad<'a> {
    pub item_id: &'a str,
    pub title: &'a str,
    pub price_cents: u64,
    pub stock: u64,
    pub per_user_limit: u32,
    /// Stock shards (1: the item's stock in one place).
    pub shards: u32,
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
            shards: i.shards,
        }
    }
}

impl RedisAdmin {
    pub fn new(
        target: impl Into<RedisTarget>,
        timeout: Duration,
    ) -> Result<RedisAdmin, RedisError> {
        Ok(RedisAdmin {
            connector: Connector::new(&target.into())?,
            timeout,
            pool: Arc::default(),
            rounds_indexed: Arc::default(),
            layouts: Arc::default(),
        })
    }

    /// The registry of sharded items this process knows (the deduct
    /// stage's store takes the same).
    pub fn layouts(&self) -> Arc<Layouts> {
        Arc::clone(&self.layouts)
    }

    /// Whether this Redis is a cluster.
    pub fn is_cluster(&self) -> bool {
        self.connector.is_cluster()
    }

    /// A connection from the pool (a kept one, or a new one).
    pub(super) fn conn(&self) -> Result<Pooled, RedisError> {
        self.pool.get(&self.connector, self.timeout)
    }

    /// A plain connection of its own, never pooled (a subscriber keeps
    /// it): to the server, or to any node of a cluster.
    pub(super) fn own_conn(&self) -> Result<Connection, RedisError> {
        self.connector.connect_server(self.timeout)
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

    /// The catalog version: bumped by every sale load.
    pub fn catalog_version(&self) -> Result<u64, RedisError> {
        let mut c = self.conn()?;
        let v: Option<u64> = redis::cmd("GET").arg(CATALOG_VERSION).query(&mut *c)?;
        Ok(v.unwrap_or(0))
    }
}

/// An item's terms as Redis keeps them: its `info` hash, or the round's
/// copy of it (field → value).
type Terms = std::collections::HashMap<String, String>;

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
        if !self.rounds_indexed.swap(true, Ordering::Relaxed) && !self.is_cluster() {
            // Best effort, once: a proxy may refuse SCAN.
            if let Err(e) = index_old_rounds(&mut c) {
                tracing::warn!(error = %e, "cannot look for sale rounds loaded before the rounds index; load them again to list them");
            }
        }
        let keys: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(ROUNDS)
            .arg(now_ms())
            .arg("+inf")
            .query(&mut *c)?;
        let sale_ids: Vec<&str> = keys.iter().map(String::as_str).collect();
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
        // The items' metadata, then their stock (each shard's, for a
        // sharded item): three round trips when the catalog moved.
        let all: Vec<(&str, &str)> = sale_ids
            .iter()
            .zip(&item_lists)
            .flat_map(|(s, items)| items.iter().map(move |i| (*s, i.as_str())))
            .collect();
        // Each item's `info`; where a master lost it with the item's
        // stock (they share the item's slot), the round's copy of its
        // terms, so a lost item is still known (and answered 503, and
        // rebuilt) rather than forgotten.
        let infos: Vec<Terms> = if all.is_empty() {
            Vec::new()
        } else {
            let mut pipe = redis::pipe();
            for sale_id in &sale_ids {
                pipe.cmd("HGETALL").arg(keys::round_terms(sale_id));
            }
            for (sale, item) in &all {
                pipe.cmd("HGETALL").arg(item_keys(sale, item).info);
            }
            let mut replies: Vec<redis::Value> = pipe.query(&mut *c)?;
            let item_replies = replies.split_off(sale_ids.len().min(replies.len()));
            let copies: Vec<Terms> = replies
                .into_iter()
                .map(|v| redis::from_redis_value(v).unwrap_or_default())
                .collect();
            all.iter()
                .zip(item_replies)
                .map(|((sale, item), v)| {
                    let info: Terms = redis::from_redis_value(v).unwrap_or_default();
                    if !info.is_empty() {
                        return info;
                    }
                    sale_ids
                        .iter()
                        .position(|s| s == sale)
                        .and_then(|i| copies[i].get(*item))
                        .and_then(|json| serde_json::from_str(json).ok())
                        .unwrap_or_default()
                })
                .collect()
        };
        let tags: Vec<Tags> = all
            .iter()
            .zip(&infos)
            .map(|((sale, item), info)| {
                let t = parse_tags(info.get("shard_tags").map(String::as_str))
                    .unwrap_or_else(|| vec![item_tag(sale, item)].into());
                self.layouts.put(sale, item, std::sync::Arc::clone(&t));
                t
            })
            .collect();
        let counts = self.sum_stocks(&mut c, &tags)?;
        let mut out: Vec<StoredSale> = sale_ids
            .iter()
            .map(|s| StoredSale {
                sale_id: s.to_string(),
                items: Vec::new(),
            })
            .collect();
        let sale_index = |sale: &str| sale_ids.iter().position(|s| *s == sale);
        for (((sale_id, item_id), info), (stock, t)) in
            all.iter().zip(&infos).zip(counts.iter().zip(&tags))
        {
            let num = |f: &str| info.get(f).and_then(|v| v.parse::<u64>().ok());
            let (Some(price), Some(limit), Some(start), Some(end)) = (
                num("price_cents"),
                num("per_user_limit"),
                num("start_ms"),
                num("end_ms"),
            ) else {
                continue;
            };
            // The stock is the item's terms (a sale loaded before `info`
            // held it: its stock hash's total).
            let total = num("stock")
                .or_else(|| stock.map(|s| s.total.max(0) as u64))
                .unwrap_or(0);
            let item = seckill_pipeline::Item::new(
                sale_id,
                item_id,
                info.get("title").map_or("", String::as_str),
                price,
                total,
                limit.min(u64::from(u32::MAX)) as u32,
                start,
                end,
            )
            .with_shards(t.len() as u32);
            // No stock hash (of a shard): Redis lost it; the catalog sync
            // marks the item lost, never sold out from a count it lacks.
            if let Some(stock) = stock {
                item.set_remaining(stock.available);
            }
            if let Some(i) = sale_index(sale_id) {
                out[i].items.push(item);
            }
        }
        Ok(out)
    }
}

/// When a sale's keys expire: a day after it ends. Redis refuses expiry
/// times past its range; the admin API bounds `end_ms` to the year 9999,
/// this keeps direct callers safe too.
pub(super) fn expire_at(end_ms: u64) -> u64 {
    end_ms.min(SALE_END_MS_MAX).saturating_add(24 * 3600 * 1000)
}

/// The wall clock in epoch ms (what key expiry runs on).
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Fills the [`ROUNDS`] index with the rounds a version without it loaded
/// (found with `SCAN`, never `KEYS`: a production Redis is not blocked),
/// once, when the index does not exist yet.
fn index_old_rounds(c: &mut RedisConn) -> Result<(), RedisError> {
    let exists: bool = redis::cmd("EXISTS").arg(ROUNDS).query(c)?;
    if exists {
        return Ok(());
    }
    let mut found: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(keys::ROUND_INFO_PATTERN)
            .arg("COUNT")
            .arg(1000)
            .query(c)?;
        found.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let sales: Vec<&str> = found
        .iter()
        .filter_map(|k| keys::sale_of_round_info(k))
        .collect();
    if sales.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for s in &sales {
        pipe.hget(keys::round_info(s), "end_ms");
    }
    let ends: Vec<Option<u64>> = pipe.query(c)?;
    let mut pipe = redis::pipe();
    for (s, end) in sales.iter().zip(ends) {
        if let Some(end) = end {
            pipe.zadd(ROUNDS, *s, expire_at(end)).ignore();
        }
    }
    pipe.query(c)
}
