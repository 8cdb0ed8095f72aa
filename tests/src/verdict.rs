//! The invariant checker over a sale's final answers: the stock hash in
//! Redis, the orders on Kafka and every answer the clients got.

use std::collections::BTreeMap;
use std::time::Duration;

use seckill_benches::check::{self, Answer, CheckReport};
use seckill_io::redis::{RedisAdmin, RedisTarget};

use crate::{Broker, RedisServer};

/// The item of the sales [`verdict_within`] checks.
pub const CHECKED_ITEM: &str = "item";

/// Creates sale `sale` of one item [`CHECKED_ITEM`] of `stock` units,
/// per-user limit 1, open now for ten minutes, through the admin API at
/// `admin`.
pub async fn open_checked_sale(
    client: &seckill_benches::load::HttpClient,
    admin: &str,
    sale: &str,
    stock: u64,
) {
    let now = seckill_pipeline::now_ms();
    let item = seckill_benches::load::ItemSpec {
        item_id: CHECKED_ITEM.into(),
        title: "fleet".into(),
        price_cents: 100,
        stock,
        per_user_limit: 1,
        shards: 1,
    };
    seckill_benches::load::create_sale(
        client,
        admin,
        crate::ADMIN_TOKEN,
        sale,
        now,
        now + 600_000,
        &[item],
    )
    .await
    .expect("sale created");
}

/// Distinct requests answered `status` (a retry is the same request).
pub fn distinct_requests(answers: &[Answer], status: &str) -> usize {
    answers
        .iter()
        .filter(|a| a.status == status)
        .map(|a| &a.request_id)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Runs the checker over final answers of sale `sale` (its one item is
/// `item`, per-user limit 1), waiting up to `wait` for Kafka.
pub async fn verdict_within(
    redis: &RedisServer,
    broker: &Broker,
    sale: &str,
    answers: &[Answer],
    wait: Duration,
) -> CheckReport {
    verdict_at(&redis.url(), broker, sale, answers, wait).await
}

/// [`verdict_within`] with the stock read from the Redis at `redis` (a
/// URL, or a [`RedisTarget`]: a cluster).
pub async fn verdict_at(
    redis: impl Into<RedisTarget>,
    broker: &Broker,
    sale: &str,
    answers: &[Answer],
    wait: Duration,
) -> CheckReport {
    let admin = RedisAdmin::new(redis, Duration::from_secs(2)).expect("redis");
    let mut stock = BTreeMap::new();
    stock.insert(
        CHECKED_ITEM.to_string(),
        admin
            .stock(sale, CHECKED_ITEM)
            .expect("stock")
            .expect("stock hash"),
    );
    let wins = answers
        .iter()
        .filter(|a| a.status == "success")
        .filter_map(|a| a.order_id.as_deref())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let brokers = broker.brokers();
    let sale_id = sale.to_string();
    let orders =
        tokio::task::spawn_blocking(move || check::read_orders(&brokers, &sale_id, wins, wait))
            .await
            .expect("join")
            .expect("orders");
    let report = check::check(answers, &stock, &orders, 1);
    eprintln!(
        "verdict for {sale}: {} answers, {} successes, {} orders ({} distinct), locked+sold {}, violations {:?}",
        answers.len(),
        report.successes,
        report.kafka_orders,
        report.kafka_distinct_orders,
        report.locked_plus_sold,
        report.violations
    );
    report
}
