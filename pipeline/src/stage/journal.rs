use std::sync::Arc;

use crate::event::Event;
use crate::outcome::{Decision, Status};
use crate::port::{Journal, JournalError};
use crate::stage::Stage;
use crate::stats::Stats;

/// Appends every decision of the batch and commits ONCE (group commit), so
/// nothing is answered or published before it is durable. If the journal
/// fails, the batch is answered `unavailable` (503): nobody hears of a
/// decision that is not on disk.
pub struct JournalStage {
    journal: Box<dyn Journal>,
    stats: Arc<Stats>,
    now_ms: fn() -> u64,
}

impl JournalStage {
    pub fn new(journal: Box<dyn Journal>, stats: Arc<Stats>, now_ms: fn() -> u64) -> Self {
        JournalStage {
            journal,
            stats,
            now_ms,
        }
    }

    fn write(&mut self, events: &[&Event]) -> Result<bool, JournalError> {
        let mut wrote = false;
        let now = (self.now_ms)();
        for e in events.iter().filter(|e| !e.is_replayed()) {
            let decision = Decision {
                status: e.status(),
                order_id: e.order_id(),
                price_cents: e.price_cents(),
                quantity: e.quantity,
                received_ms: if e.received_ms == 0 {
                    now
                } else {
                    e.received_ms
                },
                sale_id: &e.sale_id,
                item_id: &e.item_id,
                user_id: &e.user_id,
                request_id: &e.request_id,
            };
            let lsn = self.journal.append(&decision)?;
            e.set_lsn(lsn);
            wrote = true;
        }
        if wrote {
            let took = self.journal.commit()?;
            self.stats.record_commit(took);
        }
        Ok(wrote)
    }
}

impl Stage for JournalStage {
    fn name(&self) -> &'static str {
        "journal"
    }

    fn on_batch(&mut self, events: &[&Event]) {
        if let Err(err) = self.write(events) {
            tracing::error!(error = %err, "journal failed; batch answered unavailable");
            self.stats.record_journal_error();
            for e in events.iter().filter(|e| !e.is_replayed()) {
                e.set_lsn(0);
                e.decide(Status::Unavailable, None);
            }
        }
    }
}
