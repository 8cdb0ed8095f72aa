//! The idiomatic baseline the benchmarks compare seckilld with
//! (`seckill-naive`: one EVALSHA per request on a multiplexed connection,
//! one awaited Kafka send per win) is a real flash sale: it sells exactly
//! the stock, with the same rules and answers, and every win reaches Kafka.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use seckill_benches::check;
use seckill_benches::load::{self, ItemSpec, Plan};
use seckill_io::redis::RedisAdmin;
use seckill_tests::{free_port, workspace_bin, Broker, RedisServer, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_naive_baseline_sells_exactly_the_stock_and_publishes_every_win() {
    seckill_tests::init_logs();
    let redis = RedisServer::start();
    let broker = Broker::start();
    let port = free_port();
    let mut child = Command::new(workspace_bin("seckill-naive"))
        .env("SECKILL_LISTEN", format!("127.0.0.1:{port}"))
        .env("SECKILL_REDIS_URL", redis.url())
        .env("SECKILL_KAFKA_BROKERS", broker.brokers())
        .env("SECKILL_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::null())
        .spawn()
        .expect("start seckill-naive");
    let base = format!("http://127.0.0.1:{port}");
    let client = load::client(32);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "seckill-naive never listened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = seckill_pipeline::now_ms();
    let items = [ItemSpec {
        item_id: "item".into(),
        title: "naive".into(),
        price_cents: 100,
        stock: 100,
        per_user_limit: 1,
        shards: 1,
    }];
    load::create_sale(
        &client,
        &base,
        ADMIN_TOKEN,
        "naive",
        now - 1_000,
        now + 600_000,
        &items,
    )
    .await
    .expect("sale created");
    let plan = Plan {
        base: base.clone(),
        sale_id: "naive".into(),
        items: vec!["item".into()],
        users: 300,
        first_user: 0,
        request_prefix: String::new(),
        clicks_per_user: 2,
        retries: 0,
        concurrency: 32,
        time_max: Duration::from_secs(60),
        rate_per_sec: None,
    };
    let report = load::run(&client, &plan).await;
    assert_eq!(
        report.by_status.get("success").copied(),
        Some(100),
        "{:?}",
        report.by_status
    );
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("redis");
    let mut stock = BTreeMap::new();
    stock.insert(
        "item".to_string(),
        admin.stock("naive", "item").expect("stock").expect("hash"),
    );
    let brokers = broker.brokers();
    let orders = tokio::task::spawn_blocking(move || {
        check::read_orders(&brokers, "naive", 100, Duration::from_secs(30))
    })
    .await
    .expect("join")
    .expect("orders");
    let v = check::check(&report.answers, &stock, &orders, 1);
    assert!(v.ok(), "{:?}", v.violations);
    assert_eq!(v.kafka_distinct_orders, 100);
    let _ = child.kill();
    let _ = child.wait();
}
