//! The API around the purchase, on real processes: sale pages, purchase
//! tokens, limits and the blacklist, orders (pay, cancel, payment timeout),
//! re-opened items on two daemons, and the OpenAPI description.
//!
//! One file on purpose, longer than most: it walks the API as docs/api.md
//! does, section by section, with the helpers those sections share.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use seckill_benches::check::read_order_events;
use seckill_benches::load::{self, HttpClient, ItemSpec};
use seckill_io::admission::TokenKeys;
use seckill_io::redis::{item_keys, StockHash};
use seckill_pipeline::{Clock, ManualClock};
use seckill_tests::{daemon_config, Broker, RedisServer, Stack, ADMIN_TOKEN, TOKEN_KEY};

struct Answer {
    code: u16,
    retry_after: Option<u64>,
    body: serde_json::Value,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
    fn status(&self) -> &str {
        self.body["status"].as_str().unwrap_or("")
    }
}

async fn call(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: serde_json::Value,
) -> Answer {
    let mut b = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).expect("json")
    };
    let resp = client
        .request(b.body(Full::new(Bytes::from(bytes))).expect("request"))
        .await
        .expect("http");
    let code = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Answer {
        code,
        retry_after,
        body: serde_json::from_slice(&body).unwrap_or_default(),
    }
}

async fn get(client: &HttpClient, url: &str) -> Answer {
    call(client, Method::GET, url, &[], serde_json::Value::Null).await
}

fn admin() -> [(&'static str, &'static str); 1] {
    [("authorization", "Bearer test-admin-token")]
}

async fn admin_call(client: &HttpClient, method: Method, url: &str) -> Answer {
    call(client, method, url, &admin(), serde_json::Value::Null).await
}

fn item(id: &str, stock: u64) -> ItemSpec {
    ItemSpec {
        item_id: id.into(),
        title: format!("item {id}"),
        price_cents: 4999,
        stock,
        per_user_limit: 1,
        shards: 1,
    }
}

async fn open_sale(base: &str, sale: &str, start_ms: u64, end_ms: u64, items: &[ItemSpec]) {
    load::create_sale(
        &load::client(2),
        base,
        ADMIN_TOKEN,
        sale,
        start_ms,
        end_ms,
        items,
    )
    .await
    .expect("sale created");
}

async fn token(client: &HttpClient, base: &str, sale: &str, item: &str, user: &str) -> Answer {
    call(
        client,
        Method::POST,
        &format!("{base}/api/v1/sales/{sale}/items/{item}/token"),
        &[],
        serde_json::json!({ "user_id": user }),
    )
    .await
}

async fn token_of(client: &HttpClient, base: &str, sale: &str, item: &str, user: &str) -> String {
    let t = token(client, base, sale, item, user).await;
    assert_eq!(t.code, 200, "token for {user}: {}", t.body);
    t.body["token"].as_str().expect("token").to_string()
}

#[allow(clippy::too_many_arguments)]
async fn buy_with(
    client: &HttpClient,
    base: &str,
    headers: &[(&str, &str)],
    sale: &str,
    item: &str,
    user: &str,
    request_id: &str,
    token: Option<&str>,
) -> Answer {
    let mut body = serde_json::json!({ "user_id": user, "request_id": request_id });
    if let Some(t) = token {
        body["token"] = t.into();
    }
    call(
        client,
        Method::POST,
        &format!("{base}/api/v1/sales/{sale}/items/{item}/purchase"),
        headers,
        body,
    )
    .await
}

async fn buy(
    client: &HttpClient,
    base: &str,
    sale: &str,
    item: &str,
    user: &str,
    rid: &str,
) -> Answer {
    let t = token_of(client, base, sale, item, user).await;
    buy_with(client, base, &[], sale, item, user, rid, Some(&t)).await
}

async fn order_action(
    client: &HttpClient,
    base: &str,
    order: &str,
    what: &str,
    user: &str,
) -> Answer {
    call(
        client,
        Method::POST,
        &format!("{base}/api/v1/orders/{order}/{what}"),
        &[],
        serde_json::json!({ "user_id": user }),
    )
    .await
}

/// A purchase in the limits test's sale, "from" the address `ip`.
async fn buy_from(
    client: &HttpClient,
    base: &str,
    ip: &str,
    user: &str,
    rid: &str,
    token: Option<&str>,
) -> Answer {
    let xff = [("x-forwarded-for", ip)];
    buy_with(client, base, &xff, "lim", "i", user, rid, token).await
}

fn stock_of(redis: &RedisServer, sale: &str, item: &str) -> StockHash {
    let mut c = redis.connection();
    let v: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(item_keys(sale, item).stock)
        .query(&mut c)
        .expect("HGETALL");
    let g = |f: &str| v.get(f).copied().unwrap_or(-1);
    StockHash {
        available: g("available"),
        locked: g("locked"),
        sold: g("sold"),
        total: g("total"),
    }
}

fn now() -> u64 {
    seckill_pipeline::now_ms()
}

/// Polls `url` until `done` holds or `within` passes; returns the last answer.
async fn poll(
    client: &HttpClient,
    url: &str,
    within: Duration,
    done: impl Fn(&Answer) -> bool,
) -> Answer {
    let deadline = Instant::now() + within;
    loop {
        let a = get(client, url).await;
        if done(&a) || Instant::now() >= deadline {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_happy_path_token_purchase_status_pay() {
    let Stack {
        redis,
        broker,
        daemon: _daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |_| {}).await;
    let start = now() + 2_500;
    open_sale(&base, "happy", start, start + 600_000, &[item("i", 3)]).await;

    // The client learns the clock, the day's rounds and the sale page.
    let t = get(&client, &format!("{base}/api/v1/time")).await;
    let server_now = t.body["now_ms"].as_u64().expect("now_ms");
    assert!(server_now.abs_diff(now()) < 5_000);
    let date = seckill_io::redis::utc_date(start);
    let rounds = get(&client, &format!("{base}/api/v1/rounds?date={date}")).await;
    assert_eq!(rounds.code, 200);
    let listed: Vec<&str> = rounds.body["rounds"]
        .as_array()
        .expect("rounds")
        .iter()
        .filter_map(|r| r["sale_id"].as_str())
        .collect();
    assert!(listed.contains(&"happy"), "{}", rounds.body);
    let page = get(&client, &format!("{base}/api/v1/sales/happy")).await;
    assert_eq!(page.code, 200);
    assert_eq!(page.body["items"][0]["stock_remaining"], 3);
    assert_eq!(page.body["items"][0]["price_cents"], 4999);
    assert_eq!(
        get(&client, &format!("{base}/api/v1/rounds?date=2026-13-45"))
            .await
            .code,
        400
    );

    // The token comes before the start (inside the lead minute); a
    // purchase before the start is `not_started` and changes nothing.
    let tok = token_of(&client, &base, "happy", "i", "alice").await;
    let early = buy_with(
        &client,
        &base,
        &[],
        "happy",
        "i",
        "alice",
        "r-early",
        Some(&tok),
    )
    .await;
    assert_eq!((early.code, early.status()), (200, "not_started"));

    while now() < start {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let won = buy_with(
        &client,
        &base,
        &[],
        "happy",
        "i",
        "alice",
        "r-1",
        Some(&tok),
    )
    .await;
    assert_eq!((won.code, won.status()), (200, "success"), "{}", won.body);
    let order = won.body["order_id"].as_str().expect("order id").to_string();

    let status = poll(
        &client,
        &format!("{base}/api/v1/requests/r-1"),
        Duration::from_secs(10),
        |a| a.status() == "order_created",
    )
    .await;
    assert_eq!(status.status(), "order_created", "{}", status.body);

    let url = format!("{base}/api/v1/orders/{order}?user_id=alice");
    let o = get(&client, &url).await;
    assert_eq!(o.code, 200, "{}", o.body);
    assert_eq!(o.body["state"], "awaiting_payment");
    assert_eq!(o.body["request_id"], "r-1");
    assert_eq!(o.body["price_cents"], 4999);
    assert!(o.body["pay_deadline_ms"].as_u64().expect("deadline") > now());
    let foreign = get(
        &client,
        &format!("{base}/api/v1/orders/{order}?user_id=bob"),
    )
    .await;
    assert_eq!((foreign.code, foreign.error()), (403, "not_your_order"));
    let missing = get(
        &client,
        &format!("{base}/api/v1/orders/00000000000000ff?user_id=alice"),
    )
    .await;
    assert_eq!((missing.code, missing.error()), (404, "unknown_order"));
    let bad = get(&client, &format!("{base}/api/v1/orders/xyz?user_id=alice")).await;
    assert_eq!((bad.code, bad.error()), (400, "invalid_order_id"));

    // Paying: only the owner, once (a retry answers the same), then the
    // order cannot be cancelled.
    let by_bob = order_action(&client, &base, &order, "pay", "bob").await;
    assert_eq!((by_bob.code, by_bob.error()), (403, "not_your_order"));
    let paid = order_action(&client, &base, &order, "pay", "alice").await;
    assert_eq!(
        (paid.code, paid.body["state"].as_str()),
        (200, Some("paid"))
    );
    let again = order_action(&client, &base, &order, "pay", "alice").await;
    assert_eq!(
        (again.code, again.body["state"].as_str()),
        (200, Some("paid"))
    );
    let cancel = order_action(&client, &base, &order, "cancel", "alice").await;
    assert_eq!((cancel.code, cancel.error()), (409, "order_closed"));
    assert_eq!(
        stock_of(&redis, "happy", "i"),
        StockHash {
            available: 2,
            locked: 0,
            sold: 1,
            total: 3
        }
    );
    let status = get(&client, &format!("{base}/api/v1/requests/r-1")).await;
    assert_eq!(status.status(), "paid");

    // Exactly one `paid` event on Kafka, however often pay was called.
    let events =
        read_order_events(&broker.brokers(), "happy", 1, Duration::from_secs(20)).expect("events");
    let paid: Vec<_> = events.iter().filter(|e| e.order_id == order).collect();
    assert_eq!(paid.len(), 1, "{events:?}");
    assert_eq!(paid[0].event, "paid");
    assert_eq!(paid[0].user_id, "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_expired_and_foreign_tokens_are_refused_before_the_ring() {
    let Stack {
        redis,
        broker: _broker,
        daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| {
        // Rotation: the daemon signs with a new key and still accepts the
        // previous one.
        c.token_key = "a-brand-new-token-key-0987654321xyz".into();
        c.token_key_previous = TOKEN_KEY.into();
    })
    .await;
    let t0 = now();
    open_sale(
        &base,
        "tok",
        t0 - 1_000,
        t0 + 600_000,
        &[item("a", 5), item("b", 5)],
    )
    .await;
    open_sale(&base, "later", t0 + 120_000, t0 + 600_000, &[item("a", 5)]).await;
    open_sale(&base, "brief", t0 - 1_000, t0 + 1_500, &[item("a", 5)]).await;

    // Too early: no token before a minute ahead of the start.
    let early = token(&client, &base, "later", "a", "u1").await;
    assert_eq!((early.code, early.error()), (403, "too_early"));
    let wait = early.retry_after.expect("Retry-After");
    assert!((55..=61).contains(&wait), "Retry-After {wait}");

    let good = token_of(&client, &base, "tok", "a", "u1").await;
    let signed_before = TokenKeys::new(TOKEN_KEY, "").expect("key");
    let old_key_token = signed_before.sign("u1", "tok", "a", t0 + 60_000);
    let expired = signed_before.sign("u1", "tok", "a", t0 - 1);
    let wrong_key = TokenKeys::new("somebody-elses-key-123456789abcdef", "")
        .expect("key")
        .sign("u1", "tok", "a", t0 + 60_000);
    let b_token = token_of(&client, &base, "tok", "b", "u1").await;

    let cases: Vec<(&str, &str, Option<&str>, &str)> = vec![
        ("no token", "u1", None, "token_missing"),
        ("garbage", "u1", Some("hello"), "token_invalid"),
        ("someone else's", "u2", Some(&good), "token_invalid"),
        ("another item's", "u1", Some(&b_token), "token_invalid"),
        ("expired", "u1", Some(&expired), "token_expired"),
        ("wrong key", "u1", Some(&wrong_key), "token_invalid"),
    ];
    for (case, user, tok, code) in cases {
        let rid = format!("r-{}", case.replace([' ', '\''], "-"));
        let a = buy_with(&client, &base, &[], "tok", "a", user, &rid, tok).await;
        assert_eq!((a.code, a.error()), (403, code), "{case}: {}", a.body);
        // Nothing reached the ring: the request id is unknown.
        let s = get(&client, &format!("{base}/api/v1/requests/{rid}")).await;
        assert_eq!(s.code, 404, "{case}");
    }
    assert_eq!(stock_of(&redis, "tok", "a").available, 5);
    assert_eq!(
        daemon
            .app
            .shared
            .stats
            .batch_events
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // The right token, and one signed with the previous key, both buy.
    let a = buy_with(&client, &base, &[], "tok", "a", "u1", "r-ok", Some(&good)).await;
    assert_eq!(a.status(), "success", "{}", a.body);
    let old = signed_before.sign("u3", "tok", "a", t0 + 60_000);
    let a = buy_with(&client, &base, &[], "tok", "a", "u3", "r-old", Some(&old)).await;
    assert_eq!(a.status(), "success", "{}", a.body);
    drop(old_key_token);

    // Too late: the token endpoint refuses, a purchase is `ended`.
    let brief = token_of(&client, &base, "brief", "a", "u1").await;
    while now() < t0 + 1_600 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = token(&client, &base, "brief", "a", "u1").await;
    assert_eq!((late.code, late.error()), (403, "sale_ended"));
    let a = buy_with(
        &client,
        &base,
        &[],
        "brief",
        "a",
        "u1",
        "r-late",
        Some(&brief),
    )
    .await;
    assert_eq!((a.code, a.status()), (200, "ended"), "{}", a.body);
    assert_eq!(stock_of(&redis, "brief", "a").available, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_429_with_retry_after_and_the_blacklist_403() {
    let Stack {
        redis,
        broker: _broker,
        daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| {
        c.rate_user_per_s = 1;
        c.rate_user_burst = 2;
        c.rate_ip_per_s = 1;
        c.rate_ip_burst = 3;
        c.rate_global_per_s = 100;
        c.rate_global_burst = 100;
        c.trusted_proxies = "1".into();
    })
    .await;
    let t0 = now();
    open_sale(&base, "lim", t0 - 1_000, t0 + 600_000, &[item("i", 100)]).await;
    // Every request comes "from" its own address unless a case says so.
    let mut next_ip = 0u32;
    let mut ip = || {
        next_ip += 1;
        format!("10.1.{}.{}", next_ip / 250, next_ip % 250 + 1)
    };

    // Tokens signed here with the daemon's key: every request to the token
    // endpoint would count against this client's own IP bucket.
    let keys = TokenKeys::new(TOKEN_KEY, "").expect("key");
    let signed = |user: &str| keys.sign(user, "lim", "i", now() + 60_000);

    // Per user: a burst of 2, then 429 with Retry-After.
    let tok = signed("u1");
    let mut codes = Vec::new();
    for n in 0..3 {
        let from = ip();
        let a = buy_from(&client, &base, &from, "u1", &format!("u1-{n}"), Some(&tok)).await;
        codes.push((a.code, a.error().to_string(), a.retry_after));
    }
    assert_eq!(codes[0].0, 200);
    assert_eq!(codes[1].0, 200);
    assert_eq!(codes[2], (429, "rate_limited_user".to_string(), Some(1)));

    // Per IP: a burst of 3 from one address (other users), then 429.
    let mut last = None;
    for n in 0..4 {
        let user = format!("ip-user-{n}");
        let t = signed(&user);
        let a = buy_from(
            &client,
            &base,
            "10.9.9.9",
            &user,
            &format!("ip-{n}"),
            Some(&t),
        )
        .await;
        last = Some((a.code, a.error().to_string(), a.retry_after.is_some()));
    }
    assert_eq!(last, Some((429, "rate_limited_ip".to_string(), true)));

    // The blacklist: a user, then an IP; both refused with 403 at the
    // token endpoint and at the purchase; lifting it lets them in again.
    let t = signed("mallory");
    let block = admin_call(
        &client,
        Method::PUT,
        &format!("{base}/admin/v1/blacklist/users/mallory"),
    )
    .await;
    assert_eq!(block.code, 200);
    let from = ip();
    let a = buy_from(&client, &base, &from, "mallory", "m-1", Some(&t)).await;
    assert_eq!((a.code, a.error()), (403, "blacklisted"));
    assert_eq!(
        token(&client, &base, "lim", "i", "mallory").await.error(),
        "blacklisted"
    );
    let list = get(&client, &format!("{base}/admin/v1/blacklist")).await;
    assert_eq!(list.code, 401, "the list needs the admin token");
    let list = admin_call(&client, Method::GET, &format!("{base}/admin/v1/blacklist")).await;
    assert_eq!(list.body["users"], serde_json::json!(["mallory"]));
    let unblock = admin_call(
        &client,
        Method::DELETE,
        &format!("{base}/admin/v1/blacklist/users/mallory"),
    )
    .await;
    assert_eq!(unblock.code, 200);
    let from = ip();
    let a = buy_from(&client, &base, &from, "mallory", "m-2", Some(&t)).await;
    assert_eq!(a.status(), "success", "{}", a.body);

    let blocked_ip = "10.66.66.66";
    let put = admin_call(
        &client,
        Method::PUT,
        &format!("{base}/admin/v1/blacklist/ips/{blocked_ip}"),
    )
    .await;
    assert_eq!(put.code, 200);
    let t = signed("carol");
    let a = buy_from(&client, &base, blocked_ip, "carol", "c-1", Some(&t)).await;
    assert_eq!((a.code, a.error()), (403, "blacklisted"));
    let bad_ip = admin_call(
        &client,
        Method::PUT,
        &format!("{base}/admin/v1/blacklist/ips/not-an-ip"),
    )
    .await;
    assert_eq!((bad_ip.code, bad_ip.error()), (400, "invalid_ip"));
    // The blacklist lives in Redis: a daemon starting later knows it.
    let mut c = redis.connection();
    let ips: Vec<String> = redis::cmd("SMEMBERS")
        .arg("seckill:blacklist:ips")
        .query(&mut c)
        .expect("SMEMBERS");
    assert_eq!(ips, vec![blocked_ip.to_string()]);

    // Global: a flood past 100/s gets 429 rate_limited_global.
    let mut global = 0;
    for n in 0..150 {
        let from = ip();
        let a = buy_from(&client, &base, &from, "flood", &format!("f-{n}"), None).await;
        if a.error() == "rate_limited_global" {
            assert!(a.retry_after.is_some());
            global += 1;
        }
    }
    assert!(
        global > 0,
        "no global refusal in 150 requests past a 100/s limit"
    );
    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    assert!(metrics.contains("seckill_rate_limited_total{limit=\"global\"}"));
    assert!(daemon.app.limits.refusals().iter().all(|(_, n)| *n > 0));
}

async fn get_text(client: &HttpClient, url: &str) -> String {
    let (_, body) = load::send(client, Method::GET, url, None, vec![])
        .await
        .expect("http");
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_order_expires_and_its_unit_is_won_by_another_user() {
    // The daemon runs on a manual clock: the default payment timeout (15
    // minutes) passes in one step instead of a sleep.
    let clock = ManualClock::at(now());
    let Stack {
        redis,
        broker,
        daemon: _daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start_with_clock(false, clock.clone(), |c| {
        c.sweep_interval_ms = 200;
    })
    .await;
    let t0 = clock.now_ms();
    open_sale(&base, "late", t0 - 1_000, t0 + 3_600_000, &[item("i", 1)]).await;

    let won = buy(&client, &base, "late", "i", "slow-payer", "sp-1").await;
    assert_eq!(won.status(), "success");
    let order = won.body["order_id"].as_str().expect("order").to_string();
    let lost = buy(&client, &base, "late", "i", "patient", "p-1").await;
    assert_eq!(lost.status(), "sold_out");
    let early = get(
        &client,
        &format!("{base}/api/v1/orders/{order}?user_id=slow-payer"),
    )
    .await;
    assert_eq!(early.body["state"], "awaiting_payment", "{}", early.body);

    // A second short of the deadline nothing moves; past it, it expires.
    let timeout = Duration::from_millis(seckill_io::Config::defaults().pay_timeout_ms);
    clock.advance(timeout - Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = get(
        &client,
        &format!("{base}/api/v1/orders/{order}?user_id=slow-payer"),
    )
    .await;
    assert_eq!(before.body["state"], "awaiting_payment", "{}", before.body);
    clock.advance(Duration::from_secs(2));

    // The sweeper releases the unit once the deadline passed.
    let o = poll(
        &client,
        &format!("{base}/api/v1/orders/{order}?user_id=slow-payer"),
        Duration::from_secs(15),
        |a| a.body["state"] == "expired",
    )
    .await;
    assert_eq!(o.body["state"], "expired", "{}", o.body);
    assert_eq!(
        stock_of(&redis, "late", "i"),
        StockHash {
            available: 1,
            locked: 0,
            sold: 0,
            total: 1
        }
    );
    let late_pay = order_action(&client, &base, &order, "pay", "slow-payer").await;
    assert_eq!((late_pay.code, late_pay.error()), (409, "order_closed"));
    let s = get(&client, &format!("{base}/api/v1/requests/sp-1")).await;
    assert_eq!(s.status(), "expired");

    // The item is on sale again: the next user wins it; the one who let
    // it expire has used its chance (the per-user limit counts it).
    let page = poll(
        &client,
        &format!("{base}/api/v1/sales/late"),
        Duration::from_secs(5),
        |a| a.body["items"][0]["sold_out"] == false,
    )
    .await;
    assert_eq!(page.body["items"][0]["sold_out"], false);
    let again = buy(&client, &base, "late", "i", "slow-payer", "sp-2").await;
    assert_eq!(again.status(), "duplicate");
    let second = buy(&client, &base, "late", "i", "patient", "p-2").await;
    assert_eq!(second.status(), "success", "{}", second.body);
    assert_ne!(second.body["order_id"].as_str(), Some(order.as_str()));
    assert_eq!(stock_of(&redis, "late", "i").locked, 1);

    let events =
        read_order_events(&broker.brokers(), "late", 1, Duration::from_secs(20)).expect("events");
    let expired: Vec<_> = events
        .iter()
        .filter(|e| e.order_id == order && e.event == "expired")
        .collect();
    assert_eq!(expired.len(), 1, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_redis_both_see_a_cancelled_unit_back_on_sale() {
    let redis = RedisServer::start();
    let broker = Broker::start();
    let (wal_a, wal_b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let a = seckill_io::Daemon::start(daemon_config(&redis, &broker, wal_a.path()))
        .await
        .expect("daemon a");
    let b = seckill_io::Daemon::start(daemon_config(&redis, &broker, wal_b.path()))
        .await
        .expect("daemon b");
    let (base_a, base_b) = (format!("http://{}", a.addr), format!("http://{}", b.addr));
    let client = load::client(8);
    let t0 = now();
    open_sale(&base_a, "pair", t0 - 1_000, t0 + 600_000, &[item("i", 1)]).await;
    // B learns the sale from Redis (the catalog refresh).
    let page = poll(
        &client,
        &format!("{base_b}/api/v1/sales/pair"),
        Duration::from_secs(5),
        |p| p.code == 200,
    )
    .await;
    assert_eq!(page.code, 200);

    let won = buy(&client, &base_a, "pair", "i", "first", "f-1").await;
    assert_eq!(won.status(), "success");
    let order = won.body["order_id"].as_str().expect("order").to_string();
    let lost = buy(&client, &base_b, "pair", "i", "second", "s-1").await;
    assert_eq!(lost.status(), "sold_out");
    assert!(b.app.catalog.item("pair", "i").expect("item").is_sold_out());

    // Cancelled through A (found by order id alone), then B re-opens.
    let cancel = order_action(&client, &base_a, &order, "cancel", "first").await;
    assert_eq!(
        (cancel.code, cancel.body["state"].as_str()),
        (200, Some("cancelled")),
        "{}",
        cancel.body
    );
    let again = order_action(&client, &base_b, &order, "cancel", "first").await;
    assert_eq!(
        (again.code, again.body["state"].as_str()),
        (200, Some("cancelled"))
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.app.catalog.item("pair", "i").expect("item").is_sold_out() && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!b.app.catalog.item("pair", "i").expect("item").is_sold_out());
    assert!(!a.app.catalog.item("pair", "i").expect("item").is_sold_out());
    // B heard it on the channel (the catalog refresh is only the fallback).
    let heard = || {
        b.app
            .order_stats
            .reopened
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while heard() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(heard() > 0, "daemon b got no re-open message");
    let second = buy(&client, &base_b, "pair", "i", "second", "s-2").await;
    assert_eq!(second.status(), "success", "{}", second.body);
    assert_eq!(
        stock_of(&redis, "pair", "i"),
        StockHash {
            available: 0,
            locked: 1,
            sold: 0,
            total: 1
        }
    );
    let events =
        read_order_events(&broker.brokers(), "pair", 1, Duration::from_secs(20)).expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.order_id == order && e.event == "cancelled"),
        "{events:?}"
    );
    b.shutdown().await.expect("b stops");
    a.shutdown().await.expect("a stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_of_the_openapi_description_is_served() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon: _daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |_| {}).await;
    let doc = get(&client, &format!("{base}/api/v1/openapi.json")).await;
    assert_eq!(doc.code, 200);
    let paths = doc.body["paths"].as_object().expect("paths");
    let operations: usize = paths
        .values()
        .filter_map(|ops| ops.as_object().map(|o| o.len()))
        .sum();
    assert!(operations >= 17, "{operations} operations");
    for (path, ops) in paths {
        for method in ops.as_object().expect("operations").keys() {
            let url = format!("{base}{}", path.replace(['{', '}'], ""));
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let a = call(&client, m, &url, &admin(), serde_json::Value::Null).await;
            // Whatever the answer to a dummy request, it is the endpoint's,
            // not the router's "no such endpoint" or "method not allowed".
            assert!(
                !(a.code == 404 && a.error() == "not_found") && a.code != 405,
                "{method} {path}: {} {}",
                a.code,
                a.body
            );
        }
    }
    // Every security scheme an operation names is declared (else generated
    // clients drop the admin token).
    let schemes = doc.body["components"]["securitySchemes"]
        .as_object()
        .expect("declared security schemes");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("operations") {
            for req in op["security"].as_array().into_iter().flatten() {
                for name in req.as_object().expect("requirement").keys() {
                    assert!(schemes.contains_key(name), "{method} {path} names {name}");
                }
            }
        }
    }
    // And the router serves nothing the description leaves out.
    for (m, p) in [
        ("POST", "/api/v1/sales/{sale_id}/items/{item_id}/purchase"),
        ("POST", "/api/v1/sales/{sale_id}/items/{item_id}/token"),
        ("POST", "/api/v1/orders/{order_id}/pay"),
        ("POST", "/api/v1/orders/{order_id}/cancel"),
        ("PUT", "/admin/v1/sales/{sale_id}"),
    ] {
        assert!(
            paths.get(p).and_then(|o| o.get(m.to_lowercase())).is_some(),
            "{m} {p} is not described"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_events_wait_in_the_outbox_while_kafka_is_frozen_and_expiry_goes_on() {
    let Stack {
        redis,
        broker,
        daemon: _daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| {
        c.pay_timeout_ms = 1_000;
        c.sweep_interval_ms = 200;
    })
    .await;
    let t0 = now();
    open_sale(&base, "outage", t0 - 1_000, t0 + 600_000, &[item("i", 2)]).await;
    let payer = buy(&client, &base, "outage", "i", "payer", "py-1").await;
    let idler = buy(&client, &base, "outage", "i", "idler", "id-1").await;
    let (Some(paid), Some(idle)) = (
        payer.body["order_id"].as_str(),
        idler.body["order_id"].as_str(),
    ) else {
        panic!("two wins expected: {} {}", payer.body, idler.body);
    };
    let (paid, idle) = (paid.to_string(), idle.to_string());

    broker.freeze();
    let pay = order_action(&client, &base, &paid, "pay", "payer").await;
    assert_eq!(pay.body["state"], "paid", "{}", pay.body);
    // Kafka is away: the sweeper still releases the unpaid unit.
    let o = poll(
        &client,
        &format!("{base}/api/v1/orders/{idle}?user_id=idler"),
        Duration::from_secs(10),
        |a| a.body["state"] == "expired",
    )
    .await;
    assert_eq!(o.body["state"], "expired", "{}", o.body);
    assert_eq!(stock_of(&redis, "outage", "i").available, 1);
    let waiting: u64 = redis::cmd("LLEN")
        .arg(item_keys("outage", "i").events)
        .query(&mut redis.connection())
        .expect("LLEN");
    assert_eq!(waiting, 2, "both events wait in the outbox");
    broker.thaw();

    let events =
        read_order_events(&broker.brokers(), "outage", 2, Duration::from_secs(40)).expect("events");
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.order_id.as_str(), e.event.as_str()))
        .collect();
    assert!(got.contains(&(paid.as_str(), "paid")), "{got:?}");
    assert!(got.contains(&(idle.as_str(), "expired")), "{got:?}");
    // Acknowledged entries leave the outbox.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: u64 = redis::cmd("LLEN")
            .arg(item_keys("outage", "i").events)
            .query(&mut redis.connection())
            .expect("LLEN");
        if left == 0 || Instant::now() >= deadline {
            assert_eq!(left, 0, "the outbox kept acknowledged events");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_works_wherever_get_does_and_a_405_names_the_allowed_methods() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon: _daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |_| {}).await;
    for path in [
        "/healthz",
        "/api/v1/time",
        "/api/v1/openapi.json",
        "/metrics",
    ] {
        let get = client
            .request(
                Request::get(format!("{base}{path}"))
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
            .expect("get");
        let head = client
            .request(
                Request::head(format!("{base}{path}"))
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
            .expect("head");
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path}"
        );
        let body = head.into_body().collect().await.expect("body").to_bytes();
        assert!(body.is_empty(), "HEAD {path} has a body");
    }
    for (method, path, allow) in [
        (Method::GET, "/api/v1/sales/s/items/i/purchase", "POST"),
        (Method::DELETE, "/api/v1/time", "GET, HEAD"),
        (Method::POST, "/admin/v1/sales/s", "GET, HEAD, PUT"),
        (Method::GET, "/admin/v1/blacklist/users/u", "PUT, DELETE"),
        (Method::POST, "/healthz", "GET, HEAD"),
    ] {
        let resp = client
            .request(
                Request::builder()
                    .method(method.clone())
                    .uri(format!("{base}{path}"))
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
            .expect("call");
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        assert_eq!(
            resp.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
    }
    let nowhere = get(&client, &format!("{base}/no/such/path")).await;
    assert_eq!((nowhere.code, nowhere.error()), (404, "not_found"));
}

/// Threads of this process with the given name.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .map(|c| c.trim() == name)
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_daemon_leaves_no_reopen_thread_behind() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon,
        base: _base,
        wal: _wal,
        client: _client,
    } = Stack::start(false, |_| {}).await;
    // A new thread names itself once it runs: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_named("seckill-reopen") == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(threads_named("seckill-reopen"), 1);
    // Dropped without `shutdown` (a panic in the caller, a test that ends).
    drop(daemon);
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_named("seckill-reopen") > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        threads_named("seckill-reopen"),
        0,
        "the listener outlived its daemon"
    );
}
