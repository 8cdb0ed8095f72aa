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
//! payload. Kinds are 1 `Decision`, 2 `Resolved`, 4 `Other`; 0 means
//! "nothing written" and 3 is reserved (it was `Published`, never written),
//! so a record of kind 3 does not decode. LSNs start at 1 and grow by one
//! per record, across segments. A record never straddles two segments.
//! Zeros after the last record mark the end.
//!
//! ## One scanner, one policy
//! Everything that reads the log — recovery in [`Wal::open`] and
//! [`Wal::salvage`], [`Reader`], [`verify`] — maps the segments read-only,
//! as found, and steps through them with one scanner (`scan.rs`), which
//! turns what it finds into a value: valid, torn at an offset, or corrupt
//! at an offset (with what was expected and what was found). The rule:
//!
//! - An invalid record in the newest segment followed only by zeros (and
//!   whose damaged length hides no valid record) is a **torn tail**: a
//!   crash mid-append. It is the end of the log.
//! - Any other invalid record — one followed by more records, anything bad
//!   in an older segment, a missing segment — is **corruption**.
//! - A segment header that is not ours is [`WalError::BadSegment`].
//!
//! A policy then says which verdict is an error: under `Strict` (open,
//! `Reader`, `verify`) corruption is [`WalError::Corruption`], naming
//! segment and offset; under `Salvage` everything before it is kept and
//! the later segments are moved to `quarantine/`. The verdict depends on
//! the bytes only, so `verify` says `Corruption` exactly when `Wal::open`
//! would refuse, and a `Reader` ends with that error in exactly those
//! cases.
//!
//! ## Guarantees
//! - [`Wal::commit`] is the group commit: the bytes appended since the last
//!   commit reach the disk with one write and one flush — `pwrite` +
//!   `fdatasync` by default, or stores into the mapping + `msync` (see
//!   [`WriteMode`]) — or only the page cache (`Durability::Os`: survives a
//!   process crash, not a power cut).
//! - Recovery on open verifies every checksum before changing a byte; then
//!   it cuts (zeroes) a torn tail and appending resumes there.
//! - Readers never yield a record whose checksum fails.
//! - A full disk is [`WalError::DiskFull`]; what is written stays intact.
//! - A second writer is [`WalError::Locked`].
//!
//! ## Concurrency
//! One writer (the journal stage) owns [`Wal`]; replay and tools read with
//! [`Reader`] and [`verify`], which map segments read-only and never write.
//!
//! ## Files
//! `record.rs` and `scan.rs` work on bytes; `segment.rs` and
//! `checkpoint.rs` touch files; `reader.rs` is the read-only side,
//! `recovery.rs` opens the log, `writer.rs` appends to it.

mod checkpoint;
pub mod error;
mod reader;
pub mod record;
mod recovery;
mod scan;
pub mod segment;
mod writer;

pub use checkpoint::{read as read_checkpoint, write as write_checkpoint};
pub use error::{Result, WalError};
pub use reader::{verify, OwnedRecord, Reader, TornTail, VerifyReport};
pub use record::{Kind, Lsn};
pub use recovery::{RecoveryReport, SalvageReport, SALVAGED_MARKER};
pub use writer::{Durability, Options, Wal, WriteMode};
