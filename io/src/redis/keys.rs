//! The key schema, written once. Every key seckill reads or writes in
//! Redis is named here (the Lua scripts get theirs as `KEYS`).
//!
//! Keys of one item share the hash tag `{sale:item}`, so one script call
//! touches them all, on a single Redis or a Cluster. The table of what each
//! key holds is in docs/architecture.md ("Data in Redis").

/// Bumped by every sale load: daemons re-read the metadata when it moves.
pub const CATALOG_VERSION: &str = "seckill:catalog:version";
/// Every sale round loaded: a sorted set, sale id → when its keys expire
/// (epoch ms). Read instead of scanning the keyspace, which a Redis
/// Cluster or a proxy cannot do in one call.
pub const ROUNDS: &str = "seckill:rounds";
/// What `SCAN` matches to find every sale round loaded before the
/// [`ROUNDS`] index existed (read once, on a single Redis, to fill it).
pub const ROUND_INFO_PATTERN: &str = "seckill:round:*:info";
/// Channel told `sale\nitem` whenever units go back to `available`.
pub const RELEASED_CHANNEL: &str = "seckill:released";
/// Every daemon's dashboard figures: daemon id → JSON (see `fleet`).
pub const FLEET: &str = "seckill:fleet";
pub const BLACKLIST_USERS: &str = "seckill:blacklist:users";
pub const BLACKLIST_IPS: &str = "seckill:blacklist:ips";

/// The keys the stock script takes per item, in its `KEYS` order.
pub const DEDUCT_KEY_SUFFIXES: [&str; 5] = ["stock", "buyers", "req", "unpaid", "orders"];
/// The keys the load and rebuild scripts take, in their `KEYS` order.
pub const STOCK_KEY_SUFFIXES: [&str; 7] = [
    "stock", "buyers", "req", "unpaid", "orders", "closed", "events",
];

/// The keys of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemKeys {
    pub stock: String,
    pub buyers: String,
    pub req: String,
    pub unpaid: String,
    pub orders: String,
    pub info: String,
    /// Orders that left `locked`: order id → `paid|cancelled|expired:<ms>`.
    pub closed: String,
    /// Order events (JSON) waiting to be published to Kafka.
    pub events: String,
}

/// `seckill:{sale:item}:<suffix>` as the parts of one RESP bulk string,
/// so the deduct stage writes a key without building it.
pub fn item_key_parts<'a>(sale_id: &'a str, item_id: &'a str, suffix: &'a str) -> [&'a [u8]; 6] {
    [
        b"seckill:{",
        sale_id.as_bytes(),
        b":",
        item_id.as_bytes(),
        b"}:",
        suffix.as_bytes(),
    ]
}

/// `seckill:{tag}:<suffix>` as the parts of one RESP bulk string.
pub fn tag_key_parts<'a>(tag: &'a str, suffix: &'a str) -> [&'a [u8]; 4] {
    [b"seckill:{", tag.as_bytes(), b"}:", suffix.as_bytes()]
}

/// The keys of an item (its tag `sale:item`); for a sharded item, `info`
/// is here and the stock keys are under each shard's tag ([`tag_keys`]).
pub fn item_keys(sale_id: &str, item_id: &str) -> ItemKeys {
    tag_keys(&format!("{sale_id}:{item_id}"))
}

/// The keys under one hash tag: an item's, or one stock shard's.
pub fn tag_keys(tag: &str) -> ItemKeys {
    let key = |suffix: &str| format!("seckill:{{{tag}}}:{suffix}");
    ItemKeys {
        stock: key("stock"),
        buyers: key("buyers"),
        req: key("req"),
        unpaid: key("unpaid"),
        orders: key("orders"),
        info: key("info"),
        closed: key("closed"),
        events: key("events"),
    }
}

impl ItemKeys {
    /// The keys of [`STOCK_KEY_SUFFIXES`], in that order.
    pub fn stock_keys(&self) -> [&str; 7] {
        [
            &self.stock,
            &self.buyers,
            &self.req,
            &self.unpaid,
            &self.orders,
            &self.closed,
            &self.events,
        ]
    }
}

/// The key a rebuild holds an item by (under the item's own tag): two
/// rebuilds never write the same item's shards from different records.
pub fn rebuild_lock(sale_id: &str, item_id: &str) -> String {
    format!("seckill:{{{sale_id}:{item_id}}}:rebuilding")
}

/// A sale round's metadata (`start_ms`, `end_ms`).
pub fn round_info(sale_id: &str) -> String {
    format!("seckill:round:{sale_id}:info")
}

/// The sale id of a key matched by [`ROUND_INFO_PATTERN`].
pub fn sale_of_round_info(key: &str) -> Option<&str> {
    key.strip_prefix("seckill:round:")?.strip_suffix(":info")
}

/// A copy of every item's terms (item id → JSON: title, price, limit,
/// stock, shards): in a slot of its own, so that a master that lost an
/// item's keys (its `info` shares the item's slot) does not take the
/// item's terms with them.
pub fn round_terms(sale_id: &str) -> String {
    format!("seckill:round:{sale_id}:terms")
}

/// A sale round's item ids, in order.
pub fn round_items(sale_id: &str) -> String {
    format!("seckill:round:{sale_id}:items")
}

/// The list of the rounds starting on the (UTC) day of `start_ms`.
pub fn day_rounds(start_ms: u64) -> String {
    format!("seckill:day:{}:rounds", utc_date(start_ms))
}

/// `YYYY-MM-DD` (UTC) of an epoch time in ms.
pub fn utc_date(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => t.date().to_string(),
        Err(_) => "9999-12-31".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_keys_share_one_hash_tag() {
        let k = item_keys("s1", "i1");
        assert_eq!(k.stock, "seckill:{s1:i1}:stock");
        assert_eq!(k.events, "seckill:{s1:i1}:events");
        let parts = item_key_parts("s1", "i1", DEDUCT_KEY_SUFFIXES[4]).concat();
        assert_eq!(parts, k.orders.as_bytes());
        let parts = tag_key_parts("s1:i1#2", "stock").concat();
        assert_eq!(parts, tag_keys("s1:i1#2").stock.as_bytes());
        assert_eq!(tag_keys("s1:i1").stock, k.stock);
    }

    #[test]
    fn round_keys_round_trip() {
        assert_eq!(sale_of_round_info(&round_info("s-9")), Some("s-9"));
        assert_eq!(sale_of_round_info("seckill:round:x:items"), None);
        assert_eq!(day_rounds(0), "seckill:day:1970-01-01:rounds");
    }
}
