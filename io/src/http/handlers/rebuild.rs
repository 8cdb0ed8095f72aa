//! `POST /admin/v1/sales/{sale}/rebuild`: puts back a sale Redis lost,
//! from the record of its wins — the orders topic, and this daemon's
//! journal for the wins Kafka may not have acknowledged yet (see
//! docs/operations.md "When Redis lost the sale").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use seckill_pipeline::health::State;
use seckill_pipeline::Item;

use super::admin::shard_stocks;
use crate::app::{blocking, App};
use crate::http::codec::{check_id, json, Resp, ID_LEN_MAX};
use crate::http::error::{ApiError, ErrorBody, ErrorCode};
use crate::http::extract::authorize;
use crate::kafka::{read_sale_history, OrderMessage, SaleHistory, SCHEMA_VERSION};
use crate::redis::{ItemLoad, RestoredWin};

/// How long reading the topics may take.
const HISTORY_READ_MAX: Duration = Duration::from_secs(30);

#[utoipa::path(post, path = "/admin/v1/sales/{sale_id}/rebuild", tag = "admin",
    params(("sale_id" = String, Path)),
    responses((status = 200, description = "the items Redis lost are back: each one's wins and stock as rebuilt; the items left as they were, and why"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rebuild_sale(
    app: &Arc<App>,
    sale: &str,
    req: &Request<Incoming>,
) -> Result<Resp, ApiError> {
    authorize(app, req)?;
    check_id("sale", sale, ID_LEN_MAX)?;
    let items = app
        .catalog
        .sale_items(sale)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownSale, format!("no sale {sale}")))?;
    // Never over live state: only the items Redis lost (every shard's
    // stock hash gone) are rebuilt; a live item, or a sharded one that
    // lost only some shards, is left as it is and named.
    let shards = shard_stocks(app, sale, &items).await?;
    let mut lost = Vec::new();
    let mut left = Vec::new();
    for (item, shards) in items.iter().zip(&shards) {
        let present = shards.iter().filter(|s| s.is_some()).count();
        match present {
            0 => lost.push(Arc::clone(item)),
            n if n == shards.len() => {
                left.push(serde_json::json!({"item_id": item.item_id, "reason": "live"}))
            }
            _ => left.push(serde_json::json!({"item_id": item.item_id, "reason": "partly_lost"})),
        }
    }
    if lost.is_empty() {
        let partial: Vec<&str> = items
            .iter()
            .zip(&shards)
            .filter(|(_, s)| s.iter().any(Option::is_none))
            .map(|(i, _)| i.item_id.as_str())
            .collect();
        let why = if partial.is_empty() {
            format!("Redis holds the stock of every item of {sale}")
        } else {
            format!(
                "Redis holds some shards of {}: delete the item's remaining shard keys to rebuild it whole (docs/operations.md)",
                partial.join(", ")
            )
        };
        return Err(ApiError::new(ErrorCode::SaleNotLost, why));
    }
    if app.kafka.state() != State::Up
        || app
            .sink_stats
            .queued
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    {
        return Err(ApiError::new(
            ErrorCode::RecordIncomplete,
            "this daemon has wins Kafka has not acknowledged yet",
        )
        .retry_after(5));
    }
    let cfg = &app.cfg;
    let (brokers, props, topics, sale_id) = (
        cfg.kafka_brokers.clone(),
        cfg.kafka_properties.0.clone(),
        cfg.topics(),
        sale.to_string(),
    );
    let mut history =
        blocking(move || read_sale_history(&brokers, &props, &topics, &sale_id, HISTORY_READ_MAX))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| {
                ApiError::new(ErrorCode::RecordIncomplete, format!("reading Kafka: {e}"))
                    .retry_after(5)
            })?;
    add_journal_wins(app, sale, &mut history).await?;
    let written = restore(app, sale, &lost, &items, history, &mut left).await?;
    tracing::warn!(
        sale,
        rebuilt = lost.len(),
        left = left.len(),
        "sale rebuilt in Redis from its record on Kafka"
    );
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"sale_id": sale, "items": written, "left": left}),
    ))
}

/// Adds the wins of this daemon's journal since its checkpoint — those
/// Kafka may not have acknowledged yet — to what Kafka holds.
async fn add_journal_wins(
    app: &Arc<App>,
    sale: &str,
    history: &mut SaleHistory,
) -> Result<(), ApiError> {
    let (dir, sale_id) = (app.cfg.wal_dir.clone(), sale.to_string());
    let wins = blocking(move || -> Result<Vec<_>, seckill_replay::ReplayError> {
        let from = seckill_wal::read_checkpoint(&dir)?.unwrap_or(1);
        let work = seckill_replay::scan(&dir, from)?;
        Ok(work
            .republish
            .into_iter()
            .filter(|(_, d)| d.sale_id == sale_id)
            .collect())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::internal(format!("reading the journal: {e}")))?;
    let mut known: std::collections::HashSet<String> =
        history.wins.iter().map(|w| w.order_id.clone()).collect();
    for (lsn, d) in wins {
        let Some(oid) = d.order_id else { continue };
        let order_id = oid.to_string();
        if known.insert(order_id.clone()) {
            history.wins.push(OrderMessage {
                v: SCHEMA_VERSION,
                order_id,
                request_id: d.request_id,
                sale_id: d.sale_id,
                item_id: d.item_id,
                user_id: d.user_id,
                price_cents: d.price_cents,
                quantity: d.quantity,
                created_ms: d.received_ms,
                lsn,
            });
        }
    }
    Ok(())
}

/// Writes the lost items and their wins back; they are served again at
/// once. An item another call wrote first (a second rebuild, a load) is
/// added to `left`; none written at all is a 409.
async fn restore(
    app: &Arc<App>,
    sale: &str,
    items: &[Arc<Item>],
    all: &[Arc<Item>],
    history: SaleHistory,
    left: &mut Vec<serde_json::Value>,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let pay_timeout_ms = app.cfg.pay_timeout_ms;
    // An unpaid order gets its whole payment window again from now: the
    // record has when the request arrived, not when it was decided (a
    // re-driven win is decided later), and the loss cut into the window.
    let deadline_ms = app.clock.now_ms().saturating_add(pay_timeout_ms);
    let (redis, sale_id, owned) = (app.redis.clone(), sale.to_string(), items.to_vec());
    let mut round: Vec<String> = all.iter().map(|i| i.item_id.clone()).collect();
    round.sort();
    let (stocks, counts) = blocking(move || {
        let loads: Vec<ItemLoad<'_>> = owned.iter().map(|i| ItemLoad::from(&**i)).collect();
        let mut wins: HashMap<&str, Vec<RestoredWin<'_>>> = HashMap::new();
        for w in &history.wins {
            let closed = history
                .closed
                .get(&w.order_id)
                .map(|c| (c.state.as_str(), c.at_ms));
            wins.entry(w.item_id.as_str())
                .or_default()
                .push(RestoredWin {
                    order_id: &w.order_id,
                    request_id: &w.request_id,
                    user_id: &w.user_id,
                    quantity: w.quantity,
                    deadline_ms: deadline_ms.max(w.created_ms.saturating_add(pay_timeout_ms)),
                    closed,
                });
        }
        let counts: Vec<usize> = owned
            .iter()
            .map(|i| wins.get(i.item_id.as_str()).map_or(0, Vec::len))
            .collect();
        let (start, end) = owned.first().map_or((0, 0), |i| (i.start_ms, i.end_ms));
        let round: Vec<&str> = round.iter().map(String::as_str).collect();
        redis
            .restore_sale(&sale_id, start, end, &loads, &round, &wins)
            .map(|s| (s, counts))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::redis_down)?;
    let mut out = Vec::with_capacity(items.len());
    for ((item, stock), wins) in items.iter().zip(&stocks).zip(counts) {
        let Some(stock) = stock else {
            left.push(serde_json::json!({"item_id": item.item_id, "reason": "rebuilt_elsewhere"}));
            continue;
        };
        item.set_data_lost(false);
        item.set_remaining(stock.available);
        out.push(serde_json::json!({"item_id": item.item_id, "wins": wins, "stock": stock}));
    }
    if out.is_empty() {
        return Err(ApiError::new(
            ErrorCode::SaleNotLost,
            format!("another rebuild or a load wrote every lost item of {sale} first: nothing written here"),
        ));
    }
    Ok(out)
}
