//! What one tick reads from the counters, and what it makes of two
//! readings: answers by name, their differences, latency percentiles.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use seckill_pipeline::Status;

use super::quantile::{quantile, since};
use super::view::Latency;
use crate::app::{App, PurchaseCounts};

/// The counters one tick reads.
#[derive(Debug, Clone, Default)]
pub(super) struct Reading {
    pub(super) purchases: PurchaseCounts,
    pub(super) batches: u64,
    pub(super) batch_events: u64,
    pub(super) store_calls: u64,
    pub(super) store_requests: u64,
    pub(super) shed: u64,
    pub(super) acked: u64,
}

impl Reading {
    pub(super) fn take(app: &App) -> Reading {
        let s = &app.shared.stats;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Reading {
            purchases: app.purchase_stats.read(),
            batches: r(&s.batches),
            batch_events: r(&s.batch_events),
            store_calls: r(&s.store_calls),
            store_requests: r(&s.store_requests),
            shed: r(&s.shed),
            acked: r(&app.sink_stats.acked),
        }
    }
}

/// Answers by name: every status that was answered, and the errors.
pub(super) fn answers(c: &PurchaseCounts) -> BTreeMap<String, u64> {
    let mut m: BTreeMap<String, u64> = Status::ALL
        .iter()
        .zip(c.by_status)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s.as_str().to_string(), n))
        .collect();
    for (k, v) in [
        ("rate_limited", c.rate_limited),
        ("client_error", c.client_errors),
        ("server_error", c.server_errors),
    ] {
        if v > 0 {
            m.insert(k.to_string(), v);
        }
    }
    m
}

/// `now - before`, by name.
pub(super) fn difference(now: &PurchaseCounts, before: &PurchaseCounts) -> BTreeMap<String, u64> {
    let mut d = answers(now);
    for (k, v) in answers(before) {
        if let Some(n) = d.get_mut(&k) {
            *n = n.saturating_sub(v);
        }
    }
    d.retain(|_, v| *v > 0);
    d
}

/// The latency percentiles (ms) of the purchases between two readings.
pub(super) fn latency(now: &PurchaseCounts, before: &PurchaseCounts) -> Latency {
    let d = since(&now.latency, &before.latency);
    let us_to_ms = |v: f64| (v / 10.0).round() / 100.0;
    Latency {
        p50: quantile(&d, 0.50).map(us_to_ms),
        p99: quantile(&d, 0.99).map(us_to_ms),
        samples: d.last().map_or(0, |&(_, n)| n),
    }
}
