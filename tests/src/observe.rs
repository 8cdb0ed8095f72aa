//! Watching a daemon from a test: its `/metrics` text, its acknowledged
//! orders.

use std::time::Duration;

/// The daemon's `/metrics` text.
pub async fn scrape(client: &seckill_benches::load::HttpClient, base: &str) -> String {
    let url = format!("{base}/metrics");
    let (code, body) = seckill_benches::load::send(client, hyper::Method::GET, &url, None, vec![])
        .await
        .expect("scrape");
    assert_eq!(code, 200, "GET /metrics");
    String::from_utf8(body.to_vec()).expect("utf-8")
}

/// Waits (up to 30 s) until Kafka acknowledged `n` orders of this daemon
/// (its status board counts them `order_created`).
pub async fn wait_acknowledged(app: &seckill_io::App, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.board.count(seckill_pipeline::Status::OrderCreated) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "orders never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
