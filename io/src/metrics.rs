//! `/metrics`: the Prometheus text exposition of the daemon's counters,
//! histograms and dependency states.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use seckill_pipeline::health::State;
use seckill_pipeline::Status;

use crate::app::App;

/// Prometheus text exposition of the counters.
pub fn render(app: &App) -> String {
    let mut out = String::with_capacity(2048);
    let s = &app.shared.stats;
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let _ = writeln!(out, "# TYPE seckill_requests gauge");
    for st in Status::ALL {
        if st == Status::Undecided {
            continue;
        }
        let _ = writeln!(
            out,
            "seckill_requests{{status=\"{}\"}} {}",
            st.as_str(),
            app.board.count(st)
        );
    }
    for (name, v) in [
        ("seckill_ring_batches_total", r(&s.batches)),
        ("seckill_ring_batch_events_total", r(&s.batch_events)),
        ("seckill_ring_batch_len_max", r(&s.batch_len_max)),
        ("seckill_redis_calls_total", r(&s.store_calls)),
        ("seckill_redis_requests_total", r(&s.store_requests)),
        ("seckill_redis_errors_total", r(&s.store_errors)),
        ("seckill_wal_commits_total", r(&s.journal_commits)),
        ("seckill_wal_errors_total", r(&s.journal_errors)),
        ("seckill_kafka_enqueued_total", r(&s.published)),
        ("seckill_kafka_acked_total", r(&app.sink_stats.acked)),
        ("seckill_kafka_failed_total", r(&app.sink_stats.failed)),
        ("seckill_kafka_dropped_total", r(&app.sink_stats.dropped)),
        ("seckill_ring_shed_total", r(&s.shed)),
        ("seckill_backlog_pending", app.shared.backlog.total()),
        (
            "seckill_outstanding_lsns",
            app.shared.outstanding.len() as u64,
        ),
        (
            "seckill_checkpoint_safe_lsn",
            app.shared.outstanding.safe_lsn(),
        ),
    ] {
        let _ = writeln!(out, "{name} {v}");
    }
    for (name, h) in [
        ("seckill_ring_batch_events", &s.ring_batch),
        ("seckill_redis_batch_requests", &s.store_batch),
    ] {
        let (buckets, sum, count) = h.snapshot();
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (le, n) in buckets {
            let le = le.map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
    let name = "seckill_stage_latency_seconds";
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (stage, h) in seckill_pipeline::stats::STAGES.iter().zip(&s.stage_latency) {
        let (buckets, sum, count) = h.snapshot();
        for (le, n) in buckets {
            let le = le.map_or_else(|| "+Inf".to_string(), |us| (us as f64 / 1e6).to_string());
            let _ = writeln!(out, "{name}_bucket{{stage=\"{stage}\",le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_sum{{stage=\"{stage}\"}} {}", sum as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{stage=\"{stage}\"}} {count}");
    }
    let secs = r(&s.journal_commit_ns) as f64 / 1e9;
    let _ = writeln!(out, "seckill_wal_commit_seconds_total {secs}");
    let secs = r(&s.store_call_ns) as f64 / 1e9;
    let _ = writeln!(out, "seckill_redis_call_seconds_total {secs}");
    for h in [&app.shared.redis, &app.kafka] {
        let state = h.state();
        for st in [State::Up, State::Down, State::Draining] {
            let _ = writeln!(
                out,
                "seckill_dependency_state{{dependency=\"{}\",state=\"{}\"}} {}",
                h.name(),
                st.as_str(),
                u8::from(state == st)
            );
        }
        let _ = writeln!(
            out,
            "seckill_dependency_transitions_total{{dependency=\"{}\"}} {}",
            h.name(),
            h.transitions()
        );
    }
    let o = &app.order_stats;
    for (name, v) in [
        ("seckill_orders_paid_total", &o.paid),
        ("seckill_orders_cancelled_total", &o.cancelled),
        ("seckill_orders_expired_units_total", &o.expired_units),
        ("seckill_order_events_published_total", &o.events_published),
        ("seckill_order_events_failed_total", &o.events_failed),
        ("seckill_items_reopened_total", &o.reopened),
    ] {
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", r(v));
    }
    let (ips, users) = app.limits.tracked();
    let _ = writeln!(out, "seckill_rate_limit_keys{{limit=\"ip\"}} {ips}");
    let _ = writeln!(out, "seckill_rate_limit_keys{{limit=\"user\"}} {users}");
    for (limit, v) in app.limits.refusals() {
        let _ = writeln!(out, "seckill_rate_limited_total{{limit=\"{limit}\"}} {v}");
    }
    out
}
