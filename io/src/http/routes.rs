//! The handlers. Cheap rejects happen here, before the ring: bad input,
//! unknown sale or item, sale window, a request id already answered, a
//! sold-out item. Everything else goes through the ring and waits for the
//! reply stage — which answers only after the journal made it durable.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};
use seckill_pipeline::{Item, OrderId, Purchase, Reply, Status, Submitter};
use serde::Serialize;
use tokio::sync::oneshot;

use super::api::{self, SaleBody};
use super::codec::{self, check_id, json, text, ApiError, Resp, ID_LEN_MAX};
use crate::daemon::App;
use crate::redis::{ItemLoad, SALE_END_MS_MAX};

/// Largest admin body (a sale with many items).
const ADMIN_BODY_BYTES_MAX: usize = 1 << 20;
const ITEMS_PER_SALE_MAX: usize = 10_000;
const STOCK_MAX: u64 = 1_000_000_000;

pub async fn handle(
    app: Arc<App>,
    sub: Arc<Mutex<Submitter>>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Resp, std::convert::Infallible> {
    let resp = match route(&app, &sub, peer, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    Ok(resp)
}

/// The most path segments any route has.
const SEGMENTS_MAX: usize = 8;

async fn route(
    app: &Arc<App>,
    sub: &Mutex<Submitter>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    // The URI shares the request's buffer (a clone is a reference count),
    // and the segments go into a fixed array: routing allocates nothing.
    let uri = req.uri().clone();
    let mut segs = [""; SEGMENTS_MAX];
    let mut n = 0;
    for seg in uri.path().trim_matches('/').split('/') {
        match segs.get_mut(n) {
            Some(slot) => *slot = seg,
            None => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such endpoint",
                ))
            }
        }
        n += 1;
    }
    let method = req.method().clone();
    match (&method, &segs[..n]) {
        (&Method::POST, ["api", "v1", "sales", sale, "items", item, "purchase"]) => {
            let ip = api::client_ip(app, peer, &req);
            purchase(app, sub, ip, sale, item, req).await
        }
        (&Method::POST, ["api", "v1", "sales", sale, "items", item, "token"]) => {
            let ip = api::client_ip(app, peer, &req);
            api::issue_token(app, ip, sale, item, req).await
        }
        (&Method::GET, ["api", "v1", "requests", id]) => request_status(app, id).await,
        (&Method::GET, ["api", "v1", "time"]) => Ok(api::time()),
        (&Method::GET, ["api", "v1", "rounds"]) => api::rounds(app, &req),
        (&Method::GET, ["api", "v1", "sales", sale]) => api::sale_page(app, sale),
        (&Method::GET, ["api", "v1", "orders", id]) => api::get_order(app, id, &req).await,
        (&Method::POST, ["api", "v1", "orders", id, "pay"]) => api::pay_order(app, id, req).await,
        (&Method::POST, ["api", "v1", "orders", id, "cancel"]) => {
            api::cancel_order(app, id, req).await
        }
        (&Method::GET, ["api", "v1", "openapi.json"]) => Ok(text(
            StatusCode::OK,
            api::openapi_json().to_string(),
            "application/json",
        )),
        (&Method::GET, ["admin", "v1", "sales"]) => api::admin_list_sales(app, &req),
        (&Method::GET, ["admin", "v1", "blacklist"]) => api::admin_blacklist(app, &req),
        (&Method::PUT, ["admin", "v1", "blacklist", kind, id]) => {
            api::admin_block(app, &req, kind, id, true).await
        }
        (&Method::DELETE, ["admin", "v1", "blacklist", kind, id]) => {
            api::admin_block(app, &req, kind, id, false).await
        }
        (&Method::GET, ["healthz"]) => {
            Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
        }
        (&Method::GET, ["readyz"]) => Ok(readyz(app)),
        (&Method::GET, ["metrics"]) => Ok(text(
            StatusCode::OK,
            app.render_metrics(),
            "text/plain; version=0.0.4",
        )),
        (&Method::PUT, ["admin", "v1", "sales", sale]) => put_sale(app, sale, req).await,
        (&Method::GET, ["admin", "v1", "sales", sale]) => get_sale(app, sale, &req).await,
        (_, ["api", "v1", "sales", _, "items", _, "purchase" | "token"])
        | (_, ["api", "v1", "requests" | "orders" | "sales", _])
        | (_, ["api", "v1", "orders", _, "pay" | "cancel"])
        | (_, ["api", "v1", "time" | "rounds" | "openapi.json"])
        | (_, ["admin", "v1", "sales" | "blacklist"])
        | (_, ["admin", "v1", "blacklist", _, _])
        | (_, ["admin", "v1", "sales", _]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here"),
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        )),
    }
}

pub(super) async fn read_body(
    app: &App,
    req: Request<Incoming>,
    max: usize,
) -> Result<Bytes, ApiError> {
    let limited = Limited::new(req.into_body(), max);
    let timeout = Duration::from_millis(app.cfg.header_timeout_ms.max(1));
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body may be at most {max} bytes"),
        )),
        Ok(Err(e)) => Err(ApiError::bad_request("body_read", e.to_string())),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

#[derive(Serialize)]
struct PurchaseAnswer<'a> {
    status: &'static str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
}

fn answer(request_id: &str, status: Status, order_id: Option<OrderId>) -> Resp {
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
    request_body = api::PurchaseRequest,
    responses(
        (status = 200, description = "decided: success, sold_out, duplicate, limit_exceeded, not_started, ended", body = api::PurchaseView),
        (status = 202, description = "pending: decided once Redis is back; poll the request", body = api::PurchaseView),
        (status = 400, body = codec::ErrorBody),
        (status = 403, description = "token_missing, token_invalid, token_expired, blacklisted", body = codec::ErrorBody),
        (status = 404, body = codec::ErrorBody),
        (status = 408, description = "the body did not arrive in time", body = codec::ErrorBody),
        (status = 413, body = codec::ErrorBody),
        (status = 429, description = "rate limited (Retry-After)", body = codec::ErrorBody),
        (status = 503, description = "ring full or shutting down (Retry-After)", body = codec::ErrorBody)))]
#[allow(dead_code)]
pub(super) fn purchase_doc() {}

/// Order of the checks: cheapest and least revealing first. Global and IP
/// limits before the body is read; the token before anything about the
/// sale is answered; the user's bucket only once the token proved the
/// request is for that user.
async fn purchase(
    app: &Arc<App>,
    sub: &Mutex<Submitter>,
    ip: IpAddr,
    sale: &str,
    item_id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let body = api::item_request(app, ip, sale, item_id, req, app.cfg.body_bytes_max).await?;
    let p = codec::parse_purchase(&body)?;
    let item: Arc<Item> = app
        .catalog
        .item(sale, item_id)
        .ok_or_else(|| api::unknown_item(sale, item_id))?;
    let quantity = p.quantity.unwrap_or(1);
    let now = seckill_pipeline::now_ms();
    api::check_purchase(app, sale, item_id, &p.user_id, p.token.as_deref(), now)?;
    // Cheap rejects: answered without touching the ring.
    if now < item.start_ms {
        return Ok(answer(&p.request_id, Status::NotStarted, None));
    }
    if now >= item.end_ms {
        return Ok(answer(&p.request_id, Status::Ended, None));
    }
    if quantity > item.per_user_limit {
        return Ok(answer(&p.request_id, Status::LimitExceeded, None));
    }
    if let Some((status, order_id)) = app.board.final_answer(&p.request_id) {
        return Ok(answer(&p.request_id, status, order_id));
    }
    if item.is_sold_out() {
        return Ok(answer(&p.request_id, Status::SoldOut, None));
    }
    if !app.accepting.load(Ordering::Relaxed) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
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
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ring_full",
            "too many requests in flight; retry shortly",
        ));
    }
    let wait = Duration::from_millis(app.cfg.reply_timeout_ms.max(1));
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(reply)) => Ok(answer(&p.request_id, reply.status, reply.order_id)),
        Ok(Err(_)) | Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "decision_timeout",
            "no decision in time; retry with the same request_id",
        )),
    }
}

async fn request_status(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    check_id("request_id", id, codec::CLIENT_ID_LEN_MAX)?;
    let s = app.board.get(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_request",
            format!("no request {id}"),
        )
    })?;
    let order_id = s.order_id.map(|o| o.to_string());
    let mut status = s.status;
    // A won request's order may since be paid, cancelled or expired (on
    // any daemon): only winners pay for this lookup.
    if let (Status::Success | Status::OrderCreated, Some(oid)) = (status, &order_id) {
        if let Some(later) = api::order_status(app, s.sale_id(), s.item_id(), oid).await {
            status = later;
        }
    }
    Ok(json(
        StatusCode::OK,
        &api::RequestView {
            request_id: id.to_string(),
            status: status.as_str().to_string(),
            order_id,
            sale_id: s.sale_id().to_string(),
            item_id: s.item_id().to_string(),
            user_id: s.user_id().to_string(),
        },
    ))
}

fn readyz(app: &App) -> Resp {
    use seckill_pipeline::health::State;
    let accepting = app.accepting.load(Ordering::Relaxed);
    let redis = app.shared.redis.state();
    let kafka = app.kafka.state();
    // Ready means: purchases are decided now, not parked as pending.
    let ready = accepting && redis == State::Up;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        code,
        &serde_json::json!({"ready": ready, "accepting": accepting,
            "redis": redis.as_str(), "kafka": kafka.as_str(),
            "pending_backlog": app.shared.backlog.total(),
            "redis_last_error": app.shared.redis.last_error()}),
    )
}

pub(super) fn authorize(app: &App, req: &Request<Incoming>) -> Result<(), ApiError> {
    let token = &app.cfg.admin_token;
    if token.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "no admin token is configured",
        ));
    }
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time in the token's length: no early exit on a mismatch.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_token",
            "missing or wrong admin bearer token",
        ));
    }
    Ok(())
}

#[utoipa::path(put, path = "/admin/v1/sales/{sale_id}", tag = "admin",
    params(("sale_id" = String, Path)), request_body = SaleBody,
    responses((status = 200, description = "created or replaced; stock loaded into Redis"),
        (status = 400, body = codec::ErrorBody), (status = 401, body = codec::ErrorBody),
        (status = 409, description = "sale_started: a started sale cannot be replaced", body = codec::ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
pub(super) fn put_sale_doc() {}

async fn put_sale(app: &Arc<App>, sale: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    authorize(app, &req)?;
    check_id("sale", sale, ID_LEN_MAX)?;
    let body = read_body(app, req, ADMIN_BODY_BYTES_MAX).await?;
    let s: SaleBody = serde_json::from_slice(&body).map_err(|e| codec::json_error(&e))?;
    if s.end_ms <= s.start_ms || s.end_ms > SALE_END_MS_MAX {
        return Err(ApiError::bad_request(
            "invalid_window",
            "end_ms must be after start_ms and before the year 10000",
        ));
    }
    if s.items.is_empty() || s.items.len() > ITEMS_PER_SALE_MAX {
        return Err(ApiError::bad_request(
            "invalid_items",
            format!("a sale has 1 to {ITEMS_PER_SALE_MAX} items"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for it in &s.items {
        check_id("item_id", &it.item_id, ID_LEN_MAX)?;
        if !seen.insert(it.item_id.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_items",
                format!("item {} twice", it.item_id),
            ));
        }
        if it.stock > STOCK_MAX {
            return Err(ApiError::bad_request(
                "invalid_stock",
                format!("stock may be at most {STOCK_MAX}"),
            ));
        }
        if it.per_user_limit == 0 || it.per_user_limit > codec::QUANTITY_MAX {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("per_user_limit must be 1 to {}", codec::QUANTITY_MAX),
            ));
        }
        if it.title.len() > 512 {
            return Err(ApiError::bad_request(
                "invalid_title",
                "title may be at most 512 bytes",
            ));
        }
    }
    let now = seckill_pipeline::now_ms();
    if let Some(items) = app.catalog.sale_items(sale) {
        if items.iter().any(|i| i.start_ms <= now) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "sale_started",
                "a sale that has started cannot be replaced",
            ));
        }
    }
    let redis = app.redis.clone();
    let sale_id = sale.to_string();
    let s = Arc::new(s);
    let loaded = {
        let s = Arc::clone(&s);
        let sale_id = sale_id.clone();
        tokio::task::spawn_blocking(move || {
            let loads: Vec<ItemLoad<'_>> = s
                .items
                .iter()
                .map(|i| ItemLoad {
                    item_id: &i.item_id,
                    title: &i.title,
                    price_cents: i.price_cents,
                    stock: i.stock,
                    per_user_limit: i.per_user_limit,
                })
                .collect();
            redis.load_sale(&sale_id, s.start_ms, s.end_ms, &loads)
        })
        .await
    };
    match loaded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "redis_unavailable",
                e.to_string(),
            ))
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                e.to_string(),
            ))
        }
    }
    let items: Vec<Item> = s
        .items
        .iter()
        .map(|i| {
            Item::new(
                &sale_id,
                &i.item_id,
                &i.title,
                i.price_cents,
                i.stock,
                i.per_user_limit,
                s.start_ms,
                s.end_ms,
            )
        })
        .collect();
    app.catalog.put_sale(&sale_id, items);
    tracing::info!(sale = %sale_id, items = s.items.len(), start_ms = s.start_ms, "sale loaded");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"sale_id": sale_id, "items": s.items.len(),
            "start_ms": s.start_ms, "end_ms": s.end_ms}),
    ))
}

async fn get_sale(app: &Arc<App>, sale: &str, req: &Request<Incoming>) -> Result<Resp, ApiError> {
    authorize(app, req)?;
    check_id("sale", sale, ID_LEN_MAX)?;
    let items = app.catalog.sale_items(sale).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_sale",
            format!("no sale {sale}"),
        )
    })?;
    let redis = app.redis.clone();
    let sale_id = sale.to_string();
    let stocks = tokio::task::spawn_blocking(move || {
        items
            .iter()
            .map(|i| {
                let stock = redis.stock(&sale_id, &i.item_id);
                (Arc::clone(i), stock)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let mut out = Vec::new();
    for (i, stock) in stocks {
        let stock = stock.map_err(|e| {
            ApiError::new(StatusCode::BAD_GATEWAY, "redis_unavailable", e.to_string())
        })?;
        out.push(serde_json::json!({
            "item_id": i.item_id, "title": i.title, "price_cents": i.price_cents,
            "per_user_limit": i.per_user_limit, "stock": stock,
        }));
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"sale_id": sale, "items": out}),
    ))
}
