//! The load generator's engine: plays a flash sale against a running
//! daemon — creates the sale with a countdown, lets simulated users click
//! (optionally more than once, optionally retrying), and records every
//! answer with its latency. Bounded in requests and in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::check::Answer;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client(max_idle_per_host: usize) -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle_per_host)
        .build(conn)
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("HTTP request failed: {0}")]
    Http(String),
    #[error("the daemon refused the sale: HTTP {status}: {body}")]
    Refused { status: u16, body: String },
}

/// Sends one request; returns HTTP status and body.
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, Bytes), LoadError> {
    let mut b = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(t) = bearer {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = b
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| LoadError::Http(e.to_string()))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| LoadError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| LoadError::Http(e.to_string()))?
        .to_bytes();
    Ok((status, body))
}

/// One item of the sale the load generator creates.
#[derive(Debug, Clone, Serialize)]
pub struct ItemSpec {
    pub item_id: String,
    pub title: String,
    pub price_cents: u64,
    pub stock: u64,
    pub per_user_limit: u32,
    /// Stock shards (1: not split).
    pub shards: u32,
}

/// Creates (or replaces) a sale through the admin API.
pub async fn create_sale(
    client: &HttpClient,
    base: &str,
    token: &str,
    sale_id: &str,
    start_ms: u64,
    end_ms: u64,
    items: &[ItemSpec],
) -> Result<(), LoadError> {
    let body = serde_json::to_vec(&serde_json::json!({
        "start_ms": start_ms, "end_ms": end_ms, "items": items,
    }))
    .map_err(|e| LoadError::Http(e.to_string()))?;
    let url = format!("{base}/admin/v1/sales/{sale_id}");
    let (status, body) = send(client, Method::PUT, &url, Some(token), body).await?;
    if status != 200 {
        return Err(LoadError::Refused {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(())
}

/// What to play.
#[derive(Debug, Clone)]
pub struct Plan {
    pub base: String,
    pub sale_id: String,
    pub items: Vec<String>,
    /// Users `first_user..users` play (user n is `user-n`).
    pub users: usize,
    pub first_user: usize,
    /// Prefix of request ids, to tell two runs of the same users apart.
    pub request_prefix: String,
    /// Purchases each user sends (distinct request ids: duplicate clicks).
    pub clicks_per_user: usize,
    /// Extra sends of the same request id after an answer (client retries).
    pub retries: usize,
    pub concurrency: usize,
    /// Hard stop for the whole run.
    pub time_max: Duration,
    /// Requests per second the whole run sends, open-loop (None: as fast
    /// as the concurrency allows, closed-loop). Request k is due at
    /// `start + k / rate` and its latency is measured from then, not from
    /// when a connection was free to send it: a server that stalls is
    /// charged for every request that waited behind the stall (no
    /// coordinated omission). For latency at a given load, e.g. half the
    /// maximum rate.
    pub rate_per_sec: Option<std::num::NonZeroU32>,
}

impl Plan {
    /// `users` users buying one unit each of `items` in sale `sale_id` at
    /// `base`: one click, no retry, 64 connections, closed-loop, a minute
    /// at most.
    pub fn new(base: &str, sale_id: &str, items: &[&str], users: usize) -> Plan {
        Plan {
            base: base.to_string(),
            sale_id: sale_id.to_string(),
            items: items.iter().map(|i| (*i).to_string()).collect(),
            users,
            first_user: 0,
            request_prefix: String::new(),
            clicks_per_user: 1,
            retries: 0,
            concurrency: 64,
            time_max: Duration::from_secs(60),
            rate_per_sec: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub requests: usize,
    pub elapsed_ms: u64,
    pub requests_per_sec: f64,
    pub latency: Latency,
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// Answers of the burst itself, when the report was settled afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst_by_status: Option<std::collections::BTreeMap<String, u64>>,
    pub by_http: std::collections::BTreeMap<u16, u64>,
    #[serde(skip)]
    pub answers: Vec<Answer>,
}

/// Asks the token endpoint for a user's purchase token. `Ok(None)`: the
/// daemon hands out no tokens (it runs with `require_token = false`).
pub async fn token(
    client: &HttpClient,
    base: &str,
    sale: &str,
    item: &str,
    user: &str,
) -> Result<Option<String>, LoadError> {
    let url = format!("{base}/api/v1/sales/{sale}/items/{item}/token");
    let body = format!(r#"{{"user_id":"{user}"}}"#).into_bytes();
    let (status, body) = send(client, Method::POST, &url, None, body).await?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match (status, v["token"].as_str()) {
        (200, Some(t)) => Ok(Some(t.to_string())),
        // No token endpoint (a bare server) or tokens turned off.
        (200 | 404, None) => Ok(None),
        (409, _) if v["error"] == "tokens_disabled" => Ok(None),
        _ => Err(LoadError::Refused {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }),
    }
}

/// Fetches every user's token before the burst (what clients do in the
/// minute before the start), `concurrency` at a time, retrying 429/5xx
/// answers until `within` is over. Index: user − `plan.first_user`.
pub async fn fetch_tokens(
    client: &HttpClient,
    plan: &Plan,
    within: Duration,
) -> Vec<Option<Arc<str>>> {
    let deadline = Instant::now() + within;
    let users = plan.users.saturating_sub(plan.first_user);
    // A daemon without tokens (turned off, or no token endpoint) says so
    // to the first user: nobody else needs to ask.
    if users > 0 {
        let item = &plan.items[plan.first_user % plan.items.len().max(1)];
        let user = format!("user-{}", plan.first_user);
        if let Ok(None) = token(client, &plan.base, &plan.sale_id, item, &user).await {
            return vec![None; users];
        }
    }
    let sem = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for u in plan.first_user..plan.users {
        let Ok(permit) = Arc::clone(&sem).acquire_owned().await else {
            break;
        };
        let client = client.clone();
        let base = plan.base.clone();
        let sale = plan.sale_id.clone();
        let item = plan.items[u % plan.items.len().max(1)].clone();
        tasks.spawn(async move {
            let user = format!("user-{u}");
            let mut got = None;
            while Instant::now() < deadline {
                match token(&client, &base, &sale, &item, &user).await {
                    Ok(t) => {
                        got = t.map(Arc::from);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            drop(permit);
            (u, got)
        });
    }
    let mut out = vec![None; users];
    while let Some(r) = tasks.join_next().await {
        if let Ok((u, t)) = r {
            if let Some(slot) = out.get_mut(u - plan.first_user) {
                *slot = t;
            }
        }
    }
    out
}

pub(crate) fn purchase_body(user: &str, request_id: &str, token: Option<&str>) -> Vec<u8> {
    match token {
        Some(t) => format!(r#"{{"user_id":"{user}","request_id":"{request_id}","token":"{t}"}}"#),
        None => format!(r#"{{"user_id":"{user}","request_id":"{request_id}"}}"#),
    }
    .into_bytes()
}

/// Where a purchase goes.
struct ItemUrl<'a> {
    base: &'a str,
    sale: &'a str,
    item: &'a str,
}

async fn purchase(
    client: &HttpClient,
    ItemUrl { base, sale, item }: ItemUrl<'_>,
    user: &str,
    request_id: &str,
    token: Option<Arc<str>>,
    due: Option<Instant>,
) -> Answer {
    let url = format!("{base}/api/v1/sales/{sale}/items/{item}/purchase");
    let body = purchase_body(user, request_id, token.as_deref());
    // Open-loop: from when the request was due (never later than now).
    let started = due.map_or_else(Instant::now, |d| d.min(Instant::now()));
    let res = send(client, Method::POST, &url, None, body).await;
    let latency_us = started.elapsed().as_micros() as u64;
    let (http, status, order_id) = match res {
        Ok((code, body)) => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let status = v
                .get("status")
                .or_else(|| v.get("error"))
                .and_then(|s| s.as_str())
                .unwrap_or("unparsable")
                .to_string();
            let order = v
                .get("order_id")
                .and_then(|s| s.as_str())
                .map(str::to_string);
            (code, status, order)
        }
        Err(e) => (0, format!("transport: {e}"), None),
    };
    Answer {
        item_id: item.to_string(),
        user_id: user.to_string(),
        request_id: request_id.to_string(),
        http,
        status,
        order_id,
        latency_us,
        token,
    }
}

/// Plays the plan: first every user fetches its purchase token (not part
/// of the measured burst), then every (user, click) is one task; at most
/// `concurrency` in flight. User `u` buys item `u % items`.
pub async fn run(client: &HttpClient, plan: &Plan) -> Report {
    let tokens = fetch_tokens(client, plan, plan.time_max).await;
    run_with_tokens(client, plan, &tokens).await
}

/// The burst alone, with tokens fetched beforehand (see [`fetch_tokens`]).
pub async fn run_with_tokens(
    client: &HttpClient,
    plan: &Plan,
    tokens: &[Option<Arc<str>>],
) -> Report {
    run_with_progress(client, plan, tokens, None).await
}

/// [`run_with_tokens`], each answer also counted in `progress` as it
/// arrives (the live line of `seckill-load`).
pub async fn run_with_progress(
    client: &HttpClient,
    plan: &Plan,
    tokens: &[Option<Arc<str>>],
    progress: Option<Arc<crate::progress::Progress>>,
) -> Report {
    let sem = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    // The open-loop schedule: request k is due `k * interval` after the
    // start.
    let interval = plan
        .rate_per_sec
        .map(|r| Duration::from_secs_f64(1.0 / f64::from(r.get())));
    let deadline = Instant::now() + plan.time_max;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut k: u32 = 0;
    for u in plan.first_user..plan.users {
        for c in 0..plan.clicks_per_user {
            let due = interval.map(|i| started + i * k);
            k = k.saturating_add(1);
            if let Some(due) = due {
                // The last fifth of the time (at most a second) is left to
                // the answers of what was sent.
                if due + (plan.time_max / 5).min(Duration::from_secs(1)) >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
            }
            let permit =
                match tokio::time::timeout_at(deadline.into(), Arc::clone(&sem).acquire_owned())
                    .await
                {
                    Ok(Ok(p)) => p,
                    _ => break,
                };
            let client = client.clone();
            let base = plan.base.clone();
            let sale = plan.sale_id.clone();
            let item = plan.items[u % plan.items.len().max(1)].clone();
            let retries = plan.retries;
            let prefix = plan.request_prefix.clone();
            let token = tokens.get(u - plan.first_user).cloned().flatten();
            let progress = progress.clone();
            tasks.spawn(async move {
                let user = format!("user-{u}");
                let request_id = format!("{prefix}{sale}-{user}-{c}");
                let mut answers = Vec::with_capacity(1 + retries);
                for attempt in 0..=retries {
                    // Retries are the client's own: timed from their send.
                    let due = due.filter(|_| attempt == 0);
                    let at = ItemUrl {
                        base: &base,
                        sale: &sale,
                        item: &item,
                    };
                    let a = purchase(&client, at, &user, &request_id, token.clone(), due).await;
                    if let Some(p) = &progress {
                        p.record(&a);
                    }
                    let retry_later = a.http == 503 || a.http == 429 || a.http == 0;
                    answers.push(a);
                    if retry_later {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                drop(permit);
                answers
            });
        }
    }
    let mut answers = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline.into(), tasks.join_next()).await {
            Ok(Some(Ok(a))) => answers.extend(a),
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) => {
                tasks.abort_all();
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    report(answers, elapsed)
}

pub fn report(answers: Vec<Answer>, elapsed: Duration) -> Report {
    // Constant, valid bounds: 1 µs to 60 s at 3 significant figures.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .expect("constant histogram bounds are valid");
    let mut by_status = std::collections::BTreeMap::new();
    let mut by_http = std::collections::BTreeMap::new();
    for a in &answers {
        let _ = hist.record(a.latency_us.clamp(1, 60_000_000));
        *by_status.entry(a.status.clone()).or_insert(0) += 1;
        *by_http.entry(a.http).or_insert(0) += 1;
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    Report {
        requests: answers.len(),
        elapsed_ms: elapsed.as_millis() as u64,
        requests_per_sec: answers.len() as f64 / secs,
        latency: Latency {
            p50_us: hist.value_at_quantile(0.50),
            p90_us: hist.value_at_quantile(0.90),
            p99_us: hist.value_at_quantile(0.99),
            p999_us: hist.value_at_quantile(0.999),
            max_us: hist.max(),
        },
        by_status,
        burst_by_status: None,
        by_http,
        answers,
    }
}
