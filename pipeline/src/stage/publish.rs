use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::event::{Event, Origin};
use crate::outcome::{OrderId, Status};
use crate::port::{Order, OrderSink};
use crate::stage::Stage;
use crate::stats::Stats;

/// An order waiting for room in the sink's queue.
#[derive(Debug, Clone)]
struct Parked {
    order_id: OrderId,
    request_id: String,
    sale_id: String,
    item_id: String,
    user_id: String,
    price_cents: u64,
    quantity: u32,
    created_ms: u64,
    lsn: u64,
}

impl Parked {
    fn as_order(&self) -> Order<'_> {
        Order {
            order_id: self.order_id,
            request_id: &self.request_id,
            sale_id: &self.sale_id,
            item_id: &self.item_id,
            user_id: &self.user_id,
            price_cents: self.price_cents,
            quantity: self.quantity,
            created_ms: self.created_ms,
            lsn: self.lsn,
        }
    }
}

/// Hands journaled wins to the order sink without ever blocking the ring:
/// when the sink's queue is full, the order is parked (bounded) and retried
/// when the stage is idle. An order that cannot even be parked is still in
/// the journal; replay publishes it.
pub struct Publish {
    sink: Box<dyn OrderSink>,
    stats: Arc<Stats>,
    parked: VecDeque<Parked>,
    parked_max: usize,
    flush_timeout: Duration,
}

impl Publish {
    pub fn new(
        sink: Box<dyn OrderSink>,
        stats: Arc<Stats>,
        parked_max: usize,
        flush_timeout: Duration,
    ) -> Publish {
        Publish {
            sink,
            stats,
            parked: VecDeque::new(),
            parked_max,
            flush_timeout,
        }
    }

    fn retry_parked(&mut self) {
        while let Some(p) = self.parked.front() {
            match self.sink.publish(&p.as_order()) {
                Ok(()) => {
                    self.parked.pop_front();
                }
                Err(_) => break,
            }
        }
    }

    fn park(&mut self, order: &Order<'_>) {
        if self.parked.len() >= self.parked_max {
            self.stats.record_publish_dropped();
            tracing::warn!(order_id = %order.order_id, lsn = order.lsn,
                "publish backlog full; order left to replay from the journal");
            return;
        }
        self.parked.push_back(Parked {
            order_id: order.order_id,
            request_id: order.request_id.to_string(),
            sale_id: order.sale_id.to_string(),
            item_id: order.item_id.to_string(),
            user_id: order.user_id.to_string(),
            price_cents: order.price_cents,
            quantity: order.quantity,
            created_ms: order.created_ms,
            lsn: order.lsn,
        });
    }

    /// Orders waiting for room in the sink.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }
}

impl Stage for Publish {
    fn name(&self) -> &'static str {
        "publish"
    }

    fn on_batch(&mut self, events: &[&Event]) {
        self.retry_parked();
        for e in events {
            // A client's or re-driven win is published once journaled; a
            // republished win may have no journal position at all (a win
            // known only to Redis after a salvage).
            let journaled = e.lsn() != 0 || matches!(e.origin, Origin::Republish { .. });
            if e.status() != Status::Success || e.is_replayed() || !journaled {
                continue;
            }
            let Some(order_id) = e.order_id() else {
                continue;
            };
            let order = Order {
                order_id,
                request_id: &e.request_id,
                sale_id: &e.sale_id,
                item_id: &e.item_id,
                user_id: &e.user_id,
                price_cents: e.price_cents,
                quantity: e.quantity,
                created_ms: e.received_ms,
                lsn: e.lsn(),
            };
            // Keep order within the stage: nothing overtakes a parked order.
            if !self.parked.is_empty() {
                self.park(&order);
                continue;
            }
            match self.sink.publish(&order) {
                Ok(()) => self.stats.record_published(),
                Err(err) => {
                    tracing::debug!(error = %err, "order sink refused; parking order");
                    self.park(&order);
                }
            }
        }
    }

    /// Only the wins it handed to the sink.
    fn measures(&self, e: &Event) -> bool {
        e.entered.is_some() && e.status() == Status::Success && !e.is_replayed()
    }

    fn on_idle(&mut self) {
        if !self.parked.is_empty() {
            self.retry_parked();
        }
        self.sink.retry_failed();
    }

    fn on_shutdown(&mut self) {
        self.retry_parked();
        if let Err(err) = self.sink.flush(self.flush_timeout) {
            tracing::warn!(error = %err, parked = self.parked.len(),
                "order sink not flushed at shutdown; replay will publish the rest");
        }
    }
}
