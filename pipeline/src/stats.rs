//! Counters the stages keep for metrics and the demo. Relaxed atomics:
//! they are statistics, never used to decide anything.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the batch-size histogram buckets (the last is +Inf).
pub const BATCH_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// A fixed-bucket histogram of batch sizes (Prometheus style: cumulative
/// when rendered).
#[derive(Debug, Default)]
pub struct BatchHistogram {
    /// One count per bucket of `BATCH_BUCKETS`, plus +Inf.
    buckets: [AtomicU64; BATCH_BUCKETS.len() + 1],
    sum: AtomicU64,
    count: AtomicU64,
}

impl BatchHistogram {
    pub fn record(&self, n: u64) {
        let i = BATCH_BUCKETS
            .iter()
            .position(|b| n <= *b)
            .unwrap_or(BATCH_BUCKETS.len());
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
            out.push((BATCH_BUCKETS.get(i).copied(), acc));
        }
        (out, self.sum.load(Relaxed), self.count.load(Relaxed))
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
}
