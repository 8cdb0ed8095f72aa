//! Liveness, readiness, metrics and the API description.

use std::sync::atomic::Ordering;

use hyper::StatusCode;
use seckill_pipeline::health::State;

use crate::app::App;
use crate::http::codec::{json, text, Resp};

/// Alive: the process answers.
pub fn healthz() -> Resp {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

pub fn readyz(app: &App) -> Resp {
    let accepting = app.accepting.load(Ordering::Relaxed);
    let redis = app.shared.redis.state();
    let kafka = app.kafka.state();
    let journal = app.shared.journal.state();
    // Ready means: purchases are decided now, not parked as pending nor
    // refused for a journal that cannot write (a full disk).
    let ready = accepting && redis == State::Up && journal == State::Up;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        code,
        &serde_json::json!({"ready": ready, "accepting": accepting,
            "redis": redis.as_str(), "kafka": kafka.as_str(),
            "journal": journal.as_str(),
            "journal_held_wins": app.shared.rescued.held(),
            "journal_last_error": app.shared.journal.last_error(),
            "pending_backlog": app.shared.backlog.total(),
            "redis_last_error": app.shared.redis.last_error()}),
    )
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
