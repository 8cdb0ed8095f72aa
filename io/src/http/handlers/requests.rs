//! A request's state, for clients polling after a `pending` answer or
//! checking a win: from the status board, and for a won request the
//! order's later state (paid, cancelled, expired) from Redis.

use std::sync::Arc;

use hyper::StatusCode;
use seckill_pipeline::Status;
use serde::Serialize;
use utoipa::ToSchema;

use super::orders::order_status;
use crate::app::App;
use crate::http::codec::{self, check_id, json, Resp};
use crate::http::error::{ApiError, ErrorBody, ErrorCode};

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

#[utoipa::path(get, path = "/api/v1/requests/{request_id}", tag = "public",
    params(("request_id" = String, Path)),
    responses((status = 200, body = RequestView), (status = 404, body = ErrorBody)))]
pub async fn request_status(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    check_id("request_id", id, codec::CLIENT_ID_LEN_MAX)?;
    let s = app
        .board
        .get(id)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownRequest, format!("no request {id}")))?;
    let order_id = s.order_id.map(|o| o.to_string());
    let mut status = s.status;
    // A won request's order may since be paid, cancelled or expired (on
    // any daemon): only winners pay for this lookup.
    if let (Status::Success | Status::OrderCreated, Some(oid)) = (status, &order_id) {
        if let Some(later) = order_status(app, s.sale_id(), s.item_id(), oid).await {
            status = later;
        }
    }
    Ok(json(
        StatusCode::OK,
        &RequestView {
            request_id: id.to_string(),
            status: status.as_str().to_string(),
            order_id,
            sale_id: s.sale_id().to_string(),
            item_id: s.item_id().to_string(),
            user_id: s.user_id().to_string(),
        },
    ))
}
