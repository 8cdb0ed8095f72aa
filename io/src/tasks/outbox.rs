//! The outbox publisher: order events (`paid`, `cancelled`, `expired`)
//! are written by the scripts into a per-item outbox in the same atomic
//! step as the state change, and published from there to
//! `seckill.order-events`; an entry leaves the outbox only once Kafka
//! acknowledged it (at least once, keyed by order id: consumers drop
//! repeats by order id and event).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::{blocking, App};
use crate::kafka::{event_producer, publish_round, EventProducer};
use crate::redis::OutboxEntry;
use crate::shutdown::until_true;

/// Most events taken from one item's outbox per tick.
const OUTBOX_PER_ITEM: isize = 256;
/// Every this many passes, every item that had wins is read, not only
/// those this daemon wrote events for: the events of a daemon that
/// stopped before publishing them.
const FULL_PASS_EVERY: u64 = 30;

pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let producer = event_producer(&app.cfg.kafka_brokers, &app.cfg.kafka_properties.0);
    let every = Duration::from_millis(app.cfg.sweep_interval_ms.max(1));
    let mut pass: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = app.order_wake.woken() => {}
            _ = until_true(&mut stop) => return,
        }
        let full = pass.is_multiple_of(FULL_PASS_EVERY);
        pass += 1;
        // The items this daemon wrote events for; on a full pass (the
        // first included) every item that had wins.
        let read: Vec<Arc<seckill_pipeline::Item>> = app
            .catalog
            .sales()
            .into_iter()
            .flat_map(|(_, items)| items)
            .filter(|i| i.events_pending() || (full && i.touched()))
            .collect();
        if read.is_empty() {
            continue;
        }
        let items = Arc::new(
            read.iter()
                .map(|i| (i.sale_id.clone(), i.item_id.clone()))
                .collect::<Vec<_>>(),
        );
        if let Some(p) = &producer {
            tokio::select! {
                empty = publish_outbox(&app, p, &items) => {
                    for (item, key) in read.iter().zip(items.iter()) {
                        if empty.contains(key) {
                            item.clear_events();
                        }
                    }
                }
                _ = until_true(&mut stop) => return,
            }
        }
    }
}

/// Publishes what the outboxes of `items` hold; returns the items whose
/// outbox was read empty.
async fn publish_outbox(
    app: &App,
    producer: &Arc<EventProducer>,
    items: &Arc<Vec<(String, String)>>,
) -> HashSet<(String, String)> {
    let redis = app.redis.clone();
    let entries = {
        let items = Arc::clone(items);
        match blocking(move || redis.outbox(&items, OUTBOX_PER_ITEM)).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "outbox: Redis did not answer; next tick");
                return HashSet::new();
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox read failed");
                return HashSet::new();
            }
        }
    };
    let mut empty: HashSet<(String, String)> = items.iter().cloned().collect();
    for e in &entries {
        empty.remove(&(e.sale_id.clone(), e.item_id.clone()));
    }
    if entries.is_empty() {
        return empty;
    }
    let p = Arc::clone(producer);
    let redis = app.redis.clone();
    let topic = app.cfg.kafka_events_topic.clone();
    let done = blocking(move || {
        let acked = publish_round(&p, &topic, &entries);
        let published: Vec<&OutboxEntry> = entries
            .iter()
            .zip(&acked)
            .filter(|(_, a)| **a)
            .map(|(e, _)| e)
            .collect();
        let failed = (entries.len() - published.len()) as u64;
        let removed = redis.ack_outbox(&published).is_ok();
        (published.len() as u64, failed, removed)
    })
    .await;
    if let Ok((published, failed, removed)) = done {
        if removed {
            app.order_stats
                .events_published
                .fetch_add(published, Ordering::Relaxed);
        }
        if failed > 0 {
            app.order_stats
                .events_failed
                .fetch_add(failed, Ordering::Relaxed);
            tracing::debug!(failed, "order events not acknowledged; kept in the outbox");
        }
    }
    empty
}
