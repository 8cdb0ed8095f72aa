//! A Redis that lost the sale: a `redis-server` without persistence is
//! SIGKILLed mid-sale and restarted empty while buyers keep coming. The
//! daemon must not read Redis's silence as an answer — no `sold_out`, no
//! `rejected` for a sale whose stock simply vanished — but answer 503
//! `sale_data_lost` (or keep an intent `pending`), say so in `/healthz`
//! and `/metrics`, and never sell more than the stock — and then rebuild
//! the sale from its record on Kafka (`POST /admin/v1/sales/{sale}/rebuild`)
//! so that it sells on, every earlier win kept.

use std::time::Duration;

use seckill_benches::check;
use seckill_benches::load::{self, Plan};
use seckill_tests::settle::settle;
use seckill_tests::{
    distinct_requests, open_checked_sale, scrape, verdict_within, Stack, ADMIN_TOKEN, CHECKED_ITEM,
};

const STOCK: u64 = 5_000;
const USERS: usize = 3_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_mid_sale_is_answered_503_never_sold_out_or_rejected() {
    let Stack {
        mut redis,
        broker,
        daemon,
        base,
        client,
        wal: _wal,
    } = Stack::start(false, |c| c.require_token = false).await;
    open_checked_sale(&client, &base, "lost", STOCK).await;
    // 3,500 users × 1 click at 1,000/s: 3.5 s of sale, Redis SIGKILLed and
    // restarted empty after 1 s. Every buyer could win (5,000 units).
    let plan = Plan {
        base: base.clone(),
        sale_id: "lost".into(),
        items: vec![CHECKED_ITEM.into()],
        users: USERS,
        first_user: 0,
        request_prefix: String::new(),
        clicks_per_user: 1,
        retries: 2,
        concurrency: 32,
        time_max: Duration::from_secs(60),
        rate_per_sec: std::num::NonZeroU32::new(1_000),
    };
    let (c, p) = (client.clone(), plan.clone());
    let run = tokio::spawn(async move { load::run(&c, &p).await });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let redis = tokio::task::spawn_blocking(move || {
        redis.kill();
        redis.restart();
        redis
    })
    .await
    .expect("restart");
    let report = run.await.expect("the sale");
    assert!(report.requests >= USERS, "{:?}", report.by_http);

    for wrong in ["sold_out", "rejected"] {
        assert_eq!(
            distinct_requests(&report.answers, wrong),
            0,
            "a vanished stock is no answer: {:?}",
            report.by_status
        );
    }
    let wins = distinct_requests(&report.answers, "success");
    assert!(wins > 0 && wins as u64 <= STOCK, "{wins} wins");
    assert!(
        report
            .answers
            .iter()
            .any(|a| a.http == 503 && a.status == "sale_data_lost"),
        "the loss is told to the clients: {:?}",
        report.by_status
    );

    // The daemon says what it lost, and keeps saying it.
    let (_, health) = call(
        &client,
        hyper::Method::GET,
        &format!("{base}/healthz"),
        None,
        b"",
    )
    .await;
    assert_eq!(
        health["redis_data_lost"],
        serde_json::json!([format!("lost/{CHECKED_ITEM}")]),
        "{health}"
    );
    let metrics = scrape(&client, &base).await;
    assert!(
        metrics.contains("seckill_items_data_lost 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("data_lost"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (code, body) = call(
        &client,
        hyper::Method::POST,
        &format!("{base}/api/v1/sales/lost/items/{CHECKED_ITEM}/purchase"),
        None,
        br#"{"user_id":"late","request_id":"late-1"}"#,
    )
    .await;
    assert_eq!(
        (code, &body["error"]),
        (503, &serde_json::json!("sale_data_lost"))
    );

    // Every win answered is on Kafka once: the record a rebuild starts from.
    let brokers = broker.brokers();
    let orders = tokio::task::spawn_blocking(move || {
        check::read_orders(&brokers, "lost", wins, Duration::from_secs(30))
    })
    .await
    .expect("join")
    .expect("orders");
    let on_kafka: std::collections::HashSet<&str> =
        orders.iter().map(|o| o.order_id.as_str()).collect();
    for a in report.answers.iter().filter(|a| a.status == "success") {
        let oid = a.order_id.as_deref().expect("a win has an order id");
        assert!(on_kafka.contains(oid), "win {oid} is on Kafka");
    }

    // The rebuild: the sale loaded again with every win of its record.
    let rebuild = format!("{base}/admin/v1/sales/lost/rebuild");
    let (code, body) = call(
        &client,
        hyper::Method::POST,
        &rebuild,
        Some(ADMIN_TOKEN),
        b"",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let item = &body["items"][0];
    assert_eq!(item["wins"], serde_json::json!(wins), "{body}");
    assert_eq!(item["stock"]["locked"], serde_json::json!(wins), "{body}");
    assert_eq!(
        item["stock"]["available"],
        serde_json::json!(STOCK as usize - wins),
        "{body}"
    );
    // Never over live state.
    let (code, body) = call(
        &client,
        hyper::Method::POST,
        &rebuild,
        Some(ADMIN_TOKEN),
        b"",
    )
    .await;
    assert_eq!(
        (code, &body["error"]),
        (409, &serde_json::json!("sale_not_lost"))
    );

    // It sells on: the pending settle, the earlier buyers' retries get
    // their wins back, new buyers buy what is left — and the checker
    // agrees with Redis, Kafka and every answer.
    let second = Plan {
        first_user: 0,
        users: USERS + 1_000,
        ..plan
    };
    let more = load::run(&client, &second).await;
    let mut all = report.answers.clone();
    all.extend(more.answers);
    let fin = settle(&client, &base, "lost", &all, Duration::from_secs(60)).await;
    assert_eq!(
        distinct_requests(&fin, "pending"),
        0,
        "{:?}",
        more.by_status
    );
    assert_eq!(
        distinct_requests(&fin, "success"),
        USERS + 1_000,
        "every buyer won once (4,500 of 5,000 units): {:?}",
        more.by_status
    );
    let v = verdict_within(&redis, &broker, "lost", &fin, Duration::from_secs(60)).await;
    assert!(v.ok(), "{:?}", v.violations);
    drop((redis, daemon));
}

/// One HTTP call: its status and JSON body.
async fn call(
    client: &load::HttpClient,
    method: hyper::Method,
    url: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let (code, body) = load::send(client, method, url, bearer, body.to_vec())
        .await
        .expect("an answer");
    (code, serde_json::from_slice(&body).expect("a JSON body"))
}
