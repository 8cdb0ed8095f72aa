//! Everything around the purchase: admission (limits, blacklist, tokens),
//! the public sale pages served from the in-process catalog, purchase
//! tokens, orders (read, pay, cancel), the admin blacklist and sale list,
//! and the OpenAPI description generated from these handlers.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use seckill_pipeline::{Item, Status};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::codec::{self, check_id, json, ApiError, Resp, CLIENT_ID_LEN_MAX, ID_LEN_MAX};
use super::routes::{authorize, read_body};
use crate::daemon::{blocking, App};
use crate::limits::{retry_after_secs, Refusal};
use crate::redis::{utc_date, OrderAction, OrderRecord, OrderState};

/// Small bodies: a user id.
const USER_BODY_BYTES_MAX: usize = 1024;

pub(crate) fn limited(r: Refusal) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        r.limit.code(),
        "too many requests; slow down",
    )
    .retry_after(retry_after_secs(r.retry_after))
}

/// The client's address: the peer, or the first X-Forwarded-For address
/// when the daemon is configured to trust its proxy.
pub(crate) fn client_ip(app: &App, peer: IpAddr, req: &Request<Incoming>) -> IpAddr {
    if app.cfg.trust_forwarded_for {
        let first = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok());
        if let Some(ip) = first {
            return ip;
        }
    }
    peer
}

/// Global and per-IP limits and the IP blacklist: before any body is read.
pub(crate) fn admit(app: &App, ip: IpAddr) -> Result<(), ApiError> {
    app.limits.admit(ip).map_err(limited)?;
    if app.limits.ip_blocked(ip) {
        return Err(blacklisted());
    }
    Ok(())
}

/// What every per-item POST starts with: the ids, the global and IP
/// limits and the IP blacklist, then the body (at most `max` bytes).
pub(crate) async fn item_request(
    app: &App,
    ip: IpAddr,
    sale: &str,
    item: &str,
    req: Request<Incoming>,
    max: usize,
) -> Result<bytes::Bytes, ApiError> {
    check_id("sale", sale, ID_LEN_MAX)?;
    check_id("item", item, ID_LEN_MAX)?;
    admit(app, ip)?;
    read_body(app, req, max).await
}

pub(crate) fn blacklisted() -> ApiError {
    ApiError::forbidden("blacklisted", "this client may not take part in sales")
}

pub(crate) fn unknown_item(sale: &str, item: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_item",
        format!("no item {item} in sale {sale}"),
    )
}

fn redis_down(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "redis_unavailable",
        e.to_string(),
    )
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

// ---------------------------------------------------------------- schemas

/// Server time, for the client's countdown.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimeBody {
    /// Milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// One item as the public sale page shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemView {
    pub item_id: String,
    pub title: String,
    pub price_cents: u64,
    pub per_user_limit: u32,
    pub stock_total: u64,
    /// Units still available (refreshed from Redis about once a second).
    pub stock_remaining: i64,
    pub sold_out: bool,
}

/// A sale round and its items.
#[derive(Debug, Serialize, ToSchema)]
pub struct SaleView {
    pub sale_id: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// UTC day of the start, `YYYY-MM-DD`.
    pub date: String,
    pub items: Vec<ItemView>,
}

/// The rounds of one day.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoundsView {
    pub date: String,
    pub rounds: Vec<SaleView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[allow(dead_code)]
#[into_params(parameter_in = Query)]
pub struct RoundsQuery {
    /// `YYYY-MM-DD` (UTC); today when absent.
    pub date: Option<String>,
}

/// Who asks (the token endpoint, pay, cancel). Behind a login gateway that
/// sets it from the session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    pub user_id: String,
}

/// A purchase token: valid for this user, sale and item until `expires_ms`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub token: String,
    pub expires_ms: u64,
    /// Where to POST the purchase (with the token in the body).
    pub purchase_path: String,
}

/// A purchase.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct PurchaseRequest {
    pub user_id: String,
    /// The client's id for this click: a retry with the same id gets the
    /// same answer.
    pub request_id: String,
    /// Units (default 1, at most the item's per-user limit).
    pub quantity: Option<u32>,
    /// From the token endpoint; required unless `require_token = false`.
    pub token: Option<String>,
}

/// The answer to a purchase.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurchaseView {
    /// `success`, `pending`, `sold_out`, `duplicate`, `limit_exceeded`,
    /// `not_started`, `ended`, `unavailable`.
    pub status: String,
    pub request_id: String,
    pub order_id: Option<String>,
}

/// A request's current state.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    pub request_id: String,
    /// `pending`, `success`, `order_created`, `paid`, `cancelled`,
    /// `expired` or the rejection it got.
    pub status: String,
    pub order_id: Option<String>,
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
}

/// One order, with its price.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    #[serde(flatten)]
    pub order: OrderRecord,
    pub price_cents: Option<u64>,
}

impl OrderView {
    fn of(app: &App, order: OrderRecord) -> OrderView {
        let price_cents = app
            .catalog
            .item(&order.sale_id, &order.item_id)
            .map(|i| i.price_cents);
        OrderView { order, price_cents }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[allow(dead_code)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// The order's owner.
    pub user_id: String,
}

/// A sale as the admin API takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleBody {
    pub start_ms: u64,
    pub end_ms: u64,
    pub items: Vec<ItemBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemBody {
    pub item_id: String,
    #[serde(default)]
    pub title: String,
    pub price_cents: u64,
    pub stock: u64,
    #[serde(default = "one")]
    pub per_user_limit: u32,
}

fn one() -> u32 {
    1
}

/// One round in the admin list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SaleSummary {
    pub sale_id: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub date: String,
    pub items: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SaleList {
    pub sales: Vec<SaleSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Blacklist {
    pub users: Vec<String>,
    pub ips: Vec<String>,
}

// ---------------------------------------------------------------- OpenAPI

#[derive(OpenApi)]
#[openapi(
    info(
        title = "seckill",
        description = "Flash-sale daemon: sale rounds, purchase tokens, purchases, orders. \
                       Admin endpoints need `Authorization: Bearer <admin_token>`."
    ),
    paths(
        time,
        rounds,
        sale_page,
        issue_token,
        super::routes::purchase_doc,
        request_status_doc,
        get_order,
        pay_order,
        cancel_order,
        admin_list_sales,
        super::routes::put_sale_doc,
        admin_get_sale_doc,
        admin_blacklist,
        admin_block_user,
        admin_unblock_user,
        admin_block_ip,
        admin_unblock_ip
    ),
    components(schemas(
        TimeBody,
        ItemView,
        SaleView,
        RoundsView,
        UserBody,
        TokenView,
        PurchaseRequest,
        PurchaseView,
        RequestView,
        OrderView,
        OrderRecord,
        OrderState,
        SaleBody,
        ItemBody,
        SaleSummary,
        SaleList,
        Blacklist,
        codec::ErrorBody
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document, built once.
pub fn openapi_json() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default())
}

// ---------------------------------------------------------------- public

#[utoipa::path(get, path = "/api/v1/time", tag = "public",
    responses((status = 200, body = TimeBody)))]
pub fn time() -> Resp {
    json(
        StatusCode::OK,
        &TimeBody {
            now_ms: seckill_pipeline::now_ms(),
        },
    )
}

fn item_view(i: &Item) -> ItemView {
    ItemView {
        item_id: i.item_id.clone(),
        title: i.title.clone(),
        price_cents: i.price_cents,
        per_user_limit: i.per_user_limit,
        stock_total: i.stock,
        stock_remaining: i.remaining().max(0),
        sold_out: i.is_sold_out(),
    }
}

fn sale_view(sale_id: &str, items: &[Arc<Item>]) -> Option<SaleView> {
    let first = items.first()?;
    Some(SaleView {
        sale_id: sale_id.to_string(),
        start_ms: first.start_ms,
        end_ms: first.end_ms,
        date: utc_date(first.start_ms),
        items: items.iter().map(|i| item_view(i)).collect(),
    })
}

fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[utoipa::path(get, path = "/api/v1/rounds", tag = "public", params(RoundsQuery),
    responses((status = 200, body = RoundsView), (status = 400, body = codec::ErrorBody)))]
pub fn rounds(app: &App, req: &Request<Incoming>) -> Result<Resp, ApiError> {
    let date = match query_param(req, "date") {
        Some(d) => {
            let ok = d.len() == 10
                && time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .is_ok();
            if !ok {
                return Err(ApiError::bad_request(
                    "invalid_date",
                    "date must be YYYY-MM-DD",
                ));
            }
            d.to_string()
        }
        None => utc_date(seckill_pipeline::now_ms()),
    };
    let mut rounds: Vec<SaleView> = app
        .catalog
        .sales()
        .iter()
        .filter_map(|(id, items)| sale_view(id, items))
        .filter(|s| s.date == date)
        .collect();
    rounds.sort_by(|a, b| (a.start_ms, &a.sale_id).cmp(&(b.start_ms, &b.sale_id)));
    Ok(json(StatusCode::OK, &RoundsView { date, rounds }))
}

#[utoipa::path(get, path = "/api/v1/sales/{sale_id}", tag = "public",
    params(("sale_id" = String, Path)),
    responses((status = 200, body = SaleView), (status = 404, body = codec::ErrorBody)))]
pub fn sale_page(app: &App, sale: &str) -> Result<Resp, ApiError> {
    check_id("sale", sale, ID_LEN_MAX)?;
    let mut items = app.catalog.sale_items(sale).unwrap_or_default();
    items.sort_by(|a, b| a.item_id.cmp(&b.item_id));
    let view = sale_view(sale, &items).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_sale",
            format!("no sale {sale}"),
        )
    })?;
    Ok(json(StatusCode::OK, &view))
}

fn parse_user(body: &[u8]) -> Result<String, ApiError> {
    let u: UserBody = serde_json::from_slice(body).map_err(|e| codec::json_error(&e))?;
    check_id("user_id", &u.user_id, CLIENT_ID_LEN_MAX)?;
    Ok(u.user_id)
}

#[utoipa::path(post, path = "/api/v1/sales/{sale_id}/items/{item_id}/token", tag = "public",
    params(("sale_id" = String, Path), ("item_id" = String, Path)),
    request_body = UserBody,
    responses(
        (status = 200, body = TokenView),
        (status = 403, description = "too_early (Retry-After), sale_ended, blacklisted", body = codec::ErrorBody),
        (status = 404, body = codec::ErrorBody),
        (status = 429, description = "rate limited (Retry-After)", body = codec::ErrorBody)))]
pub async fn issue_token(
    app: &Arc<App>,
    ip: IpAddr,
    sale: &str,
    item_id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let body = item_request(app, ip, sale, item_id, req, USER_BODY_BYTES_MAX).await?;
    let user = parse_user(&body)?;
    let item = app
        .catalog
        .item(sale, item_id)
        .ok_or_else(|| unknown_item(sale, item_id))?;
    if app.limits.user_blocked(&user) {
        return Err(blacklisted());
    }
    let Some(keys) = &app.tokens else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tokens_disabled",
            "this daemon has no token key; purchases need no token",
        ));
    };
    let now = seckill_pipeline::now_ms();
    let opens = item.start_ms.saturating_sub(app.cfg.token_lead_ms);
    if now < opens {
        return Err(ApiError::forbidden(
            "too_early",
            format!("tokens are handed out from {opens} (epoch ms)"),
        )
        .retry_after((opens - now).div_ceil(1000)));
    }
    if now >= item.end_ms {
        return Err(ApiError::forbidden("sale_ended", "the sale has ended"));
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

/// The token and user checks of a purchase, after the body is parsed.
pub(crate) fn check_purchase(
    app: &App,
    sale: &str,
    item: &str,
    user: &str,
    token: Option<&str>,
    now_ms: u64,
) -> Result<(), ApiError> {
    if app.limits.user_blocked(user) {
        return Err(blacklisted());
    }
    if app.cfg.require_token {
        let keys = app
            .tokens
            .as_ref()
            .ok_or_else(|| ApiError::forbidden("token_invalid", "no token key is configured"))?;
        keys.verify(token.unwrap_or(""), user, sale, item, now_ms)
            .map_err(|e| ApiError::forbidden(e.code(), e.to_string()))?;
    }
    app.limits.admit_user(user).map_err(limited)
}

#[utoipa::path(get, path = "/api/v1/requests/{request_id}", tag = "public",
    params(("request_id" = String, Path)),
    responses((status = 200, body = RequestView), (status = 404, body = codec::ErrorBody)))]
#[allow(dead_code)]
fn request_status_doc() {}

/// The state a won request's order reached, when it left `locked`.
pub(crate) async fn order_status(
    app: &Arc<App>,
    sale: &str,
    item: &str,
    order_id: &str,
) -> Option<Status> {
    let r = app.redis.clone();
    let (s, i, o) = (sale.to_string(), item.to_string(), order_id.to_string());
    let rec = blocking(move || r.order(&s, &i, &o)).await.ok()?.ok()??;
    match rec.state {
        OrderState::AwaitingPayment => None,
        OrderState::Paid => Some(Status::Paid),
        OrderState::Cancelled => Some(Status::Cancelled),
        OrderState::Expired => Some(Status::Expired),
    }
}

// ---------------------------------------------------------------- orders

fn check_order_id(id: &str) -> Result<(), ApiError> {
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "invalid_order_id",
            "an order id is 16 hex digits",
        ));
    }
    Ok(())
}

fn unknown_order(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_order",
        format!("no order {id}"),
    )
}

/// Finds the item holding an order: the local index, else one pipelined
/// lookup over the catalog's items (remembered afterwards).
async fn locate(app: &Arc<App>, order_id: &str) -> Result<(String, String), ApiError> {
    if let Some(loc) = app.order_index.get(order_id) {
        return Ok(loc.clone());
    }
    let items: Vec<(String, String)> = app
        .catalog
        .sales()
        .into_iter()
        .flat_map(|(s, items)| {
            items
                .into_iter()
                .map(move |i| (s.clone(), i.item_id.clone()))
        })
        .collect();
    let r = app.redis.clone();
    let oid = order_id.to_string();
    let found = blocking(move || r.find_order(&oid, &items).map(|f| f.cloned()))
        .await
        .map_err(internal)?
        .map_err(redis_down)?;
    let loc = found.ok_or_else(|| unknown_order(order_id))?;
    app.order_index.insert(order_id.to_string(), loc.clone());
    Ok(loc)
}

#[utoipa::path(get, path = "/api/v1/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path), OrderQuery),
    responses((status = 200, body = OrderView), (status = 403, body = codec::ErrorBody),
        (status = 404, body = codec::ErrorBody), (status = 503, body = codec::ErrorBody)))]
pub async fn get_order(
    app: &Arc<App>,
    order_id: &str,
    req: &Request<Incoming>,
) -> Result<Resp, ApiError> {
    check_order_id(order_id)?;
    let user = query_param(req, "user_id").unwrap_or("");
    check_id("user_id", user, CLIENT_ID_LEN_MAX)?;
    let (sale, item) = locate(app, order_id).await?;
    let r = app.redis.clone();
    let oid = order_id.to_string();
    let rec = blocking(move || r.order(&sale, &item, &oid))
        .await
        .map_err(internal)?
        .map_err(redis_down)?
        .ok_or_else(|| unknown_order(order_id))?;
    if rec.user_id != user {
        return Err(not_yours());
    }
    Ok(json(StatusCode::OK, &OrderView::of(app, rec)))
}

fn not_yours() -> ApiError {
    ApiError::forbidden("not_your_order", "this order belongs to another user")
}

async fn order_action(
    app: &Arc<App>,
    order_id: &str,
    pay: bool,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    check_order_id(order_id)?;
    let body = read_body(app, req, USER_BODY_BYTES_MAX).await?;
    let user = parse_user(&body)?;
    let (sale, item) = locate(app, order_id).await?;
    let r = app.redis.clone();
    let (s, i, o, u) = (sale.clone(), item.clone(), order_id.to_string(), user);
    let now = seckill_pipeline::now_ms();
    let done = blocking(move || {
        let a = r.order_action(&s, &i, &o, pay, &u, now)?;
        let rec = r.order(&s, &i, &o)?;
        Ok::<_, redis::RedisError>((a, rec))
    })
    .await
    .map_err(internal)?
    .map_err(redis_down)?;
    let (action, rec) = done;
    if let Some(it) = app.catalog.item(&sale, &item) {
        it.touch();
    }
    use std::sync::atomic::Ordering::Relaxed;
    match action {
        OrderAction::Done(state) => {
            match state {
                OrderState::Paid => app.order_stats.paid.fetch_add(1, Relaxed),
                OrderState::Cancelled => app.order_stats.cancelled.fetch_add(1, Relaxed),
                _ => 0,
            };
            if state != OrderState::Paid {
                if let Some(it) = app.catalog.item(&sale, &item) {
                    it.set_sold_out(false);
                }
            }
            app.order_wake.wake();
        }
        OrderAction::Again(_) => {}
        OrderAction::Conflict(state) => {
            if state == OrderState::Expired {
                app.order_wake.wake();
            }
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "order_closed",
                format!("the order is already {}", state.as_str()),
            ));
        }
        OrderAction::Forbidden => return Err(not_yours()),
        OrderAction::Unknown => return Err(unknown_order(order_id)),
    }
    let rec = rec.ok_or_else(|| unknown_order(order_id))?;
    Ok(json(StatusCode::OK, &OrderView::of(app, rec)))
}

#[utoipa::path(post, path = "/api/v1/orders/{order_id}/pay", tag = "orders",
    params(("order_id" = String, Path)), request_body = UserBody,
    responses(
        (status = 200, description = "paid (again: idempotent)", body = OrderView),
        (status = 403, body = codec::ErrorBody), (status = 404, body = codec::ErrorBody),
        (status = 409, description = "order_closed: cancelled or expired", body = codec::ErrorBody)))]
pub async fn pay_order(
    app: &Arc<App>,
    order_id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    order_action(app, order_id, true, req).await
}

#[utoipa::path(post, path = "/api/v1/orders/{order_id}/cancel", tag = "orders",
    params(("order_id" = String, Path)), request_body = UserBody,
    responses(
        (status = 200, description = "cancelled (again: idempotent); the unit is back on sale", body = OrderView),
        (status = 403, body = codec::ErrorBody), (status = 404, body = codec::ErrorBody),
        (status = 409, description = "order_closed: paid or expired", body = codec::ErrorBody)))]
pub async fn cancel_order(
    app: &Arc<App>,
    order_id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    order_action(app, order_id, false, req).await
}

// ---------------------------------------------------------------- admin

#[utoipa::path(get, path = "/admin/v1/sales", tag = "admin",
    responses((status = 200, body = SaleList), (status = 401, body = codec::ErrorBody)),
    security(("bearer" = [])))]
pub fn admin_list_sales(app: &App, req: &Request<Incoming>) -> Result<Resp, ApiError> {
    authorize(app, req)?;
    let sales = app
        .catalog
        .sales()
        .into_iter()
        .filter_map(|(id, items)| {
            let first = items.first()?;
            Some(SaleSummary {
                date: utc_date(first.start_ms),
                start_ms: first.start_ms,
                end_ms: first.end_ms,
                items: items.len(),
                sale_id: id,
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &SaleList { sales }))
}

#[utoipa::path(get, path = "/admin/v1/sales/{sale_id}", tag = "admin",
    params(("sale_id" = String, Path)),
    responses((status = 200, description = "the sale with each item's stock hash from Redis"),
        (status = 404, body = codec::ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn admin_get_sale_doc() {}

#[utoipa::path(get, path = "/admin/v1/blacklist", tag = "admin",
    responses((status = 200, body = Blacklist)), security(("bearer" = [])))]
pub fn admin_blacklist(app: &App, req: &Request<Incoming>) -> Result<Resp, ApiError> {
    authorize(app, req)?;
    let (users, ips) = app.limits.blacklist();
    Ok(json(
        StatusCode::OK,
        &Blacklist {
            users,
            ips: ips.iter().map(IpAddr::to_string).collect(),
        },
    ))
}

/// Adds or removes a user or an IP: in Redis (every daemon picks it up
/// within a second) and locally at once.
pub async fn admin_block(
    app: &Arc<App>,
    req: &Request<Incoming>,
    kind: &str,
    id: &str,
    blocked: bool,
) -> Result<Resp, ApiError> {
    authorize(app, req)?;
    let r = app.redis.clone();
    match kind {
        "users" => {
            check_id("user_id", id, CLIENT_ID_LEN_MAX)?;
            let user = id.to_string();
            blocking(move || r.set_user_blocked(&user, blocked))
                .await
                .map_err(internal)?
                .map_err(redis_down)?;
            app.limits.block_user(id, blocked);
        }
        "ips" => {
            let ip: IpAddr = id
                .parse()
                .map_err(|_| ApiError::bad_request("invalid_ip", "not an IP address"))?;
            blocking(move || r.set_ip_blocked(ip, blocked))
                .await
                .map_err(internal)?
                .map_err(redis_down)?;
            app.limits.block_ip(ip, blocked);
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            ))
        }
    }
    tracing::info!(kind, id, blocked, "blacklist changed");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"kind": kind, "id": id, "blocked": blocked}),
    ))
}

#[utoipa::path(put, path = "/admin/v1/blacklist/users/{user_id}", tag = "admin",
    params(("user_id" = String, Path)), responses((status = 200)), security(("bearer" = [])))]
#[allow(dead_code)]
fn admin_block_user() {}

#[utoipa::path(delete, path = "/admin/v1/blacklist/users/{user_id}", tag = "admin",
    params(("user_id" = String, Path)), responses((status = 200)), security(("bearer" = [])))]
#[allow(dead_code)]
fn admin_unblock_user() {}

#[utoipa::path(put, path = "/admin/v1/blacklist/ips/{ip}", tag = "admin",
    params(("ip" = String, Path)), responses((status = 200)), security(("bearer" = [])))]
#[allow(dead_code)]
fn admin_block_ip() {}

#[utoipa::path(delete, path = "/admin/v1/blacklist/ips/{ip}", tag = "admin",
    params(("ip" = String, Path)), responses((status = 200)), security(("bearer" = [])))]
#[allow(dead_code)]
fn admin_unblock_ip() {}
