//! After the win, in the background of every daemon:
//!
//! - the sweeper: every `sweep_interval_ms`, one pipelined round trip runs
//!   `sweep.lua` for every item, releasing unpaid orders past their
//!   deadline back to `available` (atomically; with several daemons each
//!   order is expired once);
//! - the event publisher: order events (`paid`, `cancelled`, `expired`)
//!   are written by the scripts into a per-item outbox in the same atomic
//!   step as the state change, and published from there to
//!   `seckill.order-events`; an entry leaves the outbox only once Kafka
//!   acknowledged it (at least once, keyed by order id: consumers drop
//!   repeats by order id and event);
//! - the re-open listener: the scripts `PUBLISH` on `seckill:released`
//!   when units go back on sale; every daemon clears its local sold-out
//!   flag for the item at once (the catalog refresh re-reads `available`
//!   every second as well, should a message be missed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use tokio::sync::{watch, Notify};

use crate::daemon::{blocking, App};
use crate::kafka;
use crate::redis::{OutboxEntry, RELEASED_CHANNEL};

/// Most events taken from one item's outbox per tick.
const OUTBOX_PER_ITEM: isize = 256;
/// Most orders one sweep call expires per item (the rest next tick).
const SWEEP_PER_ITEM: u32 = 512;

#[derive(Debug, Default)]
pub struct OrderStats {
    pub paid: AtomicU64,
    pub cancelled: AtomicU64,
    pub expired_units: AtomicU64,
    pub events_published: AtomicU64,
    pub events_failed: AtomicU64,
    pub reopened: AtomicU64,
}

/// Wakes the publisher early (after a pay or cancel).
#[derive(Debug, Default)]
pub struct Wake(Notify);

impl Wake {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Delivery reports of one publishing round: slot `i` is set when Kafka
/// answered for entry `i`.
type Acks = Arc<std::sync::Mutex<Vec<Option<bool>>>>;

struct EventContext;

impl ClientContext for EventContext {}

impl ProducerContext for EventContext {
    type DeliveryOpaque = Box<(usize, Acks)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let (i, acks) = *opaque;
        let mut acks = acks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = acks.get_mut(i) {
            *slot = Some(result.is_ok());
        }
    }
}

/// A plain producer, polled only while a round is being published: no
/// background thread waking up while the daemon is idle.
type EventProducer = BaseProducer<EventContext>;

/// How long one publishing round waits for Kafka; what is not acknowledged
/// stays in the outbox for the next round.
const ROUND_WAIT_MS: u64 = 5_000;

fn event_producer(brokers: &str) -> Option<Arc<EventProducer>> {
    let mut c = kafka::base_config(brokers);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", ROUND_WAIT_MS.to_string());
    match c.create_with_context(EventContext) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            tracing::error!(error = %e, "cannot create the order-event producer");
            None
        }
    }
}

/// Sends every entry and waits (polling) until each is acknowledged or
/// failed, or the round's time is up. Returns the acknowledged entries.
fn publish_round(producer: &EventProducer, entries: &[OutboxEntry]) -> Vec<bool> {
    let acks: Acks = Arc::new(std::sync::Mutex::new(vec![None; entries.len()]));
    let deadline = std::time::Instant::now() + Duration::from_millis(ROUND_WAIT_MS + 1_000);
    for (i, e) in entries.iter().enumerate() {
        let mut record =
            BaseRecord::with_opaque_to(kafka::ORDER_EVENTS_TOPIC, Box::new((i, Arc::clone(&acks))))
                .key(e.order_id.as_str())
                .payload(e.json.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((err, back)) => {
                    let full = matches!(
                        err.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    );
                    if !full || std::time::Instant::now() >= deadline {
                        if let Some(slot) =
                            acks.lock().unwrap_or_else(|e| e.into_inner()).get_mut(i)
                        {
                            *slot = Some(false);
                        }
                        break;
                    }
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
    }
    loop {
        producer.poll(Duration::from_millis(20));
        let done = acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .all(Option::is_some);
        if done || std::time::Instant::now() >= deadline {
            break;
        }
    }
    let acks = acks.lock().unwrap_or_else(|e| e.into_inner());
    acks.iter().map(|a| *a == Some(true)).collect()
}

/// The items the sweeper and the publisher visit: every item of every
/// sale in the catalog on the first pass (a restart may find events left
/// behind), then only items that had wins — no others can have orders —
/// so an idle daemon with a large catalog stays idle.
fn items(app: &App, all: bool) -> Vec<(String, String)> {
    app.catalog
        .sales()
        .into_iter()
        .flat_map(|(sale, items)| {
            items
                .into_iter()
                .filter(move |i| all || i.touched())
                .map(move |i| (sale.clone(), i.item_id.clone()))
        })
        .collect()
}

/// Runs the sweeper and the event publisher until `stop` turns true. They
/// are separate tasks: a Kafka outage stalls the publisher (deliveries wait
/// for their timeout) and must never hold up the release of expired stock.
pub async fn run(app: Arc<App>, stop: watch::Receiver<bool>) {
    let sweeper = tokio::spawn(sweep_loop(Arc::clone(&app), stop.clone()));
    publish_loop(app, stop).await;
    let _ = sweeper.await;
}

async fn sweep_loop(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(app.cfg.sweep_interval_ms.max(1));
    let mut first = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = crate::http::until_true(&mut stop) => return,
        }
        let items = items(&app, std::mem::take(&mut first));
        if items.is_empty() {
            continue;
        }
        let redis = app.redis.clone();
        let swept = {
            let items = items.clone();
            blocking(move || redis.sweep(&items, seckill_pipeline::now_ms(), SWEEP_PER_ITEM)).await
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

async fn publish_loop(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let producer = event_producer(&app.cfg.kafka_brokers);
    let every = Duration::from_millis(app.cfg.sweep_interval_ms.max(1));
    let mut first = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = app.order_wake.0.notified() => {}
            _ = crate::http::until_true(&mut stop) => return,
        }
        let items = Arc::new(items(&app, std::mem::take(&mut first)));
        if items.is_empty() {
            continue;
        }
        if let Some(p) = &producer {
            tokio::select! {
                _ = publish_outbox(&app, p, &items) => {}
                _ = crate::http::until_true(&mut stop) => return,
            }
        }
    }
}

async fn publish_outbox(
    app: &App,
    producer: &Arc<EventProducer>,
    items: &Arc<Vec<(String, String)>>,
) {
    let redis = app.redis.clone();
    let entries = {
        let items = Arc::clone(items);
        match blocking(move || redis.outbox(&items, OUTBOX_PER_ITEM)).await {
            Ok(Ok(e)) => e,
            _ => return,
        }
    };
    if entries.is_empty() {
        return;
    }
    let p = Arc::clone(producer);
    let redis = app.redis.clone();
    let done = blocking(move || {
        let acked = publish_round(&p, &entries);
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
}

/// The re-open listener: a thread on a subscribed connection, reconnecting
/// while Redis is away, until `stop` turns true.
pub fn spawn_reopen_listener(app: Arc<App>, stop: watch::Receiver<bool>) {
    let spawned = std::thread::Builder::new()
        .name("seckill-reopen".into())
        .spawn(move || {
            while !*stop.borrow() {
                if let Err(e) = listen(&app, &stop) {
                    tracing::debug!(error = %e, "re-open listener: Redis away, retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the re-open listener; the catalog refresh re-opens items instead");
    }
}

fn listen(app: &App, stop: &watch::Receiver<bool>) -> Result<(), redis::RedisError> {
    let mut conn = app.redis.subscriber()?;
    let mut sub = conn.as_pubsub();
    sub.subscribe(RELEASED_CHANNEL)?;
    // A bounded wait, so the thread sees `stop`.
    sub.set_read_timeout(Some(Duration::from_millis(500)))?;
    while !*stop.borrow() {
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
