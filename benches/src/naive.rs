//! The idiomatic baseline's deduction: one `EVALSHA` of the same stock
//! script per request, on a multiplexed async connection (which pipelines
//! concurrent calls by itself). `seckill-naive` answers with it and the
//! `deduct` bench measures it beside the batched call.

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script};
use seckill_io::redis::{item_keys, DEDUCT_LUA};

/// One purchase as the script takes it.
#[derive(Debug, Clone, Copy)]
pub struct OneDeduct<'a> {
    pub sale: &'a str,
    pub item: &'a str,
    pub per_user_limit: u32,
    pub pay_deadline_ms: u64,
    pub request_id: &'a str,
    pub user_id: &'a str,
    pub quantity: u32,
}

/// The stock script (loaded once per connection by `EVALSHA`'s fallback).
pub fn script() -> Script {
    Script::new(DEDUCT_LUA)
}

/// One script call for one request: its stored outcome (`ok:<order id>`,
/// `sold_out`, `duplicate`, `limit_exceeded`, `unknown_item`).
pub async fn deduct_one(
    conn: &mut MultiplexedConnection,
    script: &Script,
    d: OneDeduct<'_>,
) -> RedisResult<String> {
    let k = item_keys(d.sale, d.item);
    script
        .key(&k.stock)
        .key(&k.buyers)
        .key(&k.req)
        .key(&k.unpaid)
        .key(&k.orders)
        .arg(1)
        .arg(d.sale)
        .arg(d.item)
        .arg(d.per_user_limit)
        .arg(d.pay_deadline_ms)
        .arg(1)
        // Not sharded: no shard to borrow from.
        .arg("")
        .arg(d.request_id)
        .arg(d.user_id)
        .arg(d.quantity)
        .invoke_async(conn)
        .await
}
