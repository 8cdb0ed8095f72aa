use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::event::{Event, Origin};
use crate::outcome::{Decision, Status};
use crate::port::{Journal, JournalError, RecordKind};
use crate::progress::Outstanding;
use crate::stage::Stage;
use crate::stats::Stats;

/// How often the checkpoint may move (it costs a file write and fsyncs).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Appends every decision of the batch and commits ONCE (group commit), so
/// nothing is answered or published before it is durable. If the journal
/// fails, the batch is answered `unavailable` (503): nobody hears of a
/// decision that is not on disk.
///
/// It also keeps the bookkeeping of unfinished work (pending decisions,
/// wins not yet acknowledged by Kafka) and moves the checkpoint up to the
/// lowest of them, at most once a second.
pub struct JournalStage {
    journal: Box<dyn Journal>,
    stats: Arc<Stats>,
    outstanding: Arc<Outstanding>,
    clock: SharedClock,
    last_lsn: u64,
    checkpointed: u64,
    /// When the checkpoint last moved ([`crate::Clock::monotonic`]).
    last_checkpoint: Duration,
}

impl JournalStage {
    pub fn new(
        journal: Box<dyn Journal>,
        stats: Arc<Stats>,
        outstanding: Arc<Outstanding>,
        clock: SharedClock,
    ) -> Self {
        JournalStage {
            journal,
            stats,
            outstanding,
            last_checkpoint: clock.monotonic(),
            clock,
            last_lsn: 0,
            checkpointed: 0,
        }
    }

    fn write(&mut self, events: &[&Event]) -> Result<bool, JournalError> {
        let mut wrote = false;
        let now = self.clock.now_ms();
        for e in events.iter().filter(|e| !e.is_replayed()) {
            let status = e.status();
            let kind = match e.origin {
                Origin::Client => RecordKind::Decision,
                // Still pending (Redis down again): the intent is already
                // journaled; nothing new to say.
                Origin::Redrive { .. } if status == Status::Pending => continue,
                Origin::Redrive { .. } => RecordKind::Resolved,
                Origin::Republish { .. } => continue,
            };
            let decision = Decision {
                status,
                order_id: e.order_id(),
                price_cents: e.price_cents,
                quantity: e.quantity,
                per_user_limit: e.per_user_limit,
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
            let lsn = self.journal.append(kind, &decision)?;
            e.set_lsn(lsn);
            self.last_lsn = lsn;
            wrote = true;
        }
        if wrote {
            let took = self.journal.commit()?;
            self.stats.record_commit(took);
        }
        Ok(wrote)
    }

    /// After a durable commit: what is unfinished now.
    fn account(&self, events: &[&Event]) {
        for e in events.iter().filter(|e| !e.is_replayed()) {
            let (status, lsn) = (e.status(), e.lsn());
            match e.origin {
                Origin::Client if lsn != 0 && (status == Status::Pending || status.is_win()) => {
                    self.outstanding.add(lsn);
                }
                Origin::Redrive { lsn: intent } if status != Status::Pending && lsn != 0 => {
                    self.outstanding.finish(intent);
                    if status.is_win() {
                        self.outstanding.add(lsn);
                    }
                }
                // A republished win is already outstanding at its own LSN.
                _ => {}
            }
        }
        self.outstanding.set_next_lsn(self.last_lsn + 1);
    }

    fn maybe_checkpoint(&mut self, force: bool) {
        let now = self.clock.monotonic();
        if !force && now.saturating_sub(self.last_checkpoint) < CHECKPOINT_INTERVAL {
            return;
        }
        self.last_checkpoint = now;
        if self.last_lsn == 0 {
            return;
        }
        let safe = self.outstanding.safe_lsn();
        if safe > self.checkpointed {
            match self.journal.checkpoint(safe) {
                Ok(()) => self.checkpointed = safe,
                Err(err) => tracing::warn!(error = %err, lsn = safe, "checkpoint failed"),
            }
        }
    }

    /// The journal's last LSN when the stage starts (recovered log), so the
    /// checkpoint arithmetic starts from the right place.
    pub fn resume_after(&mut self, last_lsn: u64, checkpoint: u64) {
        self.last_lsn = last_lsn;
        self.checkpointed = checkpoint;
        self.outstanding.set_next_lsn(last_lsn + 1);
    }
}

impl Stage for JournalStage {
    fn name(&self) -> &'static str {
        "journal"
    }

    fn on_batch(&mut self, events: &[&Event]) {
        match self.write(events) {
            Ok(_) => self.account(events),
            Err(err) => {
                tracing::error!(error = %err, "journal failed; batch answered unavailable");
                self.stats.record_journal_error();
                for e in events.iter().filter(|e| !e.is_replayed()) {
                    if e.is_client() {
                        e.set_lsn(0);
                        e.decide(Status::Unavailable, None);
                    } else if let Origin::Redrive { .. } = e.origin {
                        // Not durable: leave it pending; the next replay
                        // round re-drives it (the script returns the stored
                        // outcome).
                        e.set_lsn(0);
                        e.decide(Status::Pending, None);
                    }
                }
            }
        }
        self.maybe_checkpoint(false);
    }

    fn on_idle(&mut self) {
        self.maybe_checkpoint(false);
    }

    fn on_shutdown(&mut self) {
        self.maybe_checkpoint(true);
    }
}
