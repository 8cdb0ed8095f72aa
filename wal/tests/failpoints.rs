//! The WAL's named fail points, driven from tests (raft-engine's habit):
//! a write that finds the disk full, a flush that fails, a rotation that
//! cannot get its next segment. Each failure is a typed error, nothing
//! committed before it is harmed, and the log goes on once the fault is
//! gone. Run with `--features seckill-wal/failpoints` (scripts/test.sh
//! does).
#![cfg(feature = "failpoints")]

use fail::FailScenario;
use seckill_wal::{Kind, Options, Reader, Wal, WalError, WriteMode};

fn opts(write_mode: WriteMode) -> Options {
    Options {
        segment_bytes: 64 << 10,
        write_mode,
        ..Options::default()
    }
}

fn append(wal: &mut Wal, n: usize, tag: &str) {
    for i in 0..n {
        wal.append(Kind::Decision, format!("{tag}-{i}").as_bytes())
            .expect("append");
    }
}

fn payloads(dir: &std::path::Path) -> Vec<String> {
    Reader::open(dir, 1)
        .expect("reader")
        .map(|r| String::from_utf8(r.expect("valid record").payload).expect("utf-8"))
        .collect()
}

#[test]
fn a_write_that_finds_the_disk_full_is_disk_full_and_the_next_commit_writes_the_batch() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("tmp");
    let (mut wal, _) = Wal::open(dir.path(), opts(WriteMode::Pwrite)).expect("open");
    append(&mut wal, 10, "a");
    wal.commit().expect("commit");

    fail::cfg("wal::writer::write", "return").expect("cfg");
    append(&mut wal, 5, "b");
    let err = wal.commit().expect_err("the disk is full");
    assert!(err.is_disk_full(), "{err}");
    assert_eq!(
        payloads(dir.path()).len(),
        10,
        "the committed prefix is intact"
    );
    // The journal goes on appending while the disk is full.
    append(&mut wal, 3, "c");
    assert!(wal.commit().expect_err("still full").is_disk_full());

    fail::remove("wal::writer::write");
    append(&mut wal, 2, "d");
    wal.commit().expect("room again");
    drop(wal);
    let (_, report) = Wal::open(dir.path(), opts(WriteMode::Pwrite)).expect("reopen");
    assert!(report.torn_tail.is_none());
    let got = payloads(dir.path());
    assert_eq!(got.len(), 20);
    assert_eq!(got[10], "b-0");
    assert_eq!(got[15], "c-0");
    assert_eq!(got[19], "d-1", "every batch, in order, none over another");
    scenario.teardown();
}

#[test]
fn a_failed_flush_refuses_every_write_until_the_log_is_reopened() {
    let scenario = FailScenario::setup();
    for mode in [WriteMode::Pwrite, WriteMode::Mmap] {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut wal, _) = Wal::open(dir.path(), opts(mode)).expect("open");
        append(&mut wal, 3, "a");
        wal.commit().expect("commit");

        fail::cfg("wal::writer::flush", "return").expect("cfg");
        append(&mut wal, 2, "b");
        let err = wal.commit().expect_err("the flush fails");
        assert!(matches!(err, WalError::Io { .. }), "{mode:?}: {err}");
        fail::remove("wal::writer::flush");

        // After a failed fsync the kernel may have dropped the pages: the
        // log trusts nothing it wrote since, until recovery re-reads it.
        let refused = wal.append(Kind::Decision, b"c").expect_err("poisoned");
        assert!(matches!(refused, WalError::FlushFailed { .. }), "{refused}");
        let refused = wal.commit().expect_err("poisoned");
        assert!(matches!(refused, WalError::FlushFailed { .. }), "{refused}");
        drop(wal);

        let (mut wal, report) = Wal::open(dir.path(), opts(mode)).expect("reopen");
        assert!(report.torn_tail.is_none(), "{mode:?}");
        let got = payloads(dir.path());
        assert_eq!(&got[..3], ["a-0", "a-1", "a-2"], "{mode:?}");
        append(&mut wal, 1, "d");
        wal.commit().expect("a reopened log takes writes");
        drop(wal);
        assert_eq!(payloads(dir.path()).last().map(String::as_str), Some("d-0"));
    }
    scenario.teardown();
}

#[test]
fn a_rotation_without_room_is_disk_full_and_keeps_the_full_segment() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("tmp");
    let (mut wal, _) = Wal::open(dir.path(), opts(WriteMode::Pwrite)).expect("open");
    let payload = vec![b'x'; 1000];
    let mut written = 0;
    // Fill the first segment to the brim.
    while wal.segment_count() == 1 {
        wal.append(Kind::Decision, &payload).expect("append");
        wal.commit().expect("commit");
        written += 1;
    }
    fail::cfg("wal::writer::rotate", "return").expect("cfg");
    let mut refused = None;
    for _ in 0..100 {
        match wal.append(Kind::Decision, &payload) {
            Ok(_) => {
                wal.commit().expect("commit");
                written += 1;
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("a rotation was needed and refused");
    assert!(err.is_disk_full(), "{err}");

    fail::remove("wal::writer::rotate");
    wal.append(Kind::Decision, &payload).expect("room again");
    wal.commit().expect("commit");
    written += 1;
    drop(wal);
    Wal::open(dir.path(), opts(WriteMode::Pwrite)).expect("reopen");
    assert_eq!(
        Reader::open(dir.path(), 1).expect("reader").count(),
        written
    );
    scenario.teardown();
}
