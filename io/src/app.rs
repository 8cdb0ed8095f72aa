//! The state the handlers and the background tasks share. It sits at the
//! bottom of the module graph: it uses the adapters' types and nothing
//! that uses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dashmap::DashMap;
use seckill_pipeline::health::Health;
use seckill_pipeline::{Catalog, Shared, SharedClock, StatusBoard};
use tokio::sync::Notify;

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
    /// False once shutdown began: new purchases get 503.
    pub accepting: AtomicBool,
    /// Purchase token keys (None: tokens are neither handed out nor checked).
    pub tokens: Option<TokenKeys>,
    pub limits: Limits,
    /// The proxies whose X-Forwarded-For entries are believed.
    pub proxies: TrustedProxies,
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
    /// Per item: the wins already loaded into the status board, and when.
    pub wins: HashMap<(String, String), (u64, Instant)>,
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
