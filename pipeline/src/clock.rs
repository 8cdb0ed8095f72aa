//! Where seckill reads the time. What the sale decides by the clock — a
//! sale window, a payment deadline, a token's expiry, the checkpoint
//! interval — asks a [`Clock`], so a test can run it on a [`ManualClock`]
//! and move time forward instead of sleeping. Latency measurements and
//! retry pacing keep `Instant`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A source of time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall-clock milliseconds since the Unix epoch (sale windows,
    /// deadlines, expiries: compared with times other processes wrote).
    fn now_ms(&self) -> u64;
    /// A monotonic reading, for intervals measured inside this process.
    fn monotonic(&self) -> Duration;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The system's clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    started: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            started: Instant::now(),
        }
    }

    /// The system clock as a shared handle.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock::new())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn monotonic(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A clock that moves only when told: both readings advance together.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
    /// Monotonic milliseconds since the clock was made.
    elapsed_ms: AtomicU64,
}

impl ManualClock {
    /// A clock showing `now_ms` (wall time) that has not moved yet.
    pub fn at(now_ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now_ms: AtomicU64::new(now_ms),
            elapsed_ms: AtomicU64::new(0),
        })
    }

    /// Moves both readings forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
        self.elapsed_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Duration {
        Duration::from_millis(self.elapsed_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::at(1_000);
        assert_eq!(c.now_ms(), 1_000);
        assert_eq!(c.monotonic(), Duration::ZERO);
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now_ms(), 3_000);
        assert_eq!(c.monotonic(), Duration::from_secs(2));
    }

    #[test]
    fn the_system_clock_is_near_the_epoch_time() {
        let c = SystemClock::new();
        let diff = c.now_ms().abs_diff(now_ms());
        assert!(diff < 60_000);
        let a = c.monotonic();
        assert!(c.monotonic() >= a);
    }
}
