//! The other daemons of a fleet, asked about requests this daemon does not
//! know. A purchase answered `pending` (Redis down) lives only in the WAL
//! and the status board of the daemon that took it; behind a balancer
//! without stickiness the client's next poll may reach any daemon. That
//! daemon asks Redis first (the outcome the stock script stored), then
//! every peer at once (`GET /internal/v1/requests/{id}` on their admin
//! socket, with the admin token; a peer answers from its board only and
//! never asks further). A peer that knows the request answers for it; when
//! none does and one did not answer, the poll gets 503 with Retry-After —
//! the request may be that peer's — and never a wrong 404.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::AUTHORIZATION;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

/// The largest answer read from a peer.
const ANSWER_BYTES_MAX: usize = 16 * 1024;

/// A request as a peer's board holds it (the body of the internal lookup).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerRequest {
    pub request_id: String,
    pub status: String,
    pub order_id: Option<String>,
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
}

/// What the peers said of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerAnswer {
    /// A peer holds it.
    Found(PeerRequest),
    /// Every peer answered and none knows it (also: no peers).
    Nobody,
    /// None that answered knows it; this many did not answer.
    Unreachable(usize),
}

/// The peers and a client to ask them.
pub struct Peers {
    addrs: Vec<String>,
    token: String,
    timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("addrs", &self.addrs)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Peers {
    /// `addrs` are `host:port` of the peers' admin sockets.
    pub fn new(addrs: Vec<String>, token: String, timeout: Duration) -> Peers {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Peers {
            addrs,
            token,
            timeout,
            client,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Asks every peer at once; the first that knows the request answers.
    /// `request_id` is a checked id (letters, digits and `_-.:@`).
    pub async fn lookup(&self, request_id: &str) -> PeerAnswer {
        if self.addrs.is_empty() {
            return PeerAnswer::Nobody;
        }
        let mut asks = tokio::task::JoinSet::new();
        for addr in &self.addrs {
            let uri = format!("http://{addr}/internal/v1/requests/{request_id}");
            let ask = self.ask(uri);
            asks.spawn(ask);
        }
        let mut unreachable = 0;
        while let Some(done) = asks.join_next().await {
            match done {
                Ok(Asked::Knows(r)) if r.request_id == request_id => {
                    asks.abort_all();
                    return PeerAnswer::Found(r);
                }
                Ok(Asked::DoesNotKnow) => {}
                // An answer about another request says nothing of this one.
                Ok(Asked::Knows(_) | Asked::NoAnswer) | Err(_) => unreachable += 1,
            }
        }
        if unreachable == 0 {
            PeerAnswer::Nobody
        } else {
            PeerAnswer::Unreachable(unreachable)
        }
    }

    fn ask(&self, uri: String) -> impl std::future::Future<Output = Asked> + Send + 'static {
        let client = self.client.clone();
        let auth = format!("Bearer {}", self.token);
        let timeout = self.timeout;
        async move {
            let Ok(uri) = uri.parse::<Uri>() else {
                return Asked::NoAnswer;
            };
            let Ok(req) = Request::get(uri)
                .header(AUTHORIZATION, auth)
                .body(Empty::new())
            else {
                return Asked::NoAnswer;
            };
            let answer = tokio::time::timeout(timeout, async {
                let resp = client.request(req).await.ok()?;
                let status = resp.status();
                let body = http_body_util::Limited::new(resp.into_body(), ANSWER_BYTES_MAX)
                    .collect()
                    .await
                    .ok()?
                    .to_bytes();
                Some((status, body))
            })
            .await;
            match answer {
                Ok(Some((StatusCode::OK, body))) => match serde_json::from_slice(&body) {
                    Ok(r) => Asked::Knows(r),
                    Err(e) => {
                        tracing::warn!(error = %e, "a peer's lookup answer is unreadable");
                        Asked::NoAnswer
                    }
                },
                // Only the lookup's own 404 says "not mine": a 404 of a
                // socket that does not serve the lookup (a peer listed by
                // its public address) says nothing.
                Ok(Some((StatusCode::NOT_FOUND, body)))
                    if serde_json::from_slice::<ErrorCodeOnly>(&body)
                        .is_ok_and(|b| b.error == "unknown_request") =>
                {
                    Asked::DoesNotKnow
                }
                Ok(Some((status, _))) => {
                    tracing::warn!(%status, "a peer refused a lookup (admin token?)");
                    Asked::NoAnswer
                }
                Ok(None) | Err(_) => Asked::NoAnswer,
            }
        }
    }
}

#[derive(Deserialize)]
struct ErrorCodeOnly {
    error: String,
}

enum Asked {
    Knows(PeerRequest),
    DoesNotKnow,
    NoAnswer,
}
