//! A sharded item rebuilt from its record against a real `redis-server`:
//! every win back on its user's home shard, each shard's total what its
//! wins hold plus a share of what was never sold — the retries get their
//! order ids, the limits hold, nothing sells past the stock whatever order
//! the record comes in and however many units a win holds.

use std::collections::HashMap;
use std::time::Duration;

use seckill_io::redis::{ItemLoad, RedisAdmin, RestoredWin};
use seckill_pipeline::port::DeductOutcome;
use seckill_tests::shards::{batch, load, store, user_at, ITEM};
use seckill_tests::RedisServer;

#[test]
fn a_rebuild_puts_every_win_back_within_the_shards_totals() {
    let redis = RedisServer::start();
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    load(&admin, "s5", 10, 1, 3);
    let mut s = store(&redis, &admin);
    let reqs: Vec<(String, String)> = (0..12)
        .map(|n| (format!("r{n}"), format!("u{n}")))
        .collect();
    let first = batch(&mut s, "s5", 1, &reqs).expect("a batch");
    let won = first
        .iter()
        .filter(|o| matches!(o, DeductOutcome::Success(_)))
        .count();
    assert_eq!(won, 10);
    let record = admin.wins("s5", ITEM).expect("wins");
    let mut c = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("seckill:{s5:hot#*")
        .query(&mut c)
        .expect("keys");
    assert!(!keys.is_empty());
    redis::cmd("DEL")
        .arg(&keys)
        .query::<()>(&mut c)
        .expect("lose the shards");
    assert!(admin.stock("s5", ITEM).expect("stock").is_none());
    let now = seckill_pipeline::now_ms();
    let none = HashMap::new();
    let restored = seckill_tests::restored(&record, &none, now + 600_000);
    let mut by_item = HashMap::new();
    by_item.insert(ITEM, restored);
    let load = ItemLoad {
        item_id: ITEM,
        title: "t",
        price_cents: 100,
        stock: 10,
        per_user_limit: 1,
        shards: 3,
    };
    let stocks = admin
        .restore_sale("s5", now, now + 600_000, &[load], &[ITEM], &by_item)
        .expect("rebuild");
    let stock = stocks[0].expect("written");
    assert_eq!((stock.available, stock.locked), (0, 10));
    for shard in &admin.stocks_by_shard(&[("s5", ITEM)]).expect("shards")[0] {
        let shard = shard.expect("hash");
        assert!(shard.anomaly().is_none(), "within its total: {shard:?}");
    }
    // Every earlier buyer retried gets its order back; every limit holds.
    let mut fresh = store(&redis, &admin);
    assert_eq!(batch(&mut fresh, "s5", 1, &reqs).expect("a batch"), first);
    let again: Vec<(String, String)> = reqs
        .iter()
        .zip(&first)
        .filter(|(_, o)| matches!(o, DeductOutcome::Success(_)))
        .map(|((r, u), _)| (format!("again-{r}"), u.clone()))
        .collect();
    assert_eq!(again.len(), 10);
    let o = batch(&mut fresh, "s5", 1, &again).expect("a batch");
    assert!(o.iter().all(|o| *o == DeductOutcome::Duplicate), "{o:?}");
}

/// The record does not say which shard gave a unit. Wins of several units
/// in the record's order (not Redis's) must still fit: every win goes back
/// to its user's home, and each shard's total is what it holds plus a
/// share of what was never sold — nothing sells past the stock.
#[test]
fn a_rebuild_of_wins_of_several_units_never_oversells() {
    let redis = RedisServer::start();
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    load(&admin, "s7", 4, 2, 2);
    let (u1, u3) = (user_at(0, 2, "one"), user_at(0, 2, "three"));
    let u2 = user_at(1, 2, "two");
    let mut c = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("seckill:{s7:hot#*")
        .query(&mut c)
        .expect("keys");
    redis::cmd("DEL")
        .arg(&keys)
        .query::<()>(&mut c)
        .expect("lose the shards");
    let now = seckill_pipeline::now_ms();
    fn win<'a>(o: &'a str, r: &'a str, u: &'a str, q: u32, deadline_ms: u64) -> RestoredWin<'a> {
        RestoredWin {
            order_id: o,
            request_id: r,
            user_id: u,
            quantity: q,
            deadline_ms,
            closed: None,
        }
    }
    let d = now + 600_000;
    // Live, u3's two units and u1's borrowed one; u2 at its own home.
    let wins = vec![
        win("0000000000000001", "r1", &u1, 1, d),
        win("0000000000000002", "r2", &u2, 1, d),
        win("0000000000000003", "r3", &u3, 2, d),
    ];
    let by_item = HashMap::from([(ITEM, wins)]);
    let load = ItemLoad {
        item_id: ITEM,
        title: "t",
        price_cents: 100,
        stock: 4,
        per_user_limit: 2,
        shards: 2,
    };
    admin
        .restore_sale("s7", now, now + 600_000, &[load], &[ITEM], &by_item)
        .expect("rebuild");
    for shard in &admin.stocks_by_shard(&[("s7", ITEM)]).expect("shards")[0] {
        let shard = shard.expect("hash");
        assert!(shard.anomaly().is_none(), "{shard:?}");
        assert_eq!(shard.available, 0, "every unit accounted for: {shard:?}");
    }
    let mut s = store(&redis, &admin);
    let more: Vec<(String, String)> = (0..4)
        .map(|n| (format!("new{n}"), format!("new-{n}")))
        .collect();
    let o = batch(&mut s, "s7", 2, &more).expect("a batch");
    assert!(o.iter().all(|o| *o == DeductOutcome::SoldOut), "{o:?}");
    let stock = admin.stock("s7", ITEM).expect("stock").expect("hash");
    assert_eq!((stock.locked, stock.total), (4, 4));
}
