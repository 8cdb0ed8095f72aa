//! Looking up an order costs a Redis round trip (one `HEXISTS` per catalog
//! item): the lookups are under the rate limits like purchases, and an id
//! found nowhere is answered from memory for a second.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use seckill_benches::load::HttpClient;
use seckill_tests::{RedisServer, Stack};

async fn sale(client: &HttpClient, base: &str) {
    let now = seckill_pipeline::now_ms();
    seckill_tests::one_item_sale(client, base, "ol", now - 1_000, 5).await;
}

async fn get_order(client: &HttpClient, base: &str, id: &str) -> u16 {
    let req = Request::get(format!("{base}/api/v1/orders/{id}?user_id=u1"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    client.request(req).await.expect("http").status().as_u16()
}

async fn get_order_of(client: &HttpClient, base: &str, id: &str, user: &str) -> u16 {
    let req = Request::get(format!("{base}/api/v1/orders/{id}?user_id={user}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    client.request(req).await.expect("http").status().as_u16()
}

/// How many HEXISTS Redis has run.
fn hexists_calls(redis: &RedisServer) -> u64 {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut c = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("conn");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut c)
        .expect("info");
    info.lines()
        .find(|l| l.starts_with("cmdstat_hexists:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_found_nowhere_is_answered_from_memory_for_a_second() {
    let Stack {
        redis,
        broker: _broker,
        daemon: _daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |_| {}).await;
    sale(&client, &base).await;
    let before = hexists_calls(&redis);
    assert_eq!(get_order(&client, &base, "0123456789abcdef").await, 404);
    let after_first = hexists_calls(&redis);
    assert!(after_first > before, "the first lookup asks Redis");
    for _ in 0..5 {
        assert_eq!(get_order(&client, &base, "0123456789abcdef").await, 404);
    }
    assert_eq!(
        hexists_calls(&redis),
        after_first,
        "repeats are answered from memory"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(get_order(&client, &base, "0123456789abcdef").await, 404);
    assert!(
        hexists_calls(&redis) > after_first,
        "after a second Redis is asked again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_lookups_are_under_the_per_ip_limit() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon: _daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| {
        c.rate_ip_per_s = 1;
        c.rate_ip_burst = 2;
    })
    .await;
    let mut codes = Vec::new();
    for n in 0..4 {
        codes.push(get_order(&client, &base, &format!("{n:016x}")).await);
    }
    assert!(codes.contains(&429), "{codes:?}");
}

/// How many connections Redis has accepted since it started.
fn connections_received(redis: &RedisServer) -> u64 {
    let mut c = redis.connection();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_connections_received")
}

async fn post(client: &HttpClient, url: String, body: String) -> u16 {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    client.request(req).await.expect("http").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_calls_reuse_pooled_redis_connections() {
    let Stack {
        redis,
        broker: _broker,
        daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |_| {}).await;
    sale(&client, &base).await;
    let plan = seckill_benches::load::Plan {
        concurrency: 1,
        time_max: Duration::from_secs(20),
        ..seckill_benches::load::Plan::new(&base, "ol", &["i"], 1)
    };
    let won = seckill_benches::load::run(&client, &plan).await;
    let won = won.answers.first().expect("one answer").clone();
    assert_eq!(won.status, "success", "{won:?}");
    let order = won.order_id.expect("order id");
    let request = won.request_id.clone();
    let user = won.user_id.clone();
    // Warm: the first calls may open the pool's connections.
    for _ in 0..3 {
        assert_eq!(get_order_of(&client, &base, &order, &user).await, 200);
    }
    let before = connections_received(&redis);
    let opened_before = daemon
        .app
        .redis
        .pool_stats()
        .opened
        .load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..50 {
        assert_eq!(get_order_of(&client, &base, &order, &user).await, 200);
        let status = client
            .request(
                Request::get(format!("{base}/api/v1/requests/{request}"))
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
            .expect("http")
            .status()
            .as_u16();
        assert_eq!(status, 200);
    }
    let pay = format!(r#"{{"user_id":"{user}"}}"#);
    assert_eq!(
        post(&client, format!("{base}/api/v1/orders/{order}/pay"), pay).await,
        200
    );
    // One connection less than a call each: the test's own INFO
    // connection is the only one that may be new.
    let new = connections_received(&redis) - before;
    assert!(new <= 2, "{new} new Redis connections for 101 calls");
    let opened = daemon
        .app
        .redis
        .pool_stats()
        .opened
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        opened - opened_before <= 1,
        "the pool opened {} connections",
        opened - opened_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_connections_to_a_restarted_redis_are_replaced_not_waited_on() {
    let Stack {
        mut redis,
        broker: _broker,
        daemon: _daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |_| {}).await;
    sale(&client, &base).await;
    // A few lookups leave connections in the pool.
    for n in 0..3 {
        assert_eq!(get_order(&client, &base, &format!("{n:016x}")).await, 404);
    }
    // Every kept connection now leads to a Redis that is gone; once they
    // have been idle past the check, a call must replace them, not hang.
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for n in 10..14 {
        let code = tokio::time::timeout(
            Duration::from_secs(10),
            get_order(&client, &base, &format!("{n:016x}")),
        )
        .await
        .expect("an order lookup after a Redis restart hung");
        assert!(code == 404 || code == 503, "{code}");
    }
    let code = get_order(&client, &base, "00000000000000ff").await;
    assert_eq!(code, 404, "the pool reconnects");
}
