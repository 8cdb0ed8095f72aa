//! The thread that serves a producer's delivery reports.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

/// Serves the producer's delivery reports on a thread of its own.
///
/// It replaces rdkafka's `ThreadedProducer`, whose thread calls
/// `poll(100 ms)`: that loop runs until its deadline and librdkafka takes
/// the remaining wait in whole milliseconds, so it spins through the last
/// millisecond of every 100 — about 1 % of a core on an idle daemon. Here
/// the thread polls without waiting, then parks: briefly (1 ms, backing off
/// to 50 ms while nothing moves) while orders are in flight, up to
/// [`POLL_IDLE`] when none are; a send wakes it from the long park.
pub(super) struct Poller {
    handle: Option<JoinHandle<()>>,
    shared: Arc<PollerShared>,
}

#[derive(Default)]
struct PollerShared {
    stop: AtomicBool,
    /// Parked with nothing in flight (a send must wake it).
    idle: AtomicBool,
}

/// The longest park with nothing in flight (bounds a missed wake-up).
const POLL_IDLE: Duration = Duration::from_millis(250);
const POLL_BUSY_MIN: Duration = Duration::from_millis(1);
const POLL_BUSY_MAX: Duration = Duration::from_millis(50);
/// Events served per wake-up at most (a delivery report event carries a
/// whole produce response's messages).
const POLL_EVENTS_MAX: usize = 64;

impl Poller {
    pub(super) fn start<C: ProducerContext + 'static>(
        producer: Arc<BaseProducer<C>>,
    ) -> std::io::Result<Poller> {
        let shared = Arc::new(PollerShared::default());
        let s = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("seckill-kafka-poll".into())
            .spawn(move || {
                let mut busy_park = POLL_BUSY_MIN;
                let mut last_len = -1;
                loop {
                    for _ in 0..POLL_EVENTS_MAX {
                        producer.poll(Duration::ZERO);
                        if producer.in_flight_count() == 0 {
                            break;
                        }
                    }
                    if s.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let len = producer.in_flight_count();
                    if len > 0 {
                        busy_park = if len == last_len {
                            (busy_park * 2).min(POLL_BUSY_MAX)
                        } else {
                            POLL_BUSY_MIN
                        };
                        last_len = len;
                        std::thread::park_timeout(busy_park);
                        continue;
                    }
                    last_len = 0;
                    s.idle.store(true, Ordering::Relaxed);
                    // Pairs with the fence in `nudge`: either the sender
                    // sees `idle`, or we see its message in the queue.
                    fence(Ordering::SeqCst);
                    if producer.in_flight_count() == 0 && !s.stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(POLL_IDLE);
                    }
                    s.idle.store(false, Ordering::Relaxed);
                }
            })?;
        Ok(Poller {
            handle: Some(handle),
            shared,
        })
    }

    /// Called after a send: wakes the thread if it parked with nothing in
    /// flight. Cheap otherwise (a fence and a load).
    pub(super) fn nudge(&self) {
        fence(Ordering::SeqCst);
        if self.shared.idle.load(Ordering::Relaxed) {
            if let Some(h) = &self.handle {
                h.thread().unpark();
            }
        }
    }

    pub(super) fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.halt();
    }
}
