//! The stock store's contract, one scenario table run against both
//! implementations: the in-memory `FakeStore` the stage tests use and the
//! real Redis store (`deduct.lua` on a spawned `redis-server`). Where they
//! differ, the stage tests prove something about a store that does not
//! exist.
//!
//! Each step is a ring batch (one `deduct` call) of requests for one or
//! more items; each request names the outcome the contract requires. Order
//! ids are compared by identity, not value (the fake hashes differently):
//! a retried request id gets the same id back, two wins never share one.

use std::collections::HashMap;
use std::time::Duration;

use seckill_io::redis::{ItemLoad, RedisAdmin, RedisStockStore};
use seckill_pipeline::fake::FakeStore;
use seckill_pipeline::port::{DeductGroup, DeductOutcome, DeductRequest, StockStore};
use seckill_pipeline::OrderId;
use seckill_tests::RedisServer;

/// What the contract requires of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A win whose order id is remembered under this label: the same label
    /// again means the same order id, another label another id.
    Win(&'static str),
    SoldOut,
    Duplicate,
    LimitExceeded,
    UnknownItem,
}

/// One request: item, request id, user, quantity, wanted outcome.
type Req = (&'static str, &'static str, &'static str, u32, Want);

struct Scenario {
    name: &'static str,
    /// Items loaded before the first step: id, stock, per-user limit.
    items: &'static [(&'static str, u64, u32)],
    /// Ring batches, in order.
    steps: &'static [&'static [Req]],
    /// Per item after the last step: available, locked.
    after: &'static [(&'static str, i64, i64)],
}

use Want::*;

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "the last unit goes to the first request, the rest are sold out",
        items: &[("i", 2, 1)],
        steps: &[&[
            ("i", "r1", "u1", 1, Win("a")),
            ("i", "r2", "u2", 1, Win("b")),
            ("i", "r3", "u3", 1, SoldOut),
        ]],
        after: &[("i", 0, 2)],
    },
    Scenario {
        name: "a retried request id gets its stored outcome, in the same batch or later",
        items: &[("i", 1, 1)],
        steps: &[
            &[
                ("i", "r1", "u1", 1, Win("a")),
                ("i", "r1", "u1", 1, Win("a")),
            ],
            &[
                ("i", "r1", "u1", 1, Win("a")),
                ("i", "r2", "u2", 1, SoldOut),
            ],
            &[("i", "r2", "u2", 1, SoldOut)],
        ],
        after: &[("i", 0, 1)],
    },
    Scenario {
        name: "a user at the limit gets duplicate, whatever the stock",
        items: &[("i", 10, 1)],
        steps: &[
            &[("i", "r1", "u1", 1, Win("a"))],
            &[
                ("i", "r2", "u1", 1, Duplicate),
                ("i", "r3", "u2", 1, Win("b")),
            ],
        ],
        after: &[("i", 8, 2)],
    },
    Scenario {
        name: "the limit counts units, not wins",
        items: &[("i", 10, 3)],
        steps: &[
            &[("i", "r1", "u1", 2, Win("a"))],
            // 2 + 2 > 3: a store counting wins (1 + 2 ≤ 3) would sell it.
            &[("i", "r2", "u1", 2, Duplicate)],
            &[("i", "r3", "u1", 1, Win("b"))],
            &[("i", "r4", "u1", 1, Duplicate)],
        ],
        after: &[("i", 7, 3)],
    },
    Scenario {
        name: "more units than the limit in one request are refused",
        items: &[("i", 10, 2)],
        steps: &[&[
            ("i", "r1", "u1", 3, LimitExceeded),
            ("i", "r2", "u1", 2, Win("a")),
        ]],
        after: &[("i", 8, 2)],
    },
    Scenario {
        name: "a request for more than is left is sold out, a smaller one still wins",
        items: &[("i", 1, 5)],
        steps: &[&[
            ("i", "r1", "u1", 2, SoldOut),
            ("i", "r2", "u2", 1, Win("a")),
        ]],
        after: &[("i", 0, 1)],
    },
    Scenario {
        name: "an item with no stock loaded is unknown",
        items: &[("i", 1, 1)],
        steps: &[&[
            ("nope", "r1", "u1", 1, UnknownItem),
            ("i", "r2", "u1", 1, Win("a")),
        ]],
        after: &[("i", 0, 1)],
    },
    Scenario {
        name: "one batch decides several items independently",
        items: &[("a", 1, 1), ("b", 2, 1)],
        steps: &[&[
            ("a", "r1", "u1", 1, Win("a1")),
            ("b", "r2", "u1", 1, Win("b1")),
            ("a", "r3", "u2", 1, SoldOut),
            ("b", "r4", "u2", 1, Win("b2")),
            ("b", "r5", "u3", 1, SoldOut),
        ]],
        after: &[("a", 0, 1), ("b", 0, 2)],
    },
    Scenario {
        name: "the same user wins on two items",
        items: &[("a", 5, 1), ("b", 5, 1)],
        steps: &[
            &[
                ("a", "r1", "u1", 1, Win("x")),
                ("b", "r2", "u1", 1, Win("y")),
            ],
            &[
                ("a", "r3", "u1", 1, Duplicate),
                ("b", "r4", "u1", 1, Duplicate),
            ],
        ],
        after: &[("a", 4, 1), ("b", 4, 1)],
    },
];

/// Runs one step: groups the requests by item (arrival order kept within
/// an item, as the deduct stage does) and returns the outcomes in request
/// order.
fn run_step(
    store: &mut dyn StockStore,
    sale: &str,
    limits: &HashMap<&str, u32>,
    step: &[Req],
) -> Vec<DeductOutcome> {
    let mut order: Vec<&str> = Vec::new();
    for (item, ..) in step {
        if !order.contains(item) {
            order.push(item);
        }
    }
    let requests: Vec<Vec<DeductRequest<'_>>> = order
        .iter()
        .map(|it| {
            step.iter()
                .filter(|r| r.0 == *it)
                .map(|&(_, request_id, user_id, quantity, _)| DeductRequest {
                    request_id,
                    user_id,
                    quantity,
                })
                .collect()
        })
        .collect();
    let groups: Vec<DeductGroup<'_>> = order
        .iter()
        .zip(&requests)
        .map(|(it, reqs)| DeductGroup {
            sale_id: sale,
            item_id: it,
            per_user_limit: limits.get(it).copied().unwrap_or(1),
            pay_deadline_ms: u64::MAX / 2,
            requests: reqs,
        })
        .collect();
    let mut grouped = Vec::new();
    store.deduct(&groups, &mut grouped).expect("deduct");
    // Back to request order.
    let mut per_item: HashMap<&str, std::vec::IntoIter<DeductOutcome>> = HashMap::new();
    let mut rest = grouped.into_iter();
    for (it, reqs) in order.iter().zip(&requests) {
        let mine: Vec<DeductOutcome> = rest.by_ref().take(reqs.len()).collect();
        per_item.insert(it, mine.into_iter());
    }
    step.iter()
        .map(|r| {
            per_item
                .get_mut(r.0)
                .and_then(Iterator::next)
                .expect("one outcome per request")
        })
        .collect()
}

/// Runs every step of a scenario, in order.
fn run_all(
    store: &mut dyn StockStore,
    sale: &str,
    limits: &HashMap<&str, u32>,
    sc: &Scenario,
) -> Vec<Vec<DeductOutcome>> {
    sc.steps
        .iter()
        .map(|s| run_step(store, sale, limits, s))
        .collect()
}

/// Loads a scenario's items into Redis as the admin API does.
fn load(admin: &RedisAdmin, sale: &str, sc: &Scenario) {
    let loads: Vec<ItemLoad<'_>> = sc
        .items
        .iter()
        .map(|&(item_id, stock, per_user_limit)| ItemLoad {
            item_id,
            title: "",
            price_cents: 1,
            stock,
            per_user_limit,
            shards: 1,
        })
        .collect();
    admin
        .load_sale(sale, 1, u64::MAX / 4, &loads)
        .expect("load sale");
}

/// Checks the outcomes of a whole scenario against the table.
fn check(store_name: &str, sc: &Scenario, outcomes: &[Vec<DeductOutcome>]) {
    let mut ids: HashMap<&str, OrderId> = HashMap::new();
    for (step, got) in sc.steps.iter().zip(outcomes) {
        for (req, out) in step.iter().zip(got) {
            let ctx = format!("{store_name}: {}: request {}", sc.name, req.1);
            match (req.4, out) {
                (Win(label), DeductOutcome::Success(id)) => {
                    let known = *ids.entry(label).or_insert(*id);
                    assert_eq!(known, *id, "{ctx}: a retry got another order id");
                }
                (SoldOut, DeductOutcome::SoldOut)
                | (Duplicate, DeductOutcome::Duplicate)
                | (LimitExceeded, DeductOutcome::LimitExceeded)
                | (UnknownItem, DeductOutcome::UnknownItem) => {}
                (want, got) => panic!("{ctx}: wanted {want:?}, got {got:?}"),
            }
        }
    }
    let mut seen: HashMap<OrderId, &str> = HashMap::new();
    for (label, id) in &ids {
        if let Some(other) = seen.insert(*id, label) {
            panic!(
                "{store_name}: {}: wins {label} and {other} share an order id",
                sc.name
            );
        }
    }
}

#[test]
fn fake_and_redis_stores_keep_the_same_contract() {
    let redis = RedisServer::start();
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    let mut real = RedisStockStore::new(redis.url(), Duration::from_secs(2)).expect("store");
    for (n, sc) in SCENARIOS.iter().enumerate() {
        let sale = format!("contract-{n}");
        let limits: HashMap<&str, u32> = sc.items.iter().map(|&(i, _, l)| (i, l)).collect();
        let mut fake = FakeStore::default();
        for &(item, stock, _) in sc.items {
            fake.add_item(&sale, item, stock);
        }
        load(&admin, &sale, sc);

        let fake_out = run_all(&mut fake, &sale, &limits, sc);
        let real_out = run_all(&mut real, &sale, &limits, sc);
        check("fake", sc, &fake_out);
        check("redis", sc, &real_out);

        for &(item, available, locked) in sc.after {
            let f = fake.stock(&sale, item).expect("fake item");
            let r = admin
                .stock(&sale, item)
                .expect("redis")
                .expect("redis item");
            assert_eq!(
                (f.available as i64, f.locked as i64),
                (available, locked),
                "fake: {}: stock of {item}",
                sc.name
            );
            assert_eq!(
                (r.available, r.locked),
                (available, locked),
                "redis: {}: stock of {item}",
                sc.name
            );
        }
    }
}

#[test]
fn the_contract_also_holds_with_one_script_call_per_item() {
    let redis = RedisServer::start();
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    let mut real = RedisStockStore::new(redis.url(), Duration::from_secs(2))
        .expect("store")
        .per_item(true);
    for (n, sc) in SCENARIOS.iter().enumerate() {
        let sale = format!("per-item-{n}");
        let limits: HashMap<&str, u32> = sc.items.iter().map(|&(i, _, l)| (i, l)).collect();
        load(&admin, &sale, sc);
        let out = run_all(&mut real, &sale, &limits, sc);
        check("redis per item", sc, &out);
    }
}

/// On a Redis Cluster every item's call goes to its own master: the same
/// contract, the items of a multi-item step on different masters.
#[test]
fn the_contract_also_holds_on_a_redis_cluster() {
    let cluster = seckill_tests::cluster::RedisCluster::start(3);
    let admin = RedisAdmin::new(cluster.target(), Duration::from_secs(2)).expect("admin");
    let mut real = RedisStockStore::new(cluster.target(), Duration::from_secs(2)).expect("store");
    for (n, sc) in SCENARIOS.iter().enumerate() {
        let sale = format!("cluster-{n}");
        let limits: HashMap<&str, u32> = sc.items.iter().map(|&(i, _, l)| (i, l)).collect();
        load(&admin, &sale, sc);
        let out = run_all(&mut real, &sale, &limits, sc);
        check("redis cluster", sc, &out);
        for &(item, available, locked) in sc.after {
            let r = admin.stock(&sale, item).expect("redis").expect("item");
            assert_eq!(
                (r.available, r.locked),
                (available, locked),
                "{}: {item}",
                sc.name
            );
        }
    }
}

/// `WAIT` after each batch: a batch no replica acknowledged in time is an
/// error (the stage decides it `pending`), and its re-drive, once the
/// replica is back, gets the outcome the master stored — the same order id.
#[test]
fn a_batch_no_replica_acknowledged_is_not_decided_and_its_redrive_is_idempotent() {
    let master = RedisServer::start();
    let replica = RedisServer::start_replica_of(&master);
    let admin = RedisAdmin::new(master.url(), Duration::from_secs(2)).expect("admin");
    let sale = Scenario {
        name: "wait",
        items: &[("w", 10, 1)],
        steps: &[],
        after: &[],
    };
    load(&admin, "wait", &sale);
    let mut store = RedisStockStore::new(master.url(), Duration::from_secs(2))
        .expect("store")
        .wait_replicas(1, 200);
    let deduct = |store: &mut RedisStockStore, req: &str, user: &str| {
        let requests = [DeductRequest {
            request_id: req,
            user_id: user,
            quantity: 1,
        }];
        let groups = [DeductGroup {
            sale_id: "wait",
            item_id: "w",
            per_user_limit: 1,
            pay_deadline_ms: u64::MAX / 4,
            requests: &requests,
        }];
        let mut out = Vec::new();
        store.deduct(&groups, &mut out).map(|()| out)
    };
    let first = deduct(&mut store, "r1", "u1").expect("acknowledged by the replica");
    assert!(
        matches!(first[..], [DeductOutcome::Success(_)]),
        "{first:?}"
    );

    // The replica stops acknowledging: decided on the master, not final.
    replica.freeze();
    let err = deduct(&mut store, "r2", "u2").expect_err("no acknowledgement");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("0 of 1 replicas"), "{err}");
    replica.thaw();
    let again = deduct(&mut store, "r2", "u2").expect("acknowledged now");
    let retry = deduct(&mut store, "r2", "u2").expect("a retry");
    assert_eq!(again, retry, "the re-drive gets the stored outcome");
    assert!(
        matches!(again[..], [DeductOutcome::Success(_)]),
        "{again:?}"
    );
    let stock = admin.stock("wait", "w").expect("redis").expect("item");
    assert_eq!(stock.locked, 2, "two units, each taken once: {stock:?}");

    // More replicas asked for than exist: never final.
    let mut two = RedisStockStore::new(master.url(), Duration::from_secs(2))
        .expect("store")
        .wait_replicas(2, 50);
    let err = deduct(&mut two, "r3", "u3").expect_err("one replica of two");
    assert!(err.to_string().contains("1 of 2 replicas"), "{err}");
}
