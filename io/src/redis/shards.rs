//! The admin side's view of stock shards: each item's tags (its own, or
//! its shards') from the registry, read from the items' `info` where this
//! process has not read them yet (the order service, a status lookup of
//! an old sale); and the tags a load picks for a new sharded item — on a
//! cluster, each shard on another master.

use std::sync::Arc;

use redis::RedisError;

use super::catalog::RedisAdmin;
use super::conn::RedisConn;
use super::keys::{self, item_keys};
use super::layout::{item_tag, parse_tags, shard_tag, Tags};
use super::slots::slot_of;

/// Salts tried for a shard's tag before the plain tag is taken whatever
/// master it lands on (a master owning few slots).
const SALTS_MAX: u32 = 100_000;

impl RedisAdmin {
    /// The tags of each item of `items`: from the registry, else read.
    pub(super) fn tags(
        &self,
        c: &mut RedisConn,
        items: &[(&str, &str)],
    ) -> Result<Vec<Tags>, RedisError> {
        let mut out: Vec<Option<Tags>> = items
            .iter()
            .map(|(s, i)| self.layouts.fresh(s, i))
            .collect();
        let misses: Vec<(&str, &str)> = items
            .iter()
            .zip(&out)
            .filter(|(_, t)| t.is_none())
            .map(|(i, _)| *i)
            .collect();
        let mut read = self.read_tags(c, &misses)?.into_iter();
        for t in out.iter_mut().filter(|t| t.is_none()) {
            *t = read.next();
        }
        Ok(out
            .into_iter()
            .zip(items)
            .map(|(t, (s, i))| t.unwrap_or_else(|| vec![item_tag(s, i)].into()))
            .collect())
    }

    /// The tags of each item of `items` as Redis has them now (the
    /// registry takes them): the item's `info`, else the round's copy of
    /// its terms (an `info` a master lost with the item's stock), else
    /// the item's own tag.
    pub(super) fn read_tags(
        &self,
        c: &mut RedisConn,
        items: &[(&str, &str)],
    ) -> Result<Vec<Tags>, RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (sale, item) in items {
            pipe.hget(item_keys(sale, item).info, "shard_tags");
            pipe.hget(keys::round_terms(sale), *item);
        }
        let fields: Vec<Option<String>> = pipe.query(c)?;
        Ok(items
            .iter()
            .zip(fields.chunks(2))
            .map(|((sale, item), pair)| {
                let copy: Option<std::collections::HashMap<String, String>> = pair
                    .get(1)
                    .and_then(Option::as_deref)
                    .and_then(|json| serde_json::from_str(json).ok());
                let field = pair.first().and_then(Option::as_deref).or_else(|| {
                    copy.as_ref()
                        .and_then(|c| c.get("shard_tags"))
                        .map(String::as_str)
                });
                let t = parse_tags(field).unwrap_or_else(|| vec![item_tag(sale, item)].into());
                self.layouts.put(sale, item, Arc::clone(&t));
                t
            })
            .collect())
    }

    /// [`tags`](Self::tags) for owned ids.
    pub(super) fn tags_owned(
        &self,
        c: &mut RedisConn,
        items: &[(String, String)],
    ) -> Result<Vec<Tags>, RedisError> {
        let refs: Vec<(&str, &str)> = items
            .iter()
            .map(|(s, i)| (s.as_str(), i.as_str()))
            .collect();
        self.tags(c, &refs)
    }
}

/// Every (item index, tag) of `tags`, items in order, shards in order.
pub(super) fn expand(tags: &[Tags]) -> Vec<(usize, &str)> {
    tags.iter()
        .enumerate()
        .flat_map(|(i, t)| t.iter().map(move |tag| (i, tag.as_str())))
        .collect()
}

/// The tags of an item loaded with `k` shards: its own tag when `k` is 1;
/// else one per shard, each in a slot of its own — on a cluster, shard j
/// in a slot of the j-th master after the one of the item's own tag, so k
/// shards on m masters spread over min(k, m) of them.
pub(super) fn pick_tags(c: &RedisConn, sale_id: &str, item_id: &str, k: u32) -> Tags {
    if k <= 1 {
        return vec![item_tag(sale_id, item_id)].into();
    }
    let RedisConn::Cluster(cluster) = c else {
        return (0..k)
            .map(|j| shard_tag(sale_id, item_id, j, None))
            .collect();
    };
    let masters = cluster.master_ids();
    let own = cluster.owner(slot_of(item_tag(sale_id, item_id).as_bytes()));
    let base = masters.iter().position(|m| Some(*m) == own).unwrap_or(0);
    (0..k)
        .map(|j| {
            let want = masters
                .get((base + j as usize) % masters.len().max(1))
                .copied();
            (0..SALTS_MAX)
                .map(|n| shard_tag(sale_id, item_id, j, (n > 0).then_some(n)))
                .find(|t| cluster.owner(slot_of(t.as_bytes())) == want)
                .unwrap_or_else(|| shard_tag(sale_id, item_id, j, None))
        })
        .collect()
}
