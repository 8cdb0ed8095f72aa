//! WAL: appends without flush, and group commit against the reference the
//! design asks for — plain `write` + `fdatasync` of the same bytes in the
//! same batches, on the same disk, in the same run.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use seckill_wal::{record, Durability, Kind, Options, Wal};

const SEGMENT_BYTES: u64 = 64 << 20;

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_append_no_flush");
    for size in [64usize, 256] {
        let payload = vec![7u8; size - record::RECORD_HEADER_LEN];
        let dir = tempfile::tempdir().expect("tmp");
        let (mut wal, _) = Wal::open(
            dir.path(),
            Options {
                segment_bytes: SEGMENT_BYTES,
                durability: Durability::Os,
            },
        )
        .expect("open");
        g.throughput(Throughput::Elements(1024));
        g.bench_function(format!("{size}B_x1024"), |b| {
            b.iter(|| {
                for _ in 0..1024 {
                    wal.append(Kind::Decision, &payload).expect("append");
                }
                wal.commit().expect("commit (os: no flush)");
            })
        });
    }
    g.finish();
}

fn group_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_group_commit_fsync");
    g.sample_size(20);
    let payload = vec![7u8; 208 - record::RECORD_HEADER_LEN];
    for batch in [1usize, 16, 64, 256] {
        g.throughput(Throughput::Elements(batch as u64));
        let dir = tempfile::tempdir().expect("tmp");
        let (mut wal, _) = Wal::open(
            dir.path(),
            Options {
                segment_bytes: SEGMENT_BYTES,
                durability: Durability::Fsync,
            },
        )
        .expect("open");
        g.bench_function(format!("mmap_msync_batch_{batch}"), |b| {
            b.iter(|| {
                for _ in 0..batch {
                    wal.append(Kind::Decision, &payload).expect("append");
                }
                wal.commit().expect("commit");
            })
        });
        // Reference: the same bytes with write + fdatasync into a
        // pre-zeroed file.
        let path = dir.path().join("reference.log");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("reference file");
        f.write_all(&vec![0u8; SEGMENT_BYTES as usize])
            .expect("zero");
        f.sync_all().expect("sync");
        let mut buf = Vec::new();
        let mut off = 0u64;
        let mut lsn = 1;
        g.bench_function(format!("write_fdatasync_batch_{batch}"), |b| {
            b.iter_batched(
                || (),
                |()| {
                    buf.clear();
                    for _ in 0..batch {
                        record::encode(&mut buf, Kind::Decision, lsn, &payload);
                        lsn += 1;
                    }
                    if off + buf.len() as u64 > SEGMENT_BYTES {
                        off = 0;
                    }
                    f.write_all_at(&buf, off).expect("write");
                    off += buf.len() as u64;
                    f.sync_data().expect("fdatasync");
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, append, group_commit);
criterion_main!(benches);
