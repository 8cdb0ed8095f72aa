//! `/metrics`: the Prometheus text exposition, through the `prometheus`
//! crate (rust-prometheus): its process collector (CPU seconds, resident
//! and virtual memory, open and maximum file descriptors, threads, start
//! time) and this module's collector, which reads the hot path's atomics
//! (`pipeline::stats`, the status board, the dependencies' health) at
//! scrape time — the hot path only ever bumps an atomic. Every family has
//! its `# HELP` and `# TYPE`, counters end in `_total`, no counter shares
//! its family name with a histogram (OpenMetrics reads `x_total` as family
//! `x`), and a test runs `promtool check metrics` on a live scrape.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{Registry, TextEncoder};
use seckill_pipeline::health::State;
use seckill_pipeline::Status;

use crate::app::App;

mod families;

use families::{labels, Families, Kind};

/// The registry of the process-wide collectors (the process collector on
/// Linux); the daemon's own families are added at scrape time.
pub fn registry() -> Registry {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let process = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = r.register(Box::new(process)) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
    }
    r
}

/// The text exposition: the process collector's families and the
/// daemon's, sorted by name.
pub fn render(app: &App) -> String {
    let mut families = app.metrics.gather();
    families.extend(collect(app).0);
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

/// The daemon's own families, read from its atomics.
fn collect(app: &App) -> Families {
    let mut f = Families::default();
    let s = &app.shared.stats;
    use Kind::{Counter, Gauge};

    f.labelled(
        "seckill_build_info",
        Gauge,
        "The running build (always 1).",
        vec![(labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0)],
    );
    f.labelled(
        "seckill_requests",
        Gauge,
        "Requests known to the status board, by their current state.",
        Status::ALL
            .into_iter()
            .filter(|st| *st != Status::Undecided)
            .map(|st| {
                (
                    labels(&[("status", st.as_str())]),
                    app.board.count(st) as f64,
                )
            })
            .collect(),
    );
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
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
        f.single(name, kind, help, v as f64);
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
        f.histogram(name, help, vec![(Vec::new(), h.snapshot())], 1.0);
    }
    f.histogram(
        "seckill_purchase_latency_seconds",
        "Time from the purchase route to its answer (every answer, the sold-out fast path included).",
        vec![(Vec::new(), app.purchase_stats.latency.snapshot())],
        1e6,
    );
    let answers = app.purchase_stats.read();
    f.labelled(
        "seckill_purchase_answers_total",
        Counter,
        "Purchase answers by what they said (decided statuses, rate_limited, client_error, server_error).",
        Status::ALL
            .iter()
            .zip(answers.by_status)
            .filter(|(st, _)| **st != Status::Undecided)
            .map(|(st, n)| (st.as_str(), n))
            .chain([
                ("rate_limited", answers.rate_limited),
                ("client_error", answers.client_errors),
                ("server_error", answers.server_errors),
            ])
            .map(|(a, n)| (labels(&[("answer", a)]), n as f64))
            .collect(),
    );
    f.single(
        "seckill_purchases_in_ring",
        Gauge,
        "Purchases waiting in the ring for their reply.",
        answers.in_ring as f64,
    );
    f.histogram(
        "seckill_stage_latency_seconds",
        "Time from entering the ring to leaving each stage.",
        seckill_pipeline::stats::STAGES
            .iter()
            .zip(&s.stage_latency)
            // Recorded in µs, exposed in seconds.
            .map(|(stage, h)| (labels(&[("stage", stage)]), h.snapshot()))
            .collect(),
        1e6,
    );
    f.single(
        "seckill_oldest_unfinished_seconds",
        Gauge,
        "Age of the oldest journal position not finished: a pending intent, or a win Kafka has not acknowledged.",
        app.shared.outstanding.oldest_age().as_secs_f64(),
    );
    if let Ok(fs) = rustix::fs::statvfs(&app.cfg.wal_dir) {
        f.single(
            "seckill_wal_disk_free_bytes",
            Gauge,
            "Bytes free for the WAL on its filesystem.",
            (fs.f_bavail.saturating_mul(fs.f_frsize)) as f64,
        );
        f.single(
            "seckill_wal_disk_size_bytes",
            Gauge,
            "Size of the WAL's filesystem.",
            (fs.f_blocks.saturating_mul(fs.f_frsize)) as f64,
        );
    }
    f.single(
        "seckill_wal_commit_seconds_total",
        Counter,
        "Time spent in WAL commits.",
        r(&s.journal_commit_ns) as f64 / 1e9,
    );
    f.single(
        "seckill_redis_call_seconds_total",
        Counter,
        "Time spent in stock-script round trips.",
        r(&s.store_call_ns) as f64 / 1e9,
    );
    let deps = [&app.shared.redis, &app.kafka, &app.shared.journal];
    f.labelled(
        "seckill_dependency_state",
        Gauge,
        "1 for the state each dependency is in.",
        deps.iter()
            .flat_map(|h| {
                let state = h.state();
                [State::Up, State::Down, State::Draining].map(|st| {
                    (
                        labels(&[("dependency", h.name()), ("state", st.as_str())]),
                        f64::from(u8::from(state == st)),
                    )
                })
            })
            .collect(),
    );
    f.labelled(
        "seckill_dependency_transitions_total",
        Counter,
        "State changes of each dependency.",
        deps.iter()
            .map(|h| (labels(&[("dependency", h.name())]), h.transitions() as f64))
            .collect(),
    );
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
        f.single(name, Counter, help, r(v) as f64);
    }
    let (ips, users) = app.limits.tracked();
    f.labelled(
        "seckill_rate_limit_keys",
        Gauge,
        "Addresses and users with a rate-limit bucket.",
        vec![
            (labels(&[("limit", "ip")]), ips as f64),
            (labels(&[("limit", "user")]), users as f64),
        ],
    );
    f.single(
        "seckill_items_data_lost",
        Gauge,
        "Loaded items on sale whose stock Redis no longer holds (lost: answered 503 until rebuilt).",
        app.catalog
            .sales()
            .iter()
            .flat_map(|(_, items)| items)
            .filter(|i| i.data_lost())
            .count() as f64,
    );
    f.single(
        "seckill_rate_limit_share",
        Gauge,
        "Daemons sharing the fleet-wide rate limits (each admits 1/n of them).",
        f64::from(app.limits.share()),
    );
    f.labelled(
        "seckill_rate_limited_total",
        Counter,
        "Requests refused by a rate limit.",
        app.limits
            .refusals()
            .into_iter()
            .map(|(limit, v)| (labels(&[("limit", limit)]), v as f64))
            .collect(),
    );
    f
}
