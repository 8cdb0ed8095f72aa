//! The load generator's live line: requests answered, answers by outcome,
//! the current rate and the p99 so far — drawn by indicatif on stderr while
//! the burst runs (and not at all when stderr is not a terminal).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::check::Answer;

/// Counters the burst's tasks bump, one answer at a time.
#[derive(Debug)]
pub struct Progress {
    answered: AtomicU64,
    success: AtomicU64,
    sold_out: AtomicU64,
    pending: AtomicU64,
    /// 4xx other than a sale's own answers (limits, tokens, …).
    refused: AtomicU64,
    /// 5xx and no answer.
    errors: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            answered: AtomicU64::new(0),
            success: AtomicU64::new(0),
            sold_out: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            // Constant, valid bounds: 1 µs to 60 s at 2 significant figures.
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 2)
                    .expect("constant histogram bounds are valid"),
            ),
        }
    }
}

impl Progress {
    pub fn record(&self, a: &Answer) {
        self.answered.fetch_add(1, Relaxed);
        let counter = match (a.http, a.status.as_str()) {
            (0, _) | (500..=599, _) => &self.errors,
            (_, "success") => &self.success,
            (_, "sold_out") => &self.sold_out,
            (_, "pending") => &self.pending,
            (400..=499, _) => &self.refused,
            // duplicate, limit_exceeded, not_started, ended: decided.
            _ => &self.sold_out,
        };
        counter.fetch_add(1, Relaxed);
        let mut h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let _ = h.record(a.latency_us.clamp(1, 60_000_000));
    }

    pub fn answered(&self) -> u64 {
        self.answered.load(Relaxed)
    }

    /// The line: counts, `rate` (answers/s since the last line), p99.
    pub fn line(&self, rate: f64) -> String {
        let p99 = self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .value_at_quantile(0.99) as f64
            / 1000.0;
        format!(
            "{} answered · {} success · {} sold out or other · {} pending · {} limited · {} errors · {:.0} req/s · p99 {:.1} ms",
            self.answered(),
            self.success.load(Relaxed),
            self.sold_out.load(Relaxed),
            self.pending.load(Relaxed),
            self.refused.load(Relaxed),
            self.errors.load(Relaxed),
            rate,
            p99
        )
    }
}

/// Draws `progress` twice a second until the returned guard is dropped.
pub fn show(progress: Arc<Progress>) -> Shown {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = Instant::now();
                let n = progress.answered();
                let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
                bar.set_message(progress.line((n - last.1) as f64 / secs));
                bar.tick();
                last = (now, n);
            }
        })
    };
    Shown { bar, ticker }
}

/// Stops the live line when dropped.
pub struct Shown {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(http: u16, status: &str, latency_us: u64) -> Answer {
        Answer {
            item_id: "i".into(),
            user_id: "u".into(),
            request_id: "r".into(),
            http,
            status: status.into(),
            order_id: None,
            latency_us,
            token: None,
        }
    }

    #[test]
    fn the_line_counts_each_outcome_and_the_tail() {
        let p = Progress::default();
        p.record(&answer(200, "success", 1_000));
        p.record(&answer(200, "sold_out", 2_000));
        p.record(&answer(202, "pending", 3_000));
        p.record(&answer(429, "rate_limited", 4_000));
        p.record(&answer(503, "unavailable", 90_000));
        p.record(&answer(0, "no_answer", 5_000));
        let line = p.line(1234.0);
        assert!(
            line.starts_with("6 answered · 1 success · 1 sold out or other"),
            "{line}"
        );
        assert!(
            line.contains("1 pending · 1 limited · 2 errors · 1234 req/s"),
            "{line}"
        );
        assert!(
            line.contains("p99 90.0 ms") || line.contains("p99 90."),
            "{line}"
        );
    }
}
