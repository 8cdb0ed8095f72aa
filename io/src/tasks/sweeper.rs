//! The sweeper: every `sweep_interval_ms`, one pipelined round trip runs
//! `sweep.lua` for every item with orders, releasing unpaid orders past
//! their deadline back to `available` (atomically; with several daemons
//! each order is expired once). A task of its own: a Kafka outage stalls
//! the outbox publisher and must never hold up the release of stock.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::{blocking, App};
use crate::shutdown::until_true;

/// Most orders one sweep call expires per item (the rest next tick).
const SWEEP_PER_ITEM: u32 = 512;

pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(app.cfg.sweep_interval_ms.max(1));
    let mut first = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = until_true(&mut stop) => return,
        }
        let items = app.items_with_orders(std::mem::take(&mut first));
        if items.is_empty() {
            continue;
        }
        let redis = app.redis.clone();
        let swept = {
            let items = items.clone();
            let now = app.clock.now_ms();
            blocking(move || redis.sweep(&items, now, SWEEP_PER_ITEM)).await
        };
        match swept {
            Ok(Ok(released)) => {
                let mut any = false;
                for ((sale, item), n) in items.iter().zip(released) {
                    if n > 0 {
                        any = true;
                        app.order_stats
                            .expired_units
                            .fetch_add(n, Ordering::Relaxed);
                        tracing::info!(sale = %sale, item = %item, units = n,
                            "unpaid orders expired, stock released");
                        if let Some(i) = app.catalog.item(sale, item) {
                            i.set_sold_out(false);
                        }
                    }
                }
                if any {
                    app.order_wake.wake();
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "sweep: Redis did not answer"),
            Err(e) => tracing::warn!(error = %e, "sweep task failed"),
        }
    }
}
