//! # seckill-replay: what the WAL holds, and what is left to do
//!
//! Reads the journal read-only (it never changes a byte) and tells the
//! operator what it holds: records by kind, decisions by outcome, requests
//! still `pending` (accepted while Redis was down, not yet resolved) and
//! wins not yet acknowledged by Kafka.

pub mod engine;
pub mod plan;

pub use engine::{scan, Replayer, Round, Work};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use seckill_pipeline::{Decision, Status};
use seckill_wal::{Kind, Lsn, Reader, WalError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("record at LSN {lsn} is not a decision this build understands: {reason}")]
    Undecodable { lsn: Lsn, reason: String },
}

/// What the log holds from an LSN on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    pub segments: usize,
    pub records: u64,
    pub first_lsn: Option<Lsn>,
    pub last_lsn: Option<Lsn>,
    pub checkpoint: Option<Lsn>,
    pub by_kind: BTreeMap<String, u64>,
    pub by_status: BTreeMap<String, u64>,
    /// Decisions still `pending` (no later resolution in the log).
    pub pending: u64,
    /// Wins in the log with no `Published` record after them.
    pub unpublished: u64,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Decision => "decision",
        Kind::Resolved => "resolved",
        Kind::Published => "published",
        Kind::Other => "other",
    }
}

/// Scans the log from `from` and counts. Fails on the first corrupt record
/// (a checksum failure before the tail), naming segment and offset.
pub fn inspect(dir: &Path, from: Lsn) -> Result<Inventory, ReplayError> {
    let mut inv = Inventory {
        segments: seckill_wal::segment::list(dir)?.len(),
        checkpoint: seckill_wal::read_checkpoint(dir)?,
        ..Inventory::default()
    };
    // request id → (still pending, won and not yet published)
    let mut open: HashMap<String, (bool, bool)> = HashMap::new();
    for rec in Reader::open(dir, from)? {
        let rec = rec?;
        inv.records += 1;
        inv.first_lsn.get_or_insert(rec.lsn);
        inv.last_lsn = Some(rec.lsn);
        *inv.by_kind.entry(kind_name(rec.kind).into()).or_insert(0) += 1;
        if rec.kind == Kind::Decision || rec.kind == Kind::Resolved {
            let d = Decision::decode(&rec.payload).map_err(|e| ReplayError::Undecodable {
                lsn: rec.lsn,
                reason: e.to_string(),
            })?;
            *inv.by_status.entry(d.status.as_str().into()).or_insert(0) += 1;
            let e = open
                .entry(d.request_id.to_string())
                .or_insert((false, false));
            e.0 = d.status == Status::Pending;
            e.1 = e.1 || d.status.is_win();
        } else if rec.kind == Kind::Published {
            if let Ok(d) = Decision::decode(&rec.payload) {
                if let Some(e) = open.get_mut(d.request_id) {
                    e.1 = false;
                }
            }
        }
    }
    inv.pending = open.values().filter(|(p, _)| *p).count() as u64;
    inv.unpublished = open.values().filter(|(_, u)| *u).count() as u64;
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use seckill_pipeline::OrderId;
    use seckill_wal::{Options, Wal};

    fn decision<'a>(req: &'a str, status: Status) -> Decision<'a> {
        Decision {
            status,
            order_id: status.is_win().then_some(OrderId(1)),
            price_cents: 1,
            quantity: 1,
            per_user_limit: 1,
            received_ms: 1,
            sale_id: "s",
            item_id: "i",
            user_id: "u",
            request_id: req,
        }
    }

    #[test]
    fn inspect_counts_pending_and_unpublished_work() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let (mut wal, _) = Wal::open(
                dir.path(),
                Options {
                    segment_bytes: 64 << 10,
                    ..Options::default()
                },
            )
            .expect("open");
            let mut buf = Vec::new();
            for (req, st, kind) in [
                ("a", Status::Success, Kind::Decision),
                ("b", Status::Pending, Kind::Decision),
                ("c", Status::Pending, Kind::Decision),
                ("c", Status::SoldOut, Kind::Resolved),
                ("d", Status::Success, Kind::Decision),
                ("d", Status::Success, Kind::Published),
            ] {
                decision(req, st).encode(&mut buf);
                wal.append(kind, &buf).expect("append");
            }
            wal.commit().expect("commit");
        }
        let inv = inspect(dir.path(), 1).expect("inspect");
        assert_eq!(inv.records, 6);
        assert_eq!(inv.pending, 1, "only b is still pending");
        assert_eq!(inv.unpublished, 1, "only a waits for Kafka");
        assert_eq!(inv.by_kind.get("decision"), Some(&4));
    }
}
