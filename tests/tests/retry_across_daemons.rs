//! A client retrying a win on another daemon than the one that decided it
//! gets the same win back — while the item is on sale (the stock script's
//! stored outcome), and after the sale ended with stock left (the catalog
//! sync loads the ended item's wins into every daemon's board, since the
//! window check would otherwise answer `ended`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use seckill_benches::load::{create_sale, HttpClient, ItemSpec};
use seckill_tests::{Stack, ADMIN_TOKEN};

async fn buy(client: &HttpClient, base: &str, user: &str, request: &str) -> serde_json::Value {
    let body = format!(r#"{{"user_id":"{user}","request_id":"{request}"}}"#);
    let req = Request::post(format!("{base}/api/v1/sales/late/items/i/purchase"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = client.request(req).await.expect("answer");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&body).expect("JSON answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_win_retried_on_another_daemon_is_the_same_win_during_and_after_the_sale() {
    let Stack {
        redis,
        broker,
        daemon: _a,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| c.require_token = false).await;
    let (b, _wal_b, base_b) =
        seckill_tests::another_daemon(&redis, &broker, |c| c.require_token = false).await;
    let now = seckill_pipeline::now_ms();
    let end_ms = now + 4_000;
    let item = ItemSpec {
        item_id: "i".into(),
        title: "item".into(),
        price_cents: 100,
        stock: 50,
        per_user_limit: 1,
        shards: 1,
    };
    create_sale(
        &client,
        &base,
        ADMIN_TOKEN,
        "late",
        now - 1_000,
        end_ms,
        &[item],
    )
    .await
    .expect("sale created");
    // Daemon B learns the sale within a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let probe = buy(&client, &base_b, "probe", "probe").await;
        if probe["status"] == "success" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "daemon B never saw the sale: {probe}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let won = buy(&client, &base, "u1", "r1").await;
    assert_eq!(won["status"], "success", "{won}");
    let order = won["order_id"].clone();
    // A second win on A that B hears of only after the end.
    let late = buy(&client, &base, "u3", "r3").await;
    assert_eq!(late["status"], "success", "{late}");

    // On sale: B never journaled it; the script's stored outcome answers.
    let again = buy(&client, &base_b, "u1", "r1").await;
    assert_eq!(again["status"], "success", "{again}");
    assert_eq!(again["order_id"], order, "the same order");

    // After the end, the item not sold out: B's board knows the win.
    let left = end_ms.saturating_sub(seckill_pipeline::now_ms());
    tokio::time::sleep(Duration::from_millis(left + 2_500)).await;
    let after = buy(&client, &base_b, "u1", "r1").await;
    assert_eq!(after["status"], "success", "{after}");
    assert_eq!(after["order_id"], order, "the same order");
    // r3 reaches B for the first time after the end: only the wins the
    // catalog sync loaded from Redis can answer it.
    let first_on_b = buy(&client, &base_b, "u3", "r3").await;
    assert_eq!(first_on_b["status"], "success", "{first_on_b}");
    assert_eq!(first_on_b["order_id"], late["order_id"], "the same order");
    let fresh = buy(&client, &base_b, "u2", "r2").await;
    assert_eq!(fresh["status"], "ended", "{fresh}");
    b.shutdown().await.expect("clean stop");
}
