//! Recovery: torn tails are cut, corruption before the tail is an error
//! with a salvage path, rotation and checkpoints keep the LSN sequence.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use seckill_wal::record::RECORD_HEADER_LEN;
use seckill_wal::segment::SEGMENT_HEADER_LEN;
use seckill_wal::{Durability, Kind, Options, Reader, Wal, WalError};

const SEG: u64 = 16 << 10;

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

fn write_records(dir: &Path, sizes: &[usize]) -> Vec<Vec<u8>> {
    let (mut wal, _) = Wal::open(dir, opts()).expect("open");
    let mut out = Vec::new();
    for (n, len) in sizes.iter().enumerate() {
        let p = payload(n, *len);
        wal.append(Kind::Decision, &p).expect("append");
        out.push(p);
    }
    wal.commit().expect("commit");
    out
}

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    Reader::open(dir, 1)
        .expect("reader")
        .map(|r| r.expect("valid record").payload)
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    seckill_wal::segment::list(dir)
        .expect("list")
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn records_round_trip_across_many_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let sizes: Vec<usize> = (0..600).map(|n| 20 + n % 300).collect();
    let written = write_records(dir.path(), &sizes);
    assert!(segments(dir.path()).len() > 5, "rotation happened");
    assert_eq!(read_all(dir.path()), written);
    let lsns: Vec<u64> = Reader::open(dir.path(), 590)
        .expect("reader")
        .map(|r| r.expect("record").lsn)
        .collect();
    assert_eq!(lsns, (590..=600).collect::<Vec<_>>());
    // Reopening continues the sequence.
    let (mut wal, report) = Wal::open(dir.path(), opts()).expect("reopen");
    assert_eq!(report.records, 600);
    assert_eq!(report.last_lsn, 600);
    assert_eq!(wal.append(Kind::Decision, b"next").expect("append"), 601);
}

#[test]
fn recovery_cuts_a_torn_tail_at_every_byte_of_the_last_record() {
    let base = tempfile::tempdir().expect("tmp");
    let sizes = [40, 50, 60, 70];
    let written = write_records(base.path(), &sizes);
    let seg = segments(base.path())[0].clone();
    let last_start = SEGMENT_HEADER_LEN
        + sizes[..3]
            .iter()
            .map(|s| s + RECORD_HEADER_LEN)
            .sum::<usize>();
    let last_end = last_start + RECORD_HEADER_LEN + sizes[3];
    for cut in last_start..last_end {
        for truncate in [false, true] {
            let dir = tempfile::tempdir().expect("tmp");
            copy_dir(base.path(), dir.path());
            let path = dir.path().join(seg.file_name().expect("name"));
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .expect("open seg");
            if truncate {
                f.set_len(cut as u64).expect("truncate");
            } else {
                f.seek(SeekFrom::Start(cut as u64)).expect("seek");
                f.write_all(&vec![0u8; last_end - cut]).expect("zero");
            }
            drop(f);
            let (mut wal, report) = Wal::open(dir.path(), opts()).expect("recovers");
            assert_eq!(report.records, 3, "cut at {cut} (truncate {truncate})");
            assert_eq!(report.torn_tail.is_some(), cut > last_start, "cut at {cut}");
            assert_eq!(wal.append(Kind::Decision, b"after").expect("append"), 4);
            wal.commit().expect("commit");
            drop(wal);
            let mut expect = written[..3].to_vec();
            expect.push(b"after".to_vec());
            assert_eq!(read_all(dir.path()), expect, "cut at {cut}");
        }
    }
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_corruption_and_salvage_keeps_the_prefix() {
    let dir = tempfile::tempdir().expect("tmp");
    let sizes: Vec<usize> = (0..300).map(|_| 100).collect();
    write_records(dir.path(), &sizes);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    // Flip a bit in the 5th record of the second segment.
    let at = SEGMENT_HEADER_LEN + 4 * (RECORD_HEADER_LEN + 100) + RECORD_HEADER_LEN + 3;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segs[1])
        .expect("open");
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at as u64)).expect("seek");
    f.read_exact(&mut b).expect("read");
    b[0] ^= 0x10;
    f.seek(SeekFrom::Start(at as u64)).expect("seek");
    f.write_all(&b).expect("write");
    drop(f);

    match Wal::open(dir.path(), opts()) {
        Err(WalError::Corruption {
            segment, offset, ..
        }) => {
            assert_eq!(segment, segs[1]);
            assert_eq!(
                offset as usize,
                SEGMENT_HEADER_LEN + 4 * (RECORD_HEADER_LEN + 100)
            );
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("expected corruption, open succeeded"),
    }
    // Readers never yield the bad record.
    let read: Vec<_> = Reader::open(dir.path(), 1).expect("reader").collect();
    assert!(read.last().is_some_and(|r| r.is_err()));
    let per_seg = ((SEG as usize - SEGMENT_HEADER_LEN) / (RECORD_HEADER_LEN + 100)) as u64;

    let (mut wal, report) = Wal::salvage(dir.path(), opts()).expect("salvage");
    assert!(report.corruption.is_some());
    assert_eq!(report.records_kept, per_seg + 4);
    assert!(!report.quarantined.is_empty());
    assert_eq!(
        wal.append(Kind::Decision, b"x").expect("append"),
        per_seg + 5
    );
    drop(wal);
    assert_eq!(read_all(dir.path()).len() as u64, per_seg + 5);
}

#[test]
fn a_checkpoint_deletes_segments_wholly_below_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut wal, _) = Wal::open(dir.path(), opts()).expect("open");
    for n in 0..500 {
        wal.append(Kind::Decision, &payload(n, 100))
            .expect("append");
    }
    wal.commit().expect("commit");
    let before = wal.segment_count();
    wal.checkpoint(400).expect("checkpoint");
    assert!(wal.segment_count() < before);
    drop(wal);
    assert_eq!(
        seckill_wal::read_checkpoint(dir.path()).expect("read"),
        Some(400)
    );
    let first = Reader::open(dir.path(), 1)
        .expect("reader")
        .next()
        .expect("a record")
        .expect("valid");
    assert!(
        first.lsn <= 400,
        "everything from the checkpoint on is kept"
    );
    let lsns: Vec<u64> = Reader::open(dir.path(), 400)
        .expect("reader")
        .map(|r| r.expect("valid").lsn)
        .collect();
    assert_eq!(lsns, (400..=500).collect::<Vec<_>>());
}

#[test]
fn a_second_writer_is_refused_as_locked_naming_the_directory_until_the_first_is_gone() {
    let dir = tempfile::tempdir().expect("tmp");
    let (wal, _) = Wal::open(dir.path(), opts()).expect("open");
    match Wal::open(dir.path(), opts()) {
        Err(WalError::Locked { dir: locked }) => assert_eq!(locked, dir.path()),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second writer opened the log"),
    }
    assert!(matches!(
        Wal::salvage(dir.path(), opts()),
        Err(WalError::Locked { .. })
    ));
    drop(wal);
    Wal::open(dir.path(), opts()).expect("the lock went with the first writer");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_sequence_of_sizes_and_kinds_round_trips(
        recs in proptest::collection::vec(
            (0usize..2000, proptest::sample::select(vec![Kind::Decision, Kind::Resolved, Kind::Other])),
            1..200,
        )
    ) {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut wal, _) = Wal::open(dir.path(), opts()).expect("open");
        let mut expect = Vec::new();
        for (n, (len, kind)) in recs.iter().enumerate() {
            let kind = *kind;
            let p = payload(n, *len);
            wal.append(kind, &p).expect("append");
            expect.push((kind, p));
        }
        wal.commit().expect("commit");
        drop(wal);
        let got: Vec<(Kind, Vec<u8>)> = Reader::open(dir.path(), 1).expect("reader")
            .map(|r| { let r = r.expect("valid"); (r.kind, r.payload) }).collect();
        prop_assert_eq!(got, expect);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = seckill_wal::record::decode(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Fuzzing recovery: a valid log with arbitrary bytes overwritten at
    /// arbitrary places, or a segment of pure garbage, never panics; open
    /// either recovers or names the damage, and whatever it recovers reads
    /// back as records that were really written.
    #[test]
    fn recovery_of_arbitrary_damage_never_panics_and_never_invents_records(
        damage in proptest::collection::vec((0usize..3 * SEG as usize, any::<u8>()), 0..40),
        garbage_segment in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4096)),
    ) {
        let dir = tempfile::tempdir().expect("tmp");
        let sizes: Vec<usize> = (0..200).map(|n| 30 + n % 200).collect();
        let written = write_records(dir.path(), &sizes);
        let segs = segments(dir.path());
        for (at, byte) in &damage {
            let seg = &segs[(at / SEG as usize) % segs.len()];
            let mut bytes = std::fs::read(seg).expect("read");
            let i = at % bytes.len();
            bytes[i] = *byte;
            std::fs::write(seg, &bytes).expect("write");
        }
        if let Some(g) = &garbage_segment {
            std::fs::write(dir.path().join(seckill_wal::segment::segment_name(1_000_000)), g).expect("write");
        }
        match Wal::open(dir.path(), opts()) {
            Ok((wal, report)) => {
                drop(wal);
                let got: Vec<Vec<u8>> = Reader::open(dir.path(), 1).expect("reader")
                    .map_while(|r| r.ok()).map(|r| r.payload).collect();
                prop_assert_eq!(got.len() as u64, report.records);
                // Every record read is one that was written, in order.
                prop_assert!(got.iter().zip(&written).all(|(a, b)| a == b));
            }
            Err(WalError::Corruption { .. } | WalError::BadSegment { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}

#[test]
fn the_mmap_write_mode_writes_the_same_log() {
    for mode in [seckill_wal::WriteMode::Mmap, seckill_wal::WriteMode::Pwrite] {
        let dir = tempfile::tempdir().expect("tmp");
        let o = Options {
            write_mode: mode,
            ..opts()
        };
        let (mut wal, _) = Wal::open(dir.path(), o.clone()).expect("open");
        let written: Vec<Vec<u8>> = (0..300).map(|n| payload(n, 40 + n % 90)).collect();
        for p in &written {
            wal.append(Kind::Decision, p).expect("append");
        }
        wal.commit().expect("commit");
        drop(wal);
        assert_eq!(read_all(dir.path()), written, "{mode:?}");
        let (_, report) = Wal::open(dir.path(), o).expect("reopen");
        assert_eq!(report.records, 300, "{mode:?}");
    }
}

#[test]
fn uncommitted_pwrite_appends_are_not_visible_and_commit_makes_them_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut wal, _) = Wal::open(dir.path(), opts()).expect("open");
    wal.append(Kind::Decision, b"one").expect("append");
    wal.commit().expect("commit");
    wal.append(Kind::Decision, b"two").expect("append");
    assert_eq!(read_all(dir.path()), vec![b"one".to_vec()]);
    wal.commit().expect("commit");
    assert_eq!(read_all(dir.path()), vec![b"one".to_vec(), b"two".to_vec()]);
}
