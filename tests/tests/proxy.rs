//! Behind a real nginx that appends to `X-Forwarded-For`, the daemon takes
//! the address nginx saw: a client writing its own header escapes neither
//! the IP blacklist nor the per-IP limit.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use seckill_benches::load::HttpClient;
use seckill_tests::{Nginx, Stack, ADMIN_TOKEN};

/// POSTs to the token endpoint; returns the status and the error code.
async fn token(client: &HttpClient, base: &str, spoof: Option<&str>) -> (u16, String) {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/api/v1/sales/px/items/i/token"))
        .header("content-type", "application/json");
    if let Some(ip) = spoof {
        req = req.header("x-forwarded-for", ip);
    }
    let resp = client
        .request(
            req.body(Full::new(Bytes::from_static(br#"{"user_id":"u1"}"#)))
                .expect("request"),
        )
        .await
        .expect("http");
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    (code, v["error"].as_str().unwrap_or("").to_string())
}

async fn block(client: &HttpClient, base: &str, ip: &str, blocked: bool) {
    let req = Request::builder()
        .method(if blocked { Method::PUT } else { Method::DELETE })
        .uri(format!("{base}/admin/v1/blacklist/ips/{ip}"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.request(req).await.expect("http");
    assert_eq!(resp.status().as_u16(), 200);
}

/// One daemon behind nginx, trusting its proxies as `trusted`; nginx
/// connects from `bind`.
async fn behind_nginx(trusted: &str, bind: &str) {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| {
        c.trusted_proxies = trusted.into();
        c.rate_ip_per_s = 1;
        c.rate_ip_burst = 3;
    })
    .await;
    let nginx = Nginx::start(daemon.addr.port(), bind);
    let front = format!("http://127.0.0.1:{}", nginx.port);
    let now = seckill_pipeline::now_ms();
    seckill_tests::one_item_sale(&client, &base, "px", now + 30_000, 10).await;

    // The client is 127.0.0.1, blacklisted; through nginx, with or without
    // a header of its own, it stays blacklisted.
    block(&client, &base, "127.0.0.1", true).await;
    for spoof in [
        None,
        Some("198.51.100.1"),
        Some("198.51.100.2, 203.0.113.5"),
    ] {
        let (code, error) = token(&client, &front, spoof).await;
        assert_eq!(
            (code, error.as_str()),
            (403, "blacklisted"),
            "{trusted}: spoof {spoof:?}"
        );
    }
    block(&client, &base, "127.0.0.1", false).await;

    // Its per-IP bucket (burst 3) is its own, however many addresses it
    // makes up: the fifth request in a row is refused.
    let mut codes = Vec::new();
    for n in 0..5 {
        let spoof = format!("198.51.100.{}", n + 10);
        codes.push(token(&client, &front, Some(&spoof)).await);
    }
    assert!(
        codes
            .iter()
            .any(|(c, e)| *c == 429 && e == "rate_limited_ip"),
        "{trusted}: {codes:?}"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_forwarded_for_changes_nothing_behind_one_counted_proxy() {
    behind_nginx("1", "127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_forwarded_for_changes_nothing_behind_a_trusted_network() {
    // nginx connects from 127.0.0.2, the only trusted address; the client
    // (127.0.0.1) is not a proxy.
    behind_nginx("127.0.0.2/32", "127.0.0.2").await;
}
