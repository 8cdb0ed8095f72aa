use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::event::{Event, Origin};
use crate::health::{Health, State};
use crate::outcome::{Decision, OwnedDecision, Status};
use crate::port::{Journal, JournalError, RecordKind};
use crate::progress::{Outstanding, Rescued};
use crate::stage::Stage;
use crate::stats::Stats;
use crate::status::{winner_key, StatusBoard};

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
///
/// A failed write turns the journal's health `down`. The wins of the
/// failed batch were taken in Redis already: they are held here (bounded,
/// [`HELD_MAX`]) and written as soon as a write succeeds — retried on the
/// next batch or every [`HELD_RETRY_INTERVAL`] while idle — then handed on
/// to be published ([`Rescued`]).
pub struct JournalStage {
    journal: Box<dyn Journal>,
    stats: Arc<Stats>,
    outstanding: Arc<Outstanding>,
    clock: SharedClock,
    last_lsn: u64,
    checkpointed: u64,
    /// When the checkpoint last moved ([`crate::Clock::monotonic`]).
    last_checkpoint: Duration,
    health: Arc<Health>,
    rescued: Arc<Rescued>,
    /// Where a held win's answer goes once it is written.
    board: Arc<StatusBoard>,
    key: String,
    /// Wins of failed batches, not yet on disk.
    held: Vec<OwnedDecision>,
    last_held_retry: Duration,
}

/// Most wins held in memory after failed writes. The deduct stage takes no
/// stock while the journal is down (but for one probe batch), so a few
/// batches' worth is what a full disk leaves here.
pub const HELD_MAX: usize = 65_536;
/// While idle, how often held wins are tried again.
pub const HELD_RETRY_INTERVAL: Duration = Duration::from_millis(200);

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
            health: Arc::new(Health::new("journal", State::Up)),
            rescued: Arc::default(),
            board: Arc::default(),
            key: String::new(),
            held: Vec::new(),
            last_held_retry: Duration::ZERO,
        }
    }

    /// Where the stage reports the journal's health and its held wins, and
    /// the status board that answers a held win's retries once it is
    /// written.
    pub fn report_to(
        &mut self,
        health: Arc<Health>,
        rescued: Arc<Rescued>,
        board: Arc<StatusBoard>,
    ) {
        self.health = health;
        self.rescued = rescued;
        self.board = board;
    }

    /// Keeps the wins of a batch the journal could not write.
    fn hold(&mut self, events: &[&Event]) {
        for e in events.iter().filter(|e| !e.is_replayed()) {
            // A re-driven intent stays pending and is re-driven again (the
            // script returns the stored outcome): only a client's win would
            // be left in Redis alone.
            if !e.status().is_win() || !e.is_client() {
                continue;
            }
            // The deduct stage counted the win for the per-user hint: a
            // retry must reach Redis (and hear 503 until the win is
            // written), not be called a duplicate.
            winner_key(&mut self.key, &e.sale_id, &e.item_id, &e.user_id);
            self.board.remove_win(&self.key);
            if self.held.len() >= HELD_MAX {
                let n = self.rescued.note_overflow();
                tracing::error!(overflowed = n, request_id = %e.request_id,
                    "journal down too long: a win is left in Redis only");
                continue;
            }
            self.held.push(OwnedDecision {
                status: e.status(),
                order_id: e.order_id(),
                price_cents: e.price_cents,
                quantity: e.quantity,
                per_user_limit: e.per_user_limit,
                received_ms: if e.received_ms == 0 {
                    self.clock.now_ms()
                } else {
                    e.received_ms
                },
                sale_id: e.sale_id.clone(),
                item_id: e.item_id.clone(),
                user_id: e.user_id.clone(),
                request_id: e.request_id.clone(),
            });
        }
        self.rescued.set_held(self.held.len() as u64);
    }

    /// Writes the held wins in one commit; on success they are outstanding
    /// (Kafka must acknowledge them) and handed on to be published.
    fn held_retry_due(&self) -> bool {
        !self.held.is_empty()
            && self.clock.monotonic().saturating_sub(self.last_held_retry) >= HELD_RETRY_INTERVAL
    }

    /// True when it wrote anything.
    fn write_held(&mut self) -> Result<bool, JournalError> {
        if self.held.is_empty() {
            return Ok(false);
        }
        self.last_held_retry = self.clock.monotonic();
        let mut lsns = Vec::with_capacity(self.held.len());
        for d in &self.held {
            lsns.push(
                self.journal
                    .append(RecordKind::Decision, &d.as_decision())?,
            );
        }
        self.journal.commit()?;
        if let Some(&last) = lsns.last() {
            self.last_lsn = last;
        }
        let n = self.held.len();
        for (lsn, d) in lsns.into_iter().zip(self.held.drain(..)) {
            self.outstanding.add(lsn);
            // Durable now: a retry gets `success` again.
            winner_key(&mut self.key, &d.sale_id, &d.item_id, &d.user_id);
            self.board.add_win(&self.key);
            self.board.advance_ids(
                &d.request_id,
                d.status,
                d.order_id,
                &d.sale_id,
                &d.item_id,
                &d.user_id,
            );
            self.rescued.push(lsn, d);
        }
        self.rescued.set_held(0);
        tracing::warn!(
            wins = n,
            "wins of failed journal writes written late; publishing them"
        );
        Ok(true)
    }

    fn write(&mut self, events: &[&Event]) -> Result<bool, JournalError> {
        let mut wrote = false;
        let now = self.clock.now_ms();
        for e in events.iter().filter(|e| !e.is_replayed()) {
            let status = e.status();
            if status == Status::Unavailable {
                // Refused before a decision (the journal was down): there
                // is nothing to record.
                continue;
            }
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
        // Held wins are tried at most every HELD_RETRY_INTERVAL: on a full
        // disk each try is a failed segment preparation.
        let result = if self.held_retry_due() {
            self.write_held()
        } else {
            Ok(false)
        }
        .and_then(|held| Ok(self.write(events)? || held));
        match result {
            Ok(wrote) => {
                self.account(events);
                if wrote && self.held.is_empty() {
                    self.health
                        .transition(&[State::Down], State::Up, "journal writes again");
                }
            }
            Err(err) => {
                // Held first: the deduct stage probes only while no win is
                // held.
                self.hold(events);
                if self.health.fail(&err.to_string()) {
                    tracing::error!(error = %err, "journal failed; purchases answered unavailable until it writes again");
                }
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
        if self.health.state() == State::Down
            && self.held.is_empty()
            && self.clock.monotonic().saturating_sub(self.last_held_retry)
                >= crate::stage::JOURNAL_PROBE_INTERVAL
        {
            // No held win to try: ask the journal itself, so a daemon that
            // gets no purchases (unready behind a balancer) comes back too.
            self.last_held_retry = self.clock.monotonic();
            if self.journal.probe().is_ok() {
                self.health
                    .transition(&[State::Down], State::Up, "journal writes again (probe)");
            }
        }
        if self.held_retry_due() {
            match self.write_held() {
                Ok(_) => {
                    self.outstanding.set_next_lsn(self.last_lsn + 1);
                    self.health
                        .transition(&[State::Down], State::Up, "journal writes again");
                }
                Err(err) => {
                    tracing::debug!(error = %err, held = self.held.len(), "journal still failing")
                }
            }
        }
        self.maybe_checkpoint(false);
    }

    fn on_shutdown(&mut self) {
        if let Err(err) = self.write_held() {
            // Never silently: the wins stay in Redis only.
            for d in &self.held {
                tracing::error!(error = %err, request_id = %d.request_id, order_id = ?d.order_id,
                    "shutdown with a win no journal holds (left in Redis only)");
            }
            for _ in 0..self.held.len() {
                self.rescued.note_overflow();
            }
        }
        self.maybe_checkpoint(true);
    }
}
