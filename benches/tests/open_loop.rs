//! `--rate` is open-loop: a request is timed from when it was due, so a
//! server slower than the schedule is charged for the queue it causes
//! (no coordinated omission).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use seckill_benches::load::{self, Plan};

/// Each request takes this long to answer.
const SERVICE: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_timed_from_when_they_were_due() {
    let port = seckill_tests::free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    tokio::spawn(seckill_benches::serve::serve_http1(addr, |_req| async {
        tokio::time::sleep(SERVICE).await;
        Response::new(Full::new(Bytes::from_static(br#"{"status":"success"}"#)))
    }));
    assert!(seckill_tests::wait_for_port(port, Duration::from_secs(5)));
    let client = load::client(1);
    let plan = |rate| Plan {
        // One connection: the client itself waits for each answer.
        concurrency: 1,
        rate_per_sec: rate,
        ..Plan::new(&format!("http://{addr}"), "s", &["i"], 30)
    };
    // 100/s due (one every 10 ms) against 20 ms per answer on one
    // connection: request k cannot be answered before 20·(k+1) ms and was
    // due at 10·k ms, so it waited at least 10·k + 20 ms — the median one
    // (k = 15) at least 170 ms, though each took only 20 ms once sent.
    let open = load::run_with_tokens(&client, &plan(std::num::NonZeroU32::new(100)), &[]).await;
    assert_eq!(open.requests, 30);
    assert_eq!(open.by_status.get("success"), Some(&30));
    assert!(
        open.latency.p50_us >= 150_000,
        "open-loop p50 {} µs: the queue behind the slow server is not counted",
        open.latency.p50_us
    );
    // Closed-loop, the same requests each count only their own 20 ms
    // (at least).
    let closed = load::run_with_tokens(&client, &plan(None), &[]).await;
    assert_eq!(closed.requests, 30);
    assert!(closed.latency.p50_us >= SERVICE.as_micros() as u64);
}
