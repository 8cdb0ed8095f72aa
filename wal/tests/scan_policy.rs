//! One scanner, one policy: `Wal::open`, `verify` and `Reader` give the
//! same verdict on the same bytes. A bad record in the newest segment
//! followed only by zeros is a torn tail; anything else bad is corruption,
//! whoever reads it — and the read-only ones never change a byte.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use seckill_wal::record::RECORD_HEADER_LEN;
use seckill_wal::segment::SEGMENT_HEADER_LEN;
use seckill_wal::{verify, Durability, Kind, Options, Reader, Wal, WalError};

const SEG: u64 = 16 << 10;
/// Every fixture's records carry this many payload bytes.
const LEN: usize = 100;
const REC: usize = RECORD_HEADER_LEN + LEN;
/// Records per segment of `SEG` bytes.
const PER_SEG: usize = (SEG as usize - SEGMENT_HEADER_LEN) / REC;

fn opts() -> Options {
    Options {
        segment_bytes: SEG,
        durability: Durability::Fsync,
        ..Options::default()
    }
}

/// A payload with no zero byte, so a cut always changes it.
fn payload(n: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((n * 31 + i * 7) % 255 + 1) as u8)
        .collect()
}

fn write_records(dir: &Path, count: usize, o: Options) -> Vec<Vec<u8>> {
    let (mut wal, _) = Wal::open(dir, o).expect("open");
    let written: Vec<Vec<u8>> = (0..count).map(|n| payload(n, LEN)).collect();
    for p in &written {
        wal.append(Kind::Decision, p).expect("append");
    }
    wal.commit().expect("commit");
    written
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    seckill_wal::segment::list(dir)
        .expect("list")
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Offset of the `k`-th record (from 0) of a segment of `LEN`-byte records.
fn record_at(k: usize) -> usize {
    SEGMENT_HEADER_LEN + k * REC
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read");
    f(&mut bytes);
    std::fs::write(path, &bytes).expect("write");
}

fn flip(path: &Path, at: usize) {
    edit(path, |b| b[at] ^= 0x10);
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// Every file of `dir` (recursively) and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(snapshot(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).expect("read"));
        }
    }
    out
}

fn name(p: &Path) -> String {
    p.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

/// A verdict, comparable across directories (segments by file name).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Ok {
        records: u64,
        last_lsn: u64,
    },
    TornTail {
        records: u64,
        segment: String,
        offset: u64,
    },
    Corruption {
        segment: String,
        offset: u64,
    },
    BadSegment {
        segment: String,
    },
    Other(String),
}

impl Verdict {
    fn of_error(e: WalError) -> Verdict {
        match e {
            WalError::Corruption {
                segment, offset, ..
            } => Verdict::Corruption {
                segment: name(&segment),
                offset,
            },
            WalError::BadSegment { segment, .. } => Verdict::BadSegment {
                segment: name(&segment),
            },
            other => Verdict::Other(other.to_string()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Verdict::Ok { .. } => "ok",
            Verdict::TornTail { .. } => "torn tail",
            Verdict::Corruption { .. } => "corruption",
            Verdict::BadSegment { .. } => "bad segment",
            Verdict::Other(_) => "other",
        }
    }

    /// What a `Reader` can tell: it ends quietly at a torn tail.
    fn as_read(&self) -> Verdict {
        match self {
            Verdict::Ok { records, .. } | Verdict::TornTail { records, .. } => Verdict::Ok {
                records: *records,
                last_lsn: 0,
            },
            other => other.clone(),
        }
    }
}

/// `Wal::open` on a copy of `dir` (it cuts torn tails and extends files).
fn open_verdict(dir: &Path) -> Verdict {
    let copy = tempfile::tempdir().expect("tmp");
    copy_dir(dir, copy.path());
    match Wal::open(copy.path(), opts()) {
        Ok((_, r)) => match r.torn_tail {
            Some(t) => Verdict::TornTail {
                records: r.records,
                segment: name(&t.segment),
                offset: t.offset,
            },
            None => Verdict::Ok {
                records: r.records,
                last_lsn: r.last_lsn,
            },
        },
        Err(e) => Verdict::of_error(e),
    }
}

fn verify_verdict(dir: &Path) -> Verdict {
    match verify(dir) {
        Ok(r) => match r.torn_tail {
            Some(t) => Verdict::TornTail {
                records: r.records,
                segment: name(&t.segment),
                offset: t.offset,
            },
            None => Verdict::Ok {
                records: r.records,
                last_lsn: r.last_lsn,
            },
        },
        Err(e) => Verdict::of_error(e),
    }
}

/// Reads the whole log; every record yielded must be one written, in order.
fn reader_verdict(dir: &Path, written: &[Vec<u8>]) -> Verdict {
    let mut records = 0u64;
    for r in Reader::open(dir, 1).expect("reader") {
        match r {
            Ok(r) => {
                assert_eq!(r.lsn, records + 1, "LSNs in sequence");
                assert_eq!(
                    Some(&r.payload),
                    written.get(records as usize),
                    "a record never written"
                );
                records += 1;
            }
            Err(e) => return Verdict::of_error(e),
        }
    }
    Verdict::Ok {
        records,
        last_lsn: 0,
    }
}

#[test]
fn a_flipped_bit_mid_log_in_the_only_segment_is_corruption_for_open_verify_and_reader() {
    let dir = tempfile::tempdir().expect("tmp");
    // Large segments, as in production: the newest is the only one.
    let big = Options {
        segment_bytes: 1 << 20,
        ..opts()
    };
    let written = write_records(dir.path(), 20, big.clone());
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 1);
    flip(&segs[0], record_at(4) + RECORD_HEADER_LEN + 3);
    let before = snapshot(dir.path());

    match verify(dir.path()) {
        Err(WalError::Corruption {
            segment, offset, ..
        }) => {
            assert_eq!(segment, segs[0]);
            assert_eq!(offset as usize, record_at(4));
        }
        other => panic!("verify: expected corruption, got {other:?}"),
    }
    let read: Vec<_> = Reader::open(dir.path(), 1).expect("reader").collect();
    assert_eq!(read.len(), 5, "four records, then the error");
    for (n, r) in read[..4].iter().enumerate() {
        assert_eq!(r.as_ref().expect("valid").payload, written[n]);
    }
    match &read[4] {
        Err(WalError::Corruption {
            segment, offset, ..
        }) => {
            assert_eq!(segment, &segs[0]);
            assert_eq!(*offset as usize, record_at(4));
        }
        other => panic!("reader: expected corruption, got {other:?}"),
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "verify and Reader wrote nothing"
    );

    match Wal::open(dir.path(), big) {
        Err(WalError::Corruption {
            segment, offset, ..
        }) => {
            assert_eq!(segment, segs[0]);
            assert_eq!(offset as usize, record_at(4));
        }
        Err(e) => panic!("open: expected corruption, got {e}"),
        Ok(_) => panic!("open: expected corruption, open succeeded"),
    }
}

/// A fixture: builds a damaged (or not) log in a directory, returns what
/// was written and the verdict kind every reader must agree on.
type Fixture = (&'static str, &'static str, fn(&Path) -> Vec<Vec<u8>>);

fn fixtures() -> Vec<Fixture> {
    vec![
        ("an empty directory", "ok", |_| Vec::new()),
        ("a log whose only segment holds no record", "ok", |d| {
            write_records(d, 0, opts())
        }),
        ("a clean log of several segments", "ok", |d| {
            write_records(d, 3 * PER_SEG + 7, opts())
        }),
        ("a torn tail of zeros", "torn tail", |d| {
            let w = write_records(d, 10, opts());
            let seg = &segments(d)[0];
            edit(seg, |b| b[record_at(9) + 40..record_at(10)].fill(0));
            w
        }),
        ("a torn tail of garbage", "torn tail", |d| {
            let w = write_records(d, 10, opts());
            let seg = &segments(d)[0];
            edit(seg, |b| {
                b[record_at(9) + RECORD_HEADER_LEN..record_at(10)].fill(0x5a)
            });
            w
        }),
        (
            "a newest segment cut short through its last record",
            "torn tail",
            |d| {
                let w = write_records(d, PER_SEG + 10, opts());
                let seg = segments(d)[1].clone();
                let f = OpenOptions::new().write(true).open(&seg).expect("open");
                f.set_len((record_at(9) + 50) as u64).expect("truncate");
                w
            },
        ),
        ("a flipped bit in the last record", "torn tail", |d| {
            let w = write_records(d, 10, opts());
            flip(&segments(d)[0], record_at(9) + 30);
            w
        }),
        (
            "a flipped bit mid-log in the only segment",
            "corruption",
            |d| {
                let w = write_records(d, 10, opts());
                flip(&segments(d)[0], record_at(4) + 30);
                w
            },
        ),
        (
            "a flipped bit mid-log in the newest segment",
            "corruption",
            |d| {
                let w = write_records(d, 2 * PER_SEG + 10, opts());
                flip(&segments(d)[2], record_at(4) + 30);
                w
            },
        ),
        ("a flipped bit in an older segment", "corruption", |d| {
            let w = write_records(d, 2 * PER_SEG + 10, opts());
            flip(&segments(d)[1], record_at(4) + 30);
            w
        }),
        (
            "a flipped bit in the last record of an older segment",
            "corruption",
            |d| {
                let w = write_records(d, 2 * PER_SEG + 10, opts());
                flip(&segments(d)[0], record_at(PER_SEG - 1) + 30);
                w
            },
        ),
        (
            "a damaged length that swallows the later records",
            "corruption",
            |d| {
                let w = write_records(d, 10, opts());
                edit(&segments(d)[0], |b| {
                    let at = record_at(6);
                    b[at..at + 4].copy_from_slice(&((5 * REC) as u32).to_le_bytes());
                });
                w
            },
        ),
        ("garbage after the last record", "corruption", |d| {
            let w = write_records(d, 10, opts());
            edit(&segments(d)[0], |b| {
                b[record_at(10)..record_at(10) + 40].fill(0xa5)
            });
            w
        }),
        ("a missing segment", "corruption", |d| {
            let w = write_records(d, 3 * PER_SEG + 10, opts());
            std::fs::remove_file(&segments(d)[1]).expect("remove");
            w
        }),
        (
            "a bad segment header in an older segment",
            "bad segment",
            |d| {
                let w = write_records(d, 2 * PER_SEG + 10, opts());
                flip(&segments(d)[0], 2);
                w
            },
        ),
        (
            "a bad segment header in the newest segment",
            "bad segment",
            |d| {
                let w = write_records(d, 2 * PER_SEG + 10, opts());
                flip(&segments(d)[2], 17);
                w
            },
        ),
    ]
}

#[test]
fn verify_and_reader_give_wal_open_verdict_on_every_fixture() {
    for (what, expected, build) in fixtures() {
        let dir = tempfile::tempdir().expect("tmp");
        let written = build(dir.path());
        let before = snapshot(dir.path());
        let verified = verify_verdict(dir.path());
        let read = reader_verdict(dir.path(), &written);
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{what}: verify and Reader wrote nothing"
        );
        let opened = open_verdict(dir.path());
        assert_eq!(opened.kind(), expected, "{what}: Wal::open says {opened:?}");
        assert_eq!(verified, opened, "{what}: verify vs Wal::open");
        assert_eq!(read, opened.as_read(), "{what}: Reader vs Wal::open");
    }
}

#[test]
fn verify_reads_a_log_whose_writer_is_running() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut wal, _) = Wal::open(dir.path(), opts()).expect("open");
    for n in 0..PER_SEG + 5 {
        wal.append(Kind::Decision, &payload(n, LEN))
            .expect("append");
    }
    wal.commit().expect("commit");
    let report = verify(dir.path()).expect("verify beside the writer");
    assert_eq!(report.records, (PER_SEG + 5) as u64);
    assert_eq!(report.last_lsn, (PER_SEG + 5) as u64);
    assert_eq!(report.segments, 2);
    assert_eq!(report.torn_tail, None);
}

#[test]
fn salvage_keeps_the_log_before_a_missing_segment_and_sets_the_rest_aside() {
    let dir = tempfile::tempdir().expect("tmp");
    write_records(dir.path(), 3 * PER_SEG + 10, opts());
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 4);
    std::fs::remove_file(&segs[1]).expect("remove");
    assert!(matches!(
        verify(dir.path()),
        Err(WalError::Corruption { offset: 0, ref segment, .. }) if *segment == segs[2]
    ));

    let (mut wal, report) = Wal::salvage(dir.path(), opts()).expect("salvage");
    let (segment, offset, _) = report.corruption.expect("a corruption");
    assert_eq!((segment, offset), (segs[2].clone(), 0));
    assert_eq!(report.records_kept, PER_SEG as u64);
    assert_eq!(report.last_lsn_kept, PER_SEG as u64);
    assert_eq!(report.quarantined.len(), 2);
    assert!(wal.salvaged());
    assert_eq!(
        wal.append(Kind::Decision, b"after").expect("append"),
        PER_SEG as u64 + 1
    );
    wal.commit().expect("commit");
    drop(wal);
    let report = verify(dir.path()).expect("clean after salvage");
    assert_eq!(report.records, PER_SEG as u64 + 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Arbitrary bytes overwritten anywhere in a three-segment log: whatever
    /// `Wal::open` decides, `verify` and `Reader` decide the same.
    #[test]
    fn verify_and_reader_agree_with_open_on_arbitrary_damage(
        damage in proptest::collection::vec((0usize..3 * SEG as usize, any::<u8>()), 1..8),
    ) {
        let dir = tempfile::tempdir().expect("tmp");
        let written = write_records(dir.path(), 2 * PER_SEG + 20, opts());
        let segs = segments(dir.path());
        for (at, byte) in &damage {
            edit(&segs[(at / SEG as usize) % segs.len()], |b| {
                let i = at % b.len();
                b[i] = *byte;
            });
        }
        let verified = verify_verdict(dir.path());
        let read = reader_verdict(dir.path(), &written);
        let opened = open_verdict(dir.path());
        prop_assert_eq!(&verified, &opened);
        prop_assert_eq!(read, opened.as_read());
    }
}
