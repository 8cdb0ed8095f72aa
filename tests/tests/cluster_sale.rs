//! `seckilld` on a real 3-master Redis Cluster, as a user runs it: a sale
//! of 100 items while 2,000 slots move from one master to another, and a
//! hot item split over three stock shards, one on each master. Each test
//! starts its own cluster (a few seconds) and daemon, and ends with the
//! invariant checker over Redis, Kafka and every answer.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use seckill_benches::check::{self, Answer, CheckReport};
use seckill_benches::load::{self, HttpClient, ItemSpec, Plan, Report};
use seckill_io::redis::{RedisAdmin, StockHash};
use seckill_tests::cluster::RedisCluster;
use seckill_tests::settle::settle;
use seckill_tests::{daemon_config_at, distinct_requests, free_port, Broker, DaemonProcess};

/// A cluster, a broker and a daemon on them (purchases without tokens).
struct OnCluster {
    cluster: Arc<RedisCluster>,
    broker: Broker,
    base: String,
    client: HttpClient,
    _daemon: DaemonProcess,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl OnCluster {
    async fn start() -> OnCluster {
        let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3))
            .await
            .expect("cluster");
        let broker = Broker::start();
        let (wal, logs) = (
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
        );
        let mut cfg = daemon_config_at(&cluster.url(), &broker, wal.path());
        cfg.listen = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        cfg.redis_cluster_nodes = cluster.nodes();
        cfg.require_token = false;
        let daemon = DaemonProcess::start(&cfg, &logs.path().join("seckilld.log"));
        OnCluster {
            cluster: Arc::new(cluster),
            broker,
            base: format!("http://{}", daemon.addr),
            client: load::client(32),
            _daemon: daemon,
            _dirs: (wal, logs),
        }
    }

    async fn create_sale(&self, sale: &str, items: &[ItemSpec]) {
        let now = seckill_pipeline::now_ms();
        load::create_sale(
            &self.client,
            &self.base,
            seckill_tests::ADMIN_TOKEN,
            sale,
            now,
            now + 600_000,
            items,
        )
        .await
        .expect("sale created");
    }

    /// `users` buyers of `items` at `rate`/s (user n buys item n mod k).
    fn plan(&self, sale: &str, items: &[&str], users: usize, rate: u32) -> Plan {
        Plan {
            rate_per_sec: std::num::NonZeroU32::new(rate),
            retries: 3,
            concurrency: 32,
            time_max: Duration::from_secs(120),
            ..Plan::new(&self.base, sale, items, users)
        }
    }

    /// The sale's final answers: nothing left pending.
    async fn settled(&self, sale: &str, report: &Report) -> Vec<Answer> {
        let fin = settle(
            &self.client,
            &self.base,
            sale,
            &report.answers,
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(
            distinct_requests(&fin, "pending"),
            0,
            "{:?}",
            report.by_status
        );
        fin
    }

    fn admin(&self) -> RedisAdmin {
        RedisAdmin::new(self.cluster.target(), Duration::from_secs(2)).expect("admin")
    }

    /// The checker over the answers, the stock hashes and the orders topic.
    async fn verdict(
        &self,
        sale: &str,
        fin: &[Answer],
        stock: &BTreeMap<String, StockHash>,
    ) -> CheckReport {
        let wins = distinct_requests(fin, "success");
        let (brokers, sale_id) = (self.broker.brokers(), sale.to_string());
        let orders = tokio::task::spawn_blocking(move || {
            check::read_orders(&brokers, &sale_id, wins, Duration::from_secs(60))
        })
        .await
        .expect("join")
        .expect("orders");
        let verdict = check::check(fin, stock, &orders, 1);
        assert!(verdict.ok(), "{:?}", verdict.violations);
        verdict
    }
}

fn spec(item_id: &str, stock: u64, shards: u32) -> ItemSpec {
    ItemSpec {
        item_id: item_id.into(),
        title: "t".into(),
        price_cents: 100,
        stock,
        per_user_limit: 1,
        shards,
    }
}

/// The daemon on the cluster: a sale of 100 items × 20 units, 3,000 buyers
/// at 600 purchases/s, and 2,000 slots moved from one master to another
/// mid-sale. Every item sells exactly its stock, every win is on Kafka
/// once, nobody wins twice, nothing stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_of_100_items_sells_exactly_its_stock_while_slots_move() {
    const ITEMS: usize = 100;
    const UNITS: u64 = 20;
    let s = OnCluster::start().await;
    let sale = "cluster-e2e";
    let ids: Vec<String> = (0..ITEMS).map(|i| format!("item-{i:03}")).collect();
    let specs: Vec<ItemSpec> = ids.iter().map(|id| spec(id, UNITS, 1)).collect();
    s.create_sale(sale, &specs).await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let plan = s.plan(sale, &refs, 3_000, 600);
    let client = s.client.clone();
    let run = tokio::spawn(async move { load::run(&client, &plan).await });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let cluster = Arc::clone(&s.cluster);
    let (a, b) = (cluster.ports()[0], cluster.ports()[2]);
    let out = tokio::task::spawn_blocking(move || cluster.reshard(a, b, 2_000))
        .await
        .expect("reshard");
    assert!(
        out.status.success(),
        "reshard: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report = run.await.expect("the sale");
    let fin = s.settled(sale, &report).await;
    let keys: Vec<(&str, &str)> = refs.iter().map(|i| (sale, *i)).collect();
    let mut stock = BTreeMap::new();
    for (i, h) in ids.iter().zip(s.admin().stocks(&keys).expect("stocks")) {
        let h = h.expect("stock hash");
        assert_eq!(
            h.locked + h.sold,
            UNITS as i64,
            "{i} sold out exactly: {h:?}"
        );
        assert!(h.anomaly().is_none(), "{i}: {h:?}");
        stock.insert(i.clone(), h);
    }
    let wins = distinct_requests(&fin, "success") as u64;
    assert_eq!(wins, UNITS * ITEMS as u64, "{:?}", report.by_status);
    let verdict = s.verdict(sale, &fin, &stock).await;
    assert_eq!(verdict.kafka_distinct_orders, wins);
}

/// One hot item split over three stock shards, each placed on another of
/// the three masters, sold through the daemon: 3,000 buyers at 1,000/s
/// for 1,000 units. Exactly the stock is sold, the shards' counts each sum
/// to their own total, the admin API shows the item's totals and each
/// shard's, and the checker finds every win on Kafka once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_item_of_three_shards_on_three_masters_sells_exactly_its_stock() {
    const UNITS: u64 = 1_000;
    let s = OnCluster::start().await;
    let sale = "sharded";
    s.create_sale(sale, &[spec("hot", UNITS, 3)]).await;
    let mut node = s.cluster.node(s.cluster.ports()[0]);
    let tags: String = redis::cmd("HGET")
        .arg(format!("seckill:{{{sale}:hot}}:info"))
        .arg("shard_tags")
        .query(&mut node)
        .expect("the shards' tags");
    let masters: HashSet<u16> = tags
        .split(',')
        .map(|t| s.cluster.master_of(&format!("seckill:{{{t}}}:stock")))
        .collect();
    assert_eq!(masters.len(), 3, "one shard on each master: {tags}");

    let report = load::run(&s.client, &s.plan(sale, &["hot"], 3_000, 1_000)).await;
    let fin = s.settled(sale, &report).await;
    let wins = distinct_requests(&fin, "success") as u64;
    assert_eq!(wins, UNITS, "{:?}", report.by_status);
    let admin = s.admin();
    for shard in &admin.stocks_by_shard(&[(sale, "hot")]).expect("shards")[0] {
        let shard = shard.expect("every shard's hash");
        assert!(shard.anomaly().is_none(), "{shard:?}");
        assert_eq!(shard.available, 0, "every shard sold out: {shard:?}");
    }
    let stock = admin.stock(sale, "hot").expect("stock").expect("sum");
    assert_eq!((stock.locked, stock.total), (UNITS as i64, UNITS as i64));
    let (status, body) = load::send(
        &s.client,
        hyper::Method::GET,
        &format!("{}/admin/v1/sales/{sale}", s.base),
        Some(seckill_tests::ADMIN_TOKEN),
        Vec::new(),
    )
    .await
    .expect("admin read");
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(page["items"][0]["shards"], 3);
    assert_eq!(page["items"][0]["stock"]["locked"], UNITS);
    assert_eq!(
        page["items"][0]["shard_stocks"].as_array().map(Vec::len),
        Some(3)
    );
    // The public sale page: the item's totals, whatever its shards.
    let (status, body) = load::send(
        &s.client,
        hyper::Method::GET,
        &format!("{}/api/v1/sales/{sale}", s.base),
        None,
        Vec::new(),
    )
    .await
    .expect("sale page");
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(page["items"][0]["stock_total"], UNITS, "{page}");
    let verdict = s
        .verdict(sale, &fin, &BTreeMap::from([("hot".to_string(), stock)]))
        .await;
    assert_eq!(verdict.kafka_distinct_orders, UNITS);
}
