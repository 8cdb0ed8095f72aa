//! The names of the service's topics.

/// The four topics the service reads, by the names the operator gave them
/// (`kafka_*_topic`; by default `seckill.orders`, `seckill.order-events`,
/// and the orders topic's name + `.retry` / `.dlq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Every win (the daemon's `kafka_orders_topic`).
    pub orders: String,
    /// Paid, cancelled and expired orders (the daemon's `kafka_events_topic`).
    pub events: String,
    /// Messages that failed, waiting for their next attempt (headers say when).
    pub retry: String,
    /// Messages past their last attempt, or kept for a human.
    pub dlq: String,
}

impl Topics {
    /// Every topic the service reads.
    pub fn all(&self) -> [&str; 4] {
        [&self.orders, &self.events, &self.retry, &self.dlq]
    }
}
