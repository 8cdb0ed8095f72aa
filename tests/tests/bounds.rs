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
