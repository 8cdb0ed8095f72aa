//! The whole ring with in-memory ports: events/s through dedupe, deduct,
//! journal, publish and reply. `base` measures a bounded std channel
//! carrying the same number of items (the cost of the handoff alone).

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use seckill_pipeline::fake::{FakeJournal, FakeSink, FakeStore};
use seckill_pipeline::{
    Catalog, Item, ManualClock, Pipeline, PipelineConfig, Ports, Purchase, Resume, Shared,
};

const EVENTS: usize = 10_000;

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline_fakes");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("base_std_sync_channel", |b| {
        b.iter(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(4096);
            let h = std::thread::spawn(move || rx.iter().count());
            for i in 0..EVENTS as u64 {
                tx.send(i).expect("send");
            }
            drop(tx);
            h.join().expect("join")
        })
    });
    g.bench_function("ring_all_stages", |b| {
        b.iter(|| {
            let catalog = Catalog::default();
            catalog.put_sale(
                "s",
                vec![Item::new("s", "i", "t", 1, 1_000, 1, 0, u64::MAX)],
            );
            let item = catalog.item("s", "i").expect("item");
            let p = Pipeline::start(
                &PipelineConfig::default(),
                Ports {
                    store: Box::new(FakeStore::with_item("s", "i", 1_000)),
                    sink: Box::new(FakeSink::default()),
                    journal: Box::new(FakeJournal::default()),
                },
                &Shared::default(),
                Resume::default(),
                ManualClock::at(1),
            )
            .expect("start");
            let mut sub = p.submitter().expect("submitter");
            let mut user = String::new();
            for n in 0..EVENTS {
                user.clear();
                use std::fmt::Write;
                let _ = write!(user, "u{n}");
                while sub
                    .try_submit(|e| {
                        e.fill(
                            &Purchase {
                                sale_id: "s",
                                item_id: "i",
                                user_id: &user,
                                request_id: &user,
                                quantity: 1,
                                received_ms: 1,
                            },
                            Arc::clone(&item),
                            None,
                        )
                    })
                    .is_err()
                {
                    std::thread::yield_now();
                }
            }
            drop(sub);
            p.shutdown();
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
