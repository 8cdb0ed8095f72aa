//! The state the handlers and the background tasks share. It sits at the
//! bottom of the module graph: it uses the adapters' types and nothing
//! that uses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use seckill_pipeline::health::Health;
use seckill_pipeline::stats::Histogram;
use seckill_pipeline::{Catalog, Shared, SharedClock, Status, StatusBoard};
use tokio::sync::{watch, Notify};

use crate::admission::{Limits, TokenKeys, TrustedProxies};
use crate::config::Config;
use crate::error::DaemonError;
use crate::kafka::SinkStats;
use crate::redis::RedisAdmin;

/// What the handlers and the tasks share.
pub struct App {
    pub cfg: Config,
    /// Every decision by the time reads this clock (tests move it).
    pub clock: SharedClock,
    pub catalog: Arc<Catalog>,
    pub shared: Shared,
    pub board: Arc<StatusBoard>,
    pub sink_stats: Arc<SinkStats>,
    pub kafka: Arc<Health>,
    pub redis: RedisAdmin,
    pub(crate) known_wins: Arc<KnownWins>,
    /// Held by the catalog sync (the probe's, or a catch-up before an
    /// `unknown_item` answer): one at a time.
    pub catalog_sync: Arc<tokio::sync::Mutex<()>>,
    /// False once shutdown began: new purchases get 503.
    pub accepting: AtomicBool,
    /// SIGTERM arrived: `/readyz` fails for `shutdown_drain_ms` while
    /// purchases are still served, so a balancer stops sending before the
    /// daemon stops taking.
    pub draining: AtomicBool,
    /// When the ring last refused a purchase (epoch ms; 0: never): a
    /// daemon whose ring refused within the last second is not ready.
    pub last_ring_full_ms: std::sync::atomic::AtomicU64,
    /// Purchase token keys (None: tokens are neither handed out nor checked).
    pub tokens: Option<TokenKeys>,
    pub limits: Limits,
    /// The proxies whose X-Forwarded-For entries are believed.
    pub proxies: TrustedProxies,
    /// The other daemons of the fleet, asked about requests nobody else
    /// knows.
    pub peers: crate::peers::Peers,
    pub order_stats: OrderStats,
    pub conn_stats: ConnStats,
    pub order_wake: Wake,
    /// Order id → (sale, item), learnt from lookups (orders are keyed by
    /// item in Redis; the id alone does not say which).
    pub order_index: DashMap<String, (String, String)>,
    /// Order ids recently looked up and not found.
    pub order_misses: Misses,
    /// Request ids recently looked up (status) and found nowhere.
    pub request_misses: Misses,
    /// The process-wide metric collectors (`/metrics` adds the daemon's).
    pub metrics: prometheus::Registry,
    /// Sales forgotten after their retention (bounded; see `tasks::bounds`).
    pub forgotten_sales: Mutex<std::collections::VecDeque<String>>,
    /// What purchases were answered, and how fast (the dashboard's rates).
    pub purchase_stats: PurchaseStats,
    /// The dashboard's live snapshot, once a second (see `dashboard`).
    pub feed: Feed,
}

impl App {
    /// The items the sweeper and the outbox publisher visit: every item of
    /// every sale in the catalog on the first pass (a restart may find
    /// events left behind), then only items that had wins — no others can
    /// have orders — so an idle daemon with a large catalog stays idle.
    pub fn items_with_orders(&self, all: bool) -> Vec<(String, String)> {
        self.catalog
            .sales()
            .into_iter()
            .flat_map(|(sale, items)| {
                items
                    .into_iter()
                    .filter(move |i| all || i.touched())
                    .map(move |i| (sale.clone(), i.item_id.clone()))
            })
            .collect()
    }
}

/// Purchase latency buckets, µs: finer than the stages' below 10 ms, where
/// a flash sale's answers are.
pub const PURCHASE_LATENCY_US: [u64; 18] = [
    100, 200, 300, 400, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 7_500, 10_000, 25_000,
    100_000, 1_000_000, 10_000_000,
];

/// Counters of the purchase answers, kept by the purchase route: one
/// relaxed add per answer and one histogram record. The dashboard turns
/// their differences into rates and percentiles.
#[derive(Debug)]
pub struct PurchaseStats {
    /// Decided answers, indexed by `Status as usize`.
    by_status: [AtomicU64; Status::ALL.len()],
    /// 429: a rate limit.
    rate_limited: AtomicU64,
    /// Other 4xx (bad input, unknown item, blacklisted, bad token).
    client_errors: AtomicU64,
    /// 5xx (ring full, journal down, timeout, shutting down).
    server_errors: AtomicU64,
    /// Purchases in the ring, waiting for their reply.
    in_ring: AtomicU64,
    /// Time from the route to the answer, µs.
    pub latency: Histogram,
}

impl Default for PurchaseStats {
    fn default() -> Self {
        PurchaseStats {
            by_status: std::array::from_fn(|_| AtomicU64::new(0)),
            rate_limited: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            in_ring: AtomicU64::new(0),
            latency: Histogram::new(&PURCHASE_LATENCY_US),
        }
    }
}

/// See [`PurchaseStats::in_ring`].
#[derive(Debug)]
pub struct InRing<'a>(&'a AtomicU64);

impl Drop for InRing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A reading of [`PurchaseStats`].
#[derive(Debug, Clone, Default)]
pub struct PurchaseCounts {
    pub by_status: [u64; Status::ALL.len()],
    pub rate_limited: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub in_ring: u64,
    /// Cumulative latency buckets (`None`: +Inf), as the histogram gives.
    pub latency: Vec<(Option<u64>, u64)>,
}

impl PurchaseStats {
    /// A decided answer (200, 202, or 503 `unavailable`).
    pub fn answered(&self, status: Status) {
        if let Some(c) = self.by_status.get(status as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An error answer, by its HTTP status.
    pub fn refused(&self, http_status: u16) {
        let c = match http_status {
            429 => &self.rate_limited,
            400..=499 => &self.client_errors,
            _ => &self.server_errors,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A purchase waiting for the ring's reply, counted until the guard
    /// drops (also when the client goes away mid-wait).
    pub fn in_ring(&self) -> InRing<'_> {
        self.in_ring.fetch_add(1, Ordering::Relaxed);
        InRing(&self.in_ring)
    }

    pub fn finished(&self, started: Instant) {
        let us = started.elapsed().as_micros();
        self.latency.record(u64::try_from(us).unwrap_or(u64::MAX));
    }

    pub fn read(&self) -> PurchaseCounts {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PurchaseCounts {
            by_status: std::array::from_fn(|i| self.by_status.get(i).map_or(0, r)),
            rate_limited: r(&self.rate_limited),
            client_errors: r(&self.client_errors),
            server_errors: r(&self.server_errors),
            in_ring: r(&self.in_ring),
            latency: self.latency.snapshot().0,
        }
    }
}

/// The dashboard's feed: the newest snapshot (one server-sent event,
/// already encoded) for every open stream, and the newest summary of each
/// sale for the JSON export. Written once a second by the dashboard task;
/// the number of viewers does not change its cost.
#[derive(Debug)]
pub struct Feed {
    snapshot: watch::Sender<Bytes>,
    closed: watch::Sender<bool>,
    summaries: Mutex<HashMap<String, Bytes>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            snapshot: watch::channel(Bytes::new()).0,
            closed: watch::channel(false).0,
            summaries: Mutex::default(),
        }
    }
}

impl Feed {
    /// The snapshots from now on (the newest one first, once there is one)
    /// and the flag that turns true when the feed ends (shutdown).
    pub fn subscribe(&self) -> (watch::Receiver<Bytes>, watch::Receiver<bool>) {
        let mut rx = self.snapshot.subscribe();
        rx.mark_changed();
        (rx, self.closed.subscribe())
    }

    /// Open streams.
    pub fn viewers(&self) -> usize {
        self.snapshot.receiver_count()
    }

    pub fn publish(&self, event: Bytes) {
        self.snapshot.send_replace(event);
    }

    /// Ends every stream.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    pub fn set_summaries(&self, summaries: HashMap<String, Bytes>) {
        *self.summaries.lock().unwrap_or_else(|e| e.into_inner()) = summaries;
    }

    pub fn summary(&self, sale: &str) -> Option<Bytes> {
        self.summaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sale)
            .cloned()
    }
}

/// Counters of what happened to orders after the win.
#[derive(Debug, Default)]
pub struct OrderStats {
    pub paid: AtomicU64,
    pub cancelled: AtomicU64,
    pub expired_units: AtomicU64,
    pub events_published: AtomicU64,
    pub events_failed: AtomicU64,
    pub reopened: AtomicU64,
}

/// Order ids recently looked up and found nowhere: asked again within
/// [`Misses::TTL_MS`], they are answered 404 without a Redis round trip
/// (one lookup is one `HEXISTS` per catalog item). Bounded: past
/// [`Misses::LEN_MAX`] entries the cache starts over.
#[derive(Debug, Default)]
pub struct Misses(Mutex<HashMap<String, u64>>);

impl Misses {
    pub const TTL_MS: u64 = 1_000;
    pub const LEN_MAX: usize = 10_000;

    /// `order_id` missed less than [`Misses::TTL_MS`] before `now_ms`.
    pub fn recent(&self, order_id: &str, now_ms: u64) -> bool {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(order_id)
            .is_some_and(|&at| now_ms.saturating_sub(at) < Self::TTL_MS)
    }

    pub fn remember(&self, order_id: &str, now_ms: u64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= Self::LEN_MAX {
            m.clear();
        }
        m.insert(order_id.to_string(), now_ms);
    }
}

/// Open connections, and those refused past `connections_max`.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub open: AtomicU64,
    pub refused: AtomicU64,
}

/// Wakes the outbox publisher early (after a pay, a cancel or a sweep).
#[derive(Debug, Default)]
pub struct Wake(Notify);

impl Wake {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// What the catalog refresh remembers between ticks.
#[derive(Debug, Default)]
pub struct Known {
    /// Per item: how many wins are already loaded into the status board.
    pub wins: HashMap<(String, String), u64>,
    /// The catalog version the metadata was last read at.
    pub catalog_version: Option<u64>,
    pub ticks: u64,
}

pub type KnownWins = Mutex<Known>;

/// Runs blocking work (Redis calls, WAL reads) off the tokio workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DaemonError> {
    Ok(tokio::task::spawn_blocking(f).await?)
}
