//! The re-open listener: the scripts `PUBLISH` on `seckill:released` when
//! units go back on sale; every daemon clears its local sold-out flag for
//! the item at once (the catalog refresh re-reads `available` every second
//! as well, should a message be missed). A thread of its own, on a
//! subscribed connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::redis::RELEASED_CHANNEL;

/// Pause before subscribing again while Redis is away.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// Longest wait for a message, so the thread sees `stop`.
const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// The re-open listener: a thread on a subscribed connection, reconnecting
/// while Redis is away, until `stop` turns true.
pub fn spawn(app: Arc<App>, stop: watch::Receiver<bool>) {
    let spawned = std::thread::Builder::new()
        .name("seckill-reopen".into())
        .spawn(move || {
            while !stopped(&stop) {
                if let Err(e) = listen(&app, &stop) {
                    tracing::debug!(error = %e, "re-open listener: Redis away, retrying");
                    std::thread::sleep(RECONNECT_PAUSE);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the re-open listener; the catalog refresh re-opens items instead");
    }
}

/// The daemon stopped: the flag turned true, or the daemon was dropped
/// without a shutdown (its sender is gone) — a thread must not outlive it.
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

fn listen(app: &App, stop: &watch::Receiver<bool>) -> Result<(), redis::RedisError> {
    let mut conn = app.redis.subscriber()?;
    let mut sub = conn.as_pubsub();
    sub.subscribe(RELEASED_CHANNEL)?;
    // A bounded wait, so the thread sees `stop`.
    sub.set_read_timeout(Some(READ_TIMEOUT))?;
    while !stopped(stop) {
        let msg = match sub.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        let payload: String = match msg.get_payload() {
            Ok(p) => p,
            Err(_) => continue,
        };
        if let Some((sale, item)) = payload.split_once('\n') {
            if let Some(i) = app.catalog.item(sale, item) {
                i.set_sold_out(false);
                app.order_stats.reopened.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(sale, item, "stock released: item re-opened");
            }
        }
    }
    Ok(())
}
