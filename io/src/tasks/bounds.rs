//! Keeps the daemon's memory bounded (TigerStyle: a limit on everything).
//! Every [`BOUNDS_INTERVAL`]:
//!
//! * a sale whose every item ended more than `ended_sale_retention_ms` ago
//!   leaves the catalog, the status board, the winners hint, the order
//!   index and the catalog sync's memory (its Redis keys expire a day after
//!   the end on their own);
//! * past `status_board_len_max` requests the board lets go of the decided
//!   ones made before its previous pass — a retry of such a request reaches
//!   the stock script, which returns the stored outcome, and a status poll
//!   reads that outcome from Redis; the items whose wins it let go of stop
//!   answering `sold_out` locally to request ids it does not know;
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
    let evicted = app
        .board
        .evict(|sale| gone.contains(sale), app.cfg.status_board_len_max);
    for (sale, item) in &evicted.forgotten_items {
        if let Some(i) = app.catalog.item(sale, item) {
            i.forget_wins();
        }
    }
    if evicted.requests > 0 || evicted.winners > 0 {
        tracing::info!(
            requests = evicted.requests,
            winners = evicted.winners,
            board = app.board.len(),
            "status board bounded"
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
