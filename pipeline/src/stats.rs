//! Counters the stages keep for metrics and the demo. Relaxed atomics:
//! they are statistics, never used to decide anything.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the batch-size histogram buckets (the last is +Inf).
pub const BATCH_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Upper bounds of the latency histogram buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 13] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// The stages, in ring order, as the latency metrics name them.
pub const STAGES: [&str; 5] = ["dedupe", "deduct", "journal", "publish", "reply"];

/// A fixed-bucket histogram (Prometheus style: cumulative when rendered).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One count per bucket of `bounds`, plus +Inf.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn record(&self, n: u64) {
        let i = self.bounds.partition_point(|b| *b < n);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(n, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// (upper bound, cumulative count) per bucket, `None` for +Inf; sum; count.
    pub fn snapshot(&self) -> (Vec<(Option<u64>, u64)>, u64, u64) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b.load(Relaxed);
            out.push((self.bounds.get(i).copied(), acc));
        }
        (out, self.sum.load(Relaxed), self.count.load(Relaxed))
    }
}

/// Batch sizes: events per ring batch, requests per Redis round trip.
#[derive(Debug)]
pub struct BatchHistogram(pub Histogram);

impl Default for BatchHistogram {
    fn default() -> Self {
        BatchHistogram(Histogram::new(&BATCH_BUCKETS))
    }
}

impl std::ops::Deref for BatchHistogram {
    type Target = Histogram;
    fn deref(&self) -> &Histogram {
        &self.0
    }
}

/// Latencies in microseconds.
#[derive(Debug)]
pub struct LatencyHistogram(pub Histogram);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram(Histogram::new(&LATENCY_BUCKETS_US))
    }
}

impl LatencyHistogram {
    pub fn record_duration(&self, d: Duration) {
        self.0
            .record(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }
}

impl std::ops::Deref for LatencyHistogram {
    type Target = Histogram;
    fn deref(&self) -> &Histogram {
        &self.0
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    /// Events per ring batch, as the first stage takes them.
    pub ring_batch: BatchHistogram,
    /// Requests per stock-store round trip (the smart-batching factor).
    pub store_batch: BatchHistogram,
    pub batches: AtomicU64,
    pub batch_events: AtomicU64,
    pub batch_len_max: AtomicU64,
    pub store_calls: AtomicU64,
    pub store_requests: AtomicU64,
    pub store_errors: AtomicU64,
    pub journal_commits: AtomicU64,
    pub journal_commit_ns: AtomicU64,
    pub journal_errors: AtomicU64,
    pub published: AtomicU64,
    pub publish_dropped: AtomicU64,
    pub shed: AtomicU64,
    /// Time spent in stock-store calls (one pipelined round trip each).
    pub store_call_ns: AtomicU64,
    /// Per stage (see [`STAGES`]): time from a client's request entering
    /// the ring until that stage was done with it.
    pub stage_latency: [LatencyHistogram; STAGES.len()],
}

impl Stats {
    pub fn record_batch(&self, len: usize) {
        self.ring_batch.record(len as u64);
        self.batches.fetch_add(1, Relaxed);
        self.batch_events.fetch_add(len as u64, Relaxed);
        self.batch_len_max.fetch_max(len as u64, Relaxed);
    }
    pub fn record_store_call(&self, requests: usize, took: Duration) {
        self.store_call_ns
            .fetch_add(took.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
        self.store_batch.record(requests as u64);
        self.store_calls.fetch_add(1, Relaxed);
        self.store_requests.fetch_add(requests as u64, Relaxed);
    }
    pub fn record_store_error(&self) {
        self.store_errors.fetch_add(1, Relaxed);
    }
    pub fn record_commit(&self, took: Duration) {
        self.journal_commits.fetch_add(1, Relaxed);
        self.journal_commit_ns
            .fetch_add(took.as_nanos() as u64, Relaxed);
    }
    pub fn record_journal_error(&self) {
        self.journal_errors.fetch_add(1, Relaxed);
    }
    pub fn record_published(&self) {
        self.published.fetch_add(1, Relaxed);
    }
    pub fn record_publish_dropped(&self) {
        self.publish_dropped.fetch_add(1, Relaxed);
    }
    pub fn record_shed(&self) {
        self.shed.fetch_add(1, Relaxed);
    }
    /// Mean requests per stock-store call (the point of smart batching).
    pub fn requests_per_store_call(&self) -> f64 {
        let calls = self.store_calls.load(Relaxed);
        if calls == 0 {
            return 0.0;
        }
        self.store_requests.load(Relaxed) as f64 / calls as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_with_an_infinite_bucket() {
        let h = BatchHistogram::default();
        for n in [1, 3, 64, 65, 1000] {
            h.record(n);
        }
        let (buckets, sum, count) = h.snapshot();
        assert_eq!((sum, count), (1133, 5));
        assert_eq!(buckets[0], (Some(1), 1));
        assert_eq!(buckets[2], (Some(4), 2));
        assert_eq!(buckets[6], (Some(64), 3));
        assert_eq!(buckets[7], (Some(128), 4));
        assert_eq!(buckets.last(), Some(&(None, 5)));
    }

    #[test]
    fn latencies_land_in_microsecond_buckets() {
        let h = LatencyHistogram::default();
        h.record_duration(Duration::from_micros(50));
        h.record_duration(Duration::from_micros(51));
        h.record_duration(Duration::from_millis(3));
        h.record_duration(Duration::from_secs(5));
        let (buckets, sum, count) = h.snapshot();
        assert_eq!(count, 4);
        assert_eq!(sum, 50 + 51 + 3_000 + 5_000_000);
        assert_eq!(buckets[0], (Some(50), 1));
        assert_eq!(buckets[1], (Some(100), 2));
        assert_eq!(buckets[5], (Some(2_500), 2));
        assert_eq!(buckets[6], (Some(5_000), 3));
        assert_eq!(buckets[12], (Some(1_000_000), 3));
        assert_eq!(buckets.last(), Some(&(None, 4)));
    }
}
