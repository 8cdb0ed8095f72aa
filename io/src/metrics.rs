//! `/metrics`: the Prometheus text exposition of the daemon's counters,
//! histograms and dependency states. Every family has its `# HELP` and
//! `# TYPE`, counters end in `_total`, and no counter shares its family
//! name with a histogram (OpenMetrics reads `x_total` as family `x`); a
//! test runs `promtool check metrics` on a live scrape.
//!
//! The hot path only bumps atomics (`pipeline::stats`); they are read here,
//! at scrape time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use seckill_pipeline::health::State;
use seckill_pipeline::Status;

use crate::app::App;

/// What a family is, for `# TYPE`.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
fn family(out: &mut String, name: &str, kind: Kind, help: &str) {
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One family with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: Kind, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The samples of one histogram series: cumulative buckets, sum, count.
/// `labels` is `""` or `key="value"`; bucket bounds and the sum are divided
/// by `scale` (1e6 turns recorded µs into seconds).
fn series(
    out: &mut String,
    name: &str,
    labels: &str,
    (buckets, sum, count): (Vec<(Option<u64>, u64)>, u64, u64),
    scale: f64,
) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, n) in buckets {
        let le = le.map_or_else(|| "+Inf".to_string(), |b| (b as f64 / scale).to_string());
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let braced = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braced} {}", sum as f64 / scale);
    let _ = writeln!(out, "{name}_count{braced} {count}");
}

/// Prometheus text exposition of the counters.
pub fn render(app: &App) -> String {
    let mut out = String::with_capacity(8192);
    let s = &app.shared.stats;
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    use Kind::{Counter, Gauge, Histogram};

    family(
        &mut out,
        "seckill_build_info",
        Gauge,
        "The running build (always 1).",
    );
    let _ = writeln!(
        out,
        "seckill_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(
        &mut out,
        "seckill_requests",
        Gauge,
        "Requests known to the status board, by their current state.",
    );
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
    for (name, kind, help, v) in [
        (
            "seckill_ring_batches_total",
            Counter,
            "Ring batches the dedupe stage took.",
            r(&s.batches),
        ),
        (
            "seckill_ring_batch_len_max",
            Gauge,
            "Largest ring batch seen.",
            r(&s.batch_len_max),
        ),
        (
            "seckill_redis_calls_total",
            Counter,
            "Stock-script round trips to Redis.",
            r(&s.store_calls),
        ),
        (
            "seckill_redis_requests_total",
            Counter,
            "Requests decided by those round trips.",
            r(&s.store_requests),
        ),
        (
            "seckill_redis_errors_total",
            Counter,
            "Stock-script calls that failed or timed out.",
            r(&s.store_errors),
        ),
        (
            "seckill_wal_commits_total",
            Counter,
            "WAL group commits.",
            r(&s.journal_commits),
        ),
        (
            "seckill_wal_errors_total",
            Counter,
            "WAL commits that failed (their batch answered 503).",
            r(&s.journal_errors),
        ),
        (
            "seckill_kafka_enqueued_total",
            Counter,
            "Orders handed to the Kafka producer.",
            r(&s.published),
        ),
        (
            "seckill_kafka_acked_total",
            Counter,
            "Orders Kafka acknowledged.",
            r(&app.sink_stats.acked),
        ),
        (
            "seckill_kafka_failed_total",
            Counter,
            "Order deliveries that failed (kept and sent again).",
            r(&app.sink_stats.failed),
        ),
        (
            "seckill_kafka_dropped_total",
            Counter,
            "Failed orders past the retry bound, left to the WAL.",
            r(&app.sink_stats.dropped),
        ),
        (
            "seckill_ring_shed_total",
            Counter,
            "Requests refused with 503 because the ring was full.",
            r(&s.shed),
        ),
        (
            "seckill_connections_open",
            Gauge,
            "Open client connections.",
            r(&app.conn_stats.open),
        ),
        (
            "seckill_connections_refused_total",
            Counter,
            "Connections refused past connections_max.",
            r(&app.conn_stats.refused),
        ),
        (
            "seckill_backlog_pending",
            Gauge,
            "Pending intents waiting for Redis.",
            app.shared.backlog.total(),
        ),
        (
            "seckill_outstanding_lsns",
            Gauge,
            "Journal positions not finished (pending, or not yet on Kafka).",
            app.shared.outstanding.len() as u64,
        ),
        (
            "seckill_checkpoint_safe_lsn",
            Gauge,
            "The LSN the checkpoint may move to.",
            app.shared.outstanding.safe_lsn(),
        ),
        (
            "seckill_redis_admin_connections_opened_total",
            Counter,
            "Connections the admin, order and status calls opened to Redis.",
            r(&app.redis.pool_stats().opened),
        ),
        (
            "seckill_redis_admin_connections_reused_total",
            Counter,
            "Admin, order and status calls served by a kept connection.",
            r(&app.redis.pool_stats().reused),
        ),
        (
            "seckill_status_board_requests",
            Gauge,
            "Requests the status board remembers (bounded by status_board_len_max).",
            app.board.len() as u64,
        ),
        (
            "seckill_status_board_evicted_total",
            Counter,
            "Requests the status board let go of (ended sales, its bound).",
            app.board.evicted(),
        ),
        (
            "seckill_status_board_winners",
            Gauge,
            "Users known to have won, per item (the dedupe stage's hint).",
            app.board.winners_len() as u64,
        ),
        (
            "seckill_catalog_sales",
            Gauge,
            "Sales in memory (ended ones leave after ended_sale_retention_ms).",
            app.catalog.sale_ids().len() as u64,
        ),
        (
            "seckill_order_index_entries",
            Gauge,
            "Order ids whose item is remembered from lookups.",
            app.order_index.len() as u64,
        ),
        (
            "seckill_wal_held_wins",
            Gauge,
            "Wins of failed journal writes held in memory until the journal writes again.",
            app.shared.rescued.held(),
        ),
        (
            "seckill_wal_rescued_wins_total",
            Counter,
            "Wins written late, after their batch's journal write failed.",
            app.shared.rescued.rescued(),
        ),
        (
            "seckill_wal_overflowed_wins_total",
            Counter,
            "Wins past the held bound, left in Redis only (reconcile).",
            app.shared.rescued.overflowed(),
        ),
    ] {
        single(&mut out, name, kind, help, v);
    }
    for (name, help, h) in [
        (
            "seckill_ring_batch_events",
            "Requests per ring batch (its _sum: every request the ring took).",
            &s.ring_batch,
        ),
        (
            "seckill_redis_batch_requests",
            "Requests per stock-script round trip.",
            &s.store_batch,
        ),
    ] {
        family(&mut out, name, Histogram, help);
        series(&mut out, name, "", h.snapshot(), 1.0);
    }
    let name = "seckill_stage_latency_seconds";
    family(
        &mut out,
        name,
        Histogram,
        "Time from entering the ring to leaving each stage.",
    );
    for (stage, h) in seckill_pipeline::stats::STAGES.iter().zip(&s.stage_latency) {
        // Recorded in µs, exposed in seconds.
        series(
            &mut out,
            name,
            &format!("stage=\"{stage}\""),
            h.snapshot(),
            1e6,
        );
    }
    single(
        &mut out,
        "seckill_wal_commit_seconds_total",
        Counter,
        "Time spent in WAL commits.",
        r(&s.journal_commit_ns) as f64 / 1e9,
    );
    single(
        &mut out,
        "seckill_redis_call_seconds_total",
        Counter,
        "Time spent in stock-script round trips.",
        r(&s.store_call_ns) as f64 / 1e9,
    );
    family(
        &mut out,
        "seckill_dependency_state",
        Gauge,
        "1 for the state each dependency is in.",
    );
    for h in [&app.shared.redis, &app.kafka, &app.shared.journal] {
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
    }
    family(
        &mut out,
        "seckill_dependency_transitions_total",
        Counter,
        "State changes of each dependency.",
    );
    for h in [&app.shared.redis, &app.kafka, &app.shared.journal] {
        let _ = writeln!(
            out,
            "seckill_dependency_transitions_total{{dependency=\"{}\"}} {}",
            h.name(),
            h.transitions()
        );
    }
    let o = &app.order_stats;
    for (name, help, v) in [
        (
            "seckill_orders_paid_total",
            "Orders paid on this daemon.",
            &o.paid,
        ),
        (
            "seckill_orders_cancelled_total",
            "Orders cancelled on this daemon.",
            &o.cancelled,
        ),
        (
            "seckill_orders_expired_units_total",
            "Units released by the sweeper.",
            &o.expired_units,
        ),
        (
            "seckill_order_events_published_total",
            "Order events published from the outbox.",
            &o.events_published,
        ),
        (
            "seckill_order_events_failed_total",
            "Order events Kafka did not acknowledge (kept).",
            &o.events_failed,
        ),
        (
            "seckill_items_reopened_total",
            "Sold-out flags cleared by released stock.",
            &o.reopened,
        ),
    ] {
        single(&mut out, name, Counter, help, r(v));
    }
    let (ips, users) = app.limits.tracked();
    family(
        &mut out,
        "seckill_rate_limit_keys",
        Gauge,
        "Addresses and users with a rate-limit bucket.",
    );
    let _ = writeln!(out, "seckill_rate_limit_keys{{limit=\"ip\"}} {ips}");
    let _ = writeln!(out, "seckill_rate_limit_keys{{limit=\"user\"}} {users}");
    family(
        &mut out,
        "seckill_rate_limited_total",
        Counter,
        "Requests refused by a rate limit.",
    );
    for (limit, v) in app.limits.refusals() {
        let _ = writeln!(out, "seckill_rate_limited_total{{limit=\"{limit}\"}} {v}");
    }
    out
}
