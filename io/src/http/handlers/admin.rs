//! The admin API (bearer token): create or replace a sale (stock loaded
//! into Redis), read sales with their stock, the blacklist.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use seckill_pipeline::Item;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{blocking, App};
use crate::http::codec::{self, check_id, json, Resp, CLIENT_ID_LEN_MAX, ID_LEN_MAX};
use crate::http::error::{ApiError, ErrorBody, ErrorCode};
use crate::http::extract::{authorize, read_body};
use crate::redis::{sum_shards, utc_date, ItemLoad, StockHash, SALE_END_MS_MAX, SHARDS_MAX};
use crate::tasks::catalog::catch_up;

/// Largest admin body (a sale with many items).
const ADMIN_BODY_BYTES_MAX: usize = 1 << 20;
const ITEMS_PER_SALE_MAX: usize = 10_000;
const STOCK_MAX: u64 = 1_000_000_000;
/// Ten billion in major units: every client's 64-bit signed integer holds it.
const PRICE_CENTS_MAX: u64 = 1_000_000_000_000;

/// A sale as the admin API takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleBody {
    pub start_ms: u64,
    #[schema(maximum = 253_402_300_799_999_u64)]
    pub end_ms: u64,
    #[schema(min_items = 1, max_items = 10_000)]
    pub items: Vec<ItemBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemBody {
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.:@-]+$")]
    pub item_id: String,
    #[serde(default)]
    #[schema(max_length = 512)]
    pub title: String,
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub price_cents: u64,
    #[schema(maximum = 1_000_000_000_u64)]
    pub stock: u64,
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 1000)]
    pub per_user_limit: u32,
    /// Stock shards: the stock split over this many sub-stocks in
    /// different hash slots (on a Redis Cluster, different masters), for
    /// an item hotter than one Redis core. A buyer is served by a home
    /// shard chosen from the user id, and by the others once it is dry.
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 64)]
    pub shards: u32,
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

#[utoipa::path(put, path = "/admin/v1/sales/{sale_id}", tag = "admin",
    params(("sale_id" = String, Path)), request_body = SaleBody,
    responses((status = 200, description = "created or replaced; stock loaded into Redis"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_sale(
    app: &Arc<App>,
    sale: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    authorize(app, &req)?;
    check_id("sale", sale, ID_LEN_MAX)?;
    let body = read_body(app, req, ADMIN_BODY_BYTES_MAX).await?;
    let s: SaleBody = serde_json::from_slice(&body).map_err(|e| codec::json_error(&e))?;
    check_sale(&s)?;
    let now = app.clock.now_ms();
    if let Some(items) = app.catalog.sale_items(sale) {
        if items.iter().any(|i| i.start_ms <= now) {
            return Err(ApiError::new(
                ErrorCode::SaleStarted,
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
            // A sale forgotten here after its end still has its keys (and
            // its orders' ids) in Redis: never replaced once started.
            if redis
                .stored_start(&sale_id)?
                .is_some_and(|start| start <= now)
            {
                return Ok(false);
            }
            let loads: Vec<ItemLoad<'_>> = s
                .items
                .iter()
                .map(|i| ItemLoad {
                    item_id: &i.item_id,
                    title: &i.title,
                    price_cents: i.price_cents,
                    stock: i.stock,
                    per_user_limit: i.per_user_limit,
                    shards: i.shards,
                })
                .collect();
            redis
                .load_sale(&sale_id, s.start_ms, s.end_ms, &loads)
                .map(|()| true)
        })
        .await
    };
    match loaded {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            return Err(ApiError::new(
                ErrorCode::SaleStarted,
                "a sale that has started cannot be replaced",
            ))
        }
        Ok(Err(e)) => return Err(ApiError::redis_down(e)),
        Err(e) => return Err(ApiError::internal(e)),
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
            .with_shards(i.shards)
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

/// The bounds of a sale body (window, items, each item's fields).
fn check_sale(s: &SaleBody) -> Result<(), ApiError> {
    if s.end_ms <= s.start_ms || s.end_ms > SALE_END_MS_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidWindow,
            "end_ms must be after start_ms and before the year 10000",
        ));
    }
    if s.items.is_empty() || s.items.len() > ITEMS_PER_SALE_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidItems,
            format!("a sale has 1 to {ITEMS_PER_SALE_MAX} items"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for it in &s.items {
        check_id("item_id", &it.item_id, ID_LEN_MAX)?;
        if !seen.insert(it.item_id.as_str()) {
            return Err(ApiError::new(
                ErrorCode::InvalidItems,
                format!("item {} twice", it.item_id),
            ));
        }
        if it.price_cents > PRICE_CENTS_MAX {
            return Err(ApiError::new(
                ErrorCode::InvalidPrice,
                format!("price_cents may be at most {PRICE_CENTS_MAX}"),
            ));
        }
        if it.stock > STOCK_MAX {
            return Err(ApiError::new(
                ErrorCode::InvalidStock,
                format!("stock may be at most {STOCK_MAX}"),
            ));
        }
        if it.per_user_limit == 0 || it.per_user_limit > codec::QUANTITY_MAX {
            return Err(ApiError::new(
                ErrorCode::InvalidLimit,
                format!("per_user_limit must be 1 to {}", codec::QUANTITY_MAX),
            ));
        }
        if it.shards == 0 || it.shards > SHARDS_MAX {
            return Err(ApiError::new(
                ErrorCode::InvalidShards,
                format!("shards must be 1 to {SHARDS_MAX}"),
            ));
        }
        if it.title.len() > 512 {
            return Err(ApiError::new(
                ErrorCode::InvalidTitle,
                "title may be at most 512 bytes",
            ));
        }
    }
    Ok(())
}

#[utoipa::path(get, path = "/admin/v1/sales/{sale_id}", tag = "admin",
    params(("sale_id" = String, Path)),
    responses((status = 200, description = "the sale with each item's stock hash from Redis"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_sale(
    app: &Arc<App>,
    sale: &str,
    req: &Request<Incoming>,
) -> Result<Resp, ApiError> {
    authorize(app, req)?;
    check_id("sale", sale, ID_LEN_MAX)?;
    if app.catalog.sale_items(sale).is_none() {
        catch_up(app).await;
    }
    let items = app
        .catalog
        .sale_items(sale)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownSale, format!("no sale {sale}")))?;
    let shards = shard_stocks(app, sale, &items).await?;
    let mut out = Vec::new();
    for (i, shards) in items.iter().zip(shards) {
        let stock = sum_shards(&shards);
        let mut item = serde_json::json!({
            "item_id": i.item_id, "title": i.title, "price_cents": i.price_cents,
            "per_user_limit": i.per_user_limit, "shards": i.shards, "stock": stock,
        });
        if shards.len() > 1 {
            item["shard_stocks"] = serde_json::json!(shards);
        }
        out.push(item);
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"sale_id": sale, "items": out}),
    ))
}

/// Every item's stock, each shard's for a sharded one: one round trip.
pub(super) async fn shard_stocks(
    app: &Arc<App>,
    sale: &str,
    items: &[Arc<Item>],
) -> Result<Vec<Vec<Option<StockHash>>>, ApiError> {
    let (redis, sale_id, ids) = (
        app.redis.clone(),
        sale.to_string(),
        items.iter().map(|i| i.item_id.clone()).collect::<Vec<_>>(),
    );
    blocking(move || {
        let keys: Vec<(&str, &str)> = ids.iter().map(|i| (sale_id.as_str(), i.as_str())).collect();
        redis.stocks_by_shard(&keys)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::redis_down)
}

#[utoipa::path(get, path = "/admin/v1/sales", tag = "admin",
    responses((status = 200, body = SaleList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub fn list_sales(app: &App, req: &Request<Incoming>) -> Result<Resp, ApiError> {
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

#[utoipa::path(get, path = "/admin/v1/blacklist", tag = "admin",
    responses((status = 200, body = Blacklist), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub fn blacklist(app: &App, req: &Request<Incoming>) -> Result<Resp, ApiError> {
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
async fn set_blocked(
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
                .map_err(ApiError::internal)?
                .map_err(ApiError::redis_down)?;
            app.limits.block_user(id, blocked);
        }
        "ips" => {
            let ip: IpAddr = id
                .parse()
                .map_err(|_| ApiError::new(ErrorCode::InvalidIp, "not an IP address"))?;
            blocking(move || r.set_ip_blocked(ip, blocked))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::redis_down)?;
            app.limits.block_ip(ip, blocked);
        }
        _ => return Err(ApiError::new(ErrorCode::NotFound, "no such endpoint")),
    }
    tracing::info!(kind, id, blocked, "blacklist changed");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"kind": kind, "id": id, "blocked": blocked}),
    ))
}

#[utoipa::path(put, path = "/admin/v1/blacklist/users/{user_id}", tag = "admin",
    params(("user_id" = String, Path)),
    responses((status = 200), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn block_user(
    app: &Arc<App>,
    req: &Request<Incoming>,
    user: &str,
) -> Result<Resp, ApiError> {
    set_blocked(app, req, "users", user, true).await
}

#[utoipa::path(delete, path = "/admin/v1/blacklist/users/{user_id}", tag = "admin",
    params(("user_id" = String, Path)),
    responses((status = 200), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn unblock_user(
    app: &Arc<App>,
    req: &Request<Incoming>,
    user: &str,
) -> Result<Resp, ApiError> {
    set_blocked(app, req, "users", user, false).await
}

#[utoipa::path(put, path = "/admin/v1/blacklist/ips/{ip}", tag = "admin",
    params(("ip" = String, Path)),
    responses((status = 200), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn block_ip(app: &Arc<App>, req: &Request<Incoming>, ip: &str) -> Result<Resp, ApiError> {
    set_blocked(app, req, "ips", ip, true).await
}

#[utoipa::path(delete, path = "/admin/v1/blacklist/ips/{ip}", tag = "admin",
    params(("ip" = String, Path)),
    responses((status = 200), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn unblock_ip(
    app: &Arc<App>,
    req: &Request<Incoming>,
    ip: &str,
) -> Result<Resp, ApiError> {
    set_blocked(app, req, "ips", ip, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(price_cents: u64, stock: u64) -> SaleBody {
        SaleBody {
            start_ms: 1,
            end_ms: 2,
            items: vec![ItemBody {
                item_id: "i".into(),
                title: String::new(),
                price_cents,
                stock,
                per_user_limit: 1,
                shards: 1,
            }],
        }
    }

    #[test]
    fn prices_and_stock_past_their_bounds_are_refused() {
        assert!(check_sale(&sale(PRICE_CENTS_MAX, STOCK_MAX)).is_ok());
        let code = |s: SaleBody| check_sale(&s).err().map(|e| e.code);
        assert_eq!(
            code(sale(PRICE_CENTS_MAX + 1, 1)),
            Some(ErrorCode::InvalidPrice)
        );
        assert_eq!(code(sale(u64::MAX, 1)), Some(ErrorCode::InvalidPrice));
        assert_eq!(code(sale(1, STOCK_MAX + 1)), Some(ErrorCode::InvalidStock));
    }

    #[test]
    fn shards_past_their_bounds_are_refused() {
        let with = |shards| {
            let mut s = sale(1, 10);
            s.items[0].shards = shards;
            check_sale(&s).err().map(|e| e.code)
        };
        assert_eq!(with(1), None);
        assert_eq!(with(SHARDS_MAX), None);
        assert_eq!(with(0), Some(ErrorCode::InvalidShards));
        assert_eq!(with(SHARDS_MAX + 1), Some(ErrorCode::InvalidShards));
    }
}
