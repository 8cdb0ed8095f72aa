//! The accept loop: one task per connection (HTTP/1.1 keep-alive, a
//! header-read timeout), and the graceful stop — stop accepting, let open
//! connections finish their request, drop every ring handle.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use seckill_pipeline::Submitter;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::error::{ApiError, ErrorCode};
use super::router::{self, Door};
use crate::app::App;
use crate::shutdown::until_true;

/// Pause after a failed `accept` (out of file descriptors, say) before
/// trying again, so the loop does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// How long a refused connection is given to take its 503.
const REFUSE_WRITE_MAX: Duration = Duration::from_secs(1);

/// Counts a connection open for as long as it lives.
struct OpenGuard(Arc<App>);

impl OpenGuard {
    fn new(app: Arc<App>) -> OpenGuard {
        app.conn_stats.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(app)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.conn_stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers a connection past the bound with 503 `too_many_connections`
/// (Retry-After: 1) and closes it, without reading its request.
async fn refuse(mut stream: TcpStream) {
    let body = ApiError::new(
        ErrorCode::TooManyConnections,
        "too many open connections; retry shortly",
    )
    .body();
    let mut answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    let _ = tokio::time::timeout(REFUSE_WRITE_MAX, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
}

/// Serves the routes of `door` until `stop` turns true, then stops
/// accepting, lets open connections finish their request (up to `grace`),
/// and drops every ring handle it holds.
pub async fn serve(
    listener: TcpListener,
    door: Door,
    app: Arc<App>,
    submitter: Submitter,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut conns = JoinSet::new();
    let (drain_tx, drain_rx) = watch::channel(false);
    // A bound on open connections (mini-redis' semaphore): each holds a
    // permit for its life; past the bound a connection is answered 503 and
    // closed, so the daemon's memory and file descriptors stay bounded.
    let permits = Arc::new(Semaphore::new(app.cfg.connections_max.max(1)));
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
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    app.conn_stats.refused.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(refuse(stream));
                    continue;
                };
                let app = Arc::clone(&app);
                let sub = Arc::new(Mutex::new(submitter.clone()));
                let mut drain = drain_rx.clone();
                let header_timeout = Duration::from_millis(app.cfg.header_timeout_ms.max(1));
                conns.spawn(async move {
                    let _permit = permit;
                    let _open = OpenGuard::new(Arc::clone(&app));
                    let ip = peer.ip();
                    let svc = service_fn(move |req| router::handle(Arc::clone(&app), Arc::clone(&sub), door, ip, req));
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
