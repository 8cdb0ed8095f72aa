//! Reconciliation after a salvage: the journal lost records, so every win
//! the stock authority holds is published again (consumers drop repeats by
//! order id), in the background so a Kafka outage does not hold up
//! start-up. The salvage marker is cleared only once Kafka acknowledged
//! them all.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seckill_pipeline::{Catalog, OrderId, OwnedDecision, SharedClock, Status, StatusBoard};
use seckill_replay::Replayer;

use crate::app::blocking;
use crate::redis::RedisAdmin;
use crate::tasks::drain::STARTUP_REPLAY_MAX;

/// How long the republished wins may take to be acknowledged before the
/// task gives up (the marker stays: the next start tries again).
const ACK_WAIT_MAX: Duration = Duration::from_secs(120);
/// How often the acknowledgement count is looked at.
const ACK_POLL: Duration = Duration::from_millis(200);

/// Publishes every win Redis holds for the known sales, waits for Kafka to
/// acknowledge them, then clears the salvage marker (kept on failure, so
/// the next start tries again).
pub async fn run(
    replayer: Arc<Mutex<Replayer>>,
    redis: RedisAdmin,
    catalog: Arc<Catalog>,
    board: Arc<StatusBoard>,
    wal_dir: PathBuf,
    clock: SharedClock,
) {
    let submitted = blocking(move || -> Result<(u64, Vec<String>), redis::RedisError> {
        let mut wins = Vec::new();
        for sale in catalog.sale_ids() {
            for item in catalog.sale_items(&sale).unwrap_or_default() {
                for w in redis.wins(&sale, &item.item_id)? {
                    wins.push(OwnedDecision {
                        status: Status::Success,
                        order_id: OrderId::parse(&w.order_id),
                        price_cents: item.price_cents,
                        quantity: w.quantity,
                        per_user_limit: item.per_user_limit,
                        received_ms: clock.now_ms(),
                        sale_id: sale.clone(),
                        item_id: item.item_id.clone(),
                        user_id: w.user_id,
                        request_id: w.request_id,
                    });
                }
            }
        }
        let ids = wins.iter().map(|w| w.request_id.clone()).collect();
        let mut r = replayer.lock().unwrap_or_else(|e| e.into_inner());
        Ok((r.republish_unjournaled(&wins, STARTUP_REPLAY_MAX), ids))
    })
    .await;
    let (n, ids) = match submitted {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reconciliation after salvage failed (redis); it runs again at the next start");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "reconciliation after salvage failed; it runs again at the next start");
            return;
        }
    };
    tracing::warn!(
        wins = n,
        "after salvage: every win in Redis handed to Kafka again"
    );
    // Done when Kafka acknowledged each of these wins — its own request
    // id, not a count that live orders acknowledged meanwhile also move.
    let acknowledged = |id: &String| {
        board
            .get(id)
            .is_some_and(|s| s.status == Status::OrderCreated)
    };
    let deadline = tokio::time::Instant::now() + ACK_WAIT_MAX;
    while !ids.iter().all(acknowledged) {
        if tokio::time::Instant::now() >= deadline {
            tracing::error!("reconciliation after salvage not acknowledged in time; it runs again at the next start");
            return;
        }
        tokio::time::sleep(ACK_POLL).await;
    }
    match blocking(move || seckill_wal::Wal::clear_salvaged(&wal_dir)).await {
        Ok(Ok(())) => tracing::info!("reconciliation after salvage complete"),
        Ok(Err(e)) => tracing::error!(error = %e, "could not clear the salvage marker"),
        Err(e) => tracing::error!(error = %e, "could not clear the salvage marker"),
    }
}
