//! The public sale pages, served from the in-process catalog (no Redis
//! trip): the server clock for the countdown, the rounds of a day, one
//! sale with its items.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use seckill_pipeline::Item;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::App;
use crate::http::codec::{check_id, json, Resp, ID_LEN_MAX};
use crate::http::error::{ApiError, ErrorBody, ErrorCode};
use crate::http::extract::{admit, query_param};
use crate::redis::utc_date;
use crate::tasks::catalog::catch_up;

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

#[utoipa::path(get, path = "/api/v1/time", tag = "public",
    responses((status = 200, body = TimeBody)))]
pub fn time(app: &App) -> Resp {
    json(
        StatusCode::OK,
        &TimeBody {
            now_ms: app.clock.now_ms(),
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

pub fn sale_view(sale_id: &str, items: &[Arc<Item>]) -> Option<SaleView> {
    let first = items.first()?;
    Some(SaleView {
        sale_id: sale_id.to_string(),
        start_ms: first.start_ms,
        end_ms: first.end_ms,
        date: utc_date(first.start_ms),
        items: items.iter().map(|i| item_view(i)).collect(),
    })
}

#[utoipa::path(get, path = "/api/v1/rounds", tag = "public", params(RoundsQuery),
    responses((status = 200, body = RoundsView), (status = 400, body = ErrorBody)))]
pub fn rounds(app: &App, req: &Request<Incoming>) -> Result<Resp, ApiError> {
    let date = match query_param(req, "date") {
        Some(d) => {
            let ok = d.len() == 10
                && time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .is_ok();
            if !ok {
                return Err(ApiError::new(
                    ErrorCode::InvalidDate,
                    "date must be YYYY-MM-DD",
                ));
            }
            d.to_string()
        }
        None => utc_date(app.clock.now_ms()),
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
    responses((status = 200, body = SaleView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn sale_page(app: &Arc<App>, ip: IpAddr, sale: &str) -> Result<Resp, ApiError> {
    check_id("sale", sale, ID_LEN_MAX)?;
    // A sale this daemon does not know may have been created through
    // another a moment ago: the catalog catches up (a Redis round trip,
    // so under the limits) before the 404.
    if app.catalog.sale_items(sale).is_none() {
        admit(app, ip)?;
        catch_up(app).await;
    }
    let mut items = app.catalog.sale_items(sale).unwrap_or_default();
    items.sort_by(|a, b| a.item_id.cmp(&b.item_id));
    let view = sale_view(sale, &items)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownSale, format!("no sale {sale}")))?;
    Ok(json(StatusCode::OK, &view))
}
