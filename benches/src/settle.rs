//! Settling: what a patient client does after the burst — poll the status
//! of every `pending` answer, resend (same request id) what got no answer
//! or a 5xx — and waiting for a daemon to be ready.

use std::time::{Duration, Instant};

use hyper::Method;

use crate::check::Answer;
use crate::load::{purchase_body, send, HttpClient};

async fn status_of(
    client: &HttpClient,
    base: &str,
    request_id: &str,
) -> Option<(String, Option<String>)> {
    let url = format!("{base}/api/v1/requests/{request_id}");
    let (code, body) = send(client, Method::GET, &url, None, vec![]).await.ok()?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let status = v["status"].as_str()?.to_string();
    let order = v["order_id"].as_str().map(str::to_string);
    Some((status, order))
}

async fn resend(client: &HttpClient, base: &str, sale: &str, a: &Answer) -> Option<Answer> {
    let url = format!("{base}/api/v1/sales/{sale}/items/{}/purchase", a.item_id);
    let body = purchase_body(&a.user_id, &a.request_id, a.token.as_deref());
    let (code, body) = send(client, Method::POST, &url, None, body).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let status = v["status"].as_str().or(v["error"].as_str())?.to_string();
    Some(Answer {
        http: code,
        status,
        order_id: v["order_id"].as_str().map(str::to_string),
        ..a.clone()
    })
}

/// Returns one final answer per request id (wins as `success` with
/// their order id). Gives up at `deadline`; what is still open then
/// keeps its last answer (and the checker will flag it).
pub async fn settle(
    client: &HttpClient,
    base: &str,
    sale: &str,
    answers: &[Answer],
    within: Duration,
) -> Vec<Answer> {
    let deadline = Instant::now() + within;
    let mut out = Vec::with_capacity(answers.len());
    let mut seen = std::collections::HashSet::new();
    for a in answers {
        if !seen.insert(a.request_id.clone()) {
            continue;
        }
        let mut cur = a.clone();
        while Instant::now() < deadline {
            let open = |a: &Answer| a.http == 0 || a.http == 429 || a.http >= 500;
            if open(&cur) {
                if let Some(n) = resend(client, base, sale, &cur).await {
                    cur = n;
                }
                if open(&cur) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
            if cur.status != "pending" {
                break;
            }
            match status_of(client, base, &cur.request_id).await {
                Some((s, order)) if s != "pending" => {
                    let win = matches!(s.as_str(), "success" | "order_created" | "paid");
                    cur.status = if win { "success".into() } else { s };
                    cur.order_id = order;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        out.push(cur);
    }
    out
}

/// Waits until `/healthz` says Redis is `up` again (a daemon stays ready
/// while Redis is down: readiness is about taking purchases).
pub async fn redis_up(client: &HttpClient, base: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let url = format!("{base}/healthz");
        if let Ok((200, body)) = send(client, Method::GET, &url, None, vec![]).await {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if v["redis"] == "up" {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Waits until `/readyz` answers 200.
pub async fn ready(client: &HttpClient, base: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let url = format!("{base}/readyz");
        if let Ok((200, _)) = send(client, Method::GET, &url, None, vec![]).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
