//! The purchase and its hidden URL (the token). Cheap rejects happen here,
//! before the ring: bad input, unknown item, sale window, a request id
//! already answered, a sold-out item. Everything else goes through the
//! ring and waits for the reply stage — which answers only after the
//! journal made it durable.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use seckill_pipeline::{Item, OrderId, Purchase, Reply, Status, Submitter};
use serde::Serialize;
use tokio::sync::oneshot;
use utoipa::ToSchema;

use crate::app::App;
use crate::http::codec::{self, json, Resp};
use crate::http::error::{ApiError, ErrorBody, ErrorCode};
use crate::http::extract::{
    blacklisted, check_purchase, item_request, parse_user, unknown_item, UserBody,
    USER_BODY_BYTES_MAX,
};
use crate::tasks::catalog::catch_up;

/// A purchase token: valid for this user, sale and item until `expires_ms`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub token: String,
    pub expires_ms: u64,
    /// Where to POST the purchase (with the token in the body).
    pub purchase_path: String,
}

/// The answer to a purchase.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurchaseAnswer<'a> {
    /// `success`, `pending`, `sold_out`, `duplicate`, `limit_exceeded`,
    /// `not_started`, `ended`, `unavailable`.
    pub status: &'static str,
    pub request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

/// The purchase answer: its status code (202 pending, 503 unavailable with
/// `Retry-After`, else 200) and JSON body; `seckill-naive` answers with it
/// too.
pub fn answer(request_id: &str, status: Status, order_id: Option<OrderId>) -> Resp {
    let code = match status {
        Status::Pending => StatusCode::ACCEPTED,
        Status::Unavailable | Status::Undecided => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    let mut r = json(
        code,
        &PurchaseAnswer {
            status: status.as_str(),
            request_id,
            order_id: order_id.map(|o| o.to_string()),
        },
    );
    if code == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    r
}

#[utoipa::path(post, path = "/api/v1/sales/{sale_id}/items/{item_id}/purchase", tag = "public",
    params(("sale_id" = String, Path), ("item_id" = String, Path)),
    request_body = codec::PurchaseBody,
    responses(
        (status = 200, description = "decided: success, sold_out, duplicate, limit_exceeded, not_started, ended", body = PurchaseAnswer),
        (status = 202, description = "pending: decided once Redis is back; poll the request", body = PurchaseAnswer),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 408, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
/// Buys one item (or `quantity` units) in a flash sale.
///
/// The answer is final once given: retry with the same `request_id` and
/// the same answer comes back. `pending` (202) means Redis is away: the
/// request is journaled and decided once it is back; poll
/// `/api/v1/requests/{request_id}`.
//
// Order of the checks: cheapest and least revealing first. Global and IP
// limits before the body is read; the token before anything about the
// sale is answered; the user's bucket only once the token proved the
// request is for that user.
pub async fn purchase(
    app: &Arc<App>,
    sub: &Mutex<Submitter>,
    ip: IpAddr,
    sale: &str,
    item_id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let body = item_request(app, ip, sale, item_id, req, app.cfg.body_bytes_max).await?;
    let p = codec::parse_purchase(&body)?;
    let item: Arc<Item> = find_item(app, sale, item_id).await?;
    let quantity = p.quantity.unwrap_or(1);
    // Every decided answer is counted (the dashboard's rates).
    let reply = |status: Status, order_id: Option<OrderId>| {
        app.purchase_stats.answered(status);
        answer(&p.request_id, status, order_id)
    };
    let now = app.clock.now_ms();
    check_purchase(app, sale, item_id, &p.user_id, p.token.as_deref(), now)?;
    // A request id decided already gets its answer again, even after the
    // sale ended.
    if let Some((status, order_id)) = app.board.final_answer(&p.request_id) {
        return Ok(reply(status, order_id));
    }
    // Cheap rejects: answered without touching the ring.
    if now < item.start_ms {
        return Ok(reply(Status::NotStarted, None));
    }
    if now >= item.end_ms {
        return Ok(reply(Status::Ended, None));
    }
    if quantity > item.per_user_limit {
        return Ok(reply(Status::LimitExceeded, None));
    }
    if item.data_lost() {
        return Err(ApiError::new(
            ErrorCode::SaleDataLost,
            "Redis lost this item's stock; retry later",
        )
        .retry_after(5));
    }
    if item.answers_sold_out() {
        return Ok(reply(Status::SoldOut, None));
    }
    if !app.accepting.load(Ordering::Relaxed) {
        return Err(ApiError::new(
            ErrorCode::ShuttingDown,
            "the daemon is shutting down",
        ));
    }
    let (tx, rx) = oneshot::channel::<Reply>();
    let submitted = {
        let mut sub = sub.lock().unwrap_or_else(|e| e.into_inner());
        let purchase = Purchase {
            sale_id: sale,
            item_id,
            user_id: &p.user_id,
            request_id: &p.request_id,
            quantity,
            received_ms: now,
        };
        let mut tx = Some(tx);
        sub.try_submit(|e| e.fill(&purchase, Arc::clone(&item), tx.take()))
    };
    if submitted.is_err() {
        app.last_ring_full_ms.store(now, Ordering::Relaxed);
        return Err(ApiError::new(
            ErrorCode::RingFull,
            "too many requests in flight; retry shortly",
        ));
    }
    let wait = Duration::from_millis(app.cfg.reply_timeout_ms.max(1));
    let in_ring = app.purchase_stats.in_ring();
    let decided = tokio::time::timeout(wait, rx).await;
    drop(in_ring);
    match decided {
        Ok(Ok(r)) => Ok(reply(r.status, r.order_id)),
        Ok(Err(_)) | Err(_) => Err(ApiError::new(
            ErrorCode::DecisionTimeout,
            "no decision in time; retry with the same request_id",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/sales/{sale_id}/items/{item_id}/token", tag = "public",
    params(("sale_id" = String, Path), ("item_id" = String, Path)),
    request_body = UserBody,
    responses(
        (status = 200, body = TokenView),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 408, body = ErrorBody),
        (status = 409, description = "tokens_disabled, not_started, ended", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn issue_token(
    app: &Arc<App>,
    ip: IpAddr,
    sale: &str,
    item_id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let body = item_request(app, ip, sale, item_id, req, USER_BODY_BYTES_MAX).await?;
    let user = parse_user(&body)?;
    let item = find_item(app, sale, item_id).await?;
    if app.limits.user_blocked(&user) {
        return Err(blacklisted());
    }
    let Some(keys) = &app.tokens else {
        return Err(ApiError::new(
            ErrorCode::TokensDisabled,
            "this daemon has no token key; purchases need no token",
        ));
    };
    let now = app.clock.now_ms();
    let opens = item.start_ms.saturating_sub(app.cfg.token_lead_ms);
    if now < opens {
        return Err(ApiError::new(
            ErrorCode::TooEarly,
            format!("tokens are handed out from {opens} (epoch ms)"),
        )
        .retry_after((opens - now).div_ceil(1000)));
    }
    if now >= item.end_ms {
        return Err(ApiError::new(ErrorCode::SaleEnded, "the sale has ended"));
    }
    // Not capped at the end: a purchase just after it is answered `ended`,
    // not `token_expired`.
    let expires_ms = now.saturating_add(app.cfg.token_ttl_ms.max(1));
    let token = keys.sign(&user, sale, item_id, expires_ms);
    Ok(json(
        StatusCode::OK,
        &TokenView {
            token,
            expires_ms,
            purchase_path: format!("/api/v1/sales/{sale}/items/{item_id}/purchase"),
        },
    ))
}

/// The item from the catalog; one this daemon does not know may have been
/// created through another daemon a moment ago: the catalog catches up
/// first (see `tasks::catalog::catch_up`), then `unknown_item`.
async fn find_item(app: &Arc<App>, sale: &str, item_id: &str) -> Result<Arc<Item>, ApiError> {
    if let Some(item) = app.catalog.item(sale, item_id) {
        return Ok(item);
    }
    // Look again whatever it says: a caller queued behind another's
    // catch-up finds the version caught up and the item loaded.
    catch_up(app).await;
    app.catalog
        .item(sale, item_id)
        .ok_or_else(|| unknown_item(sale, item_id))
}
