//! Keeps the daemon's memory bounded (TigerStyle: a limit on everything).
//! Every [`BOUNDS_INTERVAL`]:
//!
//! * a sale whose every item ended more than `ended_sale_retention_ms` ago
//!   leaves the catalog, the status board, the winners hint, the order
//!   index and the catalog sync's memory (its Redis keys expire a day after
//!   the end on their own);
//! * past `status_board_len_max` requests the board lets go of the decided
//!   ones made before its previous pass — wins only once Kafka acknowledged
//!   them and only of items still on sale (a sold-out item's wins are
//!   bounded by its stock and keep its `sold_out` fast path). A retry of a
//!   request let go of reaches the stock script, which returns the stored
//!   outcome, and a status poll reads that outcome from Redis; an item whose
//!   wins it let go of is marked first, so it no longer answers `sold_out`
//!   from its flag to request ids the board does not know;
//! * the order index (learnt from lookups) starts over past
//!   [`ORDER_INDEX_MAX`] entries.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::shutdown::until_true;

/// Between two passes.
pub const BOUNDS_INTERVAL: Duration = Duration::from_secs(2);
/// Most order ids the order index remembers.
pub const ORDER_INDEX_MAX: usize = 100_000;
/// How many forgotten sales are remembered, so their late entries go too.
pub const FORGOTTEN_SALES_MAX: usize = 1_024;

pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(BOUNDS_INTERVAL) => {}
            _ = until_true(&mut stop) => return,
        }
        let app = Arc::clone(&app);
        // The board's pass walks every entry: off the tokio workers.
        let _ = tokio::task::spawn_blocking(move || pass(&app)).await;
    }
}

/// One pass (also called by tests).
pub fn pass(app: &App) {
    let now = app.clock.now_ms();
    let gone: HashSet<String> = app
        .catalog
        .sales()
        .into_iter()
        .filter(|(_, items)| {
            sale_forgotten(
                items.iter().map(|i| i.end_ms),
                now,
                app.cfg.ended_sale_retention_ms,
            )
        })
        .map(|(sale, _)| sale)
        .collect();
    for sale in &gone {
        app.catalog.remove_sale(sale);
        tracing::info!(sale = %sale, "sale ended past its retention: forgotten here");
    }
    // Sales forgotten by earlier passes too: a late Kafka acknowledgement
    // may put one of their requests back on the board.
    let forgotten = {
        let mut f = app
            .forgotten_sales
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for sale in &gone {
            if f.len() >= FORGOTTEN_SALES_MAX {
                f.pop_front();
            }
            f.push_back(sale.clone());
        }
        f.iter().cloned().collect::<HashSet<String>>()
    };
    // A win goes only for an item still on sale (a sold-out item's wins are
    // bounded by its stock, and keep its `sold_out` fast path), and the
    // item is marked before it goes.
    let may_forget_win = |sale: &str, item: &str| {
        app.catalog.item(sale, item).is_none_or(|i| {
            if i.is_sold_out() {
                false
            } else {
                i.forget_wins();
                true
            }
        })
    };
    let evicted = app.board.evict(
        |sale| forgotten.contains(sale),
        may_forget_win,
        app.cfg.status_board_len_max,
    );
    if evicted.requests > 0 || evicted.winners > 0 {
        tracing::info!(
            requests = evicted.requests,
            winners = evicted.winners,
            board = app.board.len(),
            "status board bounded"
        );
    }
    if evicted.requests > 0 && !evicted.forgotten_items.is_empty() {
        tracing::info!(
            items = evicted.forgotten_items.len(),
            "wins of items on sale let go of: retries reach the stock script"
        );
    }
    if !gone.is_empty() {
        app.order_index.retain(|_, (sale, _)| !gone.contains(sale));
        let mut known = app.known_wins.lock().unwrap_or_else(|e| e.into_inner());
        known.wins.retain(|(sale, _), _| !gone.contains(sale));
    }
    if app.order_index.len() > ORDER_INDEX_MAX {
        app.order_index.clear();
    }
}

/// Every item ended more than `retention_ms` before `now_ms` (a sale with
/// no item is never forgotten this way).
pub fn sale_forgotten(
    ends_ms: impl IntoIterator<Item = u64>,
    now_ms: u64,
    retention_ms: u64,
) -> bool {
    let mut any = false;
    for end in ends_ms {
        if end.saturating_add(retention_ms) > now_ms {
            return false;
        }
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::sale_forgotten;

    #[test]
    fn a_sale_is_forgotten_once_its_last_item_is_past_the_retention() {
        assert!(sale_forgotten([100, 200], 1_200, 1_000));
        assert!(!sale_forgotten([100, 300], 1_200, 1_000));
        assert!(!sale_forgotten([], 1_200, 1_000));
        assert!(!sale_forgotten([u64::MAX], 1_000, u64::MAX));
    }
}
