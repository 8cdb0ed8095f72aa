//! The log itself: recovery on open, appends with group commit, rotation
//! onto a segment prepared ahead of time, reading from any LSN, checkpoints.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapMut};

use crate::checkpoint;
use crate::error::{Result, WalError};
use crate::record::{self, Kind, Lsn, Scan, RECORD_HEADER_LEN};
use crate::segment::{self, SEGMENT_HEADER_LEN};

/// When `commit` returns, what survives?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// msync of the written range before `commit` returns: survives a power cut.
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

/// A torn tail cut at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    pub offset: u64,
    pub bytes_cut: u64,
    pub reason: String,
}

/// What recovery found.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    /// LSN of the last valid record (0 when the log is empty).
    pub last_lsn: Lsn,
    pub torn_tail: Option<TornTail>,
    pub checkpoint: Option<Lsn>,
}

/// What `salvage` kept and set aside.
#[derive(Debug, Clone, Default)]
pub struct SalvageReport {
    /// Where the corruption was (None: nothing needed salvaging).
    pub corruption: Option<(PathBuf, u64, String)>,
    pub records_kept: u64,
    pub last_lsn_kept: Lsn,
    /// Segments after the corrupt one, moved to `quarantine/`.
    pub quarantined: Vec<PathBuf>,
}

/// One scanned segment.
struct SegmentScan {
    records: u64,
    /// Offset just past the last valid record.
    end: usize,
    next_lsn: Lsn,
    stop: Option<(usize, String, usize)>,
}

fn scan_segment(buf: &[u8], first_lsn: Lsn) -> SegmentScan {
    let mut off = SEGMENT_HEADER_LEN;
    let mut next_lsn = first_lsn;
    let mut records = 0;
    loop {
        match record::decode(&buf[off.min(buf.len())..]) {
            Scan::End => {
                return SegmentScan {
                    records,
                    end: off,
                    next_lsn,
                    stop: None,
                }
            }
            Scan::Valid(r) if r.lsn == next_lsn => {
                off += r.encoded_len();
                next_lsn += 1;
                records += 1;
            }
            Scan::Valid(r) => {
                let reason = format!("LSN {} where {} was expected", r.lsn, next_lsn);
                return SegmentScan {
                    records,
                    end: off,
                    next_lsn,
                    stop: Some((off, reason, r.encoded_len())),
                };
            }
            Scan::Invalid { reason, extent } => {
                return SegmentScan {
                    records,
                    end: off,
                    next_lsn,
                    stop: Some((off, reason, extent)),
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    Strict,
    Salvage,
}

struct Active {
    path: PathBuf,
    file: File,
    map: MmapMut,
    write_off: usize,
    /// Start of the bytes appended since the last commit.
    dirty_from: usize,
    /// `WriteMode::Pwrite`: the bytes from `dirty_from` to `write_off`.
    buf: Vec<u8>,
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
    _lock: File,
}

/// The next segment: being zero-filled in the background, or ready.
enum Spare {
    None,
    Preparing(JoinHandle<Result<File>>),
    Ready(File),
}

const SPARE_NAME: &str = "spare.tmp";
const LOCK_NAME: &str = "LOCK";
const QUARANTINE_DIR: &str = "quarantine";
/// Present after a salvage set records aside, until the application has
/// reconciled (see [`Wal::salvaged`]).
pub const SALVAGED_MARKER: &str = "SALVAGED";

impl Wal {
    /// Opens (or creates) the log in `dir`, recovering it first: every
    /// checksum is verified, a torn tail of the newest segment is cut, and
    /// corruption anywhere else is a [`WalError::Corruption`].
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<(Wal, RecoveryReport)> {
        Self::open_with(dir.as_ref(), opts, Policy::Strict).map(|(w, r, _)| (w, r))
    }

    /// Like [`Wal::open`], but when corruption is found, keeps everything
    /// before it, moves later segments to `quarantine/`, and reports it.
    pub fn salvage(dir: impl AsRef<Path>, opts: Options) -> Result<(Wal, SalvageReport)> {
        Self::open_with(dir.as_ref(), opts, Policy::Salvage).map(|(w, _, s)| (w, s))
    }

    fn open_with(
        dir: &Path,
        opts: Options,
        policy: Policy,
    ) -> Result<(Wal, RecoveryReport, SalvageReport)> {
        let min = (SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 64) as u64;
        if opts.segment_bytes < min || opts.segment_bytes > (1 << 32) {
            return Err(WalError::Config(format!(
                "segment_bytes must be between {min} and 4 GiB"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| WalError::io(dir, e))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| WalError::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(WalError::Config(format!(
                "{} is locked by another process",
                dir.display()
            )));
        }
        let _ = std::fs::remove_file(dir.join(SPARE_NAME));

        let mut report = RecoveryReport {
            checkpoint: checkpoint::read(dir)?,
            ..Default::default()
        };
        let mut salvage = SalvageReport::default();
        let mut segments = segment::list(dir)?;
        let mut expect: Option<Lsn> = None;
        let mut cut: Option<(usize, usize, usize)> = None; // (segment index, offset, end)

        let mut i = 0;
        while i < segments.len() {
            let (first_lsn, path) = segments[i].clone();
            let last = i + 1 == segments.len();
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| WalError::io(&path, e))?;
            if last {
                segment::extend_zeroed(&mut file, &path, opts.segment_bytes)?;
            }
            let map = segment::map(&file, &path)?;
            let header_lsn = segment::decode_header(&path, &map)?;
            if header_lsn != first_lsn {
                return Err(WalError::BadSegment {
                    segment: path,
                    reason: format!("header says first LSN {header_lsn}"),
                });
            }
            if let Some(e) = expect {
                if e != first_lsn {
                    return Err(WalError::Corruption {
                        segment: path,
                        offset: 0,
                        reason: format!(
                            "segment starts at LSN {first_lsn}, {e} expected (missing segment?)"
                        ),
                    });
                }
            }
            let scan = scan_segment(&map, first_lsn);
            report.records += scan.records;
            report.segments += 1;
            if scan.records > 0 {
                report.last_lsn = scan.next_lsn - 1;
            }
            expect = Some(scan.next_lsn);
            if let Some((off, reason, extent)) = scan.stop {
                let claimed_end = (off + extent).min(map.len());
                let rest_is_zero = map[claimed_end..].iter().all(|b| *b == 0);
                if last && rest_is_zero {
                    report.torn_tail = Some(TornTail {
                        segment: path.clone(),
                        offset: off as u64,
                        bytes_cut: (claimed_end - off) as u64,
                        reason,
                    });
                    cut = Some((i, off, claimed_end));
                } else if policy == Policy::Salvage {
                    // Tell the next start that records were set aside, so
                    // it can reconcile with what the stock authority holds.
                    let marker = dir.join(SALVAGED_MARKER);
                    std::fs::write(&marker, format!("{}\n{off}\n", path.display()))
                        .map_err(|e| WalError::io(&marker, e))?;
                    salvage.corruption = Some((path.clone(), off as u64, reason));
                    cut = Some((i, off, map.len()));
                    let quarantine = dir.join(QUARANTINE_DIR);
                    std::fs::create_dir_all(&quarantine)
                        .map_err(|e| WalError::io(&quarantine, e))?;
                    for (_, later) in segments.drain(i + 1..) {
                        let to = quarantine.join(later.file_name().unwrap_or_default());
                        std::fs::rename(&later, &to).map_err(|e| WalError::io(&later, e))?;
                        salvage.quarantined.push(to);
                    }
                    segment::sync_dir(dir)?;
                    // This segment is now the newest; it must be full size.
                    drop(map);
                    segment::extend_zeroed(&mut file, &path, opts.segment_bytes)?;
                } else {
                    return Err(WalError::Corruption {
                        segment: path,
                        offset: off as u64,
                        reason,
                    });
                }
            }
            i += 1;
        }
        salvage.records_kept = report.records;
        salvage.last_lsn_kept = report.last_lsn;

        // Zero what was cut so a later scan cannot resurrect it.
        if let Some((idx, from, to)) = cut {
            let path = &segments[idx].1;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| WalError::io(path, e))?;
            let mut map = segment::map(&file, path)?;
            let to = to.min(map.len());
            map[from..to].fill(0);
            map.flush().map_err(|e| WalError::io(path, e))?;
        }

        let first_lsn = expect.unwrap_or_else(|| report.checkpoint.unwrap_or(1).max(1));
        let (active, next_lsn) = if let Some((seg_lsn, path)) = segments.last().cloned() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| WalError::io(&path, e))?;
            let map = segment::map(&file, &path)?;
            let scan = scan_segment(&map, seg_lsn);
            let active = Active {
                path,
                file,
                map,
                write_off: scan.end,
                dirty_from: scan.end,
                buf: Vec::new(),
            };
            (active, scan.next_lsn)
        } else {
            let path = dir.join(segment::segment_name(first_lsn));
            let file = segment::create_zeroed(&path, opts.segment_bytes)?;
            let active = Self::activate(dir, path, file, first_lsn)?;
            segments.push((first_lsn, active.path.clone()));
            (active, first_lsn)
        };

        let mut wal = Wal {
            dir: dir.to_path_buf(),
            opts,
            active,
            next_lsn,
            segments,
            spare: Spare::None,
            _lock: lock,
        };
        // A checkpoint written after the last writer closed (by the daemon
        // at shutdown) may leave whole segments below it: drop them now.
        if let Some(ckpt) = report.checkpoint {
            wal.drop_segments_below(ckpt)?;
        }
        wal.prepare_spare();
        Ok((wal, report, salvage))
    }

    fn activate(dir: &Path, path: PathBuf, file: File, first_lsn: Lsn) -> Result<Active> {
        let mut map = segment::map(&file, &path)?;
        map[..SEGMENT_HEADER_LEN].copy_from_slice(&segment::encode_header(first_lsn));
        map.flush_range(0, SEGMENT_HEADER_LEN)
            .map_err(|e| WalError::io(&path, e))?;
        segment::sync_dir(dir)?;
        Ok(Active {
            path,
            file,
            map,
            write_off: SEGMENT_HEADER_LEN,
            dirty_from: SEGMENT_HEADER_LEN,
            buf: Vec::new(),
        })
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
        self.active = Self::activate(&self.dir, path.clone(), file, self.next_lsn)?;
        self.segments.push((self.next_lsn, path));
        self.prepare_spare();
        Ok(())
    }

    /// Appends one record; durable only after the next [`Wal::commit`].
    pub fn append(&mut self, kind: Kind, payload: &[u8]) -> Result<Lsn> {
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
    fn flush_dirty_with(&mut self, sync: bool) -> Result<()> {
        let a = &mut self.active;
        if a.write_off > a.dirty_from {
            match self.opts.write_mode {
                WriteMode::Mmap if sync => a
                    .map
                    .flush_range(a.dirty_from, a.write_off - a.dirty_from)
                    .map_err(|e| WalError::io(&a.path, e))?,
                WriteMode::Mmap => {}
                WriteMode::Pwrite => {
                    use std::os::unix::fs::FileExt;
                    a.file
                        .write_all_at(&a.buf, a.dirty_from as u64)
                        .map_err(|e| WalError::io(&a.path, e))?;
                    a.buf.clear();
                    if sync {
                        a.file.sync_data().map_err(|e| WalError::io(&a.path, e))?;
                    }
                }
            }
        }
        a.dirty_from = a.write_off;
        Ok(())
    }

    fn flush_dirty(&mut self) -> Result<()> {
        self.flush_dirty_with(true)
    }

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

    /// Whether a salvage set records aside and the application has not yet
    /// called [`Wal::clear_salvaged`].
    pub fn salvaged(&self) -> bool {
        self.dir.join(SALVAGED_MARKER).exists()
    }

    pub fn clear_salvaged(dir: &Path) -> Result<()> {
        let marker = dir.join(SALVAGED_MARKER);
        match std::fs::remove_file(&marker) {
            Ok(()) => segment::sync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(WalError::io(&marker, e)),
        }
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

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub kind: Kind,
    pub lsn: Lsn,
    pub payload: Vec<u8>,
}

/// Iterates the log from an LSN across segments. Never yields a record
/// whose checksum fails: the first bad record ends the iteration with an
/// error, except an invalid tail of the newest segment, which is the end.
pub struct Reader {
    segments: Vec<(Lsn, PathBuf)>,
    next_segment: usize,
    current: Option<(Mmap, usize, PathBuf, bool)>,
    from: Lsn,
    done: bool,
}

impl Reader {
    pub fn open(dir: &Path, from: Lsn) -> Result<Reader> {
        let segments = segment::list(dir)?;
        // Skip segments wholly below `from`.
        let start = segments
            .iter()
            .rposition(|(first, _)| *first <= from)
            .unwrap_or(0);
        Ok(Reader {
            segments,
            next_segment: start,
            current: None,
            from,
            done: false,
        })
    }

    fn advance(&mut self) -> Result<bool> {
        let Some((first, path)) = self.segments.get(self.next_segment).cloned() else {
            return Ok(false);
        };
        let last = self.next_segment + 1 == self.segments.len();
        self.next_segment += 1;
        let file = File::open(&path).map_err(|e| WalError::io(&path, e))?;
        // SAFETY: read-only view of a segment of this log; segments are never
        // truncated while in use (the writer only appends into zeros).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| WalError::io(&path, e))?;
        let header_lsn = segment::decode_header(&path, &map)?;
        if header_lsn != first {
            return Err(WalError::BadSegment {
                segment: path,
                reason: format!("header says first LSN {header_lsn}"),
            });
        }
        self.current = Some((map, SEGMENT_HEADER_LEN, path, last));
        Ok(true)
    }
}

impl Iterator for Reader {
    type Item = Result<OwnedRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.current.is_none() {
                match self.advance() {
                    Ok(true) => {}
                    Ok(false) => {
                        self.done = true;
                        return None;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            let (map, off, path, last) = self.current.as_mut()?;
            match record::decode(&map[(*off).min(map.len())..]) {
                Scan::End => self.current = None,
                Scan::Valid(r) => {
                    *off += r.encoded_len();
                    if r.lsn >= self.from {
                        return Some(Ok(OwnedRecord {
                            kind: r.kind,
                            lsn: r.lsn,
                            payload: r.payload.to_vec(),
                        }));
                    }
                }
                Scan::Invalid { reason, .. } => {
                    self.done = true;
                    if *last {
                        return None;
                    }
                    return Some(Err(WalError::Corruption {
                        segment: path.clone(),
                        offset: *off as u64,
                        reason,
                    }));
                }
            }
        }
    }
}
