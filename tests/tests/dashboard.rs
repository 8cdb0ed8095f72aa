//! The live dashboard in a real headless Chromium: a browser without the
//! token sees no figure; a signed-in one counts down to the start, follows
//! a sale to its true final figures, shows Redis `down` while it is frozen
//! and `up` again, and ends on the sale's summary. A screenshot is taken
//! mid-sale (`SECKILL_DASHBOARD_SCREENSHOT=<path>` keeps it, e.g. for
//! docs/dashboard.png).

use std::time::{Duration, Instant};

use bytes::Bytes;
use fantoccini::Locator;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use seckill_benches::load::{create_sale, HttpClient, ItemSpec};
use seckill_tests::browser::{hidden, text, wait_text, Driver};
use seckill_tests::{Stack, ADMIN_TOKEN};

const DASHBOARD_TOKEN: &str = "a-dashboard-token-for-tests";
const STOCK_PER_ITEM: u64 = 150;
const ITEMS: [&str; 2] = ["phone", "watch"];
const PRICE_CENTS: u64 = 1999;
const BUYERS: usize = 600;

async fn get(client: &HttpClient, url: &str, token: Option<&str>) -> (u16, Bytes) {
    let mut req = Request::get(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("answer");
    let status = resp.status().as_u16();
    if status == 200 && url.ends_with("/events") {
        // A stream: the first bytes are enough.
        return (status, Bytes::new());
    }
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

/// One purchase per buyer, spread over about two seconds.
async fn run_sale(client: HttpClient, base: String) -> u64 {
    let mut wins = 0;
    for round in 0..20 {
        let mut set = tokio::task::JoinSet::new();
        for k in 0..BUYERS / 20 {
            let n = round * (BUYERS / 20) + k;
            let (client, base) = (client.clone(), base.clone());
            set.spawn(async move {
                let item = ITEMS[n % ITEMS.len()];
                let body = format!(r#"{{"user_id":"u{n}","request_id":"r{n}"}}"#);
                let req = Request::post(format!("{base}/api/v1/sales/dash/items/{item}/purchase"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .expect("request");
                let resp = client.request(req).await.expect("purchase answered");
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                String::from_utf8_lossy(&body).contains("\"success\"")
            });
        }
        while let Some(won) = set.join_next().await {
            wins += u64::from(won.expect("buyer task"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wins
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_sale_in_a_real_browser() {
    let Stack {
        redis,
        broker: _broker,
        daemon: _daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| {
        c.require_token = false;
        c.dashboard_token = DASHBOARD_TOKEN.into();
    })
    .await;
    let start_ms = seckill_pipeline::now_ms() + 10_000; // time for two browsers to start on a busy box
    let end_ms = start_ms + 22_000;
    let items: Vec<ItemSpec> = ITEMS
        .iter()
        .map(|id| ItemSpec {
            item_id: (*id).into(),
            title: format!("a {id}"),
            price_cents: PRICE_CENTS,
            stock: STOCK_PER_ITEM,
            per_user_limit: 1,
            shards: 1,
        })
        .collect();
    create_sale(
        &client,
        &base,
        ADMIN_TOKEN,
        "dash",
        start_ms,
        end_ms,
        &items,
    )
    .await
    .expect("sale created");
    let stock = STOCK_PER_ITEM * ITEMS.len() as u64;

    // No token, a wrong token: no data.
    assert_eq!(
        get(&client, &format!("{base}/dashboard/events"), None)
            .await
            .0,
        401
    );
    assert_eq!(
        get(
            &client,
            &format!("{base}/dashboard/events"),
            Some("wrong-token-of-some-length")
        )
        .await
        .0,
        401
    );
    assert_eq!(
        get(
            &client,
            &format!("{base}/dashboard/events"),
            Some(DASHBOARD_TOKEN)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        get(
            &client,
            &format!("{base}/dashboard/sales/dash/summary"),
            None
        )
        .await
        .0,
        401
    );

    let driver = Driver::start();
    let stranger = driver.browser().await;
    stranger
        .goto(&format!("{base}/dashboard"))
        .await
        .expect("page");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!hidden(&stranger, "login").await, "the sign-in form shows");
    assert!(
        hidden(&stranger, "main").await,
        "no figures without a token"
    );
    stranger
        .find(Locator::Id("token"))
        .await
        .expect("token field")
        .send_keys("wrong-token-of-some-length")
        .await
        .expect("typed");
    stranger
        .find(Locator::Id("sign-in"))
        .await
        .expect("button")
        .click()
        .await
        .expect("clicked");
    wait_text(&stranger, "auth-error", Duration::from_secs(5), |t| {
        t.contains("refused")
    })
    .await;
    assert!(hidden(&stranger, "main").await);
    for id in ["won", "success", "dep-redis", "daemon", "p99"] {
        assert_eq!(
            text(&stranger, id).await.as_deref(),
            Some(""),
            "#{id} leaked"
        );
    }

    // Signed in: the countdown before the start.
    let b = driver.browser().await;
    b.goto(&format!("{base}/dashboard")).await.expect("page");
    b.find(Locator::Id("token"))
        .await
        .expect("token field")
        .send_keys(DASHBOARD_TOKEN)
        .await
        .expect("typed");
    b.find(Locator::Id("sign-in"))
        .await
        .expect("button")
        .click()
        .await
        .expect("clicked");
    let wait = Duration::from_secs(10);
    wait_text(&b, "sale-phase", wait, |t| t == "upcoming").await;
    wait_text(&b, "countdown-value", wait, |t| t.starts_with("00:00:0")).await;
    assert!(!hidden(&b, "countdown").await);
    assert_eq!(text(&b, "stock").await.as_deref(), Some("300"));
    wait_text(&b, "dep-redis", wait, |t| t == "up").await;

    // The sale: 600 buyers for 300 units; a screenshot while it runs.
    let wait_ms = start_ms.saturating_sub(seckill_pipeline::now_ms());
    tokio::time::sleep(Duration::from_millis(wait_ms + 50)).await;
    let sale = tokio::spawn(run_sale(client.clone(), base.clone()));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let png = b.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let target = std::env::var("SECKILL_DASHBOARD_SCREENSHOT")
        .unwrap_or_else(|_| format!("{}/dashboard-mid-sale.png", std::env::temp_dir().display()));
    std::fs::write(&target, &png).expect("screenshot written");
    let wins = sale.await.expect("sale task");
    assert_eq!(wins, stock, "every unit sold exactly once");

    // The page reaches the true final figures within a few seconds.
    let wait = Duration::from_secs(8);
    let n = stock.to_string();
    wait_text(&b, "sale-phase", wait, |t| t == "sold out").await;
    wait_text(&b, "won", wait, |t| t == n).await;
    wait_text(&b, "available", wait, |t| t == "0").await;
    wait_text(&b, "locked", wait, |t| t == n).await;
    wait_text(&b, "success", wait, |t| t == n).await;
    wait_text(&b, "success-fleet", wait, |t| t == n).await;
    wait_text(&b, "kafka-acked", Duration::from_secs(20), |t| t == n).await;
    wait_text(&b, "sum-sold", wait, |t| t == format!("{n} / {n}")).await;
    assert_eq!(
        text(&b, "summary-final").await.as_deref(),
        Some("sold out, sale still open")
    );

    // Redis frozen: the tile turns down, then up once it is back.
    let frozen_at = Instant::now();
    redis.freeze();
    wait_text(&b, "dep-redis", Duration::from_secs(10), |t| t == "down").await;
    redis.thaw();
    wait_text(&b, "dep-redis", Duration::from_secs(15), |t| t == "up").await;
    assert!(frozen_at.elapsed() < Duration::from_secs(25));

    // After the end: the final summary, and its JSON export.
    let left = end_ms.saturating_sub(seckill_pipeline::now_ms());
    tokio::time::sleep(Duration::from_millis(left)).await;
    wait_text(&b, "summary-final", Duration::from_secs(5), |t| {
        t == "final"
    })
    .await;
    wait_text(&b, "sum-revenue", wait, |t| t == "5,997.00").await;
    let (status, body) = get(
        &client,
        &format!("{base}/dashboard/sales/dash/summary"),
        Some(DASHBOARD_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let s: serde_json::Value = serde_json::from_slice(&body).expect("summary JSON");
    assert_eq!(s["final"], true, "{s}");
    assert_eq!(s["sold"], stock, "{s}");
    assert_eq!(s["stock"], stock, "{s}");
    assert_eq!(s["revenue_cents"], stock * PRICE_CENTS, "{s}");
    assert_eq!(s["answers"]["success"], stock, "{s}");
    assert_eq!(s["answers"]["sold_out"], BUYERS as u64 - stock, "{s}");
    assert!(s["time_to_sell_out_ms"].as_u64().is_some(), "{s}");
    assert!(s["p99_ms"].as_f64().is_some(), "{s}");

    b.close().await.expect("browser closed");
    stranger.close().await.expect("browser closed");
}

/// Reads snapshots from an event stream until `done` accepts one (or the
/// deadline passes: the last one seen is returned).
async fn watch_events(
    client: &HttpClient,
    base: &str,
    token: &str,
    timeout: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let req = Request::get(format!("{base}/dashboard/events"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.request(req).await.expect("stream");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut body = resp.into_body();
    let mut buf = String::new();
    let mut last = serde_json::Value::Null;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(3), body.frame()).await
        else {
            break;
        };
        let frame = frame.expect("frame");
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.push_str(&String::from_utf8_lossy(data));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(json) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                last = serde_json::from_str(json).expect("snapshot JSON");
                if done(&last) {
                    return last;
                }
            }
        }
    }
    last
}

async fn buy(client: &HttpClient, base: &str, n: usize) -> u16 {
    let body = format!(r#"{{"user_id":"f{n}","request_id":"f{n}"}}"#);
    let req = Request::post(format!("{base}/api/v1/sales/fleet/items/i/purchase"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    client
        .request(req)
        .await
        .expect("purchase")
        .status()
        .as_u16()
}

/// Two daemons on one Redis: each one's dashboard lists both, with the
/// fleet's sums, and the stock it shows is the fleet's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_shows_the_whole_fleet() {
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
    seckill_tests::one_item_sale(&client, &base, "fleet", now - 1_000, 100).await;
    // The second daemon learns the sale within a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while buy(&client, &base_b, 0).await == 404 {
        assert!(Instant::now() < deadline, "daemon B never saw the sale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 1..10 {
        assert_eq!(buy(&client, &base, n).await, 200);
    }
    for n in 10..17 {
        assert_eq!(buy(&client, &base_b, n).await, 200);
    }
    let success = |v: &serde_json::Value| v["fleet"]["answers"]["success"].as_u64();
    let snap = watch_events(&client, &base, ADMIN_TOKEN, Duration::from_secs(10), |v| {
        success(v) == Some(17) && v["fleet"]["daemons"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    assert_eq!(success(&snap), Some(17), "{snap}");
    let daemons = snap["fleet"]["daemons"].as_array().expect("daemons");
    let mut own: Vec<u64> = daemons
        .iter()
        .map(|d| d["answers"]["success"].as_u64().unwrap_or(0))
        .collect();
    own.sort_unstable();
    assert_eq!(own, [8, 9], "{snap}");
    assert_eq!(snap["answers"]["success"], 9, "this daemon's own");
    let sale = snap["sales"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["sale_id"] == "fleet"))
        .expect("the sale on screen");
    assert_eq!(sale["totals"]["won"], 17, "{sale}");
    assert_eq!(sale["totals"]["available"], 83, "{sale}");
    assert_eq!(sale["phase"], "live");

    // A daemon that stops leaves the fleet at once.
    b.shutdown().await.expect("clean stop");
    let snap = watch_events(&client, &base, ADMIN_TOKEN, Duration::from_secs(10), |v| {
        v["fleet"]["daemons"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    assert_eq!(
        snap["fleet"]["daemons"].as_array().map(Vec::len),
        Some(1),
        "{snap}"
    );
}
