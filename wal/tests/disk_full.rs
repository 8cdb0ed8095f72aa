//! A full disk is a typed error, and nothing already written is harmed.
//! The log lives on a tiny tmpfs mounted for the test (the test suite runs
//! as root, as CI does).

use std::process::Command;

use seckill_wal::{Durability, Kind, Options, Reader, Wal, WalError};

/// A tmpfs of `size` mounted on a temporary directory, unmounted on drop.
struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount(size: &str) -> TinyFs {
        let dir = tempfile::tempdir().expect("tmp");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed: this test needs root (as the test suite and CI run)"
        );
        TinyFs { dir }
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_is_disk_full_and_keeps_every_record_written_before() {
    let fs = TinyFs::mount("256k");
    let dir = fs.dir.path().join("wal");
    let opts = Options {
        segment_bytes: 64 << 10,
        durability: Durability::Fsync,
        ..Options::default()
    };
    let (mut wal, _) = Wal::open(&dir, opts.clone()).expect("open");
    let payload = vec![0x5au8; 500];
    let mut written = 0u64;
    let err = loop {
        match wal.append(Kind::Decision, &payload) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        wal.commit().expect("commit of what fit");
        assert!(written < 10_000, "the tiny disk never filled up");
    };
    assert!(matches!(err, WalError::DiskFull { .. }), "got {err}");
    assert!(err.is_disk_full());
    assert!(
        written > 100,
        "several segments were written first: {written}"
    );
    // Appending again fails the same way, without harm.
    assert!(matches!(
        wal.append(Kind::Decision, &payload),
        Err(WalError::DiskFull { .. })
    ));
    drop(wal);
    let records: Vec<_> = Reader::open(&dir, 1)
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("every record readable");
    assert_eq!(records.len() as u64, written);
    assert!(records.iter().all(|r| r.payload == payload));
    // And the log opens again (recovery needs no new space).
    let (_, report) = Wal::open(&dir, opts).expect("reopen on a full disk");
    assert_eq!(report.records, written);
}
