//! Rebuilding a sale that Redis lost: every item's keys written back from
//! the record of its wins — the stored outcome of each request, its
//! order, its buyer's count, its unpaid deadline or how it closed — with
//! the stock counts that follow from them, one atomic script per item
//! (`restore.lua`), then the sale's metadata.

use std::collections::HashMap;

use redis::{RedisError, Script, Value};

use super::catalog::{expire_at, ItemLoad, RedisAdmin};
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

impl RedisAdmin {
    /// Writes every item of `items` back with its `wins` (per item id), each
    /// item (each stock shard of it) atomically: no purchase sees fresh
    /// stock before its wins are taken out of it (the stock hash is the
    /// last thing written, and a purchase finding none waits). An item a
    /// shard of which has stock in Redis (live state: another rebuild or a
    /// load came first) keeps that shard as it is, and then the answer is
    /// `None`; otherwise each item's stock hash as written (summed over
    /// its shards). A win for an item not in `items` is ignored. Wins
    /// beyond an item's stock (sold twice before: a failover without
    /// `WAIT`) leave `available` negative, so a later release does not
    /// sell past it.
    ///
    /// A sharded item's wins go back to their users' home shards while
    /// those have room, else to the next shard that has (the record does
    /// not say which shard gave a unit; any placement within the shards'
    /// totals keeps every count right), each buyer's count on its home.
    ///
    /// One script call carries all of a shard's wins: an item of a
    /// hundred thousand wins holds its Redis (or its cluster master) for a
    /// fraction of a second, once, during a recovery.
    ///
    /// `round` is every item id of the sale (the round's list is written
    /// again whole; items not rebuilt keep their keys).
    pub fn restore_sale(
        &self,
        sale_id: &str,
        start_ms: u64,
        end_ms: u64,
        items: &[ItemLoad<'_>],
        round: &[&str],
        wins: &HashMap<&str, Vec<RestoredWin<'_>>>,
    ) -> Result<Option<Vec<StockHash>>, RedisError> {
        let mut c = self.conn()?;
        let expire_at_ms = expire_at(end_ms);
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
        let mut shards_of: Vec<usize> = Vec::with_capacity(items.len());
        for (it, t) in items.iter().zip(&tags) {
            let item_wins = wins.get(it.item_id).map(Vec::as_slice).unwrap_or(&[]);
            let totals = shard_stocks(it.stock, t.len() as u32);
            let placed = place(item_wins, &totals);
            for (j, tag) in t.iter().enumerate() {
                let call = pipe
                    .cmd("EVALSHA")
                    .arg(&sha)
                    .arg(keys::STOCK_KEY_SUFFIXES.len())
                    .arg(&tag_keys(tag).stock_keys()[..])
                    .arg(totals[j])
                    .arg(expire_at_ms);
                let here: Vec<&RestoredWin<'_>> = placed
                    .iter()
                    .filter(|(_, s)| *s == j)
                    .map(|(w, _)| *w)
                    .collect();
                call.arg(here.len());
                for w in &here {
                    let (state, at) = w.closed.unwrap_or(("", 0));
                    call.arg(w.order_id)
                        .arg(w.request_id)
                        .arg(w.user_id)
                        .arg(w.quantity)
                        .arg(w.deadline_ms)
                        .arg(state)
                        .arg(at);
                }
                // The buyers whose home this is, and their wins' outcomes
                // where the unit came from another shard.
                let mut units: HashMap<&str, u64> = HashMap::new();
                let mut outcomes: Vec<(&str, String)> = Vec::new();
                for (w, s) in &placed {
                    if home_shard(w.user_id, t.len()) == j {
                        *units.entry(w.user_id).or_insert(0) += u64::from(w.quantity);
                        if *s != j {
                            outcomes.push((w.request_id, format!("ok:{}", w.order_id)));
                        }
                    }
                }
                call.arg(units.len());
                for (user, n) in &units {
                    call.arg(*user).arg(*n);
                }
                call.arg(outcomes.len());
                for (rid, outcome) in &outcomes {
                    call.arg(*rid).arg(outcome);
                }
            }
            shards_of.push(t.len());
        }
        let mut replies: Vec<Value> = pipe.query(&mut *c)?;
        // The SCRIPT LOAD's answer.
        if !replies.is_empty() {
            replies.remove(0);
        }
        let mut replies = replies.into_iter();
        let mut stocks = Vec::with_capacity(items.len());
        let mut all_written = true;
        for (it, k) in items.iter().zip(shards_of) {
            let mut sum = StockHash {
                total: i64::try_from(it.stock).unwrap_or(i64::MAX),
                ..StockHash::default()
            };
            for _ in 0..k {
                let v = replies.next().unwrap_or(Value::Nil);
                let fields: Vec<i64> = redis::from_redis_value(v)?;
                match fields.as_slice() {
                    [1, available, locked, sold] => {
                        sum.available += available;
                        sum.locked += locked;
                        sum.sold += sold;
                    }
                    _ => all_written = false,
                }
            }
            stocks.push(sum);
        }
        // The metadata is the same whether or not another call came first.
        let mut pipe = redis::pipe();
        item_info(&mut pipe, sale_id, start_ms, end_ms, items, &tags);
        round_keys(&mut c, &mut pipe, sale_id, start_ms, end_ms, round)?;
        pipe.query::<()>(&mut *c)?;
        for (it, t) in items.iter().zip(tags) {
            self.layouts.put(sale_id, it.item_id, t);
        }
        bump_version(&mut c)?;
        Ok(all_written.then_some(stocks))
    }
}

/// Which shard each win goes back to: its user's home while that shard
/// has room for the units it takes (unpaid or paid wins; a cancelled,
/// expired or failed one takes none), else the next shard with room, else
/// — more wins than stock — the home.
fn place<'w, 'a>(wins: &'w [RestoredWin<'a>], totals: &[u64]) -> Vec<(&'w RestoredWin<'a>, usize)> {
    let k = totals.len().max(1);
    let mut room: Vec<u64> = totals.to_vec();
    wins.iter()
        .map(|w| {
            let home = home_shard(w.user_id, k);
            let takes = matches!(w.closed, None | Some(("paid", _)));
            if !takes {
                return (w, home);
            }
            let q = u64::from(w.quantity);
            let j = (0..k)
                .map(|d| (home + d) % k)
                .find(|&j| room[j] >= q)
                .unwrap_or(home);
            room[j] = room[j].saturating_sub(q);
            (w, j)
        })
        .collect()
}
