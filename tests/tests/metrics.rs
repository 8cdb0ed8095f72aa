//! `/metrics` as a scraper takes it: `promtool check metrics` (the
//! Prometheus project's own linter, Debian package `prometheus`) accepts a
//! live scrape taken after a sale, with every family typed and described,
//! the process's own families among them.

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use seckill_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_scrape_passes_promtool() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon: _daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| c.require_token = false).await;
    let now = seckill_pipeline::now_ms();
    seckill_tests::one_item_sale(&client, &base, "m", now - 1_000, 5).await;
    for n in 0..8 {
        let body = format!(r#"{{"user_id":"u{n}","request_id":"r{n}"}}"#);
        let req = Request::post(format!("{base}/api/v1/sales/m/items/i/purchase"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let resp = client.request(req).await.expect("purchase");
        assert_eq!(resp.status().as_u16(), 200);
    }
    let text = seckill_tests::scrape(&client, &base).await;
    assert!(text.contains("seckill_build_info{version="), "{text}");
    assert!(text.contains("seckill_ring_batch_events_sum "), "{text}");
    // The process collector's families (CPU, memory, descriptors).
    for family in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(family), "no {family}in {text}");
    }
    assert!(
        text.contains("seckill_requests{status=\"success\"} ")
            || text.contains("seckill_requests{status=\"order_created\"} "),
        "{text}"
    );
    assert!(
        text.contains("seckill_stage_latency_seconds_bucket{stage=\"journal\",le=\"+Inf\"} "),
        "{text}"
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool: {said}\n{text}");
    assert!(said.trim().is_empty(), "promtool found problems: {said}");
}
