//! seckill-bare: a bare hyper server answering a constant JSON — the
//! ingress ceiling the benchmarks compare seckilld against. Same hyper,
//! same tokio, same number of workers, no ring, no Redis, no Kafka.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

/// A bare hyper server answering every request with a constant JSON body
/// (and the clock at /api/v1/time, so seckill-load can drive it).
#[derive(Debug, Parser)]
#[command(name = "seckill-bare", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
    /// tokio worker threads (as seckilld's worker_threads).
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
}

async fn answer(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let time = req.uri().path() == "/api/v1/time";
    // Read the body as seckilld does, so both pay for it.
    let _ = req.into_body().collect().await;
    let body = if time {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Bytes::from(format!("{{\"now_ms\":{now}}}"))
    } else {
        Bytes::from_static(br#"{"status":"sold_out","request_id":"constant"}"#)
    };
    let mut r = Response::new(Full::new(body));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// mimalloc: per-thread free lists make the small, short-lived allocations
/// of request handling (hyper's buffers and headers, answers) cheaper than
/// glibc's malloc; see docs/benchmarks.md. The bare reference server uses
/// the same allocator, so the two stay comparable.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads.max(1))
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(seckill_benches::serve::serve_http1(args.listen, answer))
}
