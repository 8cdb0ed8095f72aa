//! The hyper ingress: accept loop, per-connection service, graceful stop.

mod api;
pub mod codec;
mod routes;

pub use api::{openapi_json, ApiDoc};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use seckill_pipeline::Submitter;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::daemon::App;

/// Serves until `stop` turns true, then stops accepting, lets open
/// connections finish their request (up to `grace`), and drops every ring
/// handle it holds.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    submitter: Submitter,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut conns = JoinSet::new();
    let (drain_tx, drain_rx) = watch::channel(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = Arc::clone(&app);
                let sub = Arc::new(Mutex::new(submitter.clone()));
                let mut drain = drain_rx.clone();
                let header_timeout = Duration::from_millis(app.cfg.header_timeout_ms.max(1));
                conns.spawn(async move {
                    let ip = peer.ip();
                    let svc = service_fn(move |req| routes::handle(Arc::clone(&app), Arc::clone(&sub), ip, req));
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_timeout)
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = until_true(&mut drain) => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
                // Reap finished connections so the set stays small.
                while conns.try_join_next().is_some() {}
            }
            _ = until_true(&mut stop) => break,
        }
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Waits until a stop flag turns true (or its sender is gone).
pub async fn until_true(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}
