//! Where an item's stock lives: under its own hash tag `{sale:item}`, or
//! split over k stock shards, each under a tag of its own
//! (`{sale:item#j}`, `{sale:item#j.n}`), so on a cluster each shard can be
//! on another master. The item's metadata (`seckill:{sale:item}:info`)
//! names the shards (`shards`, `shard_tags`); every process keeps what it
//! read in a [`Layouts`] registry, shared by the admin side and the deduct
//! stage's store.
//!
//! A user's **home** shard is fixed by the user id (CRC-32 modulo k): the
//! user's buyer count and every request of theirs start there, so the
//! per-user limit is counted in one place (see docs/architecture.md,
//! "Stock shards").

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Most shards an item may have.
pub const SHARDS_MAX: u32 = 64;
/// How long a layout read on a miss is trusted (the catalog sync renews
/// the daemon's every second; the order service reads on a miss).
const FETCHED_TTL: Duration = Duration::from_secs(30);

/// The hash tags of an item's stock: one (not sharded) or one per shard.
pub type Tags = Arc<[String]>;

/// The tag of an item's own keys: `sale:item`.
pub fn item_tag(sale_id: &str, item_id: &str) -> String {
    format!("{sale_id}:{item_id}")
}

/// The plain tag of shard `j`; a load may pick `…#j.n` instead so that
/// the shard lands on another master (`#` is in no id).
pub fn shard_tag(sale_id: &str, item_id: &str, j: u32, salt: Option<u32>) -> String {
    match salt {
        None => format!("{sale_id}:{item_id}#{j}"),
        Some(n) => format!("{sale_id}:{item_id}#{j}.{n}"),
    }
}

/// A user's home shard among `k`.
pub fn home_shard(user_id: &str, k: usize) -> usize {
    if k <= 1 {
        return 0;
    }
    crc32fast::hash(user_id.as_bytes()) as usize % k
}

/// Each shard's stock: `total / k`, the first `total % k` one more.
pub fn shard_stocks(total: u64, k: u32) -> Vec<u64> {
    let k = u64::from(k.max(1));
    (0..k)
        .map(|j| total / k + u64::from(j < total % k))
        .collect()
}

/// The `shard_tags` field of an item's `info` (comma separated) as tags;
/// `None` when there is none (not sharded).
pub fn parse_tags(field: Option<&str>) -> Option<Tags> {
    let f = field?.trim();
    if f.is_empty() {
        return None;
    }
    let tags: Vec<String> = f.split(',').map(str::to_string).collect();
    (tags.len() > 1).then(|| tags.into())
}

/// An item's tags and when they were read.
type Known = (Tags, Instant);

/// Layouts known to this process: sale → item → tags.
#[derive(Debug, Default)]
pub struct Layouts {
    map: RwLock<HashMap<String, HashMap<String, Known>>>,
}

impl Layouts {
    /// The tags of an item if known and fresh; `None` for an item this
    /// process has not read (or long ago).
    pub fn fresh(&self, sale_id: &str, item_id: &str) -> Option<Tags> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let (tags, at) = map.get(sale_id)?.get(item_id)?;
        (at.elapsed() < FETCHED_TTL).then(|| Arc::clone(tags))
    }

    /// The tags of an item on the hot path, however old (`None`: use the
    /// item's own tag). The catalog sync records every item before the
    /// ingress knows it, so an unknown item is one nobody can buy yet;
    /// should a sharded one slip through, its own tag holds no stock and
    /// the script answers `unknown_item` (503 / pending, never a refusal).
    pub fn known(&self, sale_id: &str, item_id: &str) -> Option<Tags> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(sale_id)?
            .get(item_id)
            .map(|(tags, _)| Arc::clone(tags))
    }

    pub fn put(&self, sale_id: &str, item_id: &str, tags: Tags) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.entry(sale_id.to_string())
            .or_default()
            .insert(item_id.to_string(), (tags, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_stock_and_sum_to_it() {
        assert_eq!(shard_stocks(10, 3), vec![4, 3, 3]);
        assert_eq!(shard_stocks(2, 3), vec![1, 1, 0]);
        assert_eq!(shard_stocks(7, 1), vec![7]);
        for (t, k) in [(0, 5), (1_000_000_007, 64), (99, 7)] {
            assert_eq!(shard_stocks(t, k).iter().sum::<u64>(), t);
        }
    }

    #[test]
    fn a_user_always_has_the_same_home_and_users_spread() {
        assert_eq!(home_shard("alice", 1), 0);
        assert_eq!(home_shard("alice", 3), home_shard("alice", 3));
        let mut seen = [0u32; 3];
        for u in 0..3_000 {
            seen[home_shard(&format!("user-{u}"), 3)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn tags_are_read_from_the_info_field() {
        assert!(parse_tags(None).is_none());
        assert!(parse_tags(Some("")).is_none());
        assert!(parse_tags(Some("s:i")).is_none(), "one tag: not sharded");
        let t = parse_tags(Some("s:i#0,s:i#1.4")).expect("two shards");
        assert_eq!(&t[..], ["s:i#0", "s:i#1.4"]);
        assert_eq!(shard_tag("s", "i", 1, Some(4)), "s:i#1.4");
    }
}
