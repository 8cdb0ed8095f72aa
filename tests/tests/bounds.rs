//! Bounds on everything: the accept loop holds at most `connections_max`
//! connections; one more is answered 503 `too_many_connections` and closed,
//! and a slot freed is a slot given again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use seckill_tests::Stack;

/// Sends one keep-alive GET on a fresh connection and returns the
/// connection and the head of the answer.
fn get_on_new_connection(addr: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap_or(0);
    (s, String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_bound_are_refused_with_503_and_a_freed_slot_is_reused() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon,
        base: _base,
        wal: _wal,
        client: _client,
    } = Stack::start(false, |c| c.connections_max = 3).await;
    let addr = daemon.addr.to_string();
    let opened = tokio::task::spawn_blocking(move || {
        // Three connections, each kept open after its answer.
        let mut held: Vec<(TcpStream, String)> =
            (0..3).map(|_| get_on_new_connection(&addr)).collect();
        for (_, head) in &held {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        }
        // The one past the bound: answered and closed, read to the end.
        let mut extra = TcpStream::connect(&addr).expect("connect");
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut refused = String::new();
        let _ = extra.read_to_string(&mut refused);
        // One closed (the other two still held), one more fits.
        drop(held.remove(0));
        std::thread::sleep(Duration::from_millis(300));
        let (_again, head) = get_on_new_connection(&addr);
        drop(held);
        (refused, head)
    })
    .await
    .expect("join");
    let (refused, again) = opened;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    assert!(
        again.starts_with("HTTP/1.1 200"),
        "a freed slot is given again: {again}"
    );
    let metrics = seckill_io::metrics::render(&daemon.app);
    assert!(
        metrics.contains("seckill_connections_refused_total 1"),
        "{metrics}"
    );
}

fn plan(base: &str, sale: &str, users: usize) -> seckill_benches::load::Plan {
    seckill_benches::load::Plan {
        base: base.to_string(),
        sale_id: sale.into(),
        items: vec!["i".into()],
        users,
        first_user: 0,
        request_prefix: String::new(),
        clicks_per_user: 1,
        retries: 0,
        concurrency: 16,
        time_max: Duration::from_secs(60),
        rate_per_sec: None,
    }
}

async fn get_json(
    client: &seckill_benches::load::HttpClient,
    url: &str,
) -> (u16, serde_json::Value) {
    let (code, body) = seckill_benches::load::send(client, hyper::Method::GET, url, None, vec![])
        .await
        .expect("answer");
    (code, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_board_is_bounded_and_a_request_it_let_go_of_is_answered_from_redis() {
    const USERS: usize = 400;
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| c.status_board_len_max = 100).await;
    let now = seckill_pipeline::now_ms();
    // One unit more than buyers: the item is still on sale when the board
    // lets go of its wins; the last unit sells later, so a retry would be
    // answered `sold_out` if the ingress trusted its flag.
    seckill_tests::one_item_sale(&client, &base, "bnd", now - 1_000, USERS as u64 + 1).await;
    let first = seckill_benches::load::run(&client, &plan(&base, "bnd", USERS)).await;
    assert_eq!(
        first.by_status.get("success").copied(),
        Some(USERS as u64),
        "{:?}",
        first.by_status
    );
    let app = &daemon.app;
    seckill_tests::wait_acknowledged(app, USERS as u64).await;
    // Two passes: the first starts an epoch, the second lets go of what
    // came before it.
    seckill_io::tasks::bounds::pass(app);
    seckill_io::tasks::bounds::pass(app);
    assert!(app.board.len() <= 100, "board holds {}", app.board.len());
    assert!(app.board.evicted() >= (USERS - 100) as u64);

    // The last unit sells; the catalog sync sees the sell-out.
    let mut last = plan(&base, "bnd", USERS + 1);
    last.first_user = USERS;
    let last = seckill_benches::load::run(&client, &last).await;
    assert_eq!(last.by_status.get("success").copied(), Some(1));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !app
        .catalog
        .item("bnd", "i")
        .is_some_and(|i| i.is_sold_out())
    {
        assert!(std::time::Instant::now() < deadline, "never sold out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Retried, every request gets its win back (the stored outcome),
    // never `sold_out` nor `duplicate`; its status is read from Redis.
    let again = seckill_benches::load::run(&client, &plan(&base, "bnd", USERS)).await;
    for a in &again.answers {
        let before = first
            .answers
            .iter()
            .find(|b| b.request_id == a.request_id)
            .expect("same request");
        assert_eq!(a.status, "success", "{a:?}");
        assert_eq!(a.order_id, before.order_id, "{a:?}");
    }
    let (code, v) = get_json(&client, &format!("{base}/api/v1/requests/bnd-user-7-0")).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "order_created", "{v}");
    assert_eq!(v["user_id"], "user-7", "{v}");
    let (code, _) = get_json(&client, &format!("{base}/api/v1/requests/bnd-nobody-0")).await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_past_its_retention_leaves_memory() {
    use seckill_pipeline::Clock;
    let clock = seckill_pipeline::ManualClock::at(seckill_pipeline::now_ms());
    let shared: seckill_pipeline::SharedClock = clock.clone();
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start_with_clock(false, shared, |c| c.ended_sale_retention_ms = 60_000).await;
    let now = clock.now_ms();
    seckill_tests::one_item_sale(&client, &base, "old", now - 1_000, 50).await;
    let sold = seckill_benches::load::run(&client, &plan(&base, "old", 20)).await;
    assert_eq!(sold.by_status.get("success").copied(), Some(20));
    let app = &daemon.app;
    seckill_tests::wait_acknowledged(app, 20).await;
    assert!(app.board.len() >= 20);
    seckill_io::tasks::bounds::pass(app);
    assert!(
        app.catalog.item("old", "i").is_some(),
        "still on sale: kept"
    );
    // Past the end (one_item_sale runs for ten minutes) plus the retention.
    clock.advance(Duration::from_secs(600 + 61));
    seckill_io::tasks::bounds::pass(app);
    assert!(app.catalog.item("old", "i").is_none(), "forgotten");
    assert_eq!(app.board.len(), 0, "its requests left the board");
    // And the catalog sync does not bring it back from Redis.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(app.catalog.item("old", "i").is_none(), "not re-loaded");
}

/// Sends raw bytes on a new connection; returns everything read back until
/// the connection closes or 10 s pass.
fn raw(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_never_grow_with_the_input_and_a_declared_huge_body_is_refused_at_once() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon,
        base: _base,
        wal: _wal,
        client: _client,
    } = Stack::start(false, |_| {}).await;
    let addr = daemon.addr.to_string();
    let answers = tokio::task::spawn_blocking(move || {
        let mut method = vec![b'A'; 70_000];
        method.extend_from_slice(b" /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let long_method = raw(&addr, &method);
        // Only part of the declared terabyte is sent: the daemon must not
        // wait for the rest (the header timeout would answer 408).
        let huge = raw(
            &addr,
            b"POST /api/v1/sales/s/items/i/purchase HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{\"user_id\":",
        );
        (long_method, huge)
    })
    .await
    .expect("join");
    let (long_method, huge) = answers;
    let head = String::from_utf8_lossy(&long_method[..long_method.len().min(200)]).into_owned();
    assert!(
        long_method.is_empty() || long_method.len() < 4_096,
        "a {}-byte answer to a long method: {head}",
        long_method.len()
    );
    let huge = String::from_utf8_lossy(&huge).into_owned();
    assert!(huge.starts_with("HTTP/1.1 413"), "{huge}");
    assert!(huge.contains("body_too_large"), "{huge}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_item_keeps_its_wins_and_its_sold_out_fast_path() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| c.status_board_len_max = 100).await;
    let now = seckill_pipeline::now_ms();
    seckill_tests::one_item_sale(&client, &base, "so", now - 1_000, 50).await;
    let burst = seckill_benches::load::run(&client, &plan(&base, "so", 400)).await;
    assert_eq!(burst.by_status.get("success").copied(), Some(50));
    let app = &daemon.app;
    seckill_tests::wait_acknowledged(app, 50).await;
    seckill_io::tasks::bounds::pass(app);
    seckill_io::tasks::bounds::pass(app);
    assert_eq!(
        app.board.count(seckill_pipeline::Status::OrderCreated),
        50,
        "a sold-out item's wins stay"
    );
    assert!(app.board.len() < 400, "its sold-out answers went");
    let item = app.catalog.item("so", "i").expect("item");
    assert!(item.answers_sold_out(), "the fast path stays on");
}
