//! What one dashboard snapshot holds: the JSON of each server-sent event
//! and of the summary export. Field names are the page's contract (and
//! the export's, for whoever reads it later): docs/dashboard.md lists them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version of this shape, bumped when a field changes meaning.
pub const SNAPSHOT_VERSION: u32 = 1;

/// One second of the daemon and its sales.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub v: u32,
    /// This daemon's id in the fleet (`host:port`).
    pub daemon: String,
    /// The server's clock (epoch ms): the page counts down from it.
    pub now_ms: u64,
    pub started_ms: u64,
    /// Time the rates below are measured over.
    pub interval_ms: u64,
    pub deps: Vec<Dependency>,
    /// Purchase answers of this daemon since its start, by status (plus
    /// `rate_limited`, `client_error`, `server_error`).
    pub answers: BTreeMap<String, u64>,
    /// The same per second, over the last interval.
    pub rates: BTreeMap<String, f64>,
    pub latency_ms: Latency,
    pub ring: Ring,
    pub backlog: Backlog,
    pub kafka: Kafka,
    pub journal: Journal,
    pub orders: Orders,
    /// The order service's state: `not_configured` until one reports here.
    pub order_service: &'static str,
    pub sales: Vec<SaleView>,
    pub fleet: Fleet,
}

/// A dependency's state and since when.
#[derive(Debug, Serialize)]
pub struct Dependency {
    pub name: &'static str,
    /// `up`, `down` or `draining`.
    pub state: &'static str,
    /// Epoch ms of the last change (the daemon's start if none).
    pub since_ms: u64,
    pub last_error: String,
}

/// Purchase latency (route to answer) over the last interval.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub samples: u64,
}

#[derive(Debug, Serialize)]
pub struct Ring {
    pub size: usize,
    /// Purchases in the ring waiting for their reply.
    pub in_flight: u64,
    /// Mean requests per ring batch over the interval.
    pub batch_mean: Option<f64>,
    pub batch_max: u64,
    /// Mean requests per stock-script round trip over the interval.
    pub redis_batch_mean: Option<f64>,
    /// Requests refused because the ring was full, per second.
    pub shed_per_s: f64,
}

/// Pending intents (Redis away) and how far their drain has come.
#[derive(Debug, Serialize)]
pub struct Backlog {
    pub pending: u64,
    /// The most pending since the backlog was last empty.
    pub peak: u64,
    /// `peak - pending`: decided since the peak.
    pub drained: u64,
}

#[derive(Debug, Serialize)]
pub struct Kafka {
    /// Wins journaled and not yet acknowledged by Kafka.
    pub unacknowledged: u64,
    pub acked: u64,
    pub acked_per_s: f64,
    pub failed: u64,
    /// Age of the oldest unfinished journal position, s.
    pub oldest_unfinished_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Journal {
    pub held_wins: u64,
    pub disk_free_bytes: Option<u64>,
}

/// Orders after the win, as this daemon saw them.
#[derive(Debug, Serialize)]
pub struct Orders {
    pub paid: u64,
    pub cancelled: u64,
    pub expired_units: u64,
}

/// A sale as the page shows it.
#[derive(Debug, Serialize)]
pub struct SaleView {
    pub sale_id: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// `upcoming`, `live`, `sold_out` or `ended`.
    pub phase: &'static str,
    pub items: Vec<ItemView>,
    /// Items past the page's bound, not listed (their stock not read).
    pub items_hidden: usize,
    /// Sums over the listed items (fleet-wide: read from Redis).
    pub totals: StockTotals,
    /// Epoch ms of the stock reading (older than now: Redis away).
    pub stock_read_ms: u64,
    pub summary: Option<Summary>,
}

#[derive(Debug, Serialize)]
pub struct ItemView {
    pub item_id: String,
    pub title: String,
    pub price_cents: u64,
    pub total: i64,
    pub available: i64,
    /// Won and not paid yet (awaiting payment).
    pub locked: i64,
    /// Won and paid.
    pub sold: i64,
    pub sold_out_at_ms: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct StockTotals {
    pub total: i64,
    pub available: i64,
    pub locked: i64,
    pub sold: i64,
    /// `locked + sold`: units won across the fleet.
    pub won: i64,
}

/// The sale's summary: shown once it sold out or ended, final once ended,
/// exported as JSON by `GET /dashboard/sales/{sale}/summary`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub sale_id: String,
    /// True once the sale ended: the figures no longer move (but for
    /// payments).
    #[serde(rename = "final")]
    pub is_final: bool,
    pub start_ms: u64,
    pub end_ms: u64,
    pub items: usize,
    /// The sale has more items than the page lists: the units and the
    /// revenue cover only the listed ones.
    pub partial: bool,
    pub stock: i64,
    /// Units won across the fleet (`locked + sold` in Redis).
    pub sold: i64,
    pub paid: i64,
    pub available: i64,
    /// Price of every unit won, in cents.
    pub revenue_cents: u64,
    /// Price of every unit paid, in cents.
    pub paid_revenue_cents: u64,
    pub sold_out: bool,
    /// From the start to the moment this daemon saw the last item sell
    /// out.
    pub time_to_sell_out_ms: Option<u64>,
    /// This daemon's purchase answers within the sale's window.
    pub answers: BTreeMap<String, u64>,
    /// Of those, errors: rate limited, other 4xx, 5xx (503 `unavailable`
    /// included).
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub daemon: String,
}

/// What each daemon writes into the fleet hash once a second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DaemonFigures {
    pub id: String,
    pub at_ms: u64,
    pub answers: BTreeMap<String, u64>,
    /// Purchase answers per second.
    pub rate: f64,
    pub success_per_s: f64,
    pub p99_ms: Option<f64>,
    pub pending: u64,
    pub kafka_unacknowledged: u64,
    pub redis: String,
    pub kafka: String,
    pub journal: String,
}

/// Every daemon that wrote its figures lately, and their sums.
#[derive(Debug, Default, Serialize)]
pub struct Fleet {
    pub daemons: Vec<DaemonFigures>,
    pub answers: BTreeMap<String, u64>,
    pub rate: f64,
    pub success_per_s: f64,
    pub pending: u64,
}

impl Fleet {
    /// The daemons heard from within `fresh_ms` of `now_ms`, summed.
    pub fn of(mut daemons: Vec<DaemonFigures>, now_ms: u64, fresh_ms: u64) -> Fleet {
        daemons.retain(|d| now_ms.saturating_sub(d.at_ms) <= fresh_ms);
        daemons.sort_by(|a, b| a.id.cmp(&b.id));
        let mut f = Fleet::default();
        for d in &daemons {
            for (k, v) in &d.answers {
                let n = f.answers.entry(k.clone()).or_default();
                *n = n.saturating_add(*v);
            }
            f.rate += d.rate;
            f.success_per_s += d.success_per_s;
            f.pending = f.pending.saturating_add(d.pending);
        }
        f.daemons = daemons;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_sums_the_daemons_heard_from_lately() {
        let d = |id: &str, at_ms, success| DaemonFigures {
            id: id.into(),
            at_ms,
            answers: BTreeMap::from([("success".to_string(), success)]),
            rate: 10.0,
            pending: 1,
            ..DaemonFigures::default()
        };
        let f = Fleet::of(
            vec![d("b", 9_500, 3), d("a", 10_000, 4), d("gone", 1_000, 100)],
            10_000,
            5_000,
        );
        let ids: Vec<_> = f.daemons.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(f.answers.get("success"), Some(&7));
        assert_eq!(f.rate, 20.0);
        assert_eq!(f.pending, 2);
    }
}
