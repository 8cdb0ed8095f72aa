//! A request's state, for clients polling after a `pending` answer or
//! checking a win: from the status board, and for a won request the
//! order's later state (paid, cancelled, expired) from Redis. A request the
//! board does not know (it let go of it under its bound, or another daemon
//! decided it) is looked up in the outcomes the stock script stored: one
//! pipelined round trip over the catalog's items, under the rate limits,
//! a miss remembered for a second.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::StatusCode;
use seckill_pipeline::Status;
use serde::Serialize;
use utoipa::ToSchema;

use super::orders::order_status;
use crate::app::{blocking, App};
use crate::http::codec::{self, check_id, json, Resp};
use crate::http::error::{ApiError, ErrorBody, ErrorCode};
use crate::http::extract::admit;
use crate::peers::{PeerAnswer, PeerRequest};

/// A request's current state.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    pub request_id: String,
    /// `pending`, `success`, `order_created`, `paid`, `cancelled`,
    /// `expired`, `failed` (released by the order service's backlog
    /// release) or the rejection it got.
    pub status: String,
    pub order_id: Option<String>,
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
}

#[utoipa::path(get, path = "/api/v1/requests/{request_id}", tag = "public",
    params(("request_id" = String, Path)),
    responses((status = 200, body = RequestView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn request_status(app: &Arc<App>, ip: IpAddr, id: &str) -> Result<Resp, ApiError> {
    check_id("request_id", id, codec::CLIENT_ID_LEN_MAX)?;
    let known = match app.board.get(id) {
        Some(s) => Known {
            status: s.status,
            order_id: s.order_id.map(|o| o.to_string()),
            sale_id: s.sale_id().to_string(),
            item_id: s.item_id().to_string(),
            user_id: s.user_id().to_string(),
        },
        None => elsewhere(app, ip, id).await?,
    };
    let Known {
        mut status,
        order_id,
        sale_id,
        item_id,
        user_id,
    } = known;
    // A won request's order may since be paid, cancelled or expired (on
    // any daemon): only winners pay for this lookup.
    if let (Status::Success | Status::OrderCreated, Some(oid)) = (status, &order_id) {
        if let Some(later) = order_status(app, &sale_id, &item_id, oid).await {
            status = later;
        }
    }
    Ok(json(
        StatusCode::OK,
        &RequestView {
            request_id: id.to_string(),
            status: status.as_str().to_string(),
            order_id,
            sale_id,
            item_id,
            user_id,
        },
    ))
}

/// What is known of a request, from the board or from Redis.
struct Known {
    status: Status,
    order_id: Option<String>,
    sale_id: String,
    item_id: String,
    user_id: String,
}

fn unknown_request(id: &str) -> ApiError {
    ApiError::new(ErrorCode::UnknownRequest, format!("no request {id}"))
}

/// A request the board does not know: the outcome the stock script stored
/// in Redis, else what a peer's board holds (a request another daemon
/// answered `pending`). Found nowhere: 404, remembered for a second — but
/// only when every peer answered; a silent peer may hold it (503).
async fn elsewhere(app: &Arc<App>, ip: IpAddr, id: &str) -> Result<Known, ApiError> {
    let now = app.clock.now_ms();
    if app.request_misses.recent(id, now) {
        return Err(unknown_request(id));
    }
    admit(app, ip)?;
    let in_redis = stored(app, id).await;
    if let Ok(Some(known)) = in_redis {
        return Ok(known);
    }
    match app.peers.lookup(id).await {
        // A state this build does not know (a peer of another version)
        // is no answer, never a 404.
        PeerAnswer::Found(r) => from_peer(r).ok_or_else(|| {
            ApiError::new(
                ErrorCode::PeerUnavailable,
                "a peer holds this request in a state this daemon cannot read",
            )
        }),
        PeerAnswer::Nobody => {
            in_redis?;
            app.request_misses.remember(id, now);
            Err(unknown_request(id))
        }
        PeerAnswer::Unreachable(n) => Err(ApiError::new(
            ErrorCode::PeerUnavailable,
            format!("{n} other daemon(s) did not answer; one may hold this request"),
        )),
    }
}

fn from_peer(r: PeerRequest) -> Option<Known> {
    let status = *Status::ALL.iter().find(|s| s.as_str() == r.status)?;
    Some(Known {
        status,
        order_id: r.order_id,
        sale_id: r.sale_id,
        item_id: r.item_id,
        user_id: r.user_id,
    })
}

/// `GET /internal/v1/requests/{id}` (admin socket, admin token): what this
/// daemon's board holds of a request, for a peer polled about it. Never
/// asks Redis or further peers.
pub fn peer_lookup(app: &App, id: &str) -> Result<Resp, ApiError> {
    check_id("request_id", id, codec::CLIENT_ID_LEN_MAX)?;
    let s = app.board.get(id).ok_or_else(|| unknown_request(id))?;
    Ok(json(
        StatusCode::OK,
        &PeerRequest {
            request_id: id.to_string(),
            status: s.status.as_str().to_string(),
            order_id: s.order_id.map(|o| o.to_string()),
            sale_id: s.sale_id().to_string(),
            item_id: s.item_id().to_string(),
            user_id: s.user_id().to_string(),
        },
    ))
}

/// The stock script's stored outcome of a request the board does not know
/// (`None`: Redis holds none).
async fn stored(app: &Arc<App>, id: &str) -> Result<Option<Known>, ApiError> {
    let items = app.items_with_orders(true);
    let r = app.redis.clone();
    let rid = id.to_string();
    let found = blocking(move || -> Result<_, redis::RedisError> {
        let Some(((sale, item), outcome)) = r.stored_outcome(&rid, &items)? else {
            return Ok(None);
        };
        let (sale, item) = (sale.clone(), item.clone());
        let Some(oid) = outcome.strip_prefix("ok:") else {
            return Ok(Some((sale, item, outcome, None)));
        };
        let rec = r.order(&sale, &item, oid)?;
        Ok(Some((sale, item, outcome.clone(), rec)))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::redis_down)?;
    let Some((sale_id, item_id, outcome, order)) = found else {
        return Ok(None);
    };
    let status = match outcome.as_str() {
        "sold_out" => Status::SoldOut,
        "duplicate" => Status::Duplicate,
        "limit_exceeded" => Status::LimitExceeded,
        "unknown_item" => Status::Rejected,
        // A sharded item's borrow not ended yet: a journal re-drives it.
        _ if outcome.starts_with("borrow:") => Status::Pending,
        // The board lets go only of wins Kafka acknowledged; a win another
        // daemon decided reads the same once its order is in Redis.
        _ if outcome.starts_with("ok:") && order.is_some() => Status::OrderCreated,
        _ if outcome.starts_with("ok:") => Status::Success,
        _ => return Ok(None),
    };
    Ok(Some(Known {
        status,
        order_id: outcome.strip_prefix("ok:").map(str::to_string),
        sale_id,
        item_id,
        user_id: order.map(|o| o.user_id).unwrap_or_default(),
    }))
}
