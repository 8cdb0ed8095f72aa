//! The one scanner: how recovery ([`crate::Wal::open`],
//! [`crate::Wal::salvage`]), [`crate::Reader`] and [`crate::verify`] walk a
//! segment's records and decide where the log ends. Pure functions on
//! bytes, like [`crate::record`]: the callers map the files.
//!
//! ## The verdict: corruption is a value
//!
//! A segment is scanned from its header on. A record is valid when its
//! checksum holds, its kind is known and its LSN is the next one. The scan
//! stops at zeros (nothing was written there) or at the first record that
//! is not valid, and says what it found there:
//!
//! | scan stopped at              | in            | after the bad record's claimed extent       | verdict   |
//! |------------------------------|---------------|---------------------------------------------|-----------|
//! | zeros                        | any segment   | –                                           | `Valid`   |
//! | a bad record                 | newest        | only zeros, and no valid record inside it   | `Torn`    |
//! | a bad record                 | newest        | a written byte, or a valid record inside it | `Corrupt` |
//! | a bad record                 | older         | –                                           | `Corrupt` |
//! | the segment's first LSN      | any but first | not the LSN after the previous segment's    | `Corrupt` (offset 0: a segment is missing) |
//!
//! Legend: a bad record's *claimed extent* is its header and payload when
//! its length is plausible (a length running past the end of the file
//! claims the rest of the file), only its header when the length is
//! garbage ([`record::Scan::Invalid`]). *A valid record inside it*: a
//! damaged length can swallow records written after it; finding one proves
//! the bad record was not the last thing written. A segment header that is
//! not ours is [`WalError::BadSegment`], before any verdict.
//!
//! The verdict depends on the bytes of the files only — not on
//! [`crate::Options`] — so a read-only check and recovery cannot disagree.
//!
//! ## The policy: which verdict is an error
//!
//! | verdict   | [`Policy::Strict`] (open, `Reader`, `verify`) | [`Policy::Salvage`] |
//! |-----------|-------------------------------|----------------------------------------------|
//! | `Valid`   | next segment                  | next segment                                 |
//! | `Torn`    | end of the log (open cuts it) | end of the log (cut)                         |
//! | `Corrupt` | [`WalError::Corruption`]      | keep what is before, set the rest aside      |

use std::path::Path;

use crate::error::{Result, WalError};
use crate::record::{self, Lsn, Record, Scan, RECORD_HEADER_LEN};
use crate::segment::{self, SEGMENT_HEADER_LEN};

/// What a [`Verdict`] means: the recovery mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Corruption is an error: [`crate::Wal::open`], [`crate::Reader`],
    /// [`crate::verify`].
    Strict,
    /// Corruption ends the log: keep everything before it, set the rest
    /// aside ([`crate::Wal::salvage`]).
    Salvage,
}

/// Where one segment's scan stopped, and what that means for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every record up to zeros (or the end of the segment) is valid.
    Valid,
    /// The newest segment ends in a record cut short by a crash: the bytes
    /// `offset..end` are its remains, and only zeros follow.
    Torn {
        offset: usize,
        end: usize,
        reason: String,
    },
    /// An invalid record (or a missing segment, at offset 0) where a torn
    /// tail cannot be: `reason` says what was expected and what was found.
    Corrupt { offset: usize, reason: String },
}

/// What a policy does with a verdict.
#[derive(Debug)]
pub enum Action {
    /// Go on with the next segment, if any.
    NextSegment,
    /// The log ends in a torn tail at `offset`; recovery cuts `offset..end`.
    EndOfLog {
        offset: usize,
        end: usize,
        reason: String,
    },
    /// Stop with this [`WalError::Corruption`].
    Refuse(WalError),
    /// Keep what is before `offset`, set the rest aside.
    Salvage { offset: usize, reason: String },
}

impl Policy {
    /// The policy table above, for a verdict found in `segment`.
    pub fn action(self, verdict: Verdict, segment: &Path) -> Action {
        match (verdict, self) {
            (Verdict::Valid, _) => Action::NextSegment,
            (
                Verdict::Torn {
                    offset,
                    end,
                    reason,
                },
                _,
            ) => Action::EndOfLog {
                offset,
                end,
                reason,
            },
            (Verdict::Corrupt { offset, reason }, Policy::Strict) => {
                Action::Refuse(WalError::Corruption {
                    segment: segment.to_path_buf(),
                    offset: offset as u64,
                    reason,
                })
            }
            (Verdict::Corrupt { offset, reason }, Policy::Salvage) => {
                Action::Salvage { offset, reason }
            }
        }
    }
}

/// Checks a mapped segment's header, and that it agrees with the first
/// LSN in the file name. No policy reads past a header that is not ours.
pub fn check_header(path: &Path, seg: &[u8], first_lsn: Lsn) -> Result<()> {
    let header_lsn = segment::decode_header(path, seg)?;
    if header_lsn != first_lsn {
        return Err(WalError::BadSegment {
            segment: path.to_path_buf(),
            reason: format!("header says first LSN {header_lsn}"),
        });
    }
    Ok(())
}

/// A segment must start at the LSN after the previous segment's last
/// (`expected`; `None` for the first segment read).
pub fn check_sequence(first_lsn: Lsn, expected: Option<Lsn>) -> Option<Verdict> {
    match expected {
        Some(e) if e != first_lsn => Some(Verdict::Corrupt {
            offset: 0,
            reason: format!("segment starts at LSN {first_lsn}, {e} expected (missing segment?)"),
        }),
        _ => None,
    }
}

/// What one step of a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    /// The next valid record.
    Record(Record<'a>),
    /// The scan of this segment is over (stepping again says the same).
    Stop(Verdict),
}

/// A position in one segment: the record scanner that every reader of
/// the log steps through.
#[derive(Debug, Clone)]
pub struct Cursor {
    off: usize,
    next_lsn: Lsn,
    newest: bool,
}

impl Cursor {
    /// Starts after the header of a segment whose first LSN is
    /// `first_lsn`; `newest` when no segment follows it (only the newest
    /// can end in a torn tail).
    pub fn new(first_lsn: Lsn, newest: bool) -> Cursor {
        Cursor {
            off: SEGMENT_HEADER_LEN,
            next_lsn: first_lsn,
            newest,
        }
    }

    /// The offset just past the last valid record.
    pub fn offset(&self) -> usize {
        self.off
    }

    /// The LSN the next valid record must have.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// The next record of `seg` (the whole mapped segment), or the verdict.
    pub fn step<'a>(&mut self, seg: &'a [u8]) -> Step<'a> {
        match self.classify(seg) {
            Ok(r) => {
                self.off += r.encoded_len();
                self.next_lsn += 1;
                Step::Record(r)
            }
            Err(verdict) => Step::Stop(verdict),
        }
    }

    fn decode<'a>(&self, seg: &'a [u8]) -> Scan<'a> {
        record::decode(seg.get(self.off..).unwrap_or_default())
    }

    fn classify<'a>(&self, seg: &'a [u8]) -> std::result::Result<Record<'a>, Verdict> {
        let (reason, extent) = match self.decode(seg) {
            Scan::Valid(r) if r.lsn == self.next_lsn => return Ok(r),
            Scan::Valid(r) => (
                format!("LSN {} where {} was expected", r.lsn, self.next_lsn),
                r.encoded_len(),
            ),
            Scan::End => return Err(Verdict::Valid),
            Scan::Invalid { reason, extent } => (reason, extent),
        };
        let verdict = judge(seg, self.off, extent, self.next_lsn, self.newest, reason);
        if self.newest && matches!(verdict, Verdict::Corrupt { .. }) {
            // A writer may be appending while a reader scans: the record
            // looked half-written, and by the time the scan looked past it
            // more had been written. Written bytes become visible in order,
            // so if it is complete now, it was never corrupt. (Recovery holds
            // the lock: there, a second look sees the same bytes.)
            if let Scan::Valid(r) = self.decode(seg) {
                if r.lsn == self.next_lsn {
                    return Ok(r);
                }
            }
        }
        Err(verdict)
    }
}

/// Torn or corrupt: the bad record at `off` claims `extent` bytes.
fn judge(
    seg: &[u8],
    off: usize,
    extent: usize,
    next_lsn: Lsn,
    newest: bool,
    reason: String,
) -> Verdict {
    if !newest {
        return Verdict::Corrupt {
            offset: off,
            reason,
        };
    }
    let end = off.saturating_add(extent).min(seg.len());
    if let Some(p) = seg[end..].iter().position(|b| *b != 0) {
        return Verdict::Corrupt {
            offset: off,
            reason: format!(
                "{reason}; not a torn tail: byte {} after it is written",
                end + p
            ),
        };
    }
    if let Some((at, lsn)) = hidden_record(seg, off, end, next_lsn) {
        return Verdict::Corrupt {
            offset: off,
            reason: format!(
                "{reason}; not a torn tail: it covers the valid record of LSN {lsn} at byte {at}"
            ),
        };
    }
    Verdict::Torn {
        offset: off,
        end,
        reason,
    }
}

/// A valid record starting inside the bad record's extent `off..end`,
/// with an LSN from `next_lsn` on: its length was damaged, and it hides
/// records written after it. At most one extent (about a megabyte) is
/// searched, once, when a scan stops.
fn hidden_record(seg: &[u8], off: usize, end: usize, next_lsn: Lsn) -> Option<(usize, Lsn)> {
    // No more records than this fit in the extent: bounds the LSNs worth
    // a checksum.
    let fit = ((end - off) / RECORD_HEADER_LEN) as u64;
    let lsn_max = next_lsn.saturating_add(fit);
    for at in off + 1..end {
        let lsn = record::lsn_field(&seg[at..])?;
        if lsn < next_lsn || lsn > lsn_max {
            continue;
        }
        if let Scan::Valid(r) = record::decode(&seg[at..]) {
            return Some((at, r.lsn));
        }
    }
    None
}

/// One segment scanned to its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    pub records: u64,
    /// Offset just past the last valid record.
    pub end: usize,
    /// The LSN after the last valid record.
    pub next_lsn: Lsn,
    pub verdict: Verdict,
}

/// Scans a whole segment (mapped, header included) with a [`Cursor`].
pub fn scan_segment(seg: &[u8], first_lsn: Lsn, newest: bool) -> SegmentScan {
    let mut cursor = Cursor::new(first_lsn, newest);
    let mut records = 0;
    loop {
        match cursor.step(seg) {
            Step::Record(_) => records += 1,
            Step::Stop(verdict) => {
                return SegmentScan {
                    records,
                    end: cursor.offset(),
                    next_lsn: cursor.next_lsn(),
                    verdict,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Kind;

    const SEG: usize = 4096;

    /// A segment of `SEG` bytes holding records of these payload sizes,
    /// LSNs from 1; returns it and each record's offset.
    fn segment_with(sizes: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let mut seg = segment::encode_header(1).to_vec();
        let mut offsets = Vec::new();
        for (n, len) in sizes.iter().enumerate() {
            offsets.push(seg.len());
            record::encode(&mut seg, Kind::Decision, n as Lsn + 1, &vec![0xab; *len]);
        }
        seg.resize(SEG, 0);
        (seg, offsets)
    }

    #[test]
    fn a_clean_segment_is_valid_in_any_position() {
        let (seg, offsets) = segment_with(&[10, 20, 30]);
        for newest in [false, true] {
            let s = scan_segment(&seg, 1, newest);
            assert_eq!(s.verdict, Verdict::Valid);
            assert_eq!((s.records, s.next_lsn), (3, 4));
            assert_eq!(s.end, offsets[2] + RECORD_HEADER_LEN + 30);
        }
    }

    #[test]
    fn a_bad_last_record_followed_by_zeros_is_torn_only_in_the_newest_segment() {
        let (mut seg, offsets) = segment_with(&[10, 20, 30]);
        seg[offsets[2] + RECORD_HEADER_LEN + 5] ^= 1;
        let s = scan_segment(&seg, 1, true);
        assert!(
            matches!(s.verdict, Verdict::Torn { offset, end, .. }
                if offset == offsets[2] && end == offsets[2] + RECORD_HEADER_LEN + 30),
            "{:?}",
            s.verdict
        );
        assert_eq!((s.records, s.end), (2, offsets[2]));
        let s = scan_segment(&seg, 1, false);
        assert!(matches!(s.verdict, Verdict::Corrupt { offset, .. } if offset == offsets[2]));
    }

    #[test]
    fn a_bad_record_followed_by_valid_records_is_corrupt_even_in_the_newest_segment() {
        let (mut seg, offsets) = segment_with(&[10, 20, 30]);
        seg[offsets[1] + RECORD_HEADER_LEN + 5] ^= 1;
        let s = scan_segment(&seg, 1, true);
        assert!(
            matches!(&s.verdict, Verdict::Corrupt { offset, reason }
                if *offset == offsets[1] && reason.contains("checksum")),
            "{:?}",
            s.verdict
        );
        assert_eq!(s.records, 1);
    }

    #[test]
    fn a_damaged_length_that_swallows_later_records_is_corrupt() {
        let (mut seg, offsets) = segment_with(&[10, 20, 30]);
        // Record 2's length now covers record 3 and then some zeros.
        seg[offsets[1]..offsets[1] + 4].copy_from_slice(&200u32.to_le_bytes());
        let s = scan_segment(&seg, 1, true);
        assert!(
            matches!(&s.verdict, Verdict::Corrupt { offset, reason }
                if *offset == offsets[1] && reason.contains("LSN 3")),
            "{:?}",
            s.verdict
        );
        // ... and so is one that runs past the end of the file.
        seg[offsets[1]..offsets[1] + 4].copy_from_slice(&(SEG as u32).to_le_bytes());
        let s = scan_segment(&seg, 1, true);
        assert!(
            matches!(s.verdict, Verdict::Corrupt { .. }),
            "{:?}",
            s.verdict
        );
    }

    #[test]
    fn a_file_cut_short_through_its_last_record_is_a_torn_tail() {
        let (seg, offsets) = segment_with(&[10, 20, 30]);
        for cut in offsets[2] + 1..offsets[2] + RECORD_HEADER_LEN + 30 {
            let s = scan_segment(&seg[..cut], 1, true);
            assert!(
                matches!(s.verdict, Verdict::Torn { offset, end, .. } if offset == offsets[2] && end == cut),
                "cut at {cut}: {:?}",
                s.verdict
            );
        }
    }

    #[test]
    fn an_lsn_out_of_sequence_is_a_bad_record() {
        let (mut seg, offsets) = segment_with(&[10, 20]);
        let mut rec = Vec::new();
        record::encode(&mut rec, Kind::Decision, 9, &[0xab; 20]);
        seg[offsets[1]..offsets[1] + rec.len()].copy_from_slice(&rec);
        let s = scan_segment(&seg, 1, false);
        assert!(
            matches!(&s.verdict, Verdict::Corrupt { reason, .. } if reason.contains("LSN 9 where 2")),
            "{:?}",
            s.verdict
        );
        assert!(matches!(
            scan_segment(&seg, 1, true).verdict,
            Verdict::Torn { .. }
        ));
    }

    #[test]
    fn a_missing_segment_is_corrupt_at_offset_0() {
        assert_eq!(check_sequence(5, None), None);
        assert_eq!(check_sequence(5, Some(5)), None);
        assert!(matches!(
            check_sequence(9, Some(5)),
            Some(Verdict::Corrupt { offset: 0, .. })
        ));
    }

    #[test]
    fn every_row_of_the_policy_table() {
        let torn = || Verdict::Torn {
            offset: 40,
            end: 60,
            reason: "torn".into(),
        };
        let corrupt = || Verdict::Corrupt {
            offset: 40,
            reason: "bad".into(),
        };
        let seg = Path::new("00000000000000000001.seg");
        for policy in [Policy::Strict, Policy::Salvage] {
            assert!(matches!(
                policy.action(Verdict::Valid, seg),
                Action::NextSegment
            ));
            assert!(matches!(
                policy.action(torn(), seg),
                Action::EndOfLog {
                    offset: 40,
                    end: 60,
                    ..
                }
            ));
        }
        assert!(matches!(
            Policy::Strict.action(corrupt(), seg),
            Action::Refuse(WalError::Corruption { offset: 40, ref segment, .. }) if segment == seg
        ));
        assert!(matches!(
            Policy::Salvage.action(corrupt(), seg),
            Action::Salvage { offset: 40, .. }
        ));
    }
}
