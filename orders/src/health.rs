//! Where the service stands, for `/readyz`, `/healthz` and the metrics:
//! written by the consumer's thread and the background tasks, read by the
//! HTTP side. Plain atomics; nothing here waits.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Default)]
pub struct Health {
    /// The schema is migrated: the service has reached its database once.
    pub migrated: AtomicBool,
    pub db_up: AtomicBool,
    pub redis_up: AtomicBool,
    pub kafka_up: AtomicBool,
    /// Fetching is paused while a batch waits for a dependency.
    pub paused: AtomicBool,
    /// Partitions this consumer holds.
    pub assigned: AtomicUsize,
    /// When the last batch was committed (epoch ms; 0: none yet).
    pub last_commit_ms: AtomicU64,
    /// SIGTERM: finishing the batch in hand, then leaving the group.
    pub stopping: AtomicBool,
    last_error: Mutex<String>,
}

impl Health {
    pub fn new() -> Health {
        Health {
            db_up: AtomicBool::new(false),
            redis_up: AtomicBool::new(true),
            kafka_up: AtomicBool::new(true),
            ..Health::default()
        }
    }

    pub fn set_error(&self, e: &str) {
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        last.clear();
        last.push_str(e);
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Ready for traffic: the database answers and nothing waits on it.
    pub fn ready(&self) -> bool {
        self.migrated.load(Relaxed)
            && self.db_up.load(Relaxed)
            && !self.paused.load(Relaxed)
            && !self.stopping.load(Relaxed)
    }

    pub fn view(&self) -> serde_json::Value {
        let up = |b: &AtomicBool| if b.load(Relaxed) { "up" } else { "down" };
        serde_json::json!({
            "ready": self.ready(),
            "database": up(&self.db_up),
            "schema_migrated": self.migrated.load(Relaxed),
            "redis": up(&self.redis_up),
            "kafka": up(&self.kafka_up),
            "paused": self.paused.load(Relaxed),
            "partitions_assigned": self.assigned.load(Relaxed),
            "last_commit_ms": self.last_commit_ms.load(Relaxed),
            "stopping": self.stopping.load(Relaxed),
            "last_error": self.last_error(),
        })
    }
}
