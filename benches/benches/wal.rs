//! WAL: appends without flush, and group commit against the reference the
//! design asks for — plain `write` + `fdatasync` of the same bytes in the
//! same batches, on the same disk, in the same run.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hdrhistogram::Histogram;
use seckill_wal::{record, Durability, Kind, Options, Reader, Wal, WriteMode};

/// Commits timed one by one for the latency percentiles.
const LATENCY_SAMPLES: usize = 2000;

fn percentiles(name: &str, samples: &[Duration]) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("constant bounds");
    for d in samples {
        let _ = h.record((d.as_micros() as u64).max(1));
    }
    println!(
        "{name}: commit latency p50 {} µs, p99 {} µs ({} commits)",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        samples.len()
    );
}

const SEGMENT_BYTES: u64 = 64 << 20;
/// Group commit runs inside one large segment, so the measurement is the
/// commit itself, not the background preparation of the next segment.
const COMMIT_SEGMENT_BYTES: u64 = 512 << 20;

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_append_no_flush");
    for size in [64usize, 256] {
        let payload = vec![7u8; size - record::RECORD_HEADER_LEN];
        let dir = tempfile::tempdir().expect("tmp");
        let (mut wal, _) = Wal::open(
            dir.path(),
            Options {
                segment_bytes: COMMIT_SEGMENT_BYTES,
                durability: Durability::Os,
                ..Options::default()
            },
        )
        .expect("open");
        wal.wait_for_spare()
            .expect("next segment ready before measuring");
        g.throughput(Throughput::Elements(1024));
        g.measurement_time(Duration::from_secs(1));
        g.warm_up_time(Duration::from_millis(300));
        // Only the appends are timed; the commit that hands them to the
        // page cache (`Durability::Os`) runs outside the measurement and is
        // measured by the group-commit benches.
        g.bench_function(format!("{size}B_x1024"), |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    for _ in 0..1024 {
                        wal.append(Kind::Decision, &payload).expect("append");
                    }
                    took += t.elapsed();
                    wal.commit().expect("commit (os: no flush)");
                }
                took
            })
        });
    }
    g.finish();
}

/// A WAL in its own directory, its next segment prepared before measuring.
fn commit_wal(mode: WriteMode) -> (tempfile::TempDir, Wal) {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut wal, _) = Wal::open(
        dir.path(),
        Options {
            segment_bytes: COMMIT_SEGMENT_BYTES,
            durability: Durability::Fsync,
            write_mode: mode,
        },
    )
    .expect("open");
    wal.wait_for_spare()
        .expect("next segment ready before measuring");
    (dir, wal)
}

/// The reference: the same bytes with write + fdatasync into a pre-zeroed
/// file, in batches.
struct Reference {
    f: std::fs::File,
    buf: Vec<u8>,
    off: u64,
    lsn: u64,
}

impl Reference {
    fn new(dir: &std::path::Path) -> Reference {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.join("reference.log"))
            .expect("reference file");
        f.write_all(&vec![0u8; SEGMENT_BYTES as usize])
            .expect("zero");
        f.sync_all().expect("sync");
        Reference {
            f,
            buf: Vec::new(),
            off: 0,
            lsn: 1,
        }
    }

    fn commit(&mut self, batch: usize, payload: &[u8]) {
        self.buf.clear();
        for _ in 0..batch {
            record::encode(&mut self.buf, Kind::Decision, self.lsn, payload);
            self.lsn += 1;
        }
        if self.off + self.buf.len() as u64 > SEGMENT_BYTES {
            self.off = 0;
        }
        self.f.write_all_at(&self.buf, self.off).expect("write");
        self.off += self.buf.len() as u64;
        self.f.sync_data().expect("fdatasync");
    }
}

fn wal_commit(wal: &mut Wal, batch: usize, payload: &[u8]) {
    for _ in 0..batch {
        wal.append(Kind::Decision, payload).expect("append");
    }
    wal.commit().expect("commit");
}

fn group_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_group_commit_fsync");
    g.sample_size(20);
    let payload = vec![7u8; 208 - record::RECORD_HEADER_LEN];
    for batch in [1usize, 16, 64, 256] {
        g.throughput(Throughput::Elements(batch as u64));
        let (dir_p, mut pwrite) = commit_wal(WriteMode::Pwrite);
        let (_dir_m, mut mmap) = commit_wal(WriteMode::Mmap);
        let mut reference = Reference::new(dir_p.path());
        g.bench_function(format!("pwrite_fdatasync_batch_{batch}"), |b| {
            b.iter(|| wal_commit(&mut pwrite, batch, &payload))
        });
        g.bench_function(format!("mmap_msync_batch_{batch}"), |b| {
            b.iter(|| wal_commit(&mut mmap, batch, &payload))
        });
        g.bench_function(format!("reference_write_fdatasync_batch_{batch}"), |b| {
            b.iter(|| reference.commit(batch, &payload))
        });
        // Latency percentiles of the same commits, outside criterion,
        // interleaved so all three see the same disk.
        let mut lat = [
            Vec::with_capacity(LATENCY_SAMPLES),
            Vec::with_capacity(LATENCY_SAMPLES),
            Vec::with_capacity(LATENCY_SAMPLES),
        ];
        for _ in 0..LATENCY_SAMPLES {
            let t = Instant::now();
            wal_commit(&mut pwrite, batch, &payload);
            lat[0].push(t.elapsed());
            let t = Instant::now();
            wal_commit(&mut mmap, batch, &payload);
            lat[1].push(t.elapsed());
            let t = Instant::now();
            reference.commit(batch, &payload);
            lat[2].push(t.elapsed());
        }
        percentiles(&format!("batch {batch} wal pwrite+fdatasync"), &lat[0]);
        percentiles(&format!("batch {batch} wal mmap+msync"), &lat[1]);
        percentiles(&format!("batch {batch} reference write+fdatasync"), &lat[2]);
    }
    g.finish();
}

/// Recovery scan: every record of a 1 GiB log decoded and checksummed.
fn recovery_scan(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let payload = vec![7u8; 200 - record::RECORD_HEADER_LEN];
    let records = {
        let (mut wal, _) = Wal::open(
            dir.path(),
            Options {
                segment_bytes: SEGMENT_BYTES,
                durability: Durability::Os,
                ..Options::default()
            },
        )
        .expect("open");
        let mut n = 0u64;
        while n * 200 < (1 << 30) {
            wal.append(Kind::Decision, &payload).expect("append");
            n += 1;
        }
        wal.commit().expect("commit");
        n
    };
    let started = Instant::now();
    let (wal, report) = Wal::open(
        dir.path(),
        Options {
            segment_bytes: SEGMENT_BYTES,
            durability: Durability::Os,
            ..Options::default()
        },
    )
    .expect("recover");
    let took = started.elapsed();
    drop(wal);
    println!(
        "recovery (Wal::open) of {} records in {} segments: {:.2} s, {:.1} M records/s",
        report.records,
        report.segments,
        took.as_secs_f64(),
        report.records as f64 / took.as_secs_f64() / 1e6
    );
    let mut g = c.benchmark_group("wal_recovery_scan");
    g.sample_size(10);
    g.throughput(Throughput::Elements(records));
    g.bench_function("read_and_verify_1GiB", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for r in Reader::open(dir.path(), 1).expect("reader") {
                n += u64::from(!r.expect("valid").payload.is_empty());
            }
            assert_eq!(n, records);
        })
    });
    g.finish();
}

criterion_group!(benches, append, group_commit, recovery_scan);
criterion_main!(benches);
