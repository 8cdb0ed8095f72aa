//! The read-only side of the log: [`Reader`] streams records from an LSN
//! on, [`verify`] checks the whole log, and the walk recovery starts from.
//! All three map the segments read-only, as found, and step through them
//! with the one scanner (`scan.rs`): the same bytes get the same
//! verdict, whoever reads them. None of them writes a byte.

use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::checkpoint;
use crate::error::Result;
use crate::record::{Kind, Lsn};
use crate::scan::{self, Action, Cursor, Policy, Step};
use crate::segment;

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub kind: Kind,
    pub lsn: Lsn,
    pub payload: Vec<u8>,
}

/// A torn tail: cut at recovery ([`crate::RecoveryReport`]), or found by
/// [`verify`] (what recovery will cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    pub offset: u64,
    pub bytes_cut: u64,
    pub reason: String,
}

/// What [`verify`] found: the log is readable to its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: usize,
    pub records: u64,
    /// LSN of the last valid record (0 when the log is empty).
    pub last_lsn: Lsn,
    /// The end of the newest segment was cut short by a crash; the next
    /// [`crate::Wal::open`] cuts it, losing nothing that was committed.
    pub torn_tail: Option<TornTail>,
    pub checkpoint: Option<Lsn>,
}

/// Checks every segment of the log in `dir` and every record in it, read
/// only, with the scanner and the strict policy recovery uses: the verdict
/// is [`crate::Wal::open`]'s. [`crate::WalError::Corruption`] (or
/// `BadSegment`, `BadCheckpoint`) exactly when opening would refuse with
/// it; otherwise the counts, and the torn tail opening would cut. A
/// directory that does not exist is an I/O error (opening would create it).
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let checkpoint = checkpoint::read(dir)?;
    let walk = walk(dir, Policy::Strict)?;
    Ok(VerifyReport {
        segments: walk.kept.len(),
        records: walk.records,
        last_lsn: walk.last_lsn,
        torn_tail: walk.torn_tail,
        checkpoint,
    })
}

/// One walk over every segment, under a policy: what recovery acts on
/// and what [`verify`] reports.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// The segments that stay in the log, by first LSN.
    pub kept: Vec<(Lsn, PathBuf)>,
    /// Segments after a corruption (`Policy::Salvage`), to set aside.
    pub set_aside: Vec<PathBuf>,
    pub records: u64,
    pub last_lsn: Lsn,
    /// The LSN after the last valid record (`None`: no segments).
    pub next_lsn: Option<Lsn>,
    /// Offset just past the last valid record of the newest kept segment.
    pub end: usize,
    /// Bytes of the newest kept segment that recovery zeroes (clamped to
    /// the file), so a later scan cannot resurrect them.
    pub cut: Option<Range<usize>>,
    pub torn_tail: Option<TornTail>,
    /// Where the corruption was (`Policy::Salvage`).
    pub corruption: Option<(PathBuf, u64, String)>,
}

/// Walks every segment of `dir`, read only. Under `Policy::Strict` a
/// corruption is the error; under `Policy::Salvage` it ends the walk.
pub(crate) fn walk(dir: &Path, policy: Policy) -> Result<Walk> {
    let segments = segment::list(dir)?;
    let rest = |from: usize| segments[from..].iter().map(|(_, p)| p.clone()).collect();
    let mut w = Walk::default();
    for (i, (first_lsn, path)) in segments.iter().enumerate() {
        let map = segment::map_read(path)?;
        scan::check_header(path, &map, *first_lsn)?;
        if let Some(verdict) = scan::check_sequence(*first_lsn, w.next_lsn) {
            // A missing segment: nothing from this one on follows the log,
            // and the previous one (scanned to its end) is the newest kept.
            match policy.action(verdict, path) {
                Action::Salvage { offset, reason } => {
                    w.corruption = Some((path.clone(), offset as u64, reason));
                    w.set_aside = rest(i);
                    return Ok(w);
                }
                Action::Refuse(e) => return Err(e),
                Action::NextSegment | Action::EndOfLog { .. } => {}
            }
        }
        let newest = i + 1 == segments.len();
        let s = scan::scan_segment(&map, *first_lsn, newest);
        w.kept.push((*first_lsn, path.clone()));
        w.records += s.records;
        if s.records > 0 {
            w.last_lsn = s.next_lsn - 1;
        }
        w.next_lsn = Some(s.next_lsn);
        w.end = s.end;
        match policy.action(s.verdict, path) {
            Action::NextSegment => {}
            Action::EndOfLog {
                offset,
                end,
                reason,
            } => {
                w.torn_tail = Some(TornTail {
                    segment: path.clone(),
                    offset: offset as u64,
                    bytes_cut: (end - offset) as u64,
                    reason,
                });
                w.cut = Some(offset..end);
            }
            Action::Refuse(e) => return Err(e),
            Action::Salvage { offset, reason } => {
                w.corruption = Some((path.clone(), offset as u64, reason));
                // Everything from the corruption to the end of the segment.
                w.cut = Some(offset..usize::MAX);
                w.set_aside = rest(i + 1);
                return Ok(w);
            }
        }
    }
    Ok(w)
}

/// Iterates the log from an LSN across segments, read only. Never yields
/// a record whose checksum fails. Ends with `Err(WalError::Corruption)`
/// exactly where [`crate::Wal::open`] would refuse (in the segments it
/// reads: those from the one holding `from`), and quietly at a torn tail.
pub struct Reader {
    segments: Vec<(Lsn, PathBuf)>,
    next_segment: usize,
    current: Option<Current>,
    /// The LSN the next segment must start at (`None` before the first).
    expected: Option<Lsn>,
    from: Lsn,
    done: bool,
}

struct Current {
    map: Mmap,
    path: PathBuf,
    cursor: Cursor,
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
            expected: None,
            from,
            done: false,
        })
    }

    fn advance(&mut self) -> Result<bool> {
        let Some((first, path)) = self.segments.get(self.next_segment).cloned() else {
            return Ok(false);
        };
        let newest = self.next_segment + 1 == self.segments.len();
        self.next_segment += 1;
        let map = segment::map_read(&path)?;
        scan::check_header(&path, &map, first)?;
        if let Some(verdict) = scan::check_sequence(first, self.expected) {
            if let Action::Refuse(e) = Policy::Strict.action(verdict, &path) {
                return Err(e);
            }
        }
        self.current = Some(Current {
            map,
            path,
            cursor: Cursor::new(first, newest),
        });
        Ok(true)
    }
}

impl Iterator for Reader {
    type Item = Result<OwnedRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if self.current.is_none() {
                match self.advance() {
                    Ok(true) => {}
                    Ok(false) => self.done = true,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                continue;
            }
            let cur = self.current.as_mut()?;
            let verdict = match cur.cursor.step(&cur.map) {
                Step::Record(r) if r.lsn >= self.from => {
                    return Some(Ok(OwnedRecord {
                        kind: r.kind,
                        lsn: r.lsn,
                        payload: r.payload.to_vec(),
                    }))
                }
                Step::Record(_) => continue,
                Step::Stop(verdict) => verdict,
            };
            match Policy::Strict.action(verdict, &cur.path) {
                Action::NextSegment => {
                    self.expected = Some(cur.cursor.next_lsn());
                    self.current = None;
                }
                Action::EndOfLog { .. } => self.done = true,
                Action::Refuse(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Action::Salvage { .. } => unreachable!("a strict policy never salvages"),
            }
        }
        None
    }
}
