//! End to end on real processes: a spawned `redis-server`, a spawned
//! Kafka-protocol broker (tansu), and the daemon serving HTTP on loopback.
//!
//! One file on purpose, longer than most: the scenarios share their
//! fixtures (the sale, the load plan, the check) and read side by side.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use hyper::Method;
use seckill_benches::check::{self, Answer};
use seckill_benches::load::{self, ItemSpec, Plan};
use seckill_io::redis::{item_keys, StockHash};
use seckill_io::Daemon;
use seckill_tests::{daemon_config, Broker, RedisServer, Stack, ADMIN_TOKEN};

fn stock_of(redis: &RedisServer, sale: &str, item: &str) -> StockHash {
    let mut c = redis.connection();
    let k = item_keys(sale, item);
    let v: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(&k.stock)
        .query(&mut c)
        .expect("HGETALL stock");
    StockHash {
        available: v.get("available").copied().unwrap_or(-1),
        locked: v.get("locked").copied().unwrap_or(-1),
        sold: v.get("sold").copied().unwrap_or(-1),
        total: v.get("total").copied().unwrap_or(-1),
    }
}

fn item(id: &str, stock: u64) -> ItemSpec {
    ItemSpec {
        item_id: id.into(),
        title: format!("item {id}"),
        price_cents: 1999,
        stock,
        per_user_limit: 1,
        shards: 1,
    }
}

async fn open_sale(base: &str, sale: &str, items: &[ItemSpec]) {
    let now = seckill_pipeline::now_ms();
    load::create_sale(
        &load::client(4),
        base,
        ADMIN_TOKEN,
        sale,
        now,
        now + 600_000,
        items,
    )
    .await
    .expect("sale created");
}

async fn buy(
    base: &str,
    sale: &str,
    item: &str,
    user: &str,
    req: &str,
) -> (u16, serde_json::Value) {
    let client = load::client(4);
    let token = load::token(&client, base, sale, item, user)
        .await
        .expect("token");
    let url = format!("{base}/api/v1/sales/{sale}/items/{item}/purchase");
    let body = serde_json::to_vec(
        &serde_json::json!({"user_id": user, "request_id": req, "token": token}),
    )
    .expect("json");
    let (code, body) = load::send(&client, Method::POST, &url, None, body)
        .await
        .expect("http");
    (code, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_clicking_twice_buy_exactly_the_stock_of_100() {
    let Stack {
        redis,
        broker,
        daemon,
        base,
        wal: _wal,
        client: _client,
    } = Stack::start(false, |_| {}).await;
    open_sale(&base, "flash", &[item("phone", 100)]).await;

    let client = load::client(64);
    let report = load::run(
        &client,
        &Plan {
            base: base.clone(),
            sale_id: "flash".into(),
            items: vec!["phone".into()],
            users: 1000,
            first_user: 0,
            request_prefix: String::new(),
            clicks_per_user: 2,
            retries: 0,
            concurrency: 64,
            time_max: Duration::from_secs(120),
            rate_per_sec: None,
        },
    )
    .await;
    assert_eq!(
        report.requests, 2000,
        "every request answered: {:?}",
        report.by_status
    );
    let successes: Vec<&Answer> = report
        .answers
        .iter()
        .filter(|a| a.status == "success")
        .collect();
    assert_eq!(successes.len(), 100, "answers: {:?}", report.by_status);
    for a in &report.answers {
        assert!(
            matches!(a.status.as_str(), "success" | "sold_out" | "duplicate"),
            "unexpected answer {a:?}"
        );
        assert_eq!(a.http, 200, "{a:?}");
    }
    let mut per_user: HashMap<&str, u32> = HashMap::new();
    for a in &successes {
        *per_user.entry(&a.user_id).or_insert(0) += 1;
    }
    assert!(per_user.values().all(|n| *n == 1), "a user won twice");

    let s = stock_of(&redis, "flash", "phone");
    assert_eq!((s.available, s.locked, s.sold, s.total), (0, 100, 0, 100));

    let orders = tokio::task::spawn_blocking({
        let brokers = broker.brokers();
        move || check::read_orders(&brokers, "flash", 100, Duration::from_secs(30))
    })
    .await
    .expect("join")
    .expect("read the orders topic");
    let kafka_ids: Vec<&str> = orders.iter().map(|o| o.order_id.as_str()).collect();
    let distinct: HashSet<&str> = kafka_ids.iter().copied().collect();
    assert_eq!(kafka_ids.len(), 100, "exactly 100 orders on Kafka");
    assert_eq!(distinct.len(), 100, "no duplicate orders");
    let answered: HashSet<&str> = successes
        .iter()
        .filter_map(|a| a.order_id.as_deref())
        .collect();
    assert_eq!(
        distinct, answered,
        "Kafka holds exactly the orders that were won"
    );

    let mut stock = BTreeMap::new();
    stock.insert("phone".to_string(), s);
    let verdict = check::check(&report.answers, &stock, &orders, 1);
    assert!(verdict.ok(), "invariants: {:?}", verdict.violations);

    // Metrics show the batching: the histogram of requests per Redis round
    // trip accounts for every request that reached the script.
    let (code, body) = load::send(
        &client,
        Method::GET,
        &format!("{base}/metrics"),
        None,
        vec![],
    )
    .await
    .expect("metrics");
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body);
    let metric = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let calls = metric("seckill_redis_batch_requests_count ");
    let reqs = metric("seckill_redis_batch_requests_sum ");
    assert!(calls > 0 && reqs >= 100, "{calls} calls, {reqs} requests");
    assert_eq!(
        metric("seckill_redis_batch_requests_bucket{le=\"+Inf\"} "),
        calls
    );
    assert_eq!(metric("seckill_redis_calls_total "), calls);
    // Stage latencies: every request that entered the ring was measured at
    // every stage it went through, and every win at the publish stage.
    let entered = metric("seckill_ring_batch_events_sum ");
    for stage in ["dedupe", "deduct", "journal", "reply"] {
        let n = metric(&format!(
            "seckill_stage_latency_seconds_count{{stage=\"{stage}\"}} "
        ));
        assert_eq!(n, entered, "{stage}: {n} measured, {entered} entered");
        assert_eq!(
            metric(&format!(
                "seckill_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} "
            )),
            n
        );
    }
    assert_eq!(
        metric("seckill_stage_latency_seconds_count{stage=\"publish\"} "),
        100,
        "the 100 wins were handed to Kafka"
    );

    // The status API follows the order to `order_created`.
    let first = successes[0];
    let url = format!("{base}/api/v1/requests/{}", first.request_id);
    let (code, body) = load::send(&client, Method::GET, &url, None, vec![])
        .await
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(code, 200);
    assert_eq!(v["status"], "order_created");
    assert_eq!(v["order_id"].as_str(), first.order_id.as_deref());

    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_id_gets_the_same_answer_and_order_id_even_after_a_restart() {
    let redis = RedisServer::start();
    let broker = Broker::start();
    let wal = tempfile::tempdir().expect("tmp");
    let cfg = daemon_config(&redis, &broker, wal.path());
    let daemon = Daemon::start(cfg.clone()).await.expect("daemon starts");
    let base = format!("http://{}", daemon.addr);
    open_sale(&base, "s1", &[item("i1", 1)]).await;

    let (code, first) = buy(&base, "s1", "i1", "alice", "req-a").await;
    assert_eq!(code, 200);
    assert_eq!(first["status"], "success");
    let order_id = first["order_id"].as_str().expect("order id").to_string();
    let (_, other) = buy(&base, "s1", "i1", "bob", "req-b").await;
    assert_eq!(other["status"], "sold_out");
    let (_, again) = buy(&base, "s1", "i1", "alice", "req-a").await;
    assert_eq!(again["status"], "success");
    assert_eq!(again["order_id"].as_str(), Some(order_id.as_str()));
    let (_, alice_again) = buy(&base, "s1", "i1", "alice", "req-a2").await;
    assert!(
        matches!(
            alice_again["status"].as_str(),
            Some("duplicate" | "sold_out")
        ),
        "{alice_again}"
    );
    daemon.shutdown().await.expect("shutdown");

    // A new daemon on the same WAL and Redis still knows the answer.
    let daemon = Daemon::start(cfg).await.expect("daemon restarts");
    let base = format!("http://{}", daemon.addr);
    open_sale(&base, "s2", &[item("x", 1)]).await; // the catalog is per process
    let url = format!("{base}/api/v1/requests/req-a");
    let (code, body) = load::send(&load::client(1), Method::GET, &url, None, vec![])
        .await
        .expect("status");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["order_id"].as_str(), Some(order_id.as_str()));
    let s = stock_of(&redis, "s1", "i1");
    assert_eq!((s.available, s.locked), (0, 1));
    daemon.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_with_an_error_code_and_changes_nothing() {
    let Stack {
        redis,
        daemon,
        base,
        broker: _broker,
        wal: _wal,
        client: _client,
    } = Stack::start(false, |_| {}).await;
    open_sale(&base, "s", &[item("i", 5)]).await;
    let client = load::client(1);
    let purchase = format!("{base}/api/v1/sales/s/items/i/purchase");

    // (case, method, url, body, expected status, expected error code)
    type Case<'a> = (&'a str, Method, String, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed json",
            Method::POST,
            purchase.clone(),
            b"{\"user_id\": ".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "not json",
            Method::POST,
            purchase.clone(),
            b"buy please".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "missing field",
            Method::POST,
            purchase.clone(),
            br#"{"user_id":"u1"}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "wrong type",
            Method::POST,
            purchase.clone(),
            br#"{"user_id":1,"request_id":"r"}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "bad id chars",
            Method::POST,
            purchase.clone(),
            br#"{"user_id":"u 1","request_id":"r"}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "absurd quantity",
            Method::POST,
            purchase.clone(),
            br#"{"user_id":"u1","request_id":"r","quantity":1000000}"#.to_vec(),
            400,
            "invalid_quantity",
        ),
        (
            "1 MiB body",
            Method::POST,
            purchase.clone(),
            vec![b' '; 1 << 20],
            413,
            "body_too_large",
        ),
        (
            "unknown item",
            Method::POST,
            format!("{base}/api/v1/sales/s/items/nope/purchase"),
            br#"{"user_id":"u1","request_id":"r"}"#.to_vec(),
            404,
            "unknown_item",
        ),
        (
            "unknown sale",
            Method::POST,
            format!("{base}/api/v1/sales/nope/items/i/purchase"),
            br#"{"user_id":"u1","request_id":"r"}"#.to_vec(),
            404,
            "unknown_item",
        ),
        (
            "wrong method",
            Method::GET,
            purchase.clone(),
            vec![],
            405,
            "method_not_allowed",
        ),
        (
            "unknown route",
            Method::GET,
            format!("{base}/nope"),
            vec![],
            404,
            "not_found",
        ),
        (
            "unknown request",
            Method::GET,
            format!("{base}/api/v1/requests/never-sent"),
            vec![],
            404,
            "unknown_request",
        ),
    ];
    for (name, method, url, body, code, error) in cases {
        // A fresh connection per case: the server closes the connection of
        // a refused oversize body, and a pooled client would reuse it.
        match load::send(&load::client(1), method, &url, None, body).await {
            Ok((got, body)) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                assert_eq!(got, code, "{name}: {v}");
                assert_eq!(v["error"], error, "{name}");
            }
            // The server may close the connection while a huge body is
            // still being written; that is a refusal too.
            Err(e) => assert_eq!(code, 413, "{name}: {e}"),
        }
    }
    // Admin without or with a wrong token.
    let sale_body =
        br#"{"start_ms":1,"end_ms":2,"items":[{"item_id":"i","price_cents":1,"stock":1}]}"#
            .to_vec();
    let (code, _) = load::send(
        &client,
        Method::PUT,
        &format!("{base}/admin/v1/sales/evil"),
        Some("wrong"),
        sale_body.clone(),
    )
    .await
    .expect("http");
    assert_eq!(code, 401);
    let (code, _) = load::send(
        &client,
        Method::PUT,
        &format!("{base}/admin/v1/sales/evil"),
        None,
        sale_body,
    )
    .await
    .expect("http");
    assert_eq!(code, 401);

    let s = stock_of(&redis, "s", "i");
    assert_eq!((s.available, s.locked), (5, 0), "no state change");
    let mut c = redis.connection();
    let evil: bool = redis::cmd("EXISTS")
        .arg(item_keys("evil", "i").stock)
        .query(&mut c)
        .expect("EXISTS");
    assert!(!evil, "a refused admin call wrote nothing");
    assert_eq!(daemon.app.board.len(), 0, "no request was recorded");
    daemon.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_are_answered_pending_while_redis_is_down() {
    let Stack {
        mut redis,
        wal,
        daemon,
        base,
        broker: _broker,
        client: _client,
    } = Stack::start(false, |_| {}).await;
    open_sale(&base, "s", &[item("i", 5)]).await;
    redis.kill();
    let (code, v) = buy(&base, "s", "i", "u1", "r1").await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["request_id"], "r1");
    daemon.shutdown().await.expect("shutdown");
    // The pending intent is in the WAL for replay.
    let records: Vec<_> = seckill_wal::Reader::open(wal.path(), 1)
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("records");
    let decisions: Vec<_> = records
        .iter()
        .filter_map(|r| seckill_pipeline::Decision::decode(&r.payload).ok())
        .filter(|d| d.request_id == "r1")
        .map(|d| d.status)
        .collect();
    assert_eq!(decisions, vec![seckill_pipeline::Status::Pending]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_cannot_hold_a_connection_and_a_slow_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Stack {
        redis,
        daemon,
        base,
        broker: _broker,
        wal: _wal,
        client: _client,
    } = Stack::start(false, |c| c.header_timeout_ms = 300).await;
    open_sale(&base, "slow", &[item("i", 5)]).await;

    // Headers that never finish, a connection that never sends a byte, and
    // a keep-alive connection idle after its first answer: the server
    // closes each one after the header timeout.
    for (case, sent) in [
        (
            "a stalled client",
            &b"POST /api/v1/sales/slow/items/i/purchase HTTP/1.1\r\nHost: x\r\n"[..],
        ),
        ("a silent connection", &b""[..]),
        (
            "an idle keep-alive connection",
            &b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        ),
    ] {
        let mut s = tokio::net::TcpStream::connect(daemon.addr)
            .await
            .expect("connect");
        s.write_all(sent).await.expect("write");
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "the server kept {case}'s connection");
        if sent.starts_with(b"GET") {
            assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
        }
    }

    // Complete headers, a body that stalls: 408 with an error code.
    let mut s = tokio::net::TcpStream::connect(daemon.addr)
        .await
        .expect("connect");
    s.write_all(
        b"POST /api/v1/sales/slow/items/i/purchase HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n{\"user_id\":",
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    let st = stock_of(&redis, "slow", "i");
    assert_eq!((st.available, st.locked), (5, 0), "no state change");
    daemon.shutdown().await.expect("shutdown");
}

/// Both ways of calling the stock script — one call per ring batch for
/// every item (the default) and one call per item in one pipelined round
/// trip (`redis_script_per_item`, for Redis Cluster proxies) — sell exactly
/// the stock of many items at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_items_sell_exactly_their_stock_with_either_script_mode() {
    for per_item in [false, true] {
        let Stack {
            redis,
            broker,
            daemon,
            base,
            wal: _wal,
            client,
        } = Stack::start(false, |c| c.redis_script_per_item = per_item).await;
        let items: Vec<ItemSpec> = (0..20).map(|n| item(&format!("i{n}"), 5)).collect();
        open_sale(&base, "many", &items).await;
        let report = load::run(
            &client,
            &Plan {
                base: base.clone(),
                sale_id: "many".into(),
                items: items.iter().map(|i| i.item_id.clone()).collect(),
                users: 400,
                first_user: 0,
                request_prefix: String::new(),
                clicks_per_user: 1,
                retries: 0,
                concurrency: 64,
                time_max: Duration::from_secs(60),
                rate_per_sec: None,
            },
        )
        .await;
        let stock: BTreeMap<String, StockHash> = items
            .iter()
            .map(|i| (i.item_id.clone(), stock_of(&redis, "many", &i.item_id)))
            .collect();
        for (id, s) in &stock {
            assert_eq!(
                (s.available, s.locked),
                (0, 5),
                "{id} (per_item {per_item})"
            );
        }
        let orders = tokio::task::spawn_blocking({
            let brokers = broker.brokers();
            move || check::read_orders(&brokers, "many", 100, Duration::from_secs(30))
        })
        .await
        .expect("join")
        .expect("orders");
        let verdict = check::check(&report.answers, &stock, &orders, 1);
        assert!(
            verdict.ok(),
            "per_item {per_item}: {:?}",
            verdict.violations
        );
        assert_eq!(
            report.by_status.get("success").copied(),
            Some(100),
            "per_item {per_item}: {:?}",
            report.by_status
        );
        daemon.shutdown().await.expect("shutdown");
    }
}
