//! The router: the path split into segments on the stack (routing
//! allocates nothing), matched with the method to a handler. Every route
//! of the API is listed here, once.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::{Method, Request};
use seckill_pipeline::Submitter;

use http_body_util::Either;

use super::error::{ApiError, ErrorCode};
use super::extract::{self, client_ip};
use super::handlers::{admin, dashboard, health, orders, purchase, rebuild, requests, sales};
use super::stream::Answer;
use crate::app::App;

/// The most path segments any route has.
const SEGMENTS_MAX: usize = 8;

/// Which routes a listening socket serves. With `admin_listen` set, the
/// public socket serves the API and the health checks, the admin socket
/// the admin API, `/metrics`, the dashboard, the peers' lookups and the
/// health checks; without it one socket serves everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Public,
    Admin,
    Both,
}

impl Door {
    /// Whether this door serves the route whose path starts with `first`.
    fn serves(self, first: &str) -> bool {
        let public = first == "api";
        let health = matches!(first, "livez" | "healthz" | "readyz");
        match self {
            Door::Both => true,
            Door::Public => public || health,
            Door::Admin => !public,
        }
    }
}

/// hyper's service function: every error becomes its answer.
pub async fn handle(
    app: Arc<App>,
    sub: Arc<Mutex<Submitter>>,
    door: Door,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Answer, Infallible> {
    Ok(route(&app, &sub, door, peer, req)
        .await
        .unwrap_or_else(|e| e.into_response().map(Either::Left)))
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn route(
    app: &Arc<App>,
    sub: &Mutex<Submitter>,
    door: Door,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Answer, ApiError> {
    // The URI shares the request's buffer (a clone is a reference count).
    let uri = req.uri().clone();
    let (segs, n) = segments(uri.path()).ok_or_else(not_found)?;
    if !door.serves(segs[0]) {
        return Err(not_found());
    }
    // HEAD is GET without the body (hyper leaves the body out).
    let method = match req.method() {
        &Method::HEAD => Method::GET,
        m => m.clone(),
    };
    let plain = match (&method, &segs[..n]) {
        // Public: the sale and the purchase.
        (&Method::POST, ["api", "v1", "sales", sale, "items", item, "purchase"]) => {
            let started = std::time::Instant::now();
            let ip = client_ip(app, peer, &req);
            let answer = purchase::purchase(app, sub, ip, sale, item, req).await;
            if let Err(e) = &answer {
                app.purchase_stats.refused(e.code.status().as_u16());
            }
            app.purchase_stats.finished(started);
            answer
        }
        (&Method::POST, ["api", "v1", "sales", sale, "items", item, "token"]) => {
            let ip = client_ip(app, peer, &req);
            purchase::issue_token(app, ip, sale, item, req).await
        }
        (&Method::GET, ["api", "v1", "requests", id]) => {
            let ip = client_ip(app, peer, &req);
            requests::request_status(app, ip, id).await
        }
        (&Method::GET, ["api", "v1", "time"]) => Ok(sales::time(app)),
        (&Method::GET, ["api", "v1", "rounds"]) => sales::rounds(app, &req),
        (&Method::GET, ["api", "v1", "sales", sale]) => {
            let ip = client_ip(app, peer, &req);
            sales::sale_page(app, ip, sale).await
        }
        (&Method::GET, ["api", "v1", "openapi.json"]) => Ok(health::openapi()),
        // Orders.
        (&Method::GET, ["api", "v1", "orders", id]) => {
            let ip = client_ip(app, peer, &req);
            orders::get_order(app, ip, id, &req).await
        }
        (&Method::POST, ["api", "v1", "orders", id, "pay"]) => {
            let ip = client_ip(app, peer, &req);
            orders::pay_order(app, ip, id, req).await
        }
        (&Method::POST, ["api", "v1", "orders", id, "cancel"]) => {
            let ip = client_ip(app, peer, &req);
            orders::cancel_order(app, ip, id, req).await
        }
        // Admin.
        (&Method::GET, ["admin", "v1", "sales"]) => admin::list_sales(app, &req),
        (&Method::PUT, ["admin", "v1", "sales", sale]) => admin::put_sale(app, sale, req).await,
        (&Method::GET, ["admin", "v1", "sales", sale]) => admin::get_sale(app, sale, &req).await,
        (&Method::POST, ["admin", "v1", "sales", sale, "rebuild"]) => {
            rebuild::rebuild_sale(app, sale, &req).await
        }
        (&Method::GET, ["admin", "v1", "blacklist"]) => admin::blacklist(app, &req),
        (&Method::PUT, ["admin", "v1", "blacklist", "users", id]) => {
            admin::block_user(app, &req, id).await
        }
        (&Method::DELETE, ["admin", "v1", "blacklist", "users", id]) => {
            admin::unblock_user(app, &req, id).await
        }
        (&Method::PUT, ["admin", "v1", "blacklist", "ips", id]) => {
            admin::block_ip(app, &req, id).await
        }
        (&Method::DELETE, ["admin", "v1", "blacklist", "ips", id]) => {
            admin::unblock_ip(app, &req, id).await
        }
        // Another kind of list: the token first, like every admin call.
        (&Method::PUT | &Method::DELETE, ["admin", "v1", "blacklist", _, _]) => {
            extract::authorize(app, &req)?;
            Err(not_found())
        }
        // The fleet: a peer asks what this daemon's board holds.
        (&Method::GET, ["internal", "v1", "requests", id]) => {
            extract::authorize(app, &req)?;
            requests::peer_lookup(app, id)
        }
        // Operations.
        (&Method::GET, ["livez"]) => Ok(health::livez()),
        (&Method::GET, ["healthz"]) => Ok(health::healthz(app)),
        (&Method::GET, ["readyz"]) => Ok(health::readyz(app)),
        (&Method::GET, ["metrics"]) => Ok(health::metrics(app)),
        // The dashboard: the page, its event stream, the summary export.
        (&Method::GET, ["dashboard"]) => Ok(dashboard::page()),
        (&Method::GET, ["dashboard", "events"]) => return dashboard::events(app, &req),
        (&Method::GET, ["dashboard", "sales", sale, "summary"]) => {
            dashboard::summary(app, &req, sale)
        }
        (_, path) => match allowed(path) {
            Some(allow) => Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                // The method is the client's: never echoed at any length.
                format!("this method is not allowed here (allowed: {allow})"),
            )
            .allow(allow)),
            None => Err(not_found()),
        },
    };
    plain.map(|r| r.map(Either::Left))
}

/// The path's segments, in a fixed array (routing allocates nothing), and
/// how many there are; `None` past [`SEGMENTS_MAX`].
fn segments(path: &str) -> Option<([&str; SEGMENTS_MAX], usize)> {
    let mut segs = [""; SEGMENTS_MAX];
    let mut n = 0;
    for seg in path.trim_matches('/').split('/') {
        *segs.get_mut(n)? = seg;
        n += 1;
    }
    Some((segs, n))
}

/// The methods a path takes (the `Allow` header of a 405), or `None` when
/// no route has this path.
fn allowed(path: &[&str]) -> Option<&'static str> {
    Some(match path {
        ["api", "v1", "sales", _, "items", _, "purchase" | "token"]
        | ["api", "v1", "orders", _, "pay" | "cancel"]
        | ["admin", "v1", "sales", _, "rebuild"] => "POST",
        ["api", "v1", "requests" | "orders" | "sales", _]
        | ["api", "v1", "time" | "rounds" | "openapi.json"]
        | ["admin", "v1", "sales" | "blacklist"]
        | ["livez" | "healthz" | "readyz" | "metrics" | "dashboard"]
        | ["dashboard", "events"]
        | ["dashboard", "sales", _, "summary"] => "GET, HEAD",
        ["admin", "v1", "sales", _] => "GET, HEAD, PUT",
        ["admin", "v1", "blacklist", _, _] => "PUT, DELETE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_split_into_their_segments() {
        let (s, n) = segments("/api/v1/sales/s1").expect("short path");
        assert_eq!(&s[..n], ["api", "v1", "sales", "s1"]);
        assert!(segments("/a/b/c/d/e/f/g/h/i").is_none());
        assert_eq!(allowed(&["api", "v1", "time"]), Some("GET, HEAD"));
        assert_eq!(allowed(&["nope"]), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Any path: split without a panic, at most SEGMENTS_MAX segments,
        /// and the segments joined give the path back.
        #[test]
        fn any_path_splits_or_is_refused(path in "\\PC{0,200}") {
            if let Some((s, n)) = segments(&path) {
                prop_assert!(n <= SEGMENTS_MAX);
                prop_assert_eq!(s[..n].join("/"), path.trim_matches('/'));
                let _ = allowed(&s[..n]);
            }
        }
    }
}
