//! How an idle stage waits: spin briefly, yield, then park with a growing
//! timeout. Upstream wakes a parked stage when it hands over a batch, so
//! the long park costs no latency; the timeout only bounds a lost wake-up.
//! (disruptor's own `WaitStrategy` is stateless and producers never wake a
//! sleeping consumer, so this lives here.)

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::{self, Thread};
use std::time::Duration;

const SPIN_ROUNDS: u32 = 64;
const YIELD_ROUNDS: u32 = 16;
const PARK_MIN: Duration = Duration::from_micros(50);
const PARK_MAX: Duration = Duration::from_millis(20);

/// The part of a stage thread other threads can wake.
#[derive(Debug, Default)]
pub struct Sleeper {
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Sleeper {
    /// Called once by the stage thread itself.
    pub fn register_current(&self) {
        let _ = self.thread.set(thread::current());
    }

    /// Wakes the stage if it is parked. Cheap when it is not: one fence
    /// and one load.
    pub fn wake(&self) {
        // Pairs with the fence in `Backoff::idle`: either the sleeper sees
        // our published event, or we see its `sleeping` flag.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// Per-thread backoff state.
#[derive(Debug, Default)]
pub struct Backoff {
    rounds: u32,
    park: Duration,
}

impl Backoff {
    pub fn reset(&mut self) {
        self.rounds = 0;
        self.park = PARK_MIN;
    }

    /// One idle round. `ready` re-checks for work after announcing sleep.
    pub fn idle(&mut self, me: &Sleeper, ready: impl Fn() -> bool) {
        self.rounds = self.rounds.saturating_add(1);
        if self.rounds <= SPIN_ROUNDS {
            std::hint::spin_loop();
            return;
        }
        if self.rounds <= SPIN_ROUNDS + YIELD_ROUNDS {
            thread::yield_now();
            return;
        }
        me.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !ready() {
            let park = self.park.clamp(PARK_MIN, PARK_MAX);
            thread::park_timeout(park);
            self.park = (park * 2).min(PARK_MAX);
        }
        me.sleeping.store(false, Ordering::Relaxed);
    }
}
