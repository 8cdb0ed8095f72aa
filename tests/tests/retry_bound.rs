//! The Kafka retry queue is bounded: past `kafka_retry_queue_max`, failed
//! orders leave memory — never the WAL. Once the queue drains they are
//! re-read from the WAL and published, without a restart.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use seckill_benches::check;
use seckill_benches::load::{self, Plan};
use seckill_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_past_the_retry_bound_are_re_read_from_the_wal_and_published() {
    const SALE: &str = "bound";
    const WINS: usize = 40;
    let Stack {
        redis: _redis,
        mut broker,
        wal: _wal,
        daemon,
        base,
        client,
    } = Stack::start(false, |c| {
        c.kafka_retry_queue_max = 5;
        c.kafka_message_timeout_ms = 1_000;
    })
    .await;
    let now = seckill_pipeline::now_ms();
    seckill_tests::one_item_sale(&client, &base, SALE, now - 1_000, WINS as u64).await;
    broker.kill();
    let plan = Plan {
        base: base.clone(),
        sale_id: SALE.into(),
        items: vec!["i".into()],
        users: WINS,
        first_user: 0,
        request_prefix: String::new(),
        clicks_per_user: 1,
        retries: 0,
        concurrency: 8,
        time_max: Duration::from_secs(30),
        rate_per_sec: None,
    };
    let report = load::run(&client, &plan).await;
    assert_eq!(
        report.by_status.get("success").copied(),
        Some(WINS as u64),
        "{:?}",
        report.by_status
    );
    let stats = &daemon.app.sink_stats;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.dropped.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no order went past the bound");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stats.queued.load(Ordering::Relaxed) <= 5,
        "the queue holds more than its bound"
    );
    assert!(
        daemon.app.shared.outstanding.oldest_age() > Duration::ZERO,
        "unacknowledged wins have an age"
    );
    broker.restart();
    let brokers = broker.brokers();
    let orders = tokio::task::spawn_blocking(move || {
        check::read_orders(&brokers, SALE, WINS, Duration::from_secs(90))
    })
    .await
    .expect("join")
    .expect("orders");
    let distinct: std::collections::HashSet<_> =
        orders.iter().map(|o| o.order_id.clone()).collect();
    assert_eq!(
        distinct.len(),
        WINS,
        "every win reaches Kafka without a restart ({} dropped past the bound)",
        stats.dropped.load(Ordering::Relaxed)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !daemon.app.shared.outstanding.is_empty() {
        assert!(Instant::now() < deadline, "orders never acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(daemon.app.shared.outstanding.oldest_age(), Duration::ZERO);
    daemon.shutdown().await.expect("shutdown");
}
