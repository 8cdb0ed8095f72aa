//! Stock shards against a real `redis-server`: an item's stock split over
//! k sub-stocks in different hash slots, each request sent to its user's
//! home shard and, once that one is dry, walking the others. Each test
//! tries to break one invariant of DESIGN §2 across shards: no oversell
//! (every shard's counts sum to its total, the shards' to the item's), no
//! double win (a user hammering from two daemons while its home runs dry
//! stays at its limit), idempotency (a retry, a re-drive after a cut
//! between the unit taken and the borrow ended), and the unit's way back
//! (pay, cancel, expiry release into the shard it came from). A rebuild
//! of a sharded item: `shards_rebuild.rs`.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use seckill_io::redis::{Action, OrderAction, OrderState, RedisAdmin, RedisStockStore};
use seckill_pipeline::port::DeductOutcome;
use seckill_pipeline::OrderId;
use seckill_tests::shards::{batch, batch_q, load, store, user_at, ITEM};
use seckill_tests::RedisServer;

fn wins(out: &[DeductOutcome]) -> Vec<OrderId> {
    out.iter()
        .filter_map(|o| match o {
            DeductOutcome::Success(id) => Some(*id),
            _ => None,
        })
        .collect()
}

/// A user whose home among `k` shards is `home`.

#[test]
fn a_sharded_hot_item_sells_exactly_its_stock_and_every_shard_sums_to_its_total() {
    let redis = RedisServer::start();
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    load(&admin, "s1", 100, 1, 3);
    // Two daemons: each its own registry, read from the catalog.
    let other = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    let listed = other.load_sales().expect("catalog");
    let item = &listed
        .iter()
        .find(|s| s.sale_id == "s1")
        .expect("sale")
        .items[0];
    assert_eq!((item.shards, item.stock), (3, 100));
    let mut a = store(&redis, &admin);
    let mut b = store(&redis, &other);
    let mut all = Vec::new();
    for round in 0..5 {
        let reqs: Vec<(String, String)> = (0..64)
            .map(|n| (format!("r{round}-{n}"), format!("u{round}-{n}")))
            .collect();
        let s = if round % 2 == 0 { &mut a } else { &mut b };
        all.extend(batch(s, "s1", 1, &reqs).expect("a batch"));
    }
    let won = wins(&all);
    assert_eq!(won.len(), 100, "exactly the stock, over 320 buyers");
    assert_eq!(
        won.iter().collect::<HashSet<_>>().len(),
        100,
        "distinct orders"
    );
    assert_eq!(
        all.iter().filter(|o| **o == DeductOutcome::SoldOut).count(),
        220,
        "sold out only when every shard is: {all:?}"
    );
    let by_shard = admin.stocks_by_shard(&[("s1", ITEM)]).expect("shards");
    let totals: Vec<(i64, i64, i64)> = by_shard[0]
        .iter()
        .map(|s| {
            let s = s.expect("every shard has its hash");
            assert!(s.anomaly().is_none(), "{s:?}");
            (s.available, s.locked, s.total)
        })
        .collect();
    assert_eq!(totals, vec![(0, 34, 34), (0, 33, 33), (0, 33, 33)]);
    let sum = admin.stock("s1", ITEM).expect("stock").expect("hash");
    assert_eq!((sum.available, sum.locked, sum.total), (0, 100, 100));
    assert_eq!(
        admin.win_counts(&[("s1", ITEM)]).expect("counts"),
        vec![100]
    );
    assert_eq!(
        admin.item_counters(&[("s1", ITEM)]).expect("c"),
        vec![Some((0, 100))]
    );
    assert_eq!(admin.wins("s1", ITEM).expect("wins").len(), 100);
    assert_eq!(admin.buyer_units("s1", ITEM).expect("buyers"), 100);
    // Retried, on the other daemon: the same answers.
    let reqs: Vec<(String, String)> = (0..64)
        .map(|n| (format!("r0-{n}"), format!("u0-{n}")))
        .collect();
    assert_eq!(batch(&mut b, "s1", 1, &reqs).expect("retry"), all[..64]);
}

#[test]
fn a_user_hammering_from_two_daemons_while_its_home_runs_dry_stays_at_its_limit() {
    let redis = RedisServer::start();
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    const K: usize = 3;
    // 3 units a shard, limit 2: the hammer's home runs dry under it.
    load(&admin, "s2", 9, 2, K as u32);
    let hammer = user_at(0, K, "hammer");
    let fillers: Vec<String> = (0..4)
        .map(|n| user_at(0, K, &format!("filler{n}")))
        .collect();
    let start = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (url, start, hammer, fillers) = (
                redis.url(),
                Arc::clone(&start),
                hammer.clone(),
                fillers.clone(),
            );
            std::thread::spawn(move || {
                let admin = RedisAdmin::new(url.as_str(), Duration::from_secs(2)).expect("admin");
                admin.load_sales().expect("catalog");
                let mut s = RedisStockStore::new(url.as_str(), Duration::from_secs(2))
                    .expect("store")
                    .layouts(admin.layouts());
                start.wait();
                let mut out = Vec::new();
                for round in 0..20 {
                    // The hammer's requests among its home's other buyers.
                    let mut reqs = vec![(format!("h{t}-{round}"), hammer.clone())];
                    for f in &fillers {
                        reqs.push((format!("{f}-{t}-{round}"), f.clone()));
                    }
                    let o = batch(&mut s, "s2", 2, &reqs).expect("a batch");
                    out.push(o[0]);
                }
                out
            })
        })
        .collect();
    let hammered: Vec<DeductOutcome> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    let won = wins(&hammered);
    assert_eq!(
        won.len(),
        2,
        "the limit, across shards and daemons: {hammered:?}"
    );
    assert!(hammered
        .iter()
        .all(|o| matches!(o, DeductOutcome::Success(_) | DeductOutcome::Duplicate)));
    let stock = admin.stock("s2", ITEM).expect("stock").expect("hash");
    assert_eq!(
        (stock.available, stock.locked),
        (0, 9),
        "sold out, once each"
    );
    assert_eq!(admin.buyer_units("s2", ITEM).expect("buyers"), 9);
    let hammer_wins = admin
        .wins("s2", ITEM)
        .expect("wins")
        .into_iter()
        .filter(|w| w.user_id == hammer)
        .count();
    assert_eq!(hammer_wins, 2);
}

/// Two shards of one unit each; `home` buys its home's unit, `late` (same
/// home) must borrow the other shard's.
fn two_shards_one_borrow(redis: &RedisServer, admin: &RedisAdmin, sale: &str) -> (String, String) {
    load(admin, sale, 2, 1, 2);
    let first = user_at(1, 2, "first");
    let late = user_at(1, 2, "late");
    let mut s = store(redis, admin);
    let o = batch(&mut s, sale, 1, &[("r-first".into(), first.clone())]).expect("home unit");
    assert!(matches!(o[0], DeductOutcome::Success(_)), "{o:?}");
    (first, late)
}

#[cfg(feature = "failpoints")]
#[test]
fn a_borrow_cut_before_it_ends_is_redriven_to_exactly_one_unit() {
    let scenario = fail::FailScenario::setup();
    let redis = RedisServer::start();
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    let (_, late) = two_shards_one_borrow(&redis, &admin, "s3");
    let mut s = store(&redis, &admin);
    fail::cfg("redis::stock::finish", "return").expect("fail point");
    let err = batch(&mut s, "s3", 1, &[("r-late".into(), late.clone())])
        .expect_err("cut between the take and the finish");
    assert!(err.is_retryable(), "{err}");
    fail::remove("redis::stock::finish");
    // The unit was taken on shard 0; the home still says `borrow`.
    let shards = admin.stocks_by_shard(&[("s3", ITEM)]).expect("shards");
    let locked: Vec<i64> = shards[0].iter().map(|s| s.expect("hash").locked).collect();
    assert_eq!(locked, vec![1, 1]);
    let home: String = redis::cmd("HGET")
        .arg("seckill:{s3:hot#1}:req")
        .arg("r-late")
        .query(&mut redis.connection())
        .expect("the home's stored outcome");
    assert!(home.starts_with("borrow:0:"), "{home}");
    // The re-drive, by a daemon started afresh: the same unit, once.
    let fresh = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    fresh.load_sales().expect("catalog");
    let mut again = store(&redis, &fresh);
    let o = batch(&mut again, "s3", 1, &[("r-late".into(), late.clone())]).expect("re-drive");
    let [DeductOutcome::Success(id)] = o[..] else {
        panic!("{o:?}");
    };
    assert_eq!(
        batch(&mut again, "s3", 1, &[("r-late".into(), late)]).expect("retry"),
        o
    );
    let stock = admin.stock("s3", ITEM).expect("stock").expect("hash");
    assert_eq!(
        (stock.available, stock.locked),
        (0, 2),
        "two units, each taken once"
    );
    let all: Vec<(String, String)> = vec![("s3".into(), ITEM.into())];
    let (_, stored) = admin
        .stored_outcome("r-late", &all)
        .expect("lookup")
        .expect("stored");
    assert_eq!(stored, format!("ok:{id}"));
    drop(scenario);
}

#[test]
fn pay_cancel_and_expiry_release_into_the_shard_the_unit_came_from() {
    let redis = RedisServer::start();
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    let (first, late) = two_shards_one_borrow(&redis, &admin, "s4");
    let mut s = store(&redis, &admin);
    let o = batch(&mut s, "s4", 1, &[("r-late".into(), late.clone())]).expect("borrow");
    let [DeductOutcome::Success(borrowed)] = o[..] else {
        panic!("{o:?}");
    };
    let o = batch(&mut s, "s4", 1, &[("r-none".into(), user_at(1, 2, "none"))]).expect("dry");
    assert_eq!(o, vec![DeductOutcome::SoldOut], "both shards dry");
    let all: Vec<(String, String)> = vec![("s4".into(), ITEM.into())];
    let borrowed = borrowed.to_string();
    assert_eq!(
        admin.find_order(&borrowed, &all).expect("find"),
        Some(&all[0])
    );
    let rec = admin
        .order("s4", ITEM, &borrowed)
        .expect("read")
        .expect("order");
    assert_eq!(
        (rec.user_id.as_str(), rec.state),
        (late.as_str(), OrderState::AwaitingPayment)
    );
    let now = seckill_pipeline::now_ms();
    assert_eq!(
        admin
            .order_action("s4", ITEM, &borrowed, Action::Cancel, &late, now)
            .expect("cancel"),
        OrderAction::Done(OrderState::Cancelled)
    );
    let shards = admin.stocks_by_shard(&[("s4", ITEM)]).expect("shards");
    let avail: Vec<i64> = shards[0]
        .iter()
        .map(|s| s.expect("hash").available)
        .collect();
    assert_eq!(avail, vec![1, 0], "back into shard 0, which gave it");
    // The home shard's next buyer borrows the released unit.
    let o = batch(&mut s, "s4", 1, &[("r-next".into(), user_at(1, 2, "next"))]).expect("next");
    assert!(matches!(o[0], DeductOutcome::Success(_)), "{o:?}");
    // Nothing due yet: the sweep says when the earliest order will be.
    let early = admin.sweep(&all, now, 100).expect("sweep");
    assert_eq!(early[0].released, 0);
    assert!(
        early[0].next_deadline_ms.is_some_and(|d| d > now),
        "{early:?}"
    );
    // Expiry: every unpaid order goes back to its own shard.
    let swept = admin.sweep(&all, now + 3_600_000, 100).expect("sweep");
    assert_eq!(swept[0].released, 2);
    assert_eq!(swept[0].next_deadline_ms, None, "nothing left waiting");
    let shards = admin.stocks_by_shard(&[("s4", ITEM)]).expect("shards");
    let counts: Vec<(i64, i64)> = shards[0]
        .iter()
        .map(|s| {
            let s = s.expect("hash");
            (s.available, s.locked)
        })
        .collect();
    assert_eq!(counts, vec![(1, 0), (1, 0)]);
    // Paying the expired one is a conflict, wherever it lives.
    let first_win = admin
        .wins("s4", ITEM)
        .expect("wins")
        .into_iter()
        .find(|w| w.user_id == first)
        .expect("first's win");
    assert_eq!(
        admin
            .order_action("s4", ITEM, &first_win.order_id, Action::Pay, &first, now)
            .expect("pay"),
        OrderAction::Conflict(OrderState::Expired)
    );
    let events = admin.outbox(&all, 10).expect("outbox");
    assert_eq!(events.len(), 3, "cancelled, expired, expired");
    admin
        .ack_outbox(&events.iter().collect::<Vec<_>>())
        .expect("ack");
    assert!(admin.outbox(&all, 10).expect("outbox").is_empty());
}

/// A borrow that found no shard gives the user's reserved units back;
/// a later win of the same user, for as many units, must not get the
/// order id of one the user won meanwhile (order ids follow the request,
/// not the user's count, which a released borrow lowers).
#[test]
fn a_released_borrow_never_makes_two_wins_share_an_order_id() {
    let redis = RedisServer::start();
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    // Three units: two on shard 0, one on shard 1; a limit of three.
    load(&admin, "s6", 3, 3, 2);
    let (filler, user) = (user_at(0, 2, "filler"), user_at(0, 2, "user"));
    let mut s = store(&redis, &admin);
    let q = |r: &str, u: &str, q: u32| (r.to_string(), u.to_string(), q);
    let o = batch_q(&mut s, "s6", 3, &[q("f", &filler, 2)]).expect("the home emptied");
    let DeductOutcome::Success(fill) = o[0] else {
        panic!("{o:?}");
    };
    // Both borrow: two units are nowhere, one is on shard 1.
    let o = batch_q(&mut s, "s6", 3, &[q("a", &user, 2), q("b", &user, 1)]).expect("borrows");
    assert_eq!(o[0], DeductOutcome::SoldOut, "{o:?}");
    let DeductOutcome::Success(b) = o[1] else {
        panic!("{o:?}");
    };
    // The filler cancels: two units back home, where the user wins two.
    let now = seckill_pipeline::now_ms();
    admin
        .order_action("s6", ITEM, &fill.to_string(), Action::Cancel, &filler, now)
        .expect("cancel");
    let o = batch_q(&mut s, "s6", 3, &[q("c", &user, 2)]).expect("home again");
    let DeductOutcome::Success(c) = o[0] else {
        panic!("{o:?}");
    };
    assert_ne!(b, c, "two wins, two order ids");
    let quantities: Vec<u32> = [b, c]
        .iter()
        .map(|id| {
            admin
                .order("s6", ITEM, &id.to_string())
                .expect("read")
                .expect("each order has its own record")
                .quantity
        })
        .collect();
    assert_eq!(quantities, vec![1, 2]);
    assert_eq!(
        admin.buyer_units("s6", ITEM).expect("buyers"),
        3 + 2,
        "filler 2, user 3"
    );
}
