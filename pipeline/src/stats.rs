//! Counters the stages keep for metrics and the demo. Relaxed atomics:
//! they are statistics, never used to decide anything.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Stats {
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
}

impl Stats {
    pub fn record_batch(&self, len: usize) {
        self.batches.fetch_add(1, Relaxed);
        self.batch_events.fetch_add(len as u64, Relaxed);
        self.batch_len_max.fetch_max(len as u64, Relaxed);
    }
    pub fn record_store_call(&self, requests: usize) {
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
