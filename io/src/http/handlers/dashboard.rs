//! The live dashboard: the page (code only, no data: it ships in the
//! binary and makes no request beyond this daemon), its event stream and
//! the sale summary export. The data needs the dashboard token or the
//! admin token as a bearer header — never in the URL, which proxies log.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use crate::app::App;
use crate::http::codec::{check_id, Resp, ID_LEN_MAX};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{bearer, same_secret};
use crate::http::stream::{Answer, EventStream};

/// The page: HTML, CSS and script in one file, drawn on canvases.
const PAGE: &str = include_str!("dashboard.html");

/// Nothing but this daemon: no CDN, no font, no image from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

pub fn page() -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

/// The dashboard token or the admin token, as `Authorization: Bearer`.
pub fn authorize(app: &App, req: &Request<Incoming>) -> Result<(), ApiError> {
    let (admin, dashboard) = (&app.cfg.admin_token, &app.cfg.dashboard_token);
    if admin.is_empty() && dashboard.is_empty() {
        return Err(ApiError::new(
            ErrorCode::AdminDisabled,
            "no admin or dashboard token is configured",
        ));
    }
    let given = bearer(req);
    // Both compared, whichever matched: the time says nothing.
    let ok_admin = !admin.is_empty() && same_secret(given, admin);
    let ok_dashboard = !dashboard.is_empty() && same_secret(given, dashboard);
    if !(ok_admin | ok_dashboard) {
        return Err(ApiError::new(
            ErrorCode::BadToken,
            "missing or wrong dashboard (or admin) bearer token",
        ));
    }
    Ok(())
}

/// `GET /dashboard/events`: one snapshot a second, as server-sent events
/// (`event: snapshot`, `data: <JSON>`), the newest one first.
pub fn events(app: &App, req: &Request<Incoming>) -> Result<Answer, ApiError> {
    authorize(app, req)?;
    let (events, closed) = app.feed.subscribe();
    let mut r = Response::new(Either::Right(EventStream::new(events, closed)));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx: pass each event on at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// `GET /dashboard/sales/{sale}/summary`: the sale's summary as JSON (a
/// download), once it sold out or ended.
pub fn summary(app: &App, req: &Request<Incoming>, sale: &str) -> Result<Resp, ApiError> {
    authorize(app, req)?;
    check_id("sale_id", sale, ID_LEN_MAX)?;
    if app.catalog.sale_items(sale).is_none() {
        return Err(ApiError::new(ErrorCode::UnknownSale, "no such sale"));
    }
    let Some(json) = app.feed.summary(sale) else {
        return Err(ApiError::new(
            ErrorCode::NoSummary,
            "the sale has neither sold out nor ended yet",
        ));
    };
    let mut r = Response::new(Full::new(json));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The sale id passed the id check: only [A-Za-z0-9_.:@-].
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"seckill-summary-{sale}.json\""
    )) {
        h.insert("content-disposition", v);
    }
    Ok(r)
}
