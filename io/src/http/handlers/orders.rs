//! Orders after the win: read, pay, cancel (atomic Lua on the item's
//! keys, on whichever daemon takes the call), and the state a won
//! request's order reached.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use seckill_pipeline::Status;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::{blocking, App};
use crate::http::codec::{check_id, json, Resp, CLIENT_ID_LEN_MAX};
use crate::http::error::{ApiError, ErrorBody, ErrorCode};
use crate::http::extract::{
    admit, parse_user, query_param, read_body, UserBody, USER_BODY_BYTES_MAX,
};
use crate::redis::{Action, OrderAction, OrderRecord, OrderState};

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

/// The state a won request's order reached, when it left `locked`.
pub async fn order_status(
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
        OrderState::Failed => Some(Status::Failed),
    }
}

fn check_order_id(id: &str) -> Result<(), ApiError> {
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::new(
            ErrorCode::InvalidOrderId,
            "an order id is 16 hex digits",
        ));
    }
    Ok(())
}

fn unknown_order(id: &str) -> ApiError {
    ApiError::new(ErrorCode::UnknownOrder, format!("no order {id}"))
}

/// Finds the item holding an order: the local index, else one pipelined
/// lookup over the catalog's items (remembered afterwards).
async fn locate(app: &Arc<App>, order_id: &str) -> Result<(String, String), ApiError> {
    if let Some(loc) = app.order_index.get(order_id) {
        return Ok(loc.clone());
    }
    let now = app.clock.now_ms();
    if app.order_misses.recent(order_id, now) {
        return Err(unknown_order(order_id));
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
        .map_err(ApiError::internal)?
        .map_err(ApiError::redis_down)?;
    let Some(loc) = found else {
        app.order_misses.remember(order_id, now);
        return Err(unknown_order(order_id));
    };
    app.order_index.insert(order_id.to_string(), loc.clone());
    Ok(loc)
}

#[utoipa::path(get, path = "/api/v1/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path), OrderQuery),
    responses((status = 200, body = OrderView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get_order(
    app: &Arc<App>,
    ip: IpAddr,
    order_id: &str,
    req: &Request<Incoming>,
) -> Result<Resp, ApiError> {
    admit(app, ip)?;
    check_order_id(order_id)?;
    let user = query_param(req, "user_id").unwrap_or("");
    check_id("user_id", user, CLIENT_ID_LEN_MAX)?;
    let (sale, item) = locate(app, order_id).await?;
    let r = app.redis.clone();
    let oid = order_id.to_string();
    let rec = blocking(move || r.order(&sale, &item, &oid))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::redis_down)?
        .ok_or_else(|| unknown_order(order_id))?;
    if rec.user_id != user {
        return Err(not_yours());
    }
    Ok(json(StatusCode::OK, &OrderView::of(app, rec)))
}

fn not_yours() -> ApiError {
    ApiError::new(
        ErrorCode::NotYourOrder,
        "this order belongs to another user",
    )
}

async fn order_action(
    app: &Arc<App>,
    ip: IpAddr,
    order_id: &str,
    act: Action,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    admit(app, ip)?;
    check_order_id(order_id)?;
    let body = read_body(app, req, USER_BODY_BYTES_MAX).await?;
    let user = parse_user(&body)?;
    let (sale, item) = locate(app, order_id).await?;
    let r = app.redis.clone();
    let (s, i, o, u) = (sale.clone(), item.clone(), order_id.to_string(), user);
    let now = app.clock.now_ms();
    let done = blocking(move || {
        let a = r.order_action(&s, &i, &o, act, &u, now)?;
        let rec = r.order(&s, &i, &o)?;
        Ok::<_, redis::RedisError>((a, rec))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::redis_down)?;
    let (action, rec) = done;
    let it = app.catalog.item(&sale, &item);
    if let Some(it) = &it {
        it.touch();
    }
    // A change of state leaves an event in the item's outbox.
    let events = matches!(
        action,
        OrderAction::Done(_) | OrderAction::Conflict(OrderState::Expired)
    );
    if let (true, Some(it)) = (events, &it) {
        it.note_events();
    }
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
                ErrorCode::OrderClosed,
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
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 408, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn pay_order(
    app: &Arc<App>,
    ip: IpAddr,
    order_id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    order_action(app, ip, order_id, Action::Pay, req).await
}

#[utoipa::path(post, path = "/api/v1/orders/{order_id}/cancel", tag = "orders",
    params(("order_id" = String, Path)), request_body = UserBody,
    responses(
        (status = 200, description = "cancelled (again: idempotent); the unit is back on sale", body = OrderView),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 408, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn cancel_order(
    app: &Arc<App>,
    ip: IpAddr,
    order_id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    order_action(app, ip, order_id, Action::Cancel, req).await
}
