//! The HTTP side: `/livez`, `/healthz`, `/readyz`, `/metrics`, and the
//! order queries from the database — a user's orders, newest first, a
//! page at a time (`cursor` pagination, the seed's order list), and one
//! order by id. Answers are JSON; errors are `{"error": code, "message"}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use seckill_io::http::extract::query_param;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::{Cursor, OrderRow, Store};

/// Most open connections; past it a connection waits for a free one.
const CONNECTIONS_MAX: usize = 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Orders per page: the default and the most a page may ask for.
const PAGE_LEN: i64 = 20;
const PAGE_LEN_MAX: i64 = 100;

pub struct Http {
    pub store: Arc<Store>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

type Resp = Response<Full<Bytes>>;

fn json(status: StatusCode, v: &serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json(
        status,
        &serde_json::json!({ "error": code, "message": message }),
    )
}

/// The id rules of the daemon's API: 1 to 128 of letters, digits, `_ - . : @`.
fn valid_id(s: &str) -> bool {
    seckill_io::http::codec::check_id("user_id", s, seckill_io::http::codec::CLIENT_ID_LEN_MAX)
        .is_ok()
}

fn row_json(r: &OrderRow) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or_default()
}

impl Http {
    async fn route(&self, req: Request<Incoming>) -> Resp {
        if req.method() != Method::GET {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET",
            );
        }
        let path = req.uri().path();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["livez"] => json(StatusCode::OK, &serde_json::json!({ "live": true })),
            ["healthz"] => json(StatusCode::OK, &self.health.view()),
            ["readyz"] => {
                let status = if self.health.ready() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(status, &self.health.view())
            }
            ["metrics"] => {
                let mut r = Response::new(Full::new(Bytes::from(self.metrics.render())));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                r
            }
            ["api", "v1", "users", user, "orders"] => {
                let limit = query_param(&req, "limit");
                let cursor = query_param(&req, "cursor");
                self.user_orders(user, limit, cursor).await
            }
            ["api", "v1", "orders", order] => self.order(order).await,
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
        }
    }

    async fn user_orders(&self, user: &str, limit: Option<&str>, cursor: Option<&str>) -> Resp {
        if !valid_id(user) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "user_id must be 1 to 128 of letters, digits, _ - . : @",
            );
        }
        let limit = match limit.map(str::parse::<i64>) {
            None => PAGE_LEN,
            Some(Ok(n)) if (1..=PAGE_LEN_MAX).contains(&n) => n,
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_limit",
                    &format!("limit must be 1 to {PAGE_LEN_MAX}"),
                )
            }
        };
        let cursor = match cursor {
            None | Some("") => None,
            Some(c) => match Cursor::decode(c) {
                Some(c) => Some(c),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_cursor",
                        "cursor is the next_cursor of the page before",
                    )
                }
            },
        };
        // One more than the page: whether there is a next one.
        match self
            .store
            .user_orders(user, cursor.as_ref(), limit + 1)
            .await
        {
            Ok(mut rows) => {
                let more = rows.len() as i64 > limit;
                rows.truncate(limit as usize);
                let next = more.then(|| rows.last()).flatten().map(|r| {
                    Cursor {
                        created_ms: r.created_ms,
                        order_id: r.order_id.clone(),
                    }
                    .encode()
                });
                json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "user_id": user,
                        "orders": rows.iter().map(row_json).collect::<Vec<_>>(),
                        "next_cursor": next,
                    }),
                )
            }
            Err(e) => unavailable(&e.to_string()),
        }
    }

    async fn order(&self, order: &str) -> Resp {
        if order.len() != 16 || !order.bytes().all(|b| b.is_ascii_hexdigit()) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_order_id",
                "an order id is 16 hex digits",
            );
        }
        match self.store.order(order).await {
            Ok(Some(r)) => json(StatusCode::OK, &row_json(&r)),
            Ok(None) => error(StatusCode::NOT_FOUND, "unknown_order", "no such order"),
            Err(e) => unavailable(&e.to_string()),
        }
    }
}

fn unavailable(why: &str) -> Resp {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", why);
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    r
}

/// Serves until `stop` turns true.
pub async fn serve(listener: TcpListener, http: Arc<Http>, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let http = Arc::clone(&http);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let http = Arc::clone(&http);
                async move { Ok::<_, Infallible>(http.route(req).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_daemons_rules() {
        assert!(valid_id("user-1@x.y:z_"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"u".repeat(129)));
    }
}
