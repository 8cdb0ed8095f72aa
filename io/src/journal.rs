//! The pipeline's journal port on the WAL.

use std::time::Duration;

use seckill_pipeline::port::{Journal, JournalError, RecordKind};
use seckill_pipeline::Decision;
use seckill_wal::{Kind, Wal, WalError};

pub struct WalJournal {
    wal: Wal,
    buf: Vec<u8>,
}

impl WalJournal {
    pub fn new(wal: Wal) -> WalJournal {
        WalJournal {
            wal,
            buf: Vec::with_capacity(512),
        }
    }
}

fn map_err(e: WalError) -> JournalError {
    if e.is_disk_full() {
        JournalError::DiskFull
    } else {
        JournalError::Io(e.to_string())
    }
}

impl Journal for WalJournal {
    fn append(&mut self, kind: RecordKind, decision: &Decision<'_>) -> Result<u64, JournalError> {
        decision.encode(&mut self.buf);
        let kind = match kind {
            RecordKind::Decision => Kind::Decision,
            RecordKind::Resolved => Kind::Resolved,
        };
        self.wal.append(kind, &self.buf).map_err(map_err)
    }

    fn commit(&mut self) -> Result<Duration, JournalError> {
        self.wal.commit().map_err(map_err)
    }

    fn checkpoint(&mut self, lsn: u64) -> Result<(), JournalError> {
        self.wal.checkpoint(lsn).map_err(map_err)
    }

    fn probe(&mut self) -> Result<(), JournalError> {
        self.wal.wait_for_spare().map_err(map_err)
    }
}
