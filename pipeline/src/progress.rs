//! Bookkeeping for degradation and the checkpoint.
//!
//! * [`Backlog`]: pending intents per item (accepted while Redis was down,
//!   not yet decided). While an item has a backlog, new requests for it
//!   are decided `pending` too, so they wait behind the older ones
//!   (fairness: arrival order). Replay re-drives the backlog in LSN order.
//! * [`Outstanding`]: journal positions not yet finished — pending
//!   decisions not yet resolved, wins not yet acknowledged by Kafka. The
//!   checkpoint may move up to the lowest of them, never past.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::outcome::OwnedDecision;

/// Item key (`sale \x1f item`) → pending intents.
#[derive(Debug, Default)]
pub struct Backlog {
    items: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    /// Re-driven intents the deduct stage has finished with (resolved or
    /// found pending again), for the replay engine to know a round is done.
    redriven: AtomicU64,
}

pub fn item_key(buf: &mut String, sale_id: &str, item_id: &str) {
    buf.clear();
    buf.push_str(sale_id);
    buf.push(crate::status::ID_SEP);
    buf.push_str(item_id);
}

impl Backlog {
    pub fn add(&self, key: &str) {
        let mut m = self.items.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(key.to_string()).or_insert(0) += 1;
        self.total.fetch_add(1, Ordering::Release);
    }

    /// One intent of `key` was decided for good.
    pub fn resolve(&self, key: &str) {
        let mut m = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                m.remove(key);
            }
            self.total.fetch_sub(1, Ordering::Release);
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.total.load(Ordering::Acquire) > 0
            && self
                .items
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(key)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    pub fn note_redriven(&self) {
        self.redriven.fetch_add(1, Ordering::Release);
    }

    pub fn redriven(&self) -> u64 {
        self.redriven.load(Ordering::Acquire)
    }
}

/// LSNs not yet finished (with when each became outstanding), and the next
/// LSN the journal will write.
#[derive(Debug, Default)]
pub struct Outstanding {
    lsns: Mutex<BTreeMap<u64, Instant>>,
    next_lsn: AtomicU64,
}

impl Outstanding {
    pub fn add(&self, lsn: u64) {
        self.lsns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(lsn)
            .or_insert_with(Instant::now);
    }

    pub fn finish(&self, lsn: u64) {
        self.lsns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&lsn);
    }

    pub fn contains(&self, lsn: u64) -> bool {
        self.lsns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&lsn)
    }

    pub fn set_next_lsn(&self, next: u64) {
        self.next_lsn.fetch_max(next, Ordering::AcqRel);
    }

    pub fn len(&self) -> usize {
        self.lsns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long the oldest unfinished position (a pending intent, or a win
    /// Kafka has not acknowledged) has waited; zero when none does.
    pub fn oldest_age(&self) -> Duration {
        self.lsns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            // LSNs grow with time; a held win written late is younger than
            // its LSN says, never older.
            .first_key_value()
            .map_or(Duration::ZERO, |(_, at)| at.elapsed())
    }

    /// Everything below this LSN is decided and published: the checkpoint.
    pub fn safe_lsn(&self) -> u64 {
        let next = self.next_lsn.load(Ordering::Acquire).max(1);
        self.lsns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_key_value()
            .map(|(&lsn, _)| lsn)
            .map_or(next, |first| first.min(next))
    }
}

/// Wins whose batch the journal could not write (a full disk, a failed
/// flush): Redis decided them and the client was answered 503, so they are
/// on no disk. The journal stage holds them and writes them as soon as it
/// can; written, they wait here until the daemon hands them to the publish
/// stage. A win is never left in Redis alone while the process lives.
#[derive(Debug, Default)]
pub struct Rescued {
    written: Mutex<Vec<(u64, OwnedDecision)>>,
    /// Wins the journal stage holds, not yet written.
    held: AtomicU64,
    /// Wins written late (after their batch failed), since the start.
    rescued: AtomicU64,
    /// Wins past the journal stage's bound: in Redis only, found by a
    /// reconcile (`seckill-replay`'s salvage path) — never expected.
    overflowed: AtomicU64,
}

impl Rescued {
    /// Wins held in memory, waiting for the journal.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn set_held(&self, n: u64) {
        self.held.store(n, Ordering::Relaxed);
    }

    pub fn rescued(&self) -> u64 {
        self.rescued.load(Ordering::Relaxed)
    }

    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    pub fn note_overflow(&self) -> u64 {
        self.overflowed.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A held win, now journaled at `lsn`: to be published.
    pub fn push(&self, lsn: u64, win: OwnedDecision) {
        self.rescued.fetch_add(1, Ordering::Relaxed);
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((lsn, win));
    }

    /// The journaled wins waiting to be published, in LSN order.
    pub fn take(&self) -> Vec<(u64, OwnedDecision)> {
        std::mem::take(&mut *self.written.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back what could not be handed over (the ring was full).
    pub fn put_back(&self, mut rest: Vec<(u64, OwnedDecision)>) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        rest.append(&mut w);
        *w = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_never_passes_unfinished_work() {
        let o = Outstanding::default();
        o.set_next_lsn(10);
        assert_eq!(o.safe_lsn(), 10);
        o.add(4);
        o.add(7);
        assert_eq!(o.safe_lsn(), 4);
        o.finish(4);
        assert_eq!(o.safe_lsn(), 7);
        o.finish(7);
        assert_eq!(o.safe_lsn(), 10);
    }

    #[test]
    fn the_backlog_counts_per_item() {
        let b = Backlog::default();
        b.add("s\x1fa");
        b.add("s\x1fa");
        b.add("s\x1fb");
        assert!(b.has("s\x1fa"));
        b.resolve("s\x1fa");
        b.resolve("s\x1fa");
        assert!(!b.has("s\x1fa"));
        assert_eq!(b.total(), 1);
        b.resolve("s\x1fzzz");
        assert_eq!(b.total(), 1, "an unknown key changes nothing");
    }
}
