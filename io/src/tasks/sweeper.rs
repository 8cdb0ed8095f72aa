//! The sweeper: every `sweep_interval_ms`, one pipelined round trip runs
//! `sweep.lua` for every item an unpaid order of which may be due,
//! releasing those past their deadline back to `available` (atomically;
//! with several daemons each order is expired once). A task of its own: a
//! Kafka outage stalls the outbox publisher and must never hold up the
//! release of stock.
//!
//! The work follows the deadlines, not the number of items: a sweep learns
//! each item's earliest waiting deadline, and the item is not visited
//! again before it (nor, when none waits, before now plus the payment
//! window: a later win's deadline is at least that — the fleet shares
//! `pay_timeout_ms`). During a sale's first `pay_timeout_ms` (15 minutes)
//! nothing is swept at all after the first pass.

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
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = until_true(&mut stop) => return,
        }
        let now = app.clock.now_ms();
        let due: Vec<Arc<seckill_pipeline::Item>> = app
            .catalog
            .sales()
            .into_iter()
            .flat_map(|(_, items)| items)
            .filter(|i| i.touched() && i.sweep_due(now))
            .collect();
        if due.is_empty() {
            continue;
        }
        let items: Vec<(String, String)> = due
            .iter()
            .map(|i| (i.sale_id.clone(), i.item_id.clone()))
            .collect();
        let redis = app.redis.clone();
        let swept = blocking(move || redis.sweep(&items, now, SWEEP_PER_ITEM)).await;
        match swept {
            Ok(Ok(swept)) => {
                let mut any = false;
                let window = now.saturating_add(app.cfg.pay_timeout_ms);
                for (item, s) in due.iter().zip(swept) {
                    // More than one call's worth due: come back next tick.
                    let next = if s.released >= u64::from(SWEEP_PER_ITEM) {
                        now
                    } else {
                        s.next_deadline_ms.map_or(window, |d| d.min(window))
                    };
                    item.set_next_sweep(next);
                    if s.released > 0 {
                        any = true;
                        item.note_events();
                        app.order_stats
                            .expired_units
                            .fetch_add(s.released, Ordering::Relaxed);
                        tracing::info!(sale = %item.sale_id, item = %item.item_id, units = s.released,
                            "unpaid orders expired, stock released");
                        item.set_sold_out(false);
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
