//! The write side of the log: appends with group commit, rotation onto a
//! segment prepared ahead of time, checkpoints. Opening — recovery — is in
//! `recovery.rs`, reading back in `reader.rs`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memmap2::MmapMut;

use crate::checkpoint;
use crate::error::{Result, WalError};
use crate::reader::Reader;
use crate::record::{self, Kind, Lsn, Scan, RECORD_HEADER_LEN};
use crate::segment::{self, SEGMENT_HEADER_LEN};

/// When `commit` returns, what survives?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The commit reaches the disk (`fdatasync`, or `msync` of the written
    /// range in `WriteMode::Mmap`) before `commit` returns: survives a power cut.
    Fsync,
    /// Written to the page cache only: survives a process crash, not a power cut.
    Os,
}

impl std::str::FromStr for Durability {
    type Err = WalError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fsync" => Ok(Durability::Fsync),
            "os" => Ok(Durability::Os),
            other => Err(WalError::Config(format!(
                "durability must be \"fsync\" or \"os\", not {other:?}"
            ))),
        }
    }
}

/// How appended bytes reach the segment file. Either way the segment is
/// the same file, recovery and readers map it, and the format is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Appends go to a buffer; `commit` writes them with one `pwrite` and
    /// (`Fsync`) one `fdatasync`. Measured at the `write` + `fdatasync`
    /// reference (docs/wal.md), hence the default.
    Pwrite,
    /// Appends are stores into the writable mapping; `commit` is one
    /// `msync` of the range. Each store into a page that writeback cleaned
    /// takes a write fault, which on ext4 also joins the journal: measured
    /// at about 0.4× the reference at batch 64.
    Mmap,
}

impl std::str::FromStr for WriteMode {
    type Err = WalError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pwrite" => Ok(WriteMode::Pwrite),
            "mmap" => Ok(WriteMode::Mmap),
            other => Err(WalError::Config(format!(
                "write mode must be \"pwrite\" or \"mmap\", not {other:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Size of every segment file, header included.
    pub segment_bytes: u64,
    pub durability: Durability,
    pub write_mode: WriteMode,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 64 << 20,
            durability: Durability::Fsync,
            write_mode: WriteMode::Pwrite,
        }
    }
}

/// The segment being appended to.
pub(crate) struct Active {
    path: PathBuf,
    file: File,
    map: MmapMut,
    write_off: usize,
    /// Start of the bytes appended but not yet handed to the kernel
    /// (`WriteMode::Pwrite`; in the mapping they already are).
    dirty_from: usize,
    /// End of the bytes known to be on disk.
    synced_to: usize,
    /// `WriteMode::Pwrite`: the bytes from `dirty_from` to `write_off`.
    buf: Vec<u8>,
}

impl Active {
    /// Appending resumes at `write_off` (just past the last valid record)
    /// of a recovered segment, mapped writable.
    pub(crate) fn resume(path: PathBuf, file: File, map: MmapMut, write_off: usize) -> Active {
        Active {
            path,
            file,
            map,
            write_off,
            dirty_from: write_off,
            synced_to: write_off,
            buf: Vec::new(),
        }
    }

    /// A fresh segment (zero-filled, at its final name): writes its header.
    pub(crate) fn start(dir: &Path, path: PathBuf, file: File, first_lsn: Lsn) -> Result<Active> {
        let mut map = segment::map(&file, &path)?;
        map[..SEGMENT_HEADER_LEN].copy_from_slice(&segment::encode_header(first_lsn));
        map.flush_range(0, SEGMENT_HEADER_LEN)
            .map_err(|e| WalError::io(&path, e))?;
        segment::sync_dir(dir)?;
        Ok(Active::resume(path, file, map, SEGMENT_HEADER_LEN))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The write side of the log. One writer per directory (an exclusive lock
/// file enforces it across processes).
pub struct Wal {
    dir: PathBuf,
    opts: Options,
    active: Active,
    next_lsn: Lsn,
    /// Sealed and active segments, by first LSN.
    segments: Vec<(Lsn, PathBuf)>,
    spare: Spare,
    /// A flush failed: after a failed `fdatasync`/`msync` the kernel may
    /// have dropped the dirty pages, so what is on disk is unknown. The log
    /// refuses every write until it is reopened (recovery reads what the
    /// disk really holds), as PostgreSQL does.
    flush_failed: bool,
    _lock: File,
}

/// The next segment: being zero-filled in the background, or ready.
enum Spare {
    None,
    Preparing(JoinHandle<Result<File>>),
    Ready(File),
}

/// Where the next segment is prepared; recovery removes a leftover one.
pub(crate) const SPARE_NAME: &str = "spare.tmp";

impl Wal {
    /// The log as recovery left it: `active` is the newest of `segments`,
    /// `lock` the held directory lock. Drops segments wholly below the
    /// checkpoint and starts preparing the next segment.
    pub(crate) fn recovered(
        dir: &Path,
        opts: Options,
        active: Active,
        next_lsn: Lsn,
        segments: Vec<(Lsn, PathBuf)>,
        lock: File,
        checkpoint: Option<Lsn>,
    ) -> Result<Wal> {
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            opts,
            active,
            next_lsn,
            segments,
            spare: Spare::None,
            flush_failed: false,
            _lock: lock,
        };
        // A checkpoint written after the last writer closed (by the daemon
        // at shutdown) may leave whole segments below it: drop them now.
        if let Some(ckpt) = checkpoint {
            wal.drop_segments_below(ckpt)?;
        }
        wal.prepare_spare();
        Ok(wal)
    }

    /// Starts zero-filling the next segment in the background, so rotation
    /// on the hot path is a rename, not 64 MiB of writes.
    fn prepare_spare(&mut self) {
        if !matches!(self.spare, Spare::None) {
            return;
        }
        let path = self.dir.join(SPARE_NAME);
        let bytes = self.opts.segment_bytes;
        self.spare = Spare::Preparing(std::thread::spawn(move || {
            segment::create_zeroed(&path, bytes)
        }));
    }

    /// Waits until the next segment is prepared. Rotation does this by
    /// itself; call it to take the preparation out of a measurement, or
    /// to learn early that the disk is full.
    pub fn wait_for_spare(&mut self) -> Result<()> {
        self.prepare_spare();
        if let Spare::Preparing(_) = self.spare {
            let Spare::Preparing(h) = std::mem::replace(&mut self.spare, Spare::None) else {
                return Ok(());
            };
            match h.join() {
                Ok(Ok(file)) => self.spare = Spare::Ready(file),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(WalError::Io {
                        path: self.dir.join(SPARE_NAME),
                        source: std::io::Error::other("segment preparation panicked"),
                    })
                }
            }
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        fail::fail_point!("wal::writer::rotate", |_| Err(WalError::DiskFull {
            dir: self.dir.clone()
        }));
        // Seal the current segment: everything in it reaches the disk.
        self.flush_dirty()?;
        let spare_path = self.dir.join(SPARE_NAME);
        // A failed background preparation is tried once more here, so a
        // transient failure does not wedge the log; a full disk is the
        // caller's `DiskFull`, and the current segment stays intact.
        let file = match self.wait_for_spare() {
            Ok(()) => match std::mem::replace(&mut self.spare, Spare::None) {
                Spare::Ready(f) => f,
                _ => segment::create_zeroed(&spare_path, self.opts.segment_bytes)?,
            },
            Err(_) => segment::create_zeroed(&spare_path, self.opts.segment_bytes)?,
        };
        let path = self.dir.join(segment::segment_name(self.next_lsn));
        std::fs::rename(&spare_path, &path).map_err(|e| WalError::io(&path, e))?;
        self.active = Active::start(&self.dir, path.clone(), file, self.next_lsn)?;
        self.segments.push((self.next_lsn, path));
        self.prepare_spare();
        Ok(())
    }

    /// Appends one record; durable only after the next [`Wal::commit`].
    pub fn append(&mut self, kind: Kind, payload: &[u8]) -> Result<Lsn> {
        if self.flush_failed {
            return Err(WalError::FlushFailed {
                dir: self.dir.clone(),
            });
        }
        let len = RECORD_HEADER_LEN + payload.len();
        let capacity = self.opts.segment_bytes as usize - SEGMENT_HEADER_LEN;
        if len > capacity || payload.len() > record::PAYLOAD_LEN_MAX {
            return Err(WalError::RecordTooLarge {
                len,
                segment_bytes: self.opts.segment_bytes,
            });
        }
        if self.active.write_off + len > self.active.map.len() {
            self.rotate()?;
        }
        let lsn = self.next_lsn;
        let a = &mut self.active;
        let written = match self.opts.write_mode {
            WriteMode::Mmap => {
                let off = a.write_off;
                record::encode_into(&mut a.map[off..off + len], kind, lsn, payload);
                &a.map[off..off + len]
            }
            WriteMode::Pwrite => {
                let at = a.buf.len();
                record::encode(&mut a.buf, kind, lsn, payload);
                &a.buf[at..]
            }
        };
        // Paired check (debug builds): what we wrote decodes to what we meant.
        debug_assert!(matches!(
            record::decode(written),
            Scan::Valid(r) if r.lsn == lsn && r.payload == payload
        ));
        let _ = written;
        a.write_off += len;
        self.next_lsn += 1;
        Ok(lsn)
    }

    /// Hands the appended bytes to the kernel (`pwrite`; stores into the
    /// mapping already are) and, when `sync`, waits until they are on disk.
    ///
    /// A failed `pwrite` (a full disk) keeps the bytes: the next commit
    /// writes them again at the same offset. A failed flush poisons the
    /// log (see `flush_failed`).
    fn flush_dirty_with(&mut self, sync: bool) -> Result<()> {
        if self.flush_failed {
            return Err(WalError::FlushFailed {
                dir: self.dir.clone(),
            });
        }
        let mode = self.opts.write_mode;
        let a = &mut self.active;
        if mode == WriteMode::Pwrite && a.write_off > a.dirty_from {
            use std::os::unix::fs::FileExt;
            fail::fail_point!("wal::writer::write", |_| Err(WalError::io(
                &a.path,
                std::io::Error::from_raw_os_error(28)
            )));
            a.file
                .write_all_at(&a.buf, a.dirty_from as u64)
                .map_err(|e| WalError::io(&a.path, e))?;
            a.buf.clear();
        }
        a.dirty_from = a.write_off;
        if !sync || a.write_off <= a.synced_to {
            return Ok(());
        }
        let synced = flush_fault(&a.path).and_then(|()| match mode {
            WriteMode::Mmap => a
                .map
                .flush_range(a.synced_to, a.write_off - a.synced_to)
                .map_err(|e| WalError::io(&a.path, e)),
            WriteMode::Pwrite => a.file.sync_data().map_err(|e| WalError::io(&a.path, e)),
        });
        match synced {
            Ok(()) => {
                a.synced_to = a.write_off;
                Ok(())
            }
            Err(e) => {
                self.flush_failed = true;
                Err(e)
            }
        }
    }

    fn flush_dirty(&mut self) -> Result<()> {
        self.flush_dirty_with(true)
    }
}

/// The fail point `wal::writer::flush`: a flush that fails with EIO.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
fn flush_fault(path: &Path) -> Result<()> {
    fail::fail_point!("wal::writer::flush", |_| Err(WalError::io(
        path,
        std::io::Error::from_raw_os_error(5)
    )));
    Ok(())
}

impl Wal {
    /// Makes everything appended so far durable (per [`Durability`]).
    /// One call per batch: this is the group commit. Returns how long the
    /// flush took, for metrics.
    pub fn commit(&mut self) -> Result<Duration> {
        let started = Instant::now();
        self.flush_dirty_with(self.opts.durability == Durability::Fsync)?;
        Ok(started.elapsed())
    }

    /// The LSN the next append will get.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Records that everything below `lsn` is applied, atomically, then
    /// deletes the sealed segments that hold nothing at or above it.
    pub fn checkpoint(&mut self, lsn: Lsn) -> Result<()> {
        checkpoint::write(&self.dir, lsn)?;
        self.drop_segments_below(lsn)
    }

    /// Deletes sealed segments whose every record lies below `lsn`.
    fn drop_segments_below(&mut self, lsn: Lsn) -> Result<()> {
        let mut dropped = false;
        while self.segments.len() > 1 && self.segments[1].0 <= lsn {
            let (_, path) = self.segments.remove(0);
            std::fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?;
            dropped = true;
        }
        if dropped {
            segment::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The last checkpoint persisted in this directory.
    pub fn read_checkpoint(&self) -> Result<Option<Lsn>> {
        checkpoint::read(&self.dir)
    }

    /// Reads every record from `from` on (committed or not; this process
    /// wrote them).
    pub fn read_from(&self, from: Lsn) -> Result<Reader> {
        Reader::open(&self.dir, from)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // Best effort: an orderly close leaves nothing in the page cache only.
        let _ = self.flush_dirty();
        if let Spare::Preparing(h) = std::mem::replace(&mut self.spare, Spare::None) {
            let _ = h.join();
        }
    }
}
