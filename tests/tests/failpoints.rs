//! Named fail points on a running daemon (scripts/test.sh builds with
//! `--features seckill-tests/failpoints`): the Kafka producer refuses every
//! send (`kafka::sink::send`) while wins are decided; each win is answered,
//! kept aside by the publish stage, and reaches Kafka exactly once when the
//! producer takes orders again.
#![cfg(feature = "failpoints")]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use seckill_benches::check;
use seckill_benches::load::HttpClient;
use seckill_tests::Stack;

fn now_ms() -> u64 {
    seckill_pipeline::now_ms()
}

async fn purchase(client: &HttpClient, base: &str, sale: &str, user: &str) -> serde_json::Value {
    let body = serde_json::json!({ "user_id": user, "request_id": format!("{user}-1") });
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/api/v1/sales/{sale}/items/i/purchase"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = client.request(req).await.expect("http");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("json answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_kafka_send_keeps_the_win_and_publishes_it_once_the_producer_takes_it() {
    let scenario = fail::FailScenario::setup();
    let Stack {
        redis: _redis,
        broker,
        wal: _wal,
        daemon,
        base,
        client,
    } = Stack::start(false, |c| c.require_token = false).await;
    let t0 = now_ms();
    seckill_tests::one_item_sale(&client, &base, "fp", t0 - 1_000, 20).await;

    fail::cfg("kafka::sink::send", "return").expect("cfg");
    for n in 0..30 {
        let a = purchase(&client, &base, "fp", &format!("u{n}")).await;
        let want = if n < 20 { "success" } else { "sold_out" };
        assert_eq!(a["status"], want, "{a}");
    }
    let seen = check::read_orders(&broker.brokers(), "fp", 1, Duration::from_secs(3))
        .expect("read orders");
    assert!(seen.is_empty(), "no send went through: {seen:?}");
    assert_eq!(
        daemon
            .app
            .sink_stats
            .acked
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    fail::remove("kafka::sink::send");
    let orders = check::read_orders(&broker.brokers(), "fp", 20, Duration::from_secs(30))
        .expect("read orders");
    let mut users: Vec<&str> = orders.iter().map(|o| o.user_id.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    assert_eq!(orders.len(), 20, "every win once: {orders:?}");
    assert_eq!(users.len(), 20);
    daemon.shutdown().await.expect("shutdown");
    scenario.teardown();
}
