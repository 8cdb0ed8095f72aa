//! One sharded item against a real `redis-server`, as the shard tests
//! drive it: load it, open a store that shares the admin's layouts (as a
//! daemon's catalog sync and deduct stage do), send a batch, find a user
//! whose home is a given shard.

use std::time::Duration;

use seckill_io::redis::{home_shard, ItemLoad, RedisAdmin, RedisStockStore};
use seckill_pipeline::port::{DeductGroup, DeductOutcome, DeductRequest, StockStore, StoreError};

use crate::RedisServer;

/// The item every shard test sells.
pub const ITEM: &str = "hot";

/// Loads `sale` with [`ITEM`] (on sale for ten minutes from now).
pub fn load(admin: &RedisAdmin, sale: &str, stock: u64, limit: u32, shards: u32) {
    let now = seckill_pipeline::now_ms();
    admin
        .load_sale(
            sale,
            now,
            now + 600_000,
            &[ItemLoad {
                item_id: ITEM,
                title: "t",
                price_cents: 100,
                stock,
                per_user_limit: limit,
                shards,
            }],
        )
        .expect("load");
}

/// A store that sees the layouts `admin` read.
pub fn store(redis: &RedisServer, admin: &RedisAdmin) -> RedisStockStore {
    RedisStockStore::new(redis.url(), Duration::from_secs(2))
        .expect("store")
        .layouts(admin.layouts())
}

/// One batch of (request id, user, quantity) for [`ITEM`].
pub fn batch_q(
    store: &mut RedisStockStore,
    sale: &str,
    limit: u32,
    reqs: &[(String, String, u32)],
) -> Result<Vec<DeductOutcome>, StoreError> {
    let requests: Vec<DeductRequest<'_>> = reqs
        .iter()
        .map(|(r, u, q)| DeductRequest {
            request_id: r,
            user_id: u,
            quantity: *q,
        })
        .collect();
    let groups = [DeductGroup {
        sale_id: sale,
        item_id: ITEM,
        per_user_limit: limit,
        pay_deadline_ms: seckill_pipeline::now_ms() + 600_000,
        requests: &requests,
    }];
    let mut out = Vec::new();
    store.deduct(&groups, &mut out).map(|()| out)
}

/// One batch of (request id, user) for [`ITEM`], a unit each.
pub fn batch(
    store: &mut RedisStockStore,
    sale: &str,
    limit: u32,
    reqs: &[(String, String)],
) -> Result<Vec<DeductOutcome>, StoreError> {
    let reqs: Vec<(String, String, u32)> = reqs
        .iter()
        .map(|(r, u)| (r.clone(), u.clone(), 1))
        .collect();
    batch_q(store, sale, limit, &reqs)
}

/// The first user `{prefix}-{n}` whose home among `k` shards is `home`.
pub fn user_at(home: usize, k: usize, prefix: &str) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|u| home_shard(u, k) == home)
        .expect("some user lives there")
}
