//! The replay engine: reads the journal from the checkpoint, and feeds the
//! ring with what is left to do — pending intents to re-drive through the
//! stock script (in LSN order), wins to publish again. The ring's own
//! stages do the work, so replay takes exactly the path of a live request:
//! one batched script call per ring batch, a `Resolved` record in the
//! journal, the order to Kafka, the answer to the status API.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use seckill_pipeline::progress::item_key;
use seckill_pipeline::{Catalog, Decision, Origin, OwnedDecision, Shared, Submitter};
use seckill_wal::{Kind, Lsn, Reader};

use crate::plan::{action, Action};
use crate::ReplayError;

/// What the journal holds that is not finished.
#[derive(Debug, Clone, Default)]
pub struct Work {
    /// Pending intents with no resolution, in LSN order.
    pub redrive: Vec<(Lsn, OwnedDecision)>,
    /// Wins to publish, in LSN order.
    pub republish: Vec<(Lsn, OwnedDecision)>,
    pub records: u64,
    pub last_lsn: Lsn,
}

/// Reads the journal from `from` and applies the plan table to it. Stops at
/// a torn tail; fails with `WalError::Corruption` wherever `Wal::open`
/// would refuse in the segments it reads (those from the one holding
/// `from`: the WAL's one scanner and policy), never planning past it.
pub fn scan(dir: &Path, from: Lsn) -> Result<Work, ReplayError> {
    let mut decisions: Vec<(Lsn, Kind, OwnedDecision)> = Vec::new();
    let mut resolved: HashSet<String> = HashSet::new();
    let mut work = Work::default();
    for rec in Reader::open(dir, from)? {
        let rec = rec?;
        work.records += 1;
        work.last_lsn = rec.lsn;
        if !matches!(rec.kind, Kind::Decision | Kind::Resolved) {
            continue;
        }
        let d = Decision::decode(&rec.payload).map_err(|e| ReplayError::Undecodable {
            lsn: rec.lsn,
            reason: e.to_string(),
        })?;
        if rec.kind == Kind::Resolved {
            resolved.insert(d.request_id.to_string());
        }
        decisions.push((rec.lsn, rec.kind, (&d).into()));
    }
    // A pending intent is resolved by a `Resolved` record after it; the
    // same request id pending twice (a client retry) is re-driven once per
    // record — the script answers the second from its stored outcome.
    let mut last_resolved_lsn: HashMap<&str, Lsn> = HashMap::new();
    for (lsn, kind, d) in &decisions {
        if *kind == Kind::Resolved {
            last_resolved_lsn.insert(&d.request_id, *lsn);
        }
    }
    for (lsn, kind, d) in &decisions {
        let later = last_resolved_lsn
            .get(d.request_id.as_str())
            .is_some_and(|r| r > lsn);
        match action(*kind, d.status, later) {
            Action::Redrive => work.redrive.push((*lsn, d.clone())),
            Action::Republish => work.republish.push((*lsn, d.clone())),
            Action::Nothing => {}
        }
    }
    Ok(work)
}

/// Feeds the ring with replay work.
pub struct Replayer {
    sub: Submitter,
    catalog: Arc<Catalog>,
    shared: Shared,
    key: String,
}

/// How a re-drive round ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub submitted: u64,
    /// The deduct stage finished with all of them in time.
    pub complete: bool,
}

impl Replayer {
    pub fn new(sub: Submitter, catalog: Arc<Catalog>, shared: Shared) -> Replayer {
        Replayer {
            sub,
            catalog,
            shared,
            key: String::new(),
        }
    }

    /// Counts the pending intents per item and marks every unfinished LSN,
    /// before the ring takes traffic: new requests for those items then wait
    /// behind them, and the checkpoint cannot pass them.
    pub fn seed(&mut self, work: &Work) {
        for (lsn, d) in &work.redrive {
            item_key(&mut self.key, &d.sale_id, &d.item_id);
            self.shared.backlog.add(&self.key);
            self.shared.outstanding.add(*lsn);
        }
        for (lsn, _) in &work.republish {
            self.shared.outstanding.add(*lsn);
        }
    }

    fn submit(&mut self, origin: Origin, d: &OwnedDecision, deadline: Instant) -> bool {
        let item = self.catalog.item(&d.sale_id, &d.item_id);
        let decision = d.as_decision();
        loop {
            let res = self
                .sub
                .try_submit(|e| e.fill_replay(origin, &decision, item.clone()));
            if res.is_ok() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Hands every win to the publish stage again.
    pub fn republish(&mut self, work: &Work, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut n = 0;
        for (lsn, d) in &work.republish {
            if !self.submit(Origin::Republish { lsn: *lsn }, d, deadline) {
                break;
            }
            n += 1;
        }
        n
    }

    /// Hands wins known only to the stock authority (no journal position)
    /// to the publish stage; consumers drop the ones they already have.
    pub fn republish_unjournaled(&mut self, wins: &[OwnedDecision], timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut n = 0;
        for d in wins {
            if !self.submit(Origin::Republish { lsn: 0 }, d, deadline) {
                break;
            }
            n += 1;
        }
        n
    }

    /// Re-drives every pending intent in LSN order and waits (up to
    /// `timeout`) until the deduct stage has finished with all of them.
    pub fn redrive(&mut self, work: &Work, timeout: Duration) -> Round {
        let deadline = Instant::now() + timeout;
        let before = self.shared.backlog.redriven();
        let mut round = Round::default();
        for (lsn, d) in &work.redrive {
            if !self.submit(Origin::Redrive { lsn: *lsn }, d, deadline) {
                return round;
            }
            round.submitted += 1;
        }
        while Instant::now() < deadline {
            if self.shared.backlog.redriven() >= before + round.submitted {
                round.complete = true;
                return round;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        round
    }
}
