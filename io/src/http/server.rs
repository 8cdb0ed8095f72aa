//! The accept loop: one task per connection (HTTP/1.1 keep-alive, a
//! header-read timeout), and the graceful stop — stop accepting, let open
//! connections finish their request, drop every ring handle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use seckill_pipeline::Submitter;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::router;
use crate::app::App;
use crate::shutdown::until_true;

/// Pause after a failed `accept` (out of file descriptors, say) before
/// trying again, so the loop does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(10);

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
                        tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
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
                    let svc = service_fn(move |req| router::handle(Arc::clone(&app), Arc::clone(&sub), ip, req));
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
