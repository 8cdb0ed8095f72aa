//! Rebuilding a sale that Redis lost: every item's keys written back from
//! the record of its wins — the stored outcome of each request, its
//! order, its buyer's count, its unpaid deadline or how it closed — with
//! the stock counts that follow from them, one atomic script per item
//! (`restore.lua`), then the sale's metadata.

use std::collections::HashMap;

use redis::{RedisError, Script, Value};

use super::catalog::{expire_at, now_ms, ItemLoad, RedisAdmin};
use super::counts::StockHash;
use super::keys::{self, tag_keys};
use super::layout::{home_shard, shard_stocks, Tags};
use super::load::{bump_version, item_info, round_keys};
use super::shards::pick_tags;

const RESTORE_LUA: &str = include_str!("restore.lua");

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

/// How long a rebuild holds an item (its lock expires after, should the
/// daemon die in the middle).
const REBUILD_LOCK_MS: u64 = 60_000;
/// Lets go of an item's rebuild lock if this call still holds it.
const UNLOCK_LUA: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

impl RedisAdmin {
    /// Writes every item of `items` back with its `wins` (per item id),
    /// each item (each stock shard of it) atomically: no purchase sees
    /// fresh stock before its wins are taken out of it (the stock hash is
    /// the last thing written, and a purchase finding none waits). Returns
    /// each item's stock hash as written (summed over its shards), or
    /// `None` for an item left as it was: one whose stock is in Redis
    /// (live state: another rebuild or a load came first), or that
    /// another rebuild holds (`seckill:{S:I}:rebuilding`, so that two
    /// daemons' plans — each with its own journal's wins — never mix
    /// shard by shard). A win for an item not in `items` is ignored. Wins
    /// beyond an item's stock (sold twice before: a failover without
    /// `WAIT`) leave `available` negative, so a later release does not
    /// sell past it.
    ///
    /// A sharded item's wins go back to their users' home shards (every
    /// count of a user is on its home, as a home win leaves it); the
    /// record does not say which shard gave a unit, so each shard's total
    /// is what its wins hold plus an even share of what was never sold:
    /// every shard's counts sum to its total, and the totals to the
    /// item's stock.
    ///
    /// `round` is every item id of the sale (the round's list is written
    /// again whole; items not rebuilt keep their keys). One script call
    /// carries all of a shard's wins: an item of a hundred thousand wins
    /// holds its Redis (or its cluster master) for a fraction of a second,
    /// once, during a recovery.
    pub fn restore_sale(
        &self,
        sale_id: &str,
        start_ms: u64,
        end_ms: u64,
        items: &[ItemLoad<'_>],
        round: &[&str],
        wins: &HashMap<&str, Vec<RestoredWin<'_>>>,
    ) -> Result<Vec<Option<StockHash>>, RedisError> {
        let mut c = self.conn()?;
        let expire_at_ms = expire_at(end_ms);
        let token = format!("{}-{}", std::process::id(), now_ms());
        let mut pipe = redis::pipe();
        for it in items {
            pipe.cmd("SET")
                .arg(keys::rebuild_lock(sale_id, it.item_id))
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(REBUILD_LOCK_MS);
        }
        let locked: Vec<Option<String>> = pipe.query(&mut *c)?;
        let mine: Vec<bool> = locked.iter().map(Option::is_some).collect();
        let tags: Vec<Tags> = items
            .iter()
            .map(|it| {
                self.layouts
                    .known(sale_id, it.item_id)
                    .filter(|t| t.len() == it.shards.max(1) as usize)
                    .unwrap_or_else(|| pick_tags(&c, sale_id, it.item_id, it.shards))
            })
            .collect();
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT").arg("LOAD").arg(RESTORE_LUA);
        let sha = Script::new(RESTORE_LUA).get_hash().to_string();
        for ((it, t), _) in items.iter().zip(&tags).zip(&mine).filter(|(_, m)| **m) {
            let item_wins = wins.get(it.item_id).map(Vec::as_slice).unwrap_or(&[]);
            let homes: Vec<usize> = item_wins
                .iter()
                .map(|w| home_shard(w.user_id, t.len()))
                .collect();
            let totals = shard_totals(item_wins, &homes, it.stock, t.len());
            for (j, tag) in t.iter().enumerate() {
                let here: Vec<&RestoredWin<'_>> = item_wins
                    .iter()
                    .zip(&homes)
                    .filter(|(_, h)| **h == j)
                    .map(|(w, _)| w)
                    .collect();
                let call = pipe
                    .cmd("EVALSHA")
                    .arg(&sha)
                    .arg(keys::STOCK_KEY_SUFFIXES.len())
                    .arg(&tag_keys(tag).stock_keys()[..])
                    .arg(totals[j])
                    .arg(expire_at_ms)
                    .arg(here.len());
                for w in here {
                    let (state, at) = w.closed.unwrap_or(("", 0));
                    call.arg(w.order_id)
                        .arg(w.request_id)
                        .arg(w.user_id)
                        .arg(w.quantity)
                        .arg(w.deadline_ms)
                        .arg(state)
                        .arg(at);
                }
            }
        }
        let mut replies: Vec<Value> = pipe.query(&mut *c)?;
        // The SCRIPT LOAD's answer.
        if !replies.is_empty() {
            replies.remove(0);
        }
        let mut replies = replies.into_iter();
        let mut stocks = Vec::with_capacity(items.len());
        for ((it, t), mine) in items.iter().zip(&tags).zip(&mine) {
            if !mine {
                stocks.push(None);
                continue;
            }
            let mut sum = Some(StockHash {
                total: i64::try_from(it.stock).unwrap_or(i64::MAX),
                ..StockHash::default()
            });
            for _ in 0..t.len() {
                let v = replies.next().unwrap_or(Value::Nil);
                let fields: Vec<i64> = redis::from_redis_value(v)?;
                sum = match (sum, fields.as_slice()) {
                    (Some(s), [1, available, locked, sold]) => Some(StockHash {
                        available: s.available + available,
                        locked: s.locked + locked,
                        sold: s.sold + sold,
                        total: s.total,
                    }),
                    // A shard whose stock was there: the item is not
                    // this call's (another rebuild's, or a load's).
                    _ => None,
                };
            }
            stocks.push(sum);
        }
        // The metadata is the same whether or not another call came first.
        let mut pipe = redis::pipe();
        item_info(&mut pipe, sale_id, start_ms, end_ms, items, &tags);
        round_keys(&mut c, &mut pipe, sale_id, start_ms, end_ms, round)?;
        for (it, _) in items.iter().zip(&mine).filter(|(_, m)| **m) {
            pipe.cmd("EVAL")
                .arg(UNLOCK_LUA)
                .arg(1)
                .arg(keys::rebuild_lock(sale_id, it.item_id))
                .arg(&token)
                .ignore();
        }
        pipe.query::<()>(&mut *c)?;
        for (it, t) in items.iter().zip(tags) {
            self.layouts.put(sale_id, it.item_id, t);
        }
        bump_version(&mut c)?;
        Ok(stocks)
    }
}

/// Each shard's total in a rebuild: the units its wins hold (unpaid or
/// paid: a cancelled, expired or failed win holds none), plus an even
/// share of the units never sold; when the record holds more than the
/// stock, the first shard carries the excess (its `available` negative).
fn shard_totals(wins: &[RestoredWin<'_>], homes: &[usize], stock: u64, k: usize) -> Vec<u64> {
    let mut held = vec![0u64; k.max(1)];
    for (w, &h) in wins.iter().zip(homes) {
        if matches!(w.closed, None | Some(("paid", _))) {
            held[h] = held[h].saturating_add(u64::from(w.quantity));
        }
    }
    let sum: u64 = held.iter().sum();
    let free = stock.saturating_sub(sum);
    let shares = shard_stocks(free, held.len() as u32);
    let mut totals: Vec<u64> = held.iter().zip(shares).map(|(h, s)| h + s).collect();
    // More held than the stock: shards give up total (their `available`
    // goes negative) until the totals sum to the stock again.
    let mut excess = sum.saturating_sub(stock);
    for (t, h) in totals.iter_mut().zip(&held) {
        let cut = excess.min(*h);
        *t -= cut;
        excess -= cut;
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win<'a>(user: &'a str, quantity: u32, closed: Option<(&'a str, u64)>) -> RestoredWin<'a> {
        RestoredWin {
            order_id: "o",
            request_id: "r",
            user_id: user,
            quantity,
            deadline_ms: 0,
            closed,
        }
    }

    #[test]
    fn shard_totals_hold_their_wins_and_sum_to_the_stock() {
        let wins = [
            win("a", 2, None),
            win("b", 1, Some(("paid", 1))),
            win("c", 3, Some(("cancelled", 1))),
        ];
        // Homes 0, 0, 1: shard 0 holds 3 units, shard 1 none (a cancel).
        let totals = shard_totals(&wins, &[0, 0, 1], 10, 2);
        assert_eq!(totals, vec![3 + 4, 3]);
        assert_eq!(totals.iter().sum::<u64>(), 10);
        // More held than the stock: the totals still sum to it, each
        // shard's available (total - held) negative where it was cut.
        let totals = shard_totals(&wins, &[0, 1, 1], 2, 2);
        assert_eq!(totals.iter().sum::<u64>(), 2);
        assert_eq!(totals, vec![1, 1]);
        assert_eq!(shard_totals(&[], &[], 5, 3), vec![2, 2, 1]);
    }
}
