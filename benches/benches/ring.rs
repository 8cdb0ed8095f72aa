//! Ring handoff: the same workload — N integers from 1 or 2 producer
//! threads to one consumer thread that sums them — through the disruptor
//! ring, a tokio mpsc channel and a crossbeam channel, all bounded to 4,096.
//! `base` is the consumer's work alone (summing in one thread).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use disruptor::{build_multi_producer, BusySpinWithSpinLoopHint, Producer};

const N: u64 = 100_000;
const CAPACITY: usize = 4096;

struct Slot {
    value: u64,
}

/// Splits N over `producers` threads, each calling `send` for its share.
fn produce<S: FnMut(u64) + Send + Clone + 'static>(producers: u64, send: S) {
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let mut send = send.clone();
            thread::spawn(move || {
                for i in (p..N).step_by(producers as usize) {
                    send(i);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("producer");
    }
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_handoff");
    g.throughput(Throughput::Elements(N));
    g.sample_size(20);
    g.bench_function("base_sum_in_one_thread", |b| {
        b.iter(|| (0..N).fold(0u64, |a, v| a.wrapping_add(std::hint::black_box(v))))
    });
    for producers in [1u64, 2] {
        // disruptor: one ring for all iterations; the consumer counts.
        let seen = Arc::new(AtomicU64::new(0));
        let sum = Arc::new(AtomicU64::new(0));
        let (s2, sum2) = (Arc::clone(&seen), Arc::clone(&sum));
        // The consumer sums locally and publishes its progress once per
        // batch, as the channel consumers below do with a local fold.
        let (mut acc, mut count) = (0u64, 0u64);
        let producer =
            build_multi_producer(CAPACITY, || Slot { value: 0 }, BusySpinWithSpinLoopHint)
                .handle_events_with(move |e: &Slot, _seq, end_of_batch| {
                    acc = acc.wrapping_add(e.value);
                    count += 1;
                    if end_of_batch {
                        sum2.store(acc, Ordering::Relaxed);
                        s2.fetch_add(count, Ordering::Release);
                        count = 0;
                    }
                })
                .build();
        g.bench_function(format!("disruptor_{producers}p"), |b| {
            b.iter(|| {
                let start = seen.load(Ordering::Acquire);
                // One producer handle per thread (cloning the closure
                // clones the handle).
                let mut p = producer.clone();
                produce(producers, move |v| {
                    p.publish(|s| s.value = v);
                });
                while seen.load(Ordering::Acquire) < start + N {
                    std::hint::spin_loop();
                }
            })
        });
        drop(producer);

        g.bench_function(format!("crossbeam_{producers}p"), |b| {
            b.iter(|| {
                let (tx, rx) = crossbeam_channel::bounded::<u64>(CAPACITY);
                let consumer = thread::spawn(move || rx.iter().fold(0u64, u64::wrapping_add));
                produce(producers, move |v| {
                    let _ = tx.send(v);
                });
                consumer.join().expect("consumer")
            })
        });

        g.bench_function(format!("tokio_mpsc_{producers}p"), |b| {
            b.iter(|| {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(CAPACITY);
                let consumer = thread::spawn(move || {
                    let mut acc = 0u64;
                    while let Some(v) = rx.blocking_recv() {
                        acc = acc.wrapping_add(v);
                    }
                    acc
                });
                produce(producers, move |v| {
                    let _ = tx.blocking_send(v);
                });
                consumer.join().expect("consumer")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, handoff);
criterion_main!(benches);
