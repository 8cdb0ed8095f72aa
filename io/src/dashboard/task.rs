//! The dashboard task: once a second, a reading of the counters, one
//! Redis round trip, one snapshot encoded once for every viewer.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use seckill_pipeline::health::Health;
use seckill_pipeline::{Item, Status};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::counts::{answers, difference, latency, Reading};
use super::view::{
    Backlog, DaemonFigures, Dependency, Fleet, ItemView, Journal, Kafka, Orders, Ring, SaleView,
    Snapshot, StockTotals, Summary, SNAPSHOT_VERSION,
};
use crate::app::{blocking, App, PurchaseCounts};
use crate::config::RateScope;
use crate::redis::StockHash;
use crate::shutdown::until_true;

/// How often a snapshot is taken (the page's refresh).
pub const TICK: Duration = Duration::from_secs(1);
/// A daemon not heard from for this long is left out of the fleet.
const FRESH_MS: u64 = 5_000;
/// … and after this long its entry is deleted from Redis.
const GONE_MS: u64 = 60_000;
/// Most sales on the page (newest start first).
const SALES_MAX: usize = 50;
/// Most items listed (and read) per sale, and in all.
const ITEMS_PER_SALE_MAX: usize = 200;
const ITEMS_MAX: usize = 2_000;

/// A sale's window: the counters at its start and, once it ended, at its
/// end (the summary's answers and percentiles are their difference).
#[derive(Debug, Default)]
struct Window {
    start: PurchaseCounts,
    end: Option<PurchaseCounts>,
}

/// What the task keeps between ticks.
struct Tracker {
    id: String,
    started_ms: u64,
    prev: Reading,
    prev_at: Instant,
    backlog_peak: u64,
    windows: HashMap<String, Window>,
    stocks: HashMap<(String, String), StockHash>,
    stock_read_ms: u64,
    fleet: Vec<DaemonFigures>,
}

/// Daemons heard from within `FRESH_MS`, this one included: how many
/// share the fleet-wide rate limits. Only a successful read changes it (a
/// Redis outage keeps the last count, not a fleet of one).
fn live_daemons(fleet: &[DaemonFigures], own: &str, now_ms: u64) -> u32 {
    let others = fleet
        .iter()
        .filter(|d| d.id != own && now_ms.saturating_sub(d.at_ms) <= FRESH_MS)
        .count();
    u32::try_from(others + 1).unwrap_or(u32::MAX)
}

/// `host:port`: the daemon's name in the fleet.
fn daemon_id(addr: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| addr.ip().to_string());
    format!("{host}:{}", addr.port())
}

fn dependency(h: &Health, started_ms: u64) -> Dependency {
    let since = h.changed_ms();
    Dependency {
        name: h.name(),
        state: h.state().as_str(),
        since_ms: if since == 0 { started_ms } else { since },
        last_error: h.last_error(),
    }
}

/// Runs until `stop`; then ends every stream and leaves the fleet.
pub async fn run(app: Arc<App>, addr: SocketAddr, mut stop: watch::Receiver<bool>) {
    let mut t = Tracker {
        id: daemon_id(addr),
        started_ms: app.clock.now_ms(),
        prev: Reading::take(&app),
        prev_at: Instant::now(),
        backlog_peak: 0,
        windows: HashMap::new(),
        stocks: HashMap::new(),
        stock_read_ms: 0,
        fleet: Vec::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = until_true(&mut stop) => break,
        }
        let event = t.tick(&app).await;
        app.feed.publish(event);
    }
    app.feed.close();
    let (r, id) = (app.redis.clone(), t.id.clone());
    let _ = blocking(move || r.leave_fleet(&id)).await;
}

impl Tracker {
    /// One snapshot, encoded as a server-sent event.
    async fn tick(&mut self, app: &Arc<App>) -> Bytes {
        let now_ms = app.clock.now_ms();
        let reading = Reading::take(app);
        let dt = self.prev_at.elapsed().as_secs_f64().max(0.001);
        self.prev_at = Instant::now();
        let (p, q) = (&reading.purchases, &self.prev.purchases);
        let rates: BTreeMap<String, f64> = difference(p, q)
            .into_iter()
            .map(|(k, v)| (k, v as f64 / dt))
            .collect();
        let lat = latency(p, q);
        let pending = app.shared.backlog.total();
        self.backlog_peak = if pending == 0 {
            0
        } else {
            self.backlog_peak.max(pending)
        };
        let unacked = (app.shared.outstanding.len() as u64).saturating_sub(pending);
        let deps: Vec<Dependency> = [&app.shared.redis, &app.kafka, &app.shared.journal]
            .into_iter()
            .map(|h| dependency(h, self.started_ms))
            .collect();
        let own = DaemonFigures {
            id: self.id.clone(),
            at_ms: now_ms,
            answers: answers(p),
            rate: rates.values().sum(),
            success_per_s: rates.get("success").copied().unwrap_or(0.0),
            p99_ms: lat.p99,
            pending,
            kafka_unacknowledged: unacked,
            redis: app.shared.redis.state().as_str().into(),
            kafka: app.kafka.state().as_str().into(),
            journal: app.shared.journal.state().as_str().into(),
        };

        let sales = self.sales_on_screen(app, now_ms);
        self.read_redis(app, &own, &sales, now_ms).await;
        let mut others: Vec<DaemonFigures> = self
            .fleet
            .iter()
            .filter(|d| d.id != self.id)
            .cloned()
            .collect();
        others.push(own);
        let fleet = Fleet::of(others, now_ms, FRESH_MS);

        let mut summaries = HashMap::new();
        let sale_views: Vec<SaleView> = sales
            .into_iter()
            .map(|(sale_id, items, hidden)| {
                let view = self.sale_view(&sale_id, &items, hidden, now_ms, &reading.purchases);
                if let Some(s) = &view.summary {
                    if let Ok(json) = serde_json::to_vec_pretty(s) {
                        summaries.insert(sale_id, Bytes::from(json));
                    }
                }
                view
            })
            .collect();
        app.feed.set_summaries(summaries);
        self.windows
            .retain(|sale, _| app.catalog.sale_items(sale).is_some());

        let s = &app.shared.stats;
        let per = |now: u64, before: u64| now.saturating_sub(before);
        let mean = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let snapshot = Snapshot {
            v: SNAPSHOT_VERSION,
            daemon: self.id.clone(),
            now_ms,
            started_ms: self.started_ms,
            interval_ms: (dt * 1000.0) as u64,
            deps,
            answers: answers(p),
            rates,
            latency_ms: lat,
            ring: Ring {
                size: app.cfg.ring_size,
                in_flight: p.in_ring,
                batch_mean: mean(
                    per(reading.batch_events, self.prev.batch_events),
                    per(reading.batches, self.prev.batches),
                ),
                batch_max: s.batch_len_max.load(Ordering::Relaxed),
                redis_batch_mean: mean(
                    per(reading.store_requests, self.prev.store_requests),
                    per(reading.store_calls, self.prev.store_calls),
                ),
                shed_per_s: per(reading.shed, self.prev.shed) as f64 / dt,
            },
            backlog: Backlog {
                pending,
                peak: self.backlog_peak,
                drained: self.backlog_peak.saturating_sub(pending),
            },
            kafka: Kafka {
                unacknowledged: unacked,
                acked: reading.acked,
                acked_per_s: per(reading.acked, self.prev.acked) as f64 / dt,
                failed: app.sink_stats.failed.load(Ordering::Relaxed),
                oldest_unfinished_s: app.shared.outstanding.oldest_age().as_secs_f64(),
            },
            journal: Journal {
                held_wins: app.shared.rescued.held(),
                disk_free_bytes: rustix::fs::statvfs(&app.cfg.wal_dir)
                    .ok()
                    .map(|fs| fs.f_bavail.saturating_mul(fs.f_frsize)),
            },
            orders: Orders {
                paid: app.order_stats.paid.load(Ordering::Relaxed),
                cancelled: app.order_stats.cancelled.load(Ordering::Relaxed),
                expired_units: app.order_stats.expired_units.load(Ordering::Relaxed),
            },
            order_service: "not_configured",
            sales: sale_views,
            fleet,
        };
        self.prev = reading;
        let json = serde_json::to_string(&snapshot).unwrap_or_else(|_| "{}".into());
        Bytes::from(format!("event: snapshot\ndata: {json}\n\n"))
    }

    /// The sales the page lists (live and upcoming first, then the most
    /// recent), each with its first items and how many were left out.
    fn sales_on_screen(&self, app: &App, now_ms: u64) -> Vec<(String, Vec<Arc<Item>>, usize)> {
        let mut sales: Vec<(String, Vec<Arc<Item>>)> = app
            .catalog
            .sales()
            .into_iter()
            .filter(|(_, items)| !items.is_empty())
            .collect();
        let start = |items: &[Arc<Item>]| items.iter().map(|i| i.start_ms).min().unwrap_or(0);
        let end = |items: &[Arc<Item>]| items.iter().map(|i| i.end_ms).max().unwrap_or(0);
        // Not ended first, then by start, newest first.
        sales.sort_by(|a, b| {
            (end(&a.1) <= now_ms)
                .cmp(&(end(&b.1) <= now_ms))
                .then(start(&b.1).cmp(&start(&a.1)))
                .then(a.0.cmp(&b.0))
        });
        sales.truncate(SALES_MAX);
        let mut budget = ITEMS_MAX;
        sales
            .into_iter()
            .map(|(sale, mut items)| {
                items.sort_by(|a, b| a.item_id.cmp(&b.item_id));
                let keep = items.len().min(ITEMS_PER_SALE_MAX).min(budget);
                budget -= keep;
                let hidden = items.len() - keep;
                items.truncate(keep);
                (sale, items, hidden)
            })
            .collect()
    }

    /// Writes this daemon's figures and reads the fleet's and the stock
    /// of the listed items, in one round trip. Redis away: the last
    /// readings stay (the page shows their age).
    async fn read_redis(
        &mut self,
        app: &App,
        own: &DaemonFigures,
        sales: &[(String, Vec<Arc<Item>>, usize)],
        now_ms: u64,
    ) {
        let keys: Vec<(String, String)> = sales
            .iter()
            .flat_map(|(sale, items, _)| {
                items.iter().map(move |i| (sale.clone(), i.item_id.clone()))
            })
            .collect();
        let stale: Vec<String> = self
            .fleet
            .iter()
            .filter(|d| now_ms.saturating_sub(d.at_ms) > GONE_MS)
            .map(|d| d.id.clone())
            .collect();
        let figures = serde_json::to_string(own).unwrap_or_default();
        let (r, id) = (app.redis.clone(), self.id.clone());
        let asked = keys.clone();
        let read = blocking(move || {
            let refs: Vec<(&str, &str)> = asked
                .iter()
                .map(|(s, i)| (s.as_str(), i.as_str()))
                .collect();
            r.dashboard_tick(&id, &figures, &stale, &refs, true)
        })
        .await;
        match read {
            Ok(Ok(read)) => {
                self.stocks.clear();
                for (key, stock) in keys.into_iter().zip(read.stocks) {
                    if let Some(stock) = stock {
                        self.stocks.insert(key, stock);
                    }
                }
                self.stock_read_ms = now_ms;
                self.fleet = read
                    .fleet
                    .iter()
                    .filter_map(|(_, json)| serde_json::from_str(json).ok())
                    .collect();
                if app.cfg.rate_limit_scope == RateScope::Fleet {
                    app.limits
                        .set_share(live_daemons(&self.fleet, &self.id, now_ms));
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "dashboard: Redis read failed"),
            Err(e) => tracing::debug!(error = %e, "dashboard: Redis read failed"),
        }
    }

    fn sale_view(
        &mut self,
        sale_id: &str,
        items: &[Arc<Item>],
        hidden: usize,
        now_ms: u64,
        counts: &PurchaseCounts,
    ) -> SaleView {
        let start_ms = items.iter().map(|i| i.start_ms).min().unwrap_or(0);
        let end_ms = items.iter().map(|i| i.end_ms).max().unwrap_or(0);
        let mut totals = StockTotals::default();
        let mut revenue = 0u64;
        let mut paid_revenue = 0u64;
        let views: Vec<ItemView> = items
            .iter()
            .map(|i| {
                let key = (sale_id.to_string(), i.item_id.clone());
                let st = self.stocks.get(&key).copied().unwrap_or(StockHash {
                    available: i.remaining(),
                    total: i.stock as i64,
                    ..StockHash::default()
                });
                totals.total = totals.total.saturating_add(st.total);
                totals.available = totals.available.saturating_add(st.available);
                totals.locked = totals.locked.saturating_add(st.locked);
                totals.sold = totals.sold.saturating_add(st.sold);
                let won = u64::try_from(st.locked.saturating_add(st.sold)).unwrap_or(0);
                revenue = revenue.saturating_add(won.saturating_mul(i.price_cents));
                paid_revenue = paid_revenue.saturating_add(
                    u64::try_from(st.sold)
                        .unwrap_or(0)
                        .saturating_mul(i.price_cents),
                );
                ItemView {
                    item_id: i.item_id.clone(),
                    title: i.title.clone(),
                    price_cents: i.price_cents,
                    total: st.total,
                    available: st.available,
                    locked: st.locked,
                    sold: st.sold,
                    sold_out_at_ms: Some(i.sold_out_at_ms()).filter(|&t| t > 0),
                }
            })
            .collect();
        totals.won = totals.locked.saturating_add(totals.sold);
        let sold_out = !views.is_empty() && hidden == 0 && views.iter().all(|v| v.available <= 0);
        let phase = if now_ms < start_ms {
            "upcoming"
        } else if now_ms >= end_ms {
            "ended"
        } else if sold_out {
            "sold_out"
        } else {
            "live"
        };
        // The window's start is the last reading before the sale's start
        // (a daemon that started later counts from its own start); its end
        // the first reading past the sale's end.
        // A sale first seen after its start counts from that sighting, or
        // from the daemon's start when the daemon started after the sale.
        let started_after_sale = self.started_ms >= start_ms;
        let w = self
            .windows
            .entry(sale_id.to_string())
            .or_insert_with(|| Window {
                start: if started_after_sale {
                    PurchaseCounts::default()
                } else {
                    counts.clone()
                },
                end: None,
            });
        if phase == "upcoming" {
            w.start = counts.clone();
        } else if phase == "ended" && w.end.is_none() {
            w.end = Some(counts.clone());
        }
        // Every answer that was not a decision: 429, other 4xx, 5xx (503
        // `unavailable` included).
        let errors = |c: &PurchaseCounts| {
            let unavailable = c
                .by_status
                .get(Status::Unavailable as usize)
                .copied()
                .unwrap_or(0);
            c.rate_limited
                .saturating_add(c.client_errors)
                .saturating_add(c.server_errors)
                .saturating_add(unavailable)
        };
        let summary = (phase == "ended" || phase == "sold_out").then(|| {
            let end = w.end.as_ref().unwrap_or(counts);
            let lat = latency(end, &w.start);
            // Every item seen sold out: the last of them.
            let sold_out_at: Option<Vec<u64>> = views.iter().map(|v| v.sold_out_at_ms).collect();
            Summary {
                sale_id: sale_id.to_string(),
                is_final: phase == "ended",
                start_ms,
                end_ms,
                items: views.len() + hidden,
                partial: hidden > 0,
                stock: totals.total,
                sold: totals.won,
                paid: totals.sold,
                available: totals.available,
                revenue_cents: revenue,
                paid_revenue_cents: paid_revenue,
                sold_out,
                time_to_sell_out_ms: sold_out_at
                    .and_then(|t| t.into_iter().max())
                    .filter(|_| sold_out)
                    .map(|t| t.saturating_sub(start_ms)),
                answers: difference(end, &w.start),
                errors: errors(end).saturating_sub(errors(&w.start)),
                p50_ms: lat.p50,
                p99_ms: lat.p99,
                daemon: self.id.clone(),
            }
        });
        SaleView {
            sale_id: sale_id.to_string(),
            start_ms,
            end_ms,
            phase,
            items: views,
            items_hidden: hidden,
            totals,
            stock_read_ms: self.stock_read_ms,
            summary,
        }
    }
}
