//! The dedupe stage per event: what it costs to look at a ring batch of 64
//! purchases before any of them goes to Redis — the common case (a fresh
//! request for an item on sale: a status-board miss and a winners lookup),
//! a retried request id (answered from the board), and a sold-out item
//! (answered from the flag). `base` walks the same batch reading one field.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use seckill_pipeline::stage::{Dedupe, Stage};
use seckill_pipeline::{Event, Item, Purchase, RequestState, Status, StatusBoard};

const BATCH: usize = 64;
/// Requests the board already holds (a sale in full swing).
const BOARD: usize = 100_000;

fn batch(item: &Arc<Item>, prefix: &str) -> Vec<Event> {
    (0..BATCH)
        .map(|n| {
            let mut e = Event::default();
            let user = format!("{prefix}-user-{n}");
            e.fill(
                &Purchase {
                    sale_id: "s",
                    item_id: "i",
                    user_id: &user,
                    request_id: &user,
                    quantity: 1,
                    received_ms: 1,
                },
                Arc::clone(item),
                None,
            );
            e
        })
        .collect()
}

fn board() -> Arc<StatusBoard> {
    let board = Arc::new(StatusBoard::default());
    for n in 0..BOARD {
        board.advance(
            &format!("old-user-{n}"),
            RequestState::new(Status::SoldOut, None, "s", "i", &format!("old-user-{n}")),
        );
    }
    board
}

fn dedupe(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedupe_per_event");
    g.throughput(Throughput::Elements(BATCH as u64));
    let on_sale = Arc::new(Item::new("s", "i", "t", 1, 1_000, 1, 0, u64::MAX));
    let sold_out = Arc::new(Item::new("s", "i", "t", 1, 0, 1, 0, u64::MAX));
    let board = board();

    let fresh = batch(&on_sale, "new");
    let refs: Vec<&Event> = fresh.iter().collect();
    g.bench_function("base_read_a_field", |b| {
        b.iter(|| refs.iter().map(|e| e.user_id.len()).sum::<usize>())
    });
    let mut stage = Dedupe::new(Arc::clone(&board));
    g.bench_function("fresh_request", |b| b.iter(|| stage.on_batch(&refs)));

    let retried = batch(&on_sale, "old");
    let refs: Vec<&Event> = retried.iter().collect();
    g.bench_function("retried_request_id", |b| b.iter(|| stage.on_batch(&refs)));

    let storm = batch(&sold_out, "storm");
    let refs: Vec<&Event> = storm.iter().collect();
    g.bench_function("sold_out_item", |b| b.iter(|| stage.on_batch(&refs)));
    g.finish();
}

criterion_group!(benches, dedupe);
criterion_main!(benches);
