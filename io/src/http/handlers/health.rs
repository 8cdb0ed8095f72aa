//! Liveness, readiness, metrics and the API description.

use std::sync::atomic::Ordering;

use hyper::StatusCode;
use seckill_pipeline::health::State;

use crate::app::App;
use crate::http::codec::{json, text, Resp};

/// How long a ring refusal keeps the daemon unready.
const RING_FULL_UNREADY_MS: u64 = 1_000;

/// Alive: the process answers (for a liveness probe: restart me if not).
pub fn livez() -> Resp {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// Whether this daemon can take purchases, and why not.
fn readiness(app: &App) -> (bool, Vec<&'static str>) {
    let mut why = Vec::new();
    if !app.accepting.load(Ordering::Relaxed) {
        why.push("shutting_down");
    }
    if app.draining.load(Ordering::Relaxed) {
        why.push("draining");
    }
    if app.shared.journal.state() != State::Up {
        why.push("journal_down");
    }
    let full = app.last_ring_full_ms.load(Ordering::Relaxed);
    if full != 0 && app.clock.now_ms().saturating_sub(full) < RING_FULL_UNREADY_MS {
        why.push("ring_full");
    }
    (why.is_empty(), why)
}

/// Every dependency's state, the backlog and the last errors; `ready` is
/// what `/readyz` answers.
fn state(app: &App) -> serde_json::Value {
    let (ready, why) = readiness(app);
    serde_json::json!({"status": "ok", "ready": ready, "not_ready": why,
        "accepting": app.accepting.load(Ordering::Relaxed),
        "draining": app.draining.load(Ordering::Relaxed),
        "redis": app.shared.redis.state().as_str(),
        "kafka": app.kafka.state().as_str(),
        "journal": app.shared.journal.state().as_str(),
        "journal_held_wins": app.shared.rescued.held(),
        "journal_last_error": app.shared.journal.last_error(),
        "pending_backlog": app.shared.backlog.total(),
        "redis_data_lost": data_lost(app),
        "redis_last_error": app.shared.redis.last_error()})
}

/// `sale/item` of every loaded item whose stock Redis lost.
fn data_lost(app: &App) -> Vec<String> {
    app.catalog
        .sales()
        .into_iter()
        .flat_map(|(_, items)| items)
        .filter(|i| i.data_lost())
        .map(|i| format!("{}/{}", i.sale_id, i.item_id))
        .collect()
}

/// The process answers (always 200), with every dependency's state.
pub fn healthz(app: &App) -> Resp {
    json(StatusCode::OK, &state(app))
}

/// Send me traffic: 200 unless this daemon cannot take purchases — the
/// journal cannot write (a full or broken disk), the ring refused one in
/// the last second, or it is shutting down (or draining before). Redis or
/// Kafka being down is not a reason: purchases are then answered
/// `pending` or published later, which is what the fleet is for.
pub fn readyz(app: &App) -> Resp {
    let body = state(app);
    let code = if body["ready"] == true {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(code, &body)
}

/// The Prometheus text exposition.
pub fn metrics(app: &App) -> Resp {
    text(
        StatusCode::OK,
        crate::metrics::render(app),
        "text/plain; version=0.0.4",
    )
}

/// The OpenAPI document.
pub fn openapi() -> Resp {
    text(
        StatusCode::OK,
        crate::http::openapi::json().to_string(),
        "application/json",
    )
}
