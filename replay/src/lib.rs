//! # seckill-replay: what the WAL holds, and what is left to do
//!
//! Reads the journal read-only (it never changes a byte) and tells the
//! operator what it holds: records by kind, decisions by outcome, requests
//! still `pending` (accepted while Redis was down, not yet resolved) and
//! wins — which replay publishes again, since the journal holds no
//! acknowledgement from Kafka. Reading stops at the first corruption with
//! the very verdict [`seckill_wal::Wal::open`] and [`seckill_wal::verify`]
//! give (one scanner, one policy in the WAL crate).

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
    /// Requests with a win in the log. Kafka's acknowledgements are not
    /// journaled, so none is known to be published: replay publishes every
    /// win from the checkpoint on again (consumers drop duplicates).
    pub wins: u64,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Decision => "decision",
        Kind::Resolved => "resolved",
        Kind::Other => "other",
    }
}

/// Scans the log from `from` and counts. Fails on the first corrupt record
/// — anything [`seckill_wal::Wal::open`] would refuse as corruption — with
/// [`WalError::Corruption`] naming segment and offset; a torn tail is the
/// end.
pub fn inspect(dir: &Path, from: Lsn) -> Result<Inventory, ReplayError> {
    let mut inv = Inventory {
        segments: seckill_wal::segment::list(dir)?.len(),
        checkpoint: seckill_wal::read_checkpoint(dir)?,
        ..Inventory::default()
    };
    // request id → (still pending, won)
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
        }
    }
    inv.pending = open.values().filter(|(p, _)| *p).count() as u64;
    inv.wins = open.values().filter(|(_, u)| *u).count() as u64;
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

    fn open(dir: &Path) -> Wal {
        Wal::open(
            dir,
            Options {
                segment_bytes: 64 << 10,
                ..Options::default()
            },
        )
        .expect("open")
        .0
    }

    #[test]
    fn inspect_counts_pending_work_and_wins_to_publish() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let mut wal = open(dir.path());
            let mut buf = Vec::new();
            for (req, st, kind) in [
                ("a", Status::Success, Kind::Decision),
                ("b", Status::Pending, Kind::Decision),
                ("c", Status::Pending, Kind::Decision),
                ("c", Status::SoldOut, Kind::Resolved),
                ("d", Status::Pending, Kind::Decision),
                ("d", Status::Success, Kind::Resolved),
                ("e", Status::SoldOut, Kind::Decision),
            ] {
                decision(req, st).encode(&mut buf);
                wal.append(kind, &buf).expect("append");
            }
            wal.commit().expect("commit");
        }
        let inv = inspect(dir.path(), 1).expect("inspect");
        assert_eq!(inv.records, 7);
        assert_eq!(inv.pending, 1, "only b is still pending");
        assert_eq!(inv.wins, 2, "a and d won; Kafka acks are not journaled");
        assert_eq!(inv.by_kind.get("decision"), Some(&5));
        assert_eq!(inv.by_kind.get("resolved"), Some(&2));
        assert_eq!(inv.by_kind.len(), 2);
    }

    #[test]
    fn inspect_and_scan_refuse_a_flipped_bit_mid_log_as_wal_open_does() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let mut wal = open(dir.path());
            let mut buf = Vec::new();
            for n in 0..10 {
                decision(&format!("r{n}"), Status::Success).encode(&mut buf);
                wal.append(Kind::Decision, &buf).expect("append");
            }
            wal.commit().expect("commit");
        }
        // The newest (and only) segment: a bit of the 4th record's payload,
        // six valid records after it.
        let segs = seckill_wal::segment::list(dir.path()).expect("list");
        assert_eq!(segs.len(), 1);
        let header = seckill_wal::record::RECORD_HEADER_LEN;
        let at = seckill_wal::segment::SEGMENT_HEADER_LEN
            + Reader::open(dir.path(), 1)
                .expect("reader")
                .take(3)
                .map(|r| header + r.expect("valid").payload.len())
                .sum::<usize>();
        let mut bytes = std::fs::read(&segs[0].1).expect("read");
        bytes[at + header + 2] ^= 0x04;
        std::fs::write(&segs[0].1, &bytes).expect("write");

        let corrupt_at = |e: ReplayError| match e {
            ReplayError::Wal(WalError::Corruption { offset, .. }) => offset,
            other => panic!("expected corruption, got {other}"),
        };
        assert_eq!(
            corrupt_at(inspect(dir.path(), 1).expect_err("inspect")),
            at as u64
        );
        assert_eq!(
            corrupt_at(scan(dir.path(), 1).expect_err("scan")),
            at as u64
        );
        assert!(matches!(
            seckill_wal::verify(dir.path()),
            Err(WalError::Corruption { offset, .. }) if offset == at as u64
        ));
    }
}
