//! Catalog sync: keeps the local catalog (sale pages, sold-out flags)
//! and the status board in step with Redis. Run by the probe once a
//! second, and once at start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use seckill_pipeline::health::State;
use seckill_pipeline::{Catalog, Item, OrderId, RequestState, Status, StatusBoard};

use crate::app::{blocking, App, KnownWins};
use crate::redis::RedisAdmin;
use crate::tasks::bounds::sale_forgotten;

/// What the catalog sync may hold.
#[derive(Debug, Clone, Copy)]
pub struct CatalogBounds {
    /// Now, on the daemon's clock.
    pub now_ms: u64,
    /// A sale that ended this long before now is not taken in.
    pub retention_ms: u64,
    /// Items with more wins are not loaded into the board.
    pub wins_load_max: u64,
}

impl CatalogBounds {
    pub fn of(cfg: &crate::config::Config, now_ms: u64) -> CatalogBounds {
        CatalogBounds {
            now_ms,
            retention_ms: cfg.ended_sale_retention_ms,
            // A quarter of the board: loading never fills it alone.
            wins_load_max: (cfg.status_board_len_max / 4) as u64,
        }
    }
}

/// Every this many ticks the sale metadata is re-read even when the
/// catalog version did not move (a missed bump, a key that expired).
const FULL_REFRESH_TICKS: u64 = 30;
/// Every this many ticks the counters of sold-out and ended items are read
/// too (the others every tick).
const SETTLED_EVERY: u64 = 5;
/// An item is read every tick for this long after its end (its wins are
/// loaded into the board then, for retries after the end).
const ENDED_GRACE_MS: u64 = 10_000;

/// Keeps the local catalog in step with Redis, once a second: the sale
/// metadata every daemon wrote (re-read only when the catalog version moves,
/// and every 30 s regardless), then one pipelined round trip for every
/// item's `available` count (the sold-out flag and the sale page follow it)
/// and its number of wins. Wins another daemon made are loaded into the
/// status board: a client retrying a winning request id gets its win back
/// even when this daemon never journaled it (decided by another daemon, or
/// lost with a salvaged WAL segment) and the item is sold out.
///
/// Loading an item's wins reads all its orders, so it is done only for
/// items that sold out or ended (where the ingress answers from the flag
/// or the window check, and only the board knows the win), once per batch
/// of new wins. An item still on sale is never read: a retry of its wins reaches the stock script, which
/// returns the stored outcome, and a status poll falls back to the same
/// outcome. (Re-reading it every 10 s, as an earlier version did, read
/// every order of an all-win item each time — an `HGETALL` of 100,000
/// fields that held Redis, and every purchase behind it, for tens of ms.)
///
/// Bounded: a sale that ended before `bounds.forget_ended_before_ms` is not
/// taken into the catalog, and an item with more than
/// `bounds.wins_load_max` wins is not loaded into the board at all — it is
/// marked instead, so a request id the board does not know goes to the
/// stock script (the stored outcome) rather than being answered
/// `sold_out` here.
pub async fn refresh_catalog(
    redis: &RedisAdmin,
    catalog: &Arc<Catalog>,
    board: &Arc<StatusBoard>,
    known: &Arc<KnownWins>,
    bounds: CatalogBounds,
) -> bool {
    let r = redis.clone();
    let board = Arc::clone(board);
    let known = Arc::clone(known);
    let catalog = Arc::clone(catalog);
    let done = blocking(move || -> Result<(), redis::RedisError> {
        let version = r.catalog_version()?;
        let full = {
            let mut k = known.lock().unwrap_or_else(|e| e.into_inner());
            k.ticks += 1;
            k.catalog_version != Some(version) || k.ticks.is_multiple_of(FULL_REFRESH_TICKS)
        };
        if full {
            for s in r.load_sales()? {
                let ends = s.items.iter().map(|i| i.end_ms);
                if sale_forgotten(ends, bounds.now_ms, bounds.retention_ms) {
                    continue;
                }
                catalog.refresh_sale(&s.sale_id, s.items);
            }
            // Only once the sales are in: a load that failed leaves the
            // version moved, for the next tick or catch-up to retry.
            known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .catalog_version = Some(version);
        }
        // Items on sale every tick; one sold out, or ended a while ago,
        // every SETTLED_EVERY ticks: their counts move only when stock is
        // released (the re-open channel tells at once) or Redis loses them
        // (a sold-out item is then answered sold out a few seconds more,
        // which it was). The per-second read follows what can change, not
        // how many items the daemon holds.
        let items: Vec<Arc<Item>> = {
            let k = known.lock().unwrap_or_else(|e| e.into_inner());
            let settled_tick = k.ticks.is_multiple_of(SETTLED_EVERY);
            catalog
                .sales()
                .into_iter()
                .flat_map(|(_, items)| items)
                .filter(|i| {
                    let ended = bounds.now_ms >= i.end_ms.saturating_add(ENDED_GRACE_MS);
                    // Its wins in the board already (a sold-out item's
                    // are loaded at the next read after it sold out).
                    let loaded = k
                        .wins
                        .contains_key(&(i.sale_id.clone(), i.item_id.clone()));
                    settled_tick || !((i.is_sold_out() && loaded) || ended)
                })
                .collect()
        };
        let keys: Vec<(&str, &str)> = items
            .iter()
            .map(|i| (i.sale_id.as_str(), i.item_id.as_str()))
            .collect();
        let counters = r.item_counters(&keys)?;
        let mut key = String::new();
        for (item, counters) in items.iter().zip(counters) {
            let Some((available, wins)) = counters else {
                // A loaded item without stock in Redis: Redis lost it (an
                // ended one's keys may have expired: not a loss).
                if bounds.now_ms < item.end_ms && item.set_data_lost(true) {
                    tracing::error!(sale = %item.sale_id, item = %item.item_id,
                        "Redis holds no stock for a loaded item: its data was lost; answering 503 until the sale is rebuilt");
                }
                continue;
            };
            item.set_data_lost(false);
            item.set_remaining(available);
            let (sale, item_id) = (item.sale_id.clone(), item.item_id.clone());
            let seen = {
                let k = known.lock().unwrap_or_else(|e| e.into_inner());
                k.wins
                    .get(&(sale.clone(), item_id.clone()))
                    .copied()
                    .unwrap_or(0)
            };
            // Sold out (the ingress answers from the flag) or ended (the
            // window check answers `ended`): only the board can give a
            // retried win back.
            let ended = bounds.now_ms >= item.end_ms;
            if wins <= seen || !(item.is_sold_out() || ended) {
                continue;
            }
            if wins > bounds.wins_load_max {
                item.forget_wins();
                let mut k = known.lock().unwrap_or_else(|e| e.into_inner());
                k.wins.insert((sale, item_id), wins);
                continue;
            }
            let mut per_user: HashMap<String, u32> = Default::default();
            for w in r.wins(&sale, &item_id)? {
                *per_user.entry(w.user_id.clone()).or_insert(0) += 1;
                board.advance(
                    &w.request_id,
                    RequestState::new(
                        Status::Success,
                        OrderId::parse(&w.order_id),
                        &sale,
                        &item_id,
                        &w.user_id,
                    ),
                );
            }
            for (user, n) in per_user {
                seckill_pipeline::status::winner_key(&mut key, &sale, &item_id, &user);
                board.wins_at_least(&key, n);
            }
            let mut k = known.lock().unwrap_or_else(|e| e.into_inner());
            k.wins.insert((sale, item_id), wins);
        }
        Ok(())
    })
    .await;
    matches!(done, Ok(Ok(())))
}

/// How long a catch-up waits for another reload to finish.
const CATCH_UP_WAIT: Duration = Duration::from_secs(1);

/// A sale or item this daemon does not know may have been created a moment
/// ago through another daemon (the admin call returns once Redis holds
/// it; this daemon would see it within a second). Before answering
/// `unknown_item` or `unknown_sale`, the handler calls this: one `GET` of
/// the catalog version (no lock held, none at all while Redis is down),
/// and when it moved, the catalog sync at once — one at a time, in a task
/// of its own holding the lock, so a client that goes away does not cut a
/// reload short, and a caller that queued behind another's reload finds
/// the version caught up. True when this call reloaded the catalog; either
/// way, look again. Costs a Redis round trip per unknown id, under the
/// global and per-IP limits like any request.
pub async fn catch_up(app: &Arc<App>) -> bool {
    if app.shared.redis.state() == State::Down || !version_moved(app).await {
        return false;
    }
    let lock = Arc::clone(&app.catalog_sync).lock_owned();
    let Ok(guard) = tokio::time::timeout(CATCH_UP_WAIT, lock).await else {
        return false;
    };
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let _one = guard;
        if !version_moved(&app).await {
            return false;
        }
        let bounds = CatalogBounds::of(&app.cfg, app.clock.now_ms());
        refresh_catalog(
            &app.redis,
            &app.catalog,
            &app.board,
            &app.known_wins,
            bounds,
        )
        .await
    })
    .await
    .unwrap_or(false)
}

/// Whether the catalog version in Redis differs from the one loaded.
async fn version_moved(app: &App) -> bool {
    let (r, known) = (app.redis.clone(), Arc::clone(&app.known_wins));
    let moved = blocking(move || {
        let version = r.catalog_version().ok()?;
        let k = known.lock().unwrap_or_else(|e| e.into_inner());
        Some(k.catalog_version != Some(version))
    })
    .await;
    matches!(moved, Ok(Some(true)))
}
