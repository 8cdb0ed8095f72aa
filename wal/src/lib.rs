//! # seckill-wal: a segmented, checksummed, mmap'd write-ahead log
//!
//! The log is what lets seckill promise "no lost win": a decision is in
//! here, and flushed, before anyone hears of it.
//!
//! ## Layout
//! A directory of fixed-size segment files named by the first LSN they hold
//! (`00000000000000000001.seg`), a `checkpoint` file, and a `LOCK` file that
//! keeps a second process out. Each segment is written full of zeros before
//! use — never a sparse `set_len`, because a store into a hole of a mapping
//! on a full disk is SIGBUS, not an error — and the next one is prepared on
//! a background thread so rotation on the hot path is a rename.
//!
//! A segment is a 32-byte header (magic, format version, first LSN, header
//! CRC) followed by records (see [`record`]):
//! `length | crc32 | kind | lsn | payload`, the CRC covering kind, LSN and
//! payload. LSNs start at 1 and grow by one per record, across segments. A
//! record never straddles two segments. Zeros after the last record mark
//! the end.
//!
//! ## Guarantees
//! - [`Wal::commit`] is the group commit: the bytes appended since the last
//!   commit reach the disk with one write and one flush — `pwrite` +
//!   `fdatasync` by default, or stores into the mapping + `msync` (see
//!   [`WriteMode`]) — or only the page cache (`Durability::Os`: survives a
//!   process crash, not a power cut).
//! - Recovery on open verifies every checksum. An invalid record in the
//!   newest segment followed only by zeros is a torn tail: it is cut (zeroed)
//!   and appending resumes there. Anything else invalid is
//!   [`WalError::Corruption`], naming segment and offset; [`Wal::salvage`]
//!   keeps everything before it and moves later segments to `quarantine/`.
//! - Readers never yield a record whose checksum fails.
//! - A full disk is [`WalError::DiskFull`]; what is written stays intact.
//!
//! ## Concurrency
//! One writer (the journal stage) owns [`Wal`]; replay and tools read with
//! [`Reader`], which maps segments read-only.

mod checkpoint;
pub mod error;
mod log;
pub mod record;
pub mod segment;

pub use checkpoint::{read as read_checkpoint, write as write_checkpoint};
pub use error::{Result, WalError};
pub use log::{
    Durability, Options, OwnedRecord, Reader, RecoveryReport, SalvageReport, TornTail, Wal,
    WriteMode, SALVAGED_MARKER,
};
pub use record::{Kind, Lsn};
