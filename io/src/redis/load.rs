//! Loading a sale: every item's keys reset and its stock written by one
//! script on the item's keys (`load.lua`), its metadata, the round's keys
//! (the seed's round / items / day layout) and the rounds index, then the
//! catalog version, in a round trip of its own.

use redis::{RedisError, Script};

use super::catalog::{expire_at, now_ms, ItemLoad, RedisAdmin};
use super::conn::RedisConn;
use super::keys::{self, item_keys, tag_keys, CATALOG_VERSION, ROUNDS};
use super::layout::{item_tag, shard_stocks, Tags};
use super::shards::pick_tags;

/// The per-item part of a sale load (see its header).
const LOAD_LUA: &str = include_str!("load.lua");

impl RedisAdmin {
    /// Replaces a sale: resets every item's stock, buyers, stored outcomes
    /// and unpaid orders, and writes the sale and item metadata (the seed's
    /// round/info/products layout). Keys expire a day after the sale ends.
    ///
    /// Atomic per item (one script on the item's keys; per shard for a
    /// sharded item), not across items (a cluster holds them on several
    /// masters): the catalog version moves last, in a round trip of its
    /// own, so no daemon reads the sale before every item is written.
    pub fn load_sale(
        &self,
        sale_id: &str,
        start_ms: u64,
        end_ms: u64,
        items: &[ItemLoad<'_>],
    ) -> Result<(), RedisError> {
        let mut c = self.conn()?;
        let mut pipe = redis::pipe();
        // Loaded in the same pipeline, before the calls that need it.
        pipe.cmd("SCRIPT").arg("LOAD").arg(LOAD_LUA).ignore();
        let sha = Script::new(LOAD_LUA).get_hash().to_string();
        let expire_at_ms = expire_at(end_ms);
        let tags: Vec<Tags> = items
            .iter()
            .map(|it| pick_tags(&c, sale_id, it.item_id, it.shards))
            .collect();
        // A replaced round's items may have had another layout (another
        // shard count, shards salted for another slot map): their old
        // stock keys go, so no stale layout can sell from them.
        let ids: Vec<(&str, &str)> = items.iter().map(|it| (sale_id, it.item_id)).collect();
        let old = self.read_tags(&mut c, &ids)?;
        for ((it, new), old) in items.iter().zip(&tags).zip(&old) {
            let own = item_tag(sale_id, it.item_id);
            let gone = old
                .iter()
                .chain(std::iter::once(&own))
                .filter(|t| !new.contains(t));
            for tag in gone {
                pipe.del(&tag_keys(tag).stock_keys()[..]).ignore();
            }
        }
        for (it, t) in items.iter().zip(&tags) {
            for (tag, stock) in t.iter().zip(shard_stocks(it.stock, t.len() as u32)) {
                pipe.cmd("EVALSHA")
                    .arg(&sha)
                    .arg(keys::STOCK_KEY_SUFFIXES.len())
                    .arg(&tag_keys(tag).stock_keys()[..])
                    .arg(stock)
                    .arg(expire_at_ms)
                    .ignore();
            }
        }
        pipe.del(keys::round_terms(sale_id)).ignore();
        item_info(&mut pipe, sale_id, start_ms, end_ms, items, &tags);
        let ids: Vec<&str> = items.iter().map(|i| i.item_id).collect();
        round_keys(&mut c, &mut pipe, sale_id, start_ms, end_ms, &ids)?;
        pipe.query::<()>(&mut *c)?;
        for (it, t) in items.iter().zip(tags) {
            self.layouts.put(sale_id, it.item_id, t);
        }
        bump_version(&mut c)
    }
}

/// Adds the commands writing every item's metadata (`info`), with its
/// stock and where it lives (`shards`; for a sharded item `shard_tags`),
/// and the same terms into the round's copy ([`keys::round_terms`]).
pub(super) fn item_info(
    pipe: &mut redis::Pipeline,
    sale_id: &str,
    start_ms: u64,
    end_ms: u64,
    items: &[ItemLoad<'_>],
    tags: &[Tags],
) {
    for (it, t) in items.iter().zip(tags) {
        let info = item_keys(sale_id, it.item_id).info;
        pipe.del(&info).ignore();
        let mut fields = vec![
            ("title", it.title.to_string()),
            ("price_cents", it.price_cents.to_string()),
            ("per_user_limit", it.per_user_limit.to_string()),
            ("start_ms", start_ms.to_string()),
            ("end_ms", end_ms.to_string()),
            ("stock", it.stock.to_string()),
            ("shards", t.len().to_string()),
        ];
        if t.len() > 1 {
            fields.push(("shard_tags", t.join(",")));
        }
        let terms = serde_json::json!(fields
            .iter()
            .cloned()
            .collect::<std::collections::BTreeMap<_, _>>());
        pipe.hset_multiple(&info, &fields).ignore();
        pipe.cmd("PEXPIREAT")
            .arg(&info)
            .arg(expire_at(end_ms))
            .ignore();
        let copy = keys::round_terms(sale_id);
        pipe.hset(&copy, it.item_id, terms.to_string()).ignore();
        pipe.cmd("PEXPIREAT")
            .arg(&copy)
            .arg(expire_at(end_ms))
            .ignore();
    }
}

/// Adds the commands writing the sale round (the seed's round / items /
/// day layout) and its entry in the [`ROUNDS`] index. Reads where the
/// round started before, to take it off that day's list.
pub(super) fn round_keys(
    c: &mut RedisConn,
    pipe: &mut redis::Pipeline,
    sale_id: &str,
    start_ms: u64,
    end_ms: u64,
    item_ids: &[&str],
) -> Result<(), RedisError> {
    let expire_at_ms = expire_at(end_ms);
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
    for id in item_ids {
        pipe.rpush(&round_items, *id).ignore();
    }
    for key in [&round_info, &round_items] {
        pipe.cmd("PEXPIREAT").arg(key).arg(expire_at_ms).ignore();
    }
    pipe.zadd(ROUNDS, sale_id, expire_at_ms).ignore();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(ROUNDS)
        .arg("-inf")
        .arg(format!("({}", now_ms()))
        .ignore();
    Ok(())
}

/// Bumps the catalog version: every daemon re-reads the sale metadata.
pub(super) fn bump_version(c: &mut RedisConn) -> Result<(), RedisError> {
    redis::cmd("INCR").arg(CATALOG_VERSION).query(c)
}
