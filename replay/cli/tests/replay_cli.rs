//! The operator's path after bit rot: `verify` names the corruption (exit
//! code 2) exactly where the daemon's start would refuse the log, `salvage`
//! keeps the prefix, `verify` is clean again.

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::Command;

use seckill_pipeline::{Decision, OrderId, Status};
use seckill_wal::{Kind, Options, Wal};

/// Writes `n` winning decisions into a fresh log with segments of
/// `segment_bytes`.
fn write_log(dir: &std::path::Path, n: u64, segment_bytes: u64) {
    let (mut wal, _) = Wal::open(
        dir,
        Options {
            segment_bytes,
            ..Options::default()
        },
    )
    .expect("open");
    let mut buf = Vec::new();
    for n in 0..n {
        let req = format!("r{n}");
        Decision {
            status: Status::Success,
            order_id: Some(OrderId(n)),
            price_cents: 1,
            quantity: 1,
            per_user_limit: 1,
            received_ms: 1,
            sale_id: "s",
            item_id: "i",
            user_id: "u",
            request_id: &req,
        }
        .encode(&mut buf);
        wal.append(Kind::Decision, &buf).expect("append");
    }
    wal.commit().expect("commit");
}

/// Flips one bit of a file at `offset`.
fn flip_bit(path: &std::path::Path, offset: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open segment");
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.read_exact(&mut b).expect("read");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(&[b[0] ^ 0x01]).expect("flip");
}

fn cli(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_seckill-replay"))
        .arg("--wal-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run seckill-replay");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn verify_finds_a_flipped_bit_and_salvage_keeps_everything_before_it() {
    let dir = tempfile::tempdir().expect("tmp");
    write_log(dir.path(), 300, 4 << 10);
    let (code, text) = cli(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = cli(dir.path(), &["inspect", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["records"], 300);
    assert_eq!(v["wins"], 300);

    let segs = seckill_wal::segment::list(dir.path()).expect("list");
    assert!(segs.len() > 3);
    flip_bit(&segs[1].1, 100);

    let (code, text) = cli(dir.path(), &["verify"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("corrupt"), "{text}");
    let (code, text) = cli(dir.path(), &["salvage"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("quarantined"), "{text}");
    let (code, text) = cli(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn verify_refuses_a_flipped_bit_in_the_newest_segment_as_the_daemon_would() {
    // One segment, as in production (64 MiB segments, a sale's decisions
    // fit in the first): a bad record followed by good ones is corruption,
    // not the end of the log.
    let dir = tempfile::tempdir().expect("tmp");
    write_log(dir.path(), 100, 1 << 20);
    let segs = seckill_wal::segment::list(dir.path()).expect("list");
    assert_eq!(segs.len(), 1);
    flip_bit(&segs[0].1, 200);

    let (code, text) = cli(dir.path(), &["verify"]);
    assert_eq!(code, 2, "{text}");
    let (code, text) = cli(dir.path(), &["inspect"]);
    assert_eq!(code, 2, "{text}");
    let opened = Wal::open(
        dir.path(),
        Options {
            segment_bytes: 1 << 20,
            ..Options::default()
        },
    );
    assert!(
        matches!(opened, Err(seckill_wal::WalError::Corruption { .. })),
        "the daemon's start refuses the same log"
    );
}

#[test]
fn verify_accepts_a_torn_tail_that_the_daemon_cuts() {
    let dir = tempfile::tempdir().expect("tmp");
    write_log(dir.path(), 100, 1 << 20);
    let segs = seckill_wal::segment::list(dir.path()).expect("list");
    let end = seckill_wal::verify(dir.path()).expect("verify");
    assert_eq!(end.records, 100);
    // Garbage where the next record would go, zeros after it: a write the
    // crash cut short.
    let mut tail = seckill_wal::segment::SEGMENT_HEADER_LEN as u64;
    for rec in seckill_wal::Reader::open(dir.path(), 1).expect("reader") {
        let rec = rec.expect("record");
        tail += (seckill_wal::record::RECORD_HEADER_LEN + rec.payload.len()) as u64;
    }
    flip_bit(&segs[0].1, tail + 2);

    let (code, text) = cli(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("torn tail"), "{text}");
    Wal::open(
        dir.path(),
        Options {
            segment_bytes: 1 << 20,
            ..Options::default()
        },
    )
    .expect("the daemon's start cuts the same tail");
}

#[test]
fn a_usage_error_is_not_the_corruption_code_and_help_lists_only_its_own_flags() {
    let dir = tempfile::tempdir().expect("tmp");
    let (code, text) = cli(dir.path(), &["no-such-command"]);
    assert_eq!(code, 1, "{text}");
    let (code, text) = cli(dir.path(), &["verify", "--no-such-flag"]);
    assert_eq!(code, 1, "{text}");
    let (code, help) = cli(dir.path(), &["--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("--wal-dir"), "{help}");
    for daemon_only in ["--token-key", "--listen", "--admin-token", "--ring-size"] {
        assert!(!help.contains(daemon_only), "--help lists {daemon_only}");
    }
}
