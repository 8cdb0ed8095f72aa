//! The pipeline's journal port on the WAL.

use std::time::Duration;

use seckill_pipeline::port::{Journal, JournalError};
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
    fn append(&mut self, decision: &Decision<'_>) -> Result<u64, JournalError> {
        decision.encode(&mut self.buf);
        self.wal.append(Kind::Decision, &self.buf).map_err(map_err)
    }

    fn commit(&mut self) -> Result<Duration, JournalError> {
        self.wal.commit().map_err(map_err)
    }
}
