//! The service's Prometheus families (rust-prometheus), registered once
//! beside the process collector. Counters end in `_total`; each histogram
//! has its unit in its name.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Messages behind the group's committed offsets, over the assigned
    /// partitions (librdkafka's statistics, every 5 s).
    pub lag: IntGauge,
    pub batch_len: Histogram,
    pub commit_seconds: Histogram,
    /// From the win's decision (in the daemon) to its row committed.
    pub decision_to_row_seconds: Histogram,
    /// Messages by what became of them.
    pub messages: IntCounterVec,
    /// Tries of a batch again, by the dependency that refused it.
    pub retries: IntCounterVec,
    pub dlq_parked: IntGauge,
    pub waiting_events: IntGauge,
    pub event_conflicts: IntCounter,
    /// 1 for each item whose stock hash failed its check (its orders are
    /// kept in the dead-letter queue).
    pub stock_anomaly: IntGaugeVec,
    pub rows: IntGaugeVec,
    pub dependency_up: IntGaugeVec,
    pub paused: IntGauge,
}

fn seconds_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0, 120.0, 300.0,
    ]
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = registry.register(Box::new(process)) {
                tracing::warn!(error = %e, "process metrics unavailable");
            }
        }
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("static metric");
        let m = Metrics {
            lag: gauge(
                "seckill_orders_consumer_lag",
                "Messages behind the committed offsets on the assigned partitions.",
            ),
            batch_len: Histogram::with_opts(
                HistogramOpts::new("seckill_orders_batch_len", "Messages per poll batch.").buckets(
                    vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
                ),
            )
            .expect("static metric"),
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "seckill_orders_commit_seconds",
                    "Time of one batch's database transaction.",
                )
                .buckets(seconds_buckets()),
            )
            .expect("static metric"),
            decision_to_row_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "seckill_orders_decision_to_row_seconds",
                    "From a win's decision in the daemon to its row committed.",
                )
                .buckets(seconds_buckets()),
            )
            .expect("static metric"),
            messages: IntCounterVec::new(
                Opts::new(
                    "seckill_orders_messages_total",
                    "Messages by what became of them.",
                ),
                &["outcome"],
            )
            .expect("static metric"),
            retries: IntCounterVec::new(
                Opts::new(
                    "seckill_orders_batch_retries_total",
                    "Batches tried again, by the dependency that refused them.",
                ),
                &["dependency"],
            )
            .expect("static metric"),
            dlq_parked: gauge(
                "seckill_orders_dlq_parked",
                "Entries of the dead-letter queue waiting for a redrive.",
            ),
            waiting_events: gauge(
                "seckill_orders_waiting_events",
                "Order events waiting for their order's row.",
            ),
            event_conflicts: IntCounter::new(
                "seckill_orders_event_conflicts_total",
                "Events that found their order closed in another state.",
            )
            .expect("static metric"),
            stock_anomaly: IntGaugeVec::new(
                Opts::new(
                    "seckill_orders_stock_anomaly",
                    "1 while an item's stock hash fails its check; its orders wait in the DLQ.",
                ),
                &["sale", "item"],
            )
            .expect("static metric"),
            rows: IntGaugeVec::new(
                Opts::new("seckill_orders_rows", "Rows of seckill_orders by state."),
                &["state"],
            )
            .expect("static metric"),
            dependency_up: IntGaugeVec::new(
                Opts::new(
                    "seckill_orders_dependency_up",
                    "1 when the dependency answered the last call.",
                ),
                &["dependency"],
            )
            .expect("static metric"),
            paused: gauge(
                "seckill_orders_paused",
                "1 while fetching is paused for a batch that waits on a dependency.",
            ),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.lag.clone()),
            Box::new(m.batch_len.clone()),
            Box::new(m.commit_seconds.clone()),
            Box::new(m.decision_to_row_seconds.clone()),
            Box::new(m.messages.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.dlq_parked.clone()),
            Box::new(m.waiting_events.clone()),
            Box::new(m.event_conflicts.clone()),
            Box::new(m.stock_anomaly.clone()),
            Box::new(m.rows.clone()),
            Box::new(m.dependency_up.clone()),
            Box::new(m.paused.clone()),
        ];
        for c in collectors {
            if let Err(e) = m.registry.register(c) {
                tracing::error!(error = %e, "cannot register a metric");
            }
        }
        m
    }

    pub fn count(&self, outcome: &str, n: usize) {
        self.messages.with_label_values(&[outcome]).inc_by(n as u64);
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
