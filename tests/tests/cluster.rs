//! Everything seckill keeps in Redis, on a real 3-master Redis Cluster
//! (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster
//! create`): a sale of 100 items spread over the masters is loaded without
//! a multi-slot transaction, listed without a keyspace scan, sold by the
//! deduct stage's store (one pipelined round trip per master), and its
//! orders paid, cancelled, expired and published from the outbox; the
//! blacklist, the fleet hash, the re-open channel and a rebuild work the
//! same; and slots moved by `redis-cli --cluster reshard` between two
//! batches are followed (MOVED) without a failed call. The daemon on a
//! cluster: `cluster_sale.rs`.
//!
//! One cluster for the whole test: creating one takes seconds.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use seckill_io::redis::{Action, ItemLoad, OrderAction, OrderState, RedisAdmin, RedisStockStore};
use seckill_pipeline::port::{DeductGroup, DeductOutcome, DeductRequest, StockStore, StoreError};
use seckill_tests::cluster::RedisCluster;

const ITEMS: usize = 100;
const STOCK: u64 = 3;

fn item_ids() -> Vec<String> {
    (0..ITEMS).map(|i| format!("item-{i:03}")).collect()
}

/// One batch: `users` buy one unit of every item, request ids
/// `<prefix>-<item>-<user>`.
fn buy_all(
    store: &mut RedisStockStore,
    sale: &str,
    items: &[String],
    prefix: &str,
    users: &[&str],
) -> Vec<DeductOutcome> {
    try_buy_all(store, sale, items, prefix, users).expect("a batch on the cluster")
}

/// [`buy_all`], its store error returned.
fn try_buy_all(
    store: &mut RedisStockStore,
    sale: &str,
    items: &[String],
    prefix: &str,
    users: &[&str],
) -> Result<Vec<DeductOutcome>, StoreError> {
    let rids: Vec<Vec<String>> = items
        .iter()
        .map(|i| users.iter().map(|u| format!("{prefix}-{i}-{u}")).collect())
        .collect();
    let requests: Vec<Vec<DeductRequest<'_>>> = rids
        .iter()
        .map(|ids| {
            ids.iter()
                .zip(users)
                .map(|(r, u)| DeductRequest {
                    request_id: r,
                    user_id: u,
                    quantity: 1,
                })
                .collect()
        })
        .collect();
    let groups: Vec<DeductGroup<'_>> = items
        .iter()
        .zip(&requests)
        .map(|(i, reqs)| DeductGroup {
            sale_id: sale,
            item_id: i,
            per_user_limit: 1,
            pay_deadline_ms: seckill_pipeline::now_ms() + 600_000,
            requests: reqs,
        })
        .collect();
    let mut out = Vec::new();
    store.deduct(&groups, &mut out).map(|()| out)
}

#[test]
fn a_sale_lives_on_a_redis_cluster_from_load_to_rebuild() {
    let cluster = RedisCluster::start(3);
    let admin = RedisAdmin::new(cluster.target(), Duration::from_secs(2)).expect("admin");
    assert!(admin.is_cluster());
    let sale = "cluster-sale";
    let ids = item_ids();
    let loads: Vec<ItemLoad<'_>> = ids
        .iter()
        .map(|id| ItemLoad {
            item_id: id,
            title: "t",
            price_cents: 100,
            stock: STOCK,
            per_user_limit: 1,
            shards: 1,
        })
        .collect();
    let now = seckill_pipeline::now_ms();
    let version = admin.catalog_version().expect("version");
    admin
        .load_sale(sale, now, now + 600_000, &loads)
        .expect("a sale loads on a cluster");
    assert!(admin.catalog_version().expect("version") > version);
    let masters: HashSet<u16> = ids
        .iter()
        .map(|i| cluster.master_of(&format!("seckill:{{{sale}:{i}}}:stock")))
        .collect();
    assert_eq!(masters.len(), 3, "the items spread over every master");

    // The catalog every daemon reads, without SCAN.
    let sales = admin.load_sales().expect("catalog");
    let stored = sales
        .iter()
        .find(|s| s.sale_id == sale)
        .expect("the sale is listed");
    assert_eq!(stored.items.len(), ITEMS);

    // The deduct stage's store: every item of a batch to its master.
    let mut store = RedisStockStore::new(cluster.target(), Duration::from_secs(2)).expect("store");
    let users = ["u1", "u2", "u3", "u4"];
    let first = buy_all(&mut store, sale, &ids, "a", &users);
    assert_eq!(first.len(), ITEMS * users.len());
    for (n, o) in first.iter().enumerate() {
        let want_win = n % users.len() < STOCK as usize;
        assert_eq!(
            matches!(o, DeductOutcome::Success(_)),
            want_win,
            "request {n}: {o:?}"
        );
        if !want_win {
            assert_eq!(*o, DeductOutcome::SoldOut);
        }
    }
    // Retried: the stored outcomes, the same order ids.
    assert_eq!(buy_all(&mut store, sale, &ids, "a", &users), first);

    // Slots move between two batches: the store follows MOVED.
    let (a, b) = (cluster.ports()[0], cluster.ports()[1]);
    let stock_key = |i: &str| format!("seckill:{{{sale}:{i}}}:stock");
    let before: Vec<u16> = ids
        .iter()
        .map(|i| cluster.master_of(&stock_key(i)))
        .collect();
    let out = cluster.reshard(a, b, 1_000);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let moved = ids
        .iter()
        .zip(&before)
        .filter(|(i, m)| cluster.master_of(&stock_key(i)) != **m)
        .count();
    assert!(moved > 0, "the reshard moved some items' slots");
    assert_eq!(buy_all(&mut store, sale, &ids, "a", &users), first);
    let stocks = admin
        .stocks(&ids.iter().map(|i| (sale, i.as_str())).collect::<Vec<_>>())
        .expect("stocks");
    for (i, s) in ids.iter().zip(&stocks) {
        let s = s.expect("stock hash");
        assert_eq!((s.available, s.locked, s.total), (0, 3, 3), "{i}");
    }
    let counters = admin
        .item_counters(&ids.iter().map(|i| (sale, i.as_str())).collect::<Vec<_>>())
        .expect("counters");
    assert!(counters.iter().all(|c| *c == Some((0, 3))), "{counters:?}");

    // WAIT per master: no replica, never final.
    let mut waiting = RedisStockStore::new(cluster.target(), Duration::from_secs(2))
        .expect("store")
        .wait_replicas(1, 50);
    let requests = [DeductRequest {
        request_id: "w-1",
        user_id: "w",
        quantity: 1,
    }];
    let groups = [DeductGroup {
        sale_id: sale,
        item_id: &ids[0],
        per_user_limit: 1,
        pay_deadline_ms: now + 600_000,
        requests: &requests,
    }];
    let err = waiting
        .deduct(&groups, &mut Vec::new())
        .expect_err("no replica acknowledged");
    assert!(err.to_string().contains("0 of 1 replicas"), "{err}");

    // Orders: found across the masters, paid, cancelled, expired.
    let all: Vec<(String, String)> = ids.iter().map(|i| (sale.to_string(), i.clone())).collect();
    let order_of = |n: usize| match first[n] {
        DeductOutcome::Success(id) => id.to_string(),
        ref o => panic!("request {n} did not win: {o:?}"),
    };
    let (item0, item1) = (&ids[0], &ids[ITEMS - 1]);
    let paid = order_of(0);
    let cancelled = order_of((ITEMS - 1) * users.len());
    assert_eq!(
        admin.find_order(&paid, &all).expect("find"),
        Some(&(sale.to_string(), item0.clone()))
    );
    assert_eq!(
        admin
            .stored_outcome(&format!("a-{item1}-u1"), &all)
            .expect("outcome")
            .map(|(i, o)| (i.1.clone(), o)),
        Some((item1.clone(), format!("ok:{cancelled}")))
    );
    let mut sub = admin.subscriber().expect("subscriber");
    let mut pubsub = sub.as_pubsub();
    pubsub
        .subscribe(seckill_io::redis::RELEASED_CHANNEL)
        .expect("subscribe");
    pubsub
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let now = seckill_pipeline::now_ms();
    assert_eq!(
        admin
            .order_action(sale, item0, &paid, Action::Pay, "u1", now)
            .expect("pay"),
        OrderAction::Done(OrderState::Paid)
    );
    assert_eq!(
        admin
            .order_action(sale, item1, &cancelled, Action::Cancel, "u1", now)
            .expect("cancel"),
        OrderAction::Done(OrderState::Cancelled)
    );
    // The cancel's release reaches the subscriber, whichever node it is on.
    let msg: String = pubsub
        .get_message()
        .expect("the release is published cluster-wide")
        .get_payload()
        .expect("payload");
    assert_eq!(msg, format!("{sale}\n{item1}"));
    drop(pubsub);
    let released = admin
        .sweep(&all, now + 3_600_000, 100)
        .expect("sweep every master");
    let total: u64 = released.iter().map(|s| s.released).sum();
    assert_eq!(total, ITEMS as u64 * STOCK - 2, "every other order expired");
    let events = admin.outbox(&all, 10).expect("outbox");
    assert_eq!(
        events.len(),
        ITEMS * STOCK as usize,
        "paid, cancelled, expired"
    );
    admin
        .ack_outbox(&events.iter().collect::<Vec<_>>())
        .expect("ack");
    assert!(admin.outbox(&all, 10).expect("outbox").is_empty());

    // The blacklist and the fleet hash: single keys, wherever they live.
    admin.set_user_blocked("bad", true).expect("block");
    assert!(admin.blacklist().expect("blacklist").0.contains("bad"));
    let read = admin
        .dashboard_tick("d1", "{}", &[], &[(sale, item0.as_str())], true)
        .expect("dashboard");
    assert_eq!(read.fleet.len(), 1);
    assert!(read.stocks[0].is_some());

    // A lost item is rebuilt from its record; live items are left alone.
    let lost = &ids[7];
    let wins = admin.wins(sale, lost).expect("wins");
    let closed = admin.closed_orders(sale, lost).expect("closed");
    let mut conn = cluster.node(cluster.master_of(&format!("seckill:{{{sale}:{lost}}}:stock")));
    // Its master loses every key of its slot: the stock and the `info`.
    for suffix in [
        "stock", "buyers", "req", "unpaid", "orders", "closed", "events", "info",
    ] {
        redis::cmd("DEL")
            .arg(format!("seckill:{{{sale}:{lost}}}:{suffix}"))
            .query::<()>(&mut conn)
            .expect("lose the item");
    }
    // Still listed, with its terms (the round's copy), and lost.
    let listed = admin.load_sales().expect("catalog");
    let item = listed
        .iter()
        .find(|s| s.sale_id == sale)
        .and_then(|s| s.items.iter().find(|i| &i.item_id == lost))
        .expect("the lost item is still in the catalog");
    assert_eq!(item.stock, STOCK);
    assert!(admin.stock(sale, lost).expect("stock").is_none());
    let restored = seckill_tests::restored(&wins, &closed, now + 600_000);
    let mut by_item = HashMap::new();
    by_item.insert(lost.as_str(), restored);
    let only_lost = [loads[7].clone()];
    let round: Vec<&str> = ids.iter().map(String::as_str).collect();
    let stocks = admin
        .restore_sale(sale, now, now + 600_000, &only_lost, &round, &by_item)
        .expect("rebuild");
    let stocks = [stocks[0].expect("the lost item was written")];
    assert_eq!(
        (stocks[0].available, stocks[0].locked, stocks[0].sold),
        (3, 0, 0),
        "its three wins expired: the units are back"
    );
    assert_eq!(admin.wins(sale, lost).expect("wins").len(), 3);
    let again = admin
        .restore_sale(sale, now, now + 600_000, &only_lost, &round, &by_item)
        .expect("second rebuild");
    assert!(again[0].is_none(), "live state is never overwritten");
    assert_eq!(
        admin.round_items(sale).expect("round").len(),
        ITEMS,
        "the round keeps every item"
    );
}

/// A master of a cluster with replicas is SIGKILLed after a batch the
/// store made wait for a replica (`redis_wait_replicas = 1`, one `WAIT`
/// per master's share): its replica takes its slots over, the store
/// follows (its calls fail while the slots are unserved and while the new
/// master has no replica of its own, then the map is read again), every
/// stored outcome is on the new master — a retried request gets its
/// order id back — and the item sells on from where it was, not from a
/// stale count.
#[test]
fn a_killed_masters_replica_takes_over_with_every_waited_win() {
    let mut cluster = RedisCluster::start_with_replicas(3, 1);
    let admin = RedisAdmin::new(cluster.target(), Duration::from_secs(2)).expect("admin");
    let sale = "failover";
    let ids: Vec<String> = (0..10).map(|i| format!("item-{i}")).collect();
    let loads: Vec<ItemLoad<'_>> = ids
        .iter()
        .map(|id| ItemLoad {
            item_id: id,
            title: "t",
            price_cents: 100,
            stock: 5,
            per_user_limit: 1,
            shards: 1,
        })
        .collect();
    let now = seckill_pipeline::now_ms();
    admin
        .load_sale(sale, now, now + 600_000, &loads)
        .expect("load");
    let mut store = RedisStockStore::new(cluster.target(), Duration::from_millis(500))
        .expect("store")
        .wait_replicas(1, 1_000);
    let users = ["u1", "u2"];
    let first = buy_all(&mut store, sale, &ids, "w", &users);
    assert!(first.iter().all(|o| matches!(o, DeductOutcome::Success(_))));

    let victim = cluster.master_of(&format!("seckill:{{{sale}:{}}}:stock", ids[0]));
    cluster.kill(victim);
    // The others call it failing after the node timeout, then its replica
    // is elected.
    let promoted = std::time::Instant::now() + Duration::from_secs(30);
    while cluster.master_of(&format!("seckill:{{{sale}:{}}}:stock", ids[0])) == victim {
        assert!(
            std::time::Instant::now() < promoted,
            "no replica took the slots over"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.wait_ok(Duration::from_secs(30));
    // The promoted master has no replica: with WAIT 1 nothing it decides
    // is final (pending, re-driven) until the old master, restarted,
    // rejoins as its replica.
    cluster.restart(victim);
    // The store follows: calls fail (a connection to a dead master, a
    // stale map, a WAIT no replica answers) until the map is read again
    // and the new master has its replica.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let again = loop {
        match try_buy_all(&mut store, sale, &ids, "w", &users) {
            Ok(out) => break out,
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                assert!(std::time::Instant::now() < deadline, "never followed: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(again, first, "every waited win is on the new master");
    let more = buy_all(&mut store, sale, &ids, "x", &["u3", "u4", "u5", "u6"]);
    let won = more
        .iter()
        .filter(|o| matches!(o, DeductOutcome::Success(_)))
        .count();
    assert_eq!(won, ids.len() * 3, "5 units each: 2 before, 3 after");
    let stocks = admin
        .stocks(&ids.iter().map(|i| (sale, i.as_str())).collect::<Vec<_>>())
        .expect("stocks");
    assert!(stocks
        .iter()
        .all(|s| s.is_some_and(|s| (s.available, s.locked) == (0, 5))));
}
