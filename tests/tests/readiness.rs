//! Readiness that means "send me traffic": a daemon whose Redis is frozen
//! stays ready (its purchases go `pending`), its dependencies show in
//! `/healthz`; on shutdown it first fails readiness for the drain time
//! while still selling, then stops.

use std::time::{Duration, Instant};

use hyper::Method;
use seckill_benches::load;
use seckill_tests::{one_item_sale, Stack};

async fn get(client: &load::HttpClient, url: &str) -> (u16, serde_json::Value) {
    let (code, body) = load::send(client, Method::GET, url, None, vec![])
        .await
        .expect("answer");
    (code, serde_json::from_slice(&body).unwrap_or_default())
}

async fn buy(client: &load::HttpClient, base: &str, user: &str) -> (u16, serde_json::Value) {
    let url = format!("{base}/api/v1/sales/ready/items/i/purchase");
    let body = serde_json::to_vec(
        &serde_json::json!({"user_id": user, "request_id": format!("{user}-1")}),
    )
    .expect("json");
    let (code, body) = load::send(client, Method::POST, &url, None, body)
        .await
        .expect("answer");
    (code, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_with_redis_frozen_stays_ready_and_drains_before_it_stops() {
    let Stack {
        redis,
        broker: _broker,
        wal: _wal,
        daemon,
        base,
        client,
    } = Stack::start(false, |c| {
        c.require_token = false;
        c.shutdown_drain_ms = 1_500;
    })
    .await;
    one_item_sale(&client, &base, "ready", seckill_pipeline::now_ms(), 100).await;
    let (code, _) = get(&client, &format!("{base}/livez")).await;
    assert_eq!(code, 200);
    let (code, body) = get(&client, &format!("{base}/readyz")).await;
    assert_eq!(
        (code, &body["not_ready"]),
        (200, &serde_json::json!([])),
        "{body}"
    );

    // Redis frozen: purchases go pending, the daemon stays ready, and
    // /healthz says why purchases wait.
    redis.freeze();
    let (code, v) = buy(&client, &base, "frozen").await;
    assert_eq!((code, v["status"].as_str()), (202, Some("pending")), "{v}");
    let (code, body) = get(&client, &format!("{base}/readyz")).await;
    assert_eq!(
        code, 200,
        "a frozen Redis is no reason to pull the daemon: {body}"
    );
    let (code, health) = get(&client, &format!("{base}/healthz")).await;
    assert_eq!(code, 200);
    assert_eq!(health["redis"], "down", "{health}");
    redis.thaw();
    assert!(seckill_tests::settle::redis_up(&client, &base, Duration::from_secs(30)).await);

    // SIGTERM's path: not ready at once, still selling for the drain time.
    let started = Instant::now();
    let stopping = tokio::spawn(daemon.shutdown());
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let (code, body) = get(&client, &format!("{base}/readyz")).await;
        if code == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "readiness never failed: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["not_ready"], serde_json::json!(["draining"]), "{body}");
    let (code, v) = buy(&client, &base, "late").await;
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("success")),
        "served while draining: {v}"
    );
    stopping.await.expect("join").expect("clean shutdown");
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "the drain time was kept"
    );
}
