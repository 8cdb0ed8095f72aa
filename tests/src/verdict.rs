//! The invariant checker over a sale's final answers: the stock hash in
//! Redis, the orders on Kafka and every answer the clients got.

use std::collections::BTreeMap;
use std::time::Duration;

use seckill_benches::check::{self, Answer, CheckReport};
use seckill_io::redis::RedisAdmin;

use crate::{Broker, RedisServer};

/// Runs the checker over final answers of sale `sale` (its one item is
/// `item`, per-user limit 1), waiting up to `wait` for Kafka.
pub async fn verdict_within(
    redis: &RedisServer,
    broker: &Broker,
    sale: &str,
    answers: &[Answer],
    wait: Duration,
) -> CheckReport {
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("redis");
    let mut stock = BTreeMap::new();
    stock.insert(
        "item".to_string(),
        admin
            .stock(sale, "item")
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
