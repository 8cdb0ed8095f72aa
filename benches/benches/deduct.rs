//! The batched Lua deduction against a spawned redis-server: one script
//! call carrying a batch of N requests (the deduct stage) vs. the same N
//! requests as N separate round trips one after the other, and vs. N
//! concurrent `EVALSHA`s on one multiplexed async connection (what an
//! async Rust team writes: `seckill-naive`'s call, pipelined by the
//! connection); for one item, and with every request for another item.
//! `deduct_redis_wait`: the same batch with and without one `WAIT 1` per
//! batch, a replica on the same box (`redis_wait_replicas`).
//! `deduct_cluster_shards`: one hot item on a 3-master Redis Cluster, its
//! stock in one place or split over three shards (one per master), a batch
//! of 64 buyers; and the same 64 buyers when their home shard is dry, each
//! borrowing from the next shard (the walk's extra round trips).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use seckill_benches::naive::{deduct_one, script, OneDeduct};
use seckill_io::redis::{ItemLoad, RedisAdmin, RedisStockStore};
use seckill_pipeline::port::{DeductGroup, DeductRequest, StockStore};
use seckill_tests::RedisServer;

fn group<'a>(item: &'a str, requests: &'a [DeductRequest<'a>]) -> DeductGroup<'a> {
    DeductGroup {
        sale_id: "bench",
        item_id: item,
        per_user_limit: 1,
        pay_deadline_ms: 1,
        requests,
    }
}

/// The two ways of sending a batch on the deduct stage's own (blocking)
/// connection, by bench name; the third, `pipelined_evalsha`, is below.
const MODES: [(&str, bool); 2] = [
    ("one_call_per_batch", false),
    ("one_call_per_request", true),
];

/// N concurrent `EVALSHA`s, one per request, on one multiplexed async
/// connection: every request's outcome, in order.
fn pipelined(
    rt: &tokio::runtime::Runtime,
    conn: &redis::aio::MultiplexedConnection,
    script: &redis::Script,
    sale: &str,
    items: &[&str],
    users: &[String],
) -> Vec<String> {
    rt.block_on(futures_util::future::join_all(
        users.iter().zip(items.iter().cycle()).map(|(u, item)| {
            let mut conn = conn.clone();
            async move {
                let d = OneDeduct {
                    sale,
                    item,
                    per_user_limit: 1,
                    pay_deadline_ms: 1,
                    request_id: u,
                    user_id: u,
                    quantity: 1,
                };
                deduct_one(&mut conn, script, d).await.expect("deduct")
            }
        }),
    ))
}

/// An item with `stock` units and a limit of one per user.
fn item_load(item: &str, stock: u64) -> ItemLoad<'_> {
    ItemLoad {
        item_id: item,
        title: "",
        price_cents: 1,
        stock,
        per_user_limit: 1,
        shards: 1,
    }
}

/// A fresh item with plenty of stock, so every request runs the full path
/// (a win), not a sold-out exit.
fn fresh_item(admin: &RedisAdmin, round: &mut u64) -> String {
    *round += 1;
    let item = format!("i{round}");
    admin
        .load_sale(
            "bench",
            0,
            4_000_000_000_000,
            &[item_load(&item, 1_000_000)],
        )
        .expect("load");
    item
}

/// A fresh sale of `items`, 1,000 units each.
fn fresh_sale(admin: &RedisAdmin, round: &mut u64, items: &[String]) -> String {
    *round += 1;
    let sale = format!("m{round}");
    let loads: Vec<ItemLoad<'_>> = items.iter().map(|item| item_load(item, 1_000)).collect();
    admin
        .load_sale(&sale, 0, 4_000_000_000_000, &loads)
        .expect("load");
    sale
}

/// One request per user (the user's name is its request id too).
fn requests(users: &[String]) -> Vec<DeductRequest<'_>> {
    users
        .iter()
        .map(|u| DeductRequest {
            request_id: u,
            user_id: u,
            quantity: 1,
        })
        .collect()
}

fn deduct(c: &mut Criterion) {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let conn = rt
        .block_on(
            redis::Client::open(redis.url())
                .expect("client")
                .get_multiplexed_async_connection(),
        )
        .expect("multiplexed connection");
    let lua = script();
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("admin");
    let mut store = RedisStockStore::new(redis.url(), Duration::from_secs(2)).expect("store");
    let mut g = c.benchmark_group("deduct_redis");
    g.sample_size(20);
    let mut round = 0u64;
    let mut out = Vec::new();
    let users: Vec<String> = (0..256).map(|n| format!("u{n}")).collect();
    for batch in [1usize, 16, 64, 256] {
        g.throughput(Throughput::Elements(batch as u64));
        for (name, per_request) in MODES {
            g.bench_function(format!("{name}_{batch}"), |b| {
                b.iter_batched(
                    || fresh_item(&admin, &mut round),
                    |item| {
                        out.clear();
                        let reqs = requests(&users[..batch]);
                        if per_request {
                            for r in &reqs {
                                store
                                    .deduct(&[group(&item, std::slice::from_ref(r))], &mut out)
                                    .expect("deduct");
                            }
                        } else {
                            store
                                .deduct(&[group(&item, &reqs)], &mut out)
                                .expect("deduct");
                        }
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        g.bench_function(format!("pipelined_evalsha_{batch}"), |b| {
            b.iter_batched(
                || fresh_item(&admin, &mut round),
                |item| {
                    let won = pipelined(&rt, &conn, &lua, "bench", &[&item], &users[..batch]);
                    debug_assert!(won.iter().all(|o| o.starts_with("ok:")));
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();

    // The many-items case: every request of the batch is for another item
    // (the many-items sale's win phase), one script call carrying all the
    // items vs one call per request.
    let mut g = c.benchmark_group("deduct_redis_many_items");
    g.sample_size(20);
    let items: Vec<String> = (0..64).map(|n| format!("i{n}")).collect();
    for batch in [16usize, 64] {
        g.throughput(Throughput::Elements(batch as u64));
        for (name, per_request) in MODES {
            g.bench_function(format!("{name}_{batch}"), |b| {
                b.iter_batched(
                    || fresh_sale(&admin, &mut round, &items[..batch]),
                    |sale| {
                        out.clear();
                        let reqs = requests(&users[..batch]);
                        let groups: Vec<DeductGroup<'_>> = (0..batch)
                            .map(|k| DeductGroup {
                                sale_id: &sale,
                                item_id: &items[k],
                                per_user_limit: 1,
                                pay_deadline_ms: 1,
                                requests: std::slice::from_ref(&reqs[k]),
                            })
                            .collect();
                        if per_request {
                            for grp in &groups {
                                store
                                    .deduct(std::slice::from_ref(grp), &mut out)
                                    .expect("deduct");
                            }
                        } else {
                            store.deduct(&groups, &mut out).expect("deduct");
                        }
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        g.bench_function(format!("pipelined_evalsha_{batch}"), |b| {
            b.iter_batched(
                || fresh_sale(&admin, &mut round, &items[..batch]),
                |sale| {
                    let names: Vec<&str> = items[..batch].iter().map(String::as_str).collect();
                    pipelined(&rt, &conn, &lua, &sale, &names, &users[..batch]);
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// One batch's script call alone vs followed by `WAIT 1 …` in the same
/// round trip, with a replica of the master on the same box.
fn wait(c: &mut Criterion) {
    let master = RedisServer::start();
    let _replica = RedisServer::start_replica_of(&master);
    let admin = RedisAdmin::new(master.url(), Duration::from_secs(2)).expect("admin");
    let mut g = c.benchmark_group("deduct_redis_wait");
    g.sample_size(20);
    let mut round = 0u64;
    let mut out = Vec::new();
    let users: Vec<String> = (0..64).map(|n| format!("u{n}")).collect();
    for replicas in [0u32, 1] {
        let mut store = RedisStockStore::new(master.url(), Duration::from_secs(2))
            .expect("store")
            .wait_replicas(replicas, 1_000);
        for batch in [1usize, 64] {
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(format!("wait_{replicas}_batch_{batch}"), |b| {
                b.iter_batched(
                    || fresh_item(&admin, &mut round),
                    |item| {
                        out.clear();
                        let reqs = requests(&users[..batch]);
                        store
                            .deduct(&[group(&item, &reqs)], &mut out)
                            .expect("deduct");
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
}

/// A hot item of `shards` shards on the cluster, `stock` units.
fn fresh_sharded(admin: &RedisAdmin, round: &mut u64, stock: u64, shards: u32) -> String {
    *round += 1;
    let item = format!("h{round}");
    admin
        .load_sale(
            "bench",
            0,
            4_000_000_000_000,
            &[ItemLoad {
                shards,
                ..item_load(&item, stock)
            }],
        )
        .expect("load");
    item
}

/// `n` users whose home among `k` shards is `home`, named after `prefix`.
fn users_at(home: usize, k: usize, prefix: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|u| seckill_io::redis::home_shard(u, k) == home)
        .take(n)
        .collect()
}

fn cluster_shards(c: &mut Criterion) {
    let cluster = seckill_tests::cluster::RedisCluster::start(3);
    let admin = RedisAdmin::new(cluster.target(), Duration::from_secs(2)).expect("admin");
    let mut store = RedisStockStore::new(cluster.target(), Duration::from_secs(2))
        .expect("store")
        .layouts(admin.layouts());
    let mut g = c.benchmark_group("deduct_cluster_shards");
    g.sample_size(20);
    g.throughput(Throughput::Elements(64));
    let mut round = 0u64;
    let mut out = Vec::new();
    let users: Vec<String> = (0..64).map(|n| format!("u{n}")).collect();
    for shards in [1u32, 3] {
        g.bench_function(format!("shards_{shards}_batch_64"), |b| {
            b.iter_batched(
                || fresh_sharded(&admin, &mut round, 1_000_000, shards),
                |item| {
                    out.clear();
                    let reqs = requests(&users);
                    store
                        .deduct(&[group(&item, &reqs)], &mut out)
                        .expect("deduct");
                },
                BatchSize::PerIteration,
            )
        });
    }
    // Every buyer's home (shard 0) emptied first by 64 others: the batch
    // borrows from shard 1, one step (home, take, finish: three trips).
    let fillers = users_at(0, 3, "f", 64);
    let borrowers = users_at(0, 3, "b", 64);
    let mut filler = RedisStockStore::new(cluster.target(), Duration::from_secs(2))
        .expect("store")
        .layouts(admin.layouts());
    g.bench_function("shards_3_batch_64_home_dry", |b| {
        b.iter_batched(
            || {
                let item = fresh_sharded(&admin, &mut round, 3 * 64, 3);
                let reqs = requests(&fillers);
                let mut o = Vec::new();
                filler.deduct(&[group(&item, &reqs)], &mut o).expect("fill");
                item
            },
            |item| {
                out.clear();
                let reqs = requests(&borrowers);
                store
                    .deduct(&[group(&item, &reqs)], &mut out)
                    .expect("deduct");
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, deduct, wait, cluster_shards);
criterion_main!(benches);
