//! The operator's path after bit rot: `verify` names the corruption (exit
//! code 2), `salvage` keeps the prefix, `verify` is clean again.

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::Command;

use seckill_pipeline::{Decision, OrderId, Status};
use seckill_wal::{Kind, Options, Wal};

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
    {
        let (mut wal, _) = Wal::open(
            dir.path(),
            Options {
                segment_bytes: 4 << 10,
                ..Options::default()
            },
        )
        .expect("open");
        let mut buf = Vec::new();
        for n in 0..300 {
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
    let (code, text) = cli(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = cli(dir.path(), &["inspect", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["records"], 300);
    assert_eq!(v["unpublished"], 300);

    let segs = seckill_wal::segment::list(dir.path()).expect("list");
    assert!(segs.len() > 3);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segs[1].1)
        .expect("open segment");
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(100)).expect("seek");
    f.read_exact(&mut b).expect("read");
    f.seek(SeekFrom::Start(100)).expect("seek");
    f.write_all(&[b[0] ^ 0x01]).expect("flip");
    drop(f);

    let (code, text) = cli(dir.path(), &["verify"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("corrupt"), "{text}");
    let (code, text) = cli(dir.path(), &["salvage"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("quarantined"), "{text}");
    let (code, text) = cli(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{text}");
}
