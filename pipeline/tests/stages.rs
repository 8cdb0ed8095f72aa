//! Each stage on its own, driven with hand-made slots and in-memory ports,
//! then the whole ring with fakes.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use seckill_pipeline::fake::{FakeJournal, FakeSink, FakeStore};
use seckill_pipeline::health::State;
use seckill_pipeline::port::RecordKind;
use seckill_pipeline::stage::{
    Deduct, DeductShared, Dedupe, JournalStage, Publish, ReplyStage, Stage, CHECKPOINT_INTERVAL,
};
use seckill_pipeline::{
    Catalog, Decision, Event, Item, ManualClock, OrderId, Origin, Pipeline, PipelineConfig, Ports,
    Purchase, Reply, RequestState, Resume, Shared, SharedClock, Stats, Status, StatusBoard,
};
use tokio::sync::oneshot;

fn item(stock: u64, limit: u32) -> Arc<Item> {
    Arc::new(Item::new(
        "s",
        "i",
        "thing",
        1999,
        stock,
        limit,
        0,
        u64::MAX,
    ))
}

fn slot(item: &Arc<Item>, user: &str, req: &str) -> (Event, oneshot::Receiver<Reply>) {
    let (tx, rx) = oneshot::channel();
    let mut e = Event::default();
    e.fill(
        &Purchase {
            sale_id: &item.sale_id,
            item_id: &item.item_id,
            user_id: user,
            request_id: req,
            quantity: 1,
            received_ms: 1,
        },
        Arc::clone(item),
        Some(tx),
    );
    (e, rx)
}

fn refs(events: &[Event]) -> Vec<&Event> {
    events.iter().collect()
}

/// The stages' clock in these tests: still, at 1 s past the epoch.
fn clock() -> SharedClock {
    ManualClock::at(1_000)
}

fn deduct_with(store: &FakeStore, shared: &Shared) -> Deduct {
    Deduct::new(
        Box::new(store.clone()),
        DeductShared {
            board: Arc::clone(&shared.board),
            stats: Arc::clone(&shared.stats),
            health: Arc::clone(&shared.redis),
            backlog: Arc::clone(&shared.backlog),
            journal: Arc::clone(&shared.journal),
            rescued: Arc::clone(&shared.rescued),
        },
        60_000,
        clock(),
    )
}

/// A slot re-driving a pending intent journaled at `lsn`.
fn redrive(item: &Arc<Item>, user: &str, req: &str, lsn: u64) -> Event {
    let mut e = Event::default();
    e.fill_replay(
        Origin::Redrive { lsn },
        &Decision {
            status: Status::Pending,
            order_id: None,
            price_cents: item.price_cents,
            quantity: 1,
            per_user_limit: item.per_user_limit,
            received_ms: 1,
            sale_id: &item.sale_id,
            item_id: &item.item_id,
            user_id: user,
            request_id: req,
        },
        Some(Arc::clone(item)),
    );
    e
}

#[test]
fn dedupe_answers_a_retried_request_id_from_the_board_and_marks_it_replayed() {
    let board = Arc::new(StatusBoard::default());
    board.advance(
        "r1",
        RequestState::new(Status::OrderCreated, Some(OrderId(7)), "s", "i", "u"),
    );
    let it = item(10, 1);
    let events = vec![slot(&it, "u", "r1").0, slot(&it, "v", "r2").0];
    Dedupe::new(Arc::clone(&board)).on_batch(&refs(&events));
    assert_eq!(events[0].status(), Status::Success);
    assert_eq!(events[0].order_id(), Some(OrderId(7)));
    assert!(events[0].is_replayed());
    assert_eq!(events[1].status(), Status::Undecided);
}

#[test]
fn dedupe_answers_sold_out_and_known_winners_locally() {
    let board = Arc::new(StatusBoard::default());
    board.add_win("s\x1fi\x1fwinner");
    let it = item(10, 1);
    let events = vec![slot(&it, "winner", "r1").0, slot(&it, "other", "r2").0];
    Dedupe::new(Arc::clone(&board)).on_batch(&refs(&events));
    assert_eq!(events[0].status(), Status::Duplicate);
    assert_eq!(events[1].status(), Status::Undecided);

    it.set_sold_out(true);
    let events = vec![slot(&it, "other", "r3").0];
    Dedupe::new(board).on_batch(&refs(&events));
    assert_eq!(events[0].status(), Status::SoldOut);
}

#[test]
fn deduct_makes_one_store_call_per_batch_and_never_oversells() {
    let store = FakeStore::with_item("s", "i", 3);
    let shared = Shared::default();
    let board = Arc::clone(&shared.board);
    let mut stage = deduct_with(&store, &shared);
    let it = item(3, 1);
    let events: Vec<Event> = (0..10)
        .map(|n| slot(&it, &format!("u{n}"), &format!("r{n}")).0)
        .collect();
    stage.on_batch(&refs(&events));
    assert_eq!(store.calls(), 1, "one call for the whole batch");
    let wins: Vec<Status> = events.iter().map(|e| e.status()).collect();
    assert_eq!(wins.iter().filter(|s| **s == Status::Success).count(), 3);
    assert_eq!(wins.iter().filter(|s| **s == Status::SoldOut).count(), 7);
    // Arrival order is kept: the first three win.
    assert!(wins[..3].iter().all(|s| *s == Status::Success));
    assert!(it.is_sold_out(), "sold-out flag set for the ingress");
    let stock = store.stock("s", "i").expect("item");
    assert_eq!((stock.available, stock.locked), (0, 3));
    assert_eq!(board.wins("s\x1fi\x1fu0"), 1);
}

#[test]
fn deduct_degrades_to_pending_when_the_store_times_out() {
    let store = FakeStore::with_item("s", "i", 3);
    store.down.store(true, Ordering::SeqCst);
    let shared = Shared::default();
    let mut stage = deduct_with(&store, &shared);
    let it = item(3, 1);
    let events: Vec<Event> = (0..4)
        .map(|n| slot(&it, &format!("u{n}"), &format!("r{n}")).0)
        .collect();
    stage.on_batch(&refs(&events));
    assert!(events.iter().all(|e| e.status() == Status::Pending));
    assert_eq!(store.stock("s", "i").map(|s| s.available), Some(3));
    assert_eq!(shared.redis.state(), State::Down);
    assert_eq!(shared.backlog.total(), 4);

    // The circuit is open: the next batch does not wait on the store.
    let calls = store.calls();
    let more = vec![slot(&it, "u9", "r9").0];
    stage.on_batch(&refs(&more));
    assert_eq!(more[0].status(), Status::Pending);
    assert_eq!(store.calls(), calls, "no call while down");
}

#[test]
fn redriven_intents_go_first_and_new_requests_for_their_item_wait_behind_them() {
    let store = FakeStore::with_item("s", "i", 3);
    store.add_item("s", "other", 3);
    let shared = Shared::default();
    let mut stage = deduct_with(&store, &shared);
    let it = item(3, 1);
    let other = Arc::new(Item::new("s", "other", "t", 1, 3, 1, 0, u64::MAX));
    // Redis goes down with two intents of item i accepted.
    store.down.store(true, Ordering::SeqCst);
    let early = vec![slot(&it, "a", "ra").0, slot(&it, "b", "rb").0];
    stage.on_batch(&refs(&early));
    assert_eq!(shared.backlog.total(), 2);
    // Redis is back; the probe moves the store to draining.
    store.down.store(false, Ordering::SeqCst);
    assert!(shared
        .redis
        .transition(&[State::Down], State::Draining, "probe"));
    // A new request for item i waits; one for another item goes through.
    let fresh = vec![slot(&it, "c", "rc").0, slot(&other, "d", "rd").0];
    stage.on_batch(&refs(&fresh));
    assert_eq!(
        fresh[0].status(),
        Status::Pending,
        "waits behind the backlog"
    );
    assert_eq!(fresh[1].status(), Status::Success);
    assert_eq!(shared.backlog.total(), 3);
    // Replay re-drives the backlog in journal order: a, b, then c.
    let round = vec![
        redrive(&it, "a", "ra", 1),
        redrive(&it, "b", "rb", 2),
        redrive(&it, "c", "rc", 5),
    ];
    stage.on_batch(&refs(&round));
    assert!(round.iter().all(|e| e.status() == Status::Success));
    assert_eq!(shared.backlog.total(), 0);
    assert_eq!(shared.backlog.redriven(), 3);
    let stock = store.stock("s", "i").expect("item");
    assert_eq!((stock.available, stock.locked), (0, 3));
}

#[test]
fn deduct_leaves_locally_decided_events_alone() {
    let store = FakeStore::with_item("s", "i", 3);
    let mut stage = deduct_with(&store, &Shared::default());
    let it = item(3, 1);
    let events = vec![slot(&it, "u", "r").0];
    events[0].decide(Status::SoldOut, None);
    stage.on_batch(&refs(&events));
    assert_eq!(store.calls(), 0);
}

#[test]
fn journal_commits_once_per_batch_and_fails_the_batch_on_a_full_disk() {
    let journal = FakeJournal::default();
    let shared = Shared::default();
    let mut stage = JournalStage::new(
        Box::new(journal.clone()),
        Arc::new(Stats::default()),
        Arc::clone(&shared.outstanding),
        clock(),
    );
    let it = item(3, 1);
    let events: Vec<Event> = (0..5)
        .map(|n| slot(&it, &format!("u{n}"), &format!("r{n}")).0)
        .collect();
    events[0].decide(Status::Success, Some(OrderId(1)));
    stage.on_batch(&refs(&events));
    assert_eq!(journal.commits(), 1);
    assert_eq!(journal.durable_count(), 5);
    assert!(events.iter().all(|e| e.lsn() > 0));
    assert_eq!(shared.outstanding.len(), 1, "the win waits for Kafka");
    assert_eq!(shared.outstanding.safe_lsn(), events[0].lsn());

    // A re-driven intent is journaled as `Resolved` and finishes its intent.
    let r = redrive(&it, "p", "rp", 3);
    r.decide(Status::SoldOut, None);
    shared.outstanding.add(3);
    stage.on_batch(&[&r]);
    assert_eq!(journal.kinds().last(), Some(&RecordKind::Resolved));
    assert!(r.lsn() > 5);
    // Still pending after a re-drive: nothing new is written.
    let still = redrive(&it, "q", "rq", 4);
    still.decide(Status::Pending, None);
    stage.on_batch(&[&still]);
    assert_eq!(journal.durable_count(), 6);

    journal.full.store(true, Ordering::SeqCst);
    let events = vec![slot(&it, "x", "rx").0];
    events[0].decide(Status::Success, Some(OrderId(2)));
    stage.on_batch(&refs(&events));
    assert_eq!(events[0].status(), Status::Unavailable);
    assert_eq!(events[0].lsn(), 0);
}

#[test]
fn publish_sends_only_journaled_fresh_wins_and_parks_when_the_sink_is_full() {
    let sink = FakeSink::default();
    let mut stage = Publish::new(
        Box::new(sink.clone()),
        Arc::new(Stats::default()),
        10,
        Duration::from_millis(10),
    );
    let it = item(3, 1);
    let events: Vec<Event> = (0..4)
        .map(|n| slot(&it, &format!("u{n}"), &format!("r{n}")).0)
        .collect();
    for (n, e) in events.iter().enumerate() {
        e.decide(Status::Success, Some(OrderId(n as u64)));
        e.set_lsn(n as u64 + 1);
    }
    events[1].mark_replayed();
    events[2].set_lsn(0); // not journaled
    events[3].decide(Status::SoldOut, None);
    stage.on_batch(&refs(&events));
    assert_eq!(sink.sent().len(), 1);
    assert_eq!(sink.sent()[0].order_id, OrderId(0));

    sink.full.store(true, Ordering::SeqCst);
    let more = vec![slot(&it, "z", "rz").0];
    more[0].decide(Status::Success, Some(OrderId(9)));
    more[0].set_lsn(9);
    stage.on_batch(&refs(&more));
    assert_eq!(stage.parked(), 1);
    sink.full.store(false, Ordering::SeqCst);
    stage.on_idle();
    assert_eq!(stage.parked(), 0);
    assert_eq!(sink.sent().len(), 2);
}

#[test]
fn reply_answers_every_slot_and_records_the_state() {
    let board = Arc::new(StatusBoard::default());
    let it = item(3, 1);
    let (e, mut rx) = slot(&it, "u", "r");
    e.decide(Status::Success, Some(OrderId(5)));
    ReplyStage::new(Arc::clone(&board)).on_batch(&[&e]);
    assert_eq!(
        rx.try_recv().ok(),
        Some(Reply {
            status: Status::Success,
            order_id: Some(OrderId(5))
        })
    );
    assert_eq!(board.get("r").map(|s| s.status), Some(Status::Success));
}

#[test]
fn the_whole_ring_sells_exactly_the_stock_with_fakes() {
    whole_ring_sells_exactly_the_stock(2);
}

#[test]
fn the_whole_ring_on_a_thread_per_stage_sells_exactly_the_stock_too() {
    whole_ring_sells_exactly_the_stock(5);
}

#[test]
fn a_topology_of_another_thread_count_is_refused() {
    let err = Pipeline::start(
        &PipelineConfig {
            stage_threads: 3,
            ..PipelineConfig::default()
        },
        Ports {
            store: Box::new(FakeStore::default()),
            sink: Box::new(FakeSink::default()),
            journal: Box::new(FakeJournal::default()),
        },
        &Shared::default(),
        Resume::default(),
        clock(),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("stage_threads"), "{err}");
}

/// 400 requests from four threads for 50 units, every stage on
/// `stage_threads` threads.
fn whole_ring_sells_exactly_the_stock(stage_threads: u8) {
    let catalog = Catalog::default();
    catalog.put_sale(
        "s",
        vec![Item::new("s", "i", "thing", 100, 50, 1, 0, u64::MAX)],
    );
    let it = catalog.item("s", "i").expect("item");
    let store = FakeStore::with_item("s", "i", 50);
    let sink = FakeSink::default();
    let journal = FakeJournal::default();
    let shared = Shared::default();
    let pipeline = Pipeline::start(
        &PipelineConfig {
            ring_size: 256,
            stage_threads,
            ..PipelineConfig::default()
        },
        Ports {
            store: Box::new(store.clone()),
            sink: Box::new(sink.clone()),
            journal: Box::new(journal.clone()),
        },
        &shared,
        Resume::default(),
        clock(),
    )
    .expect("pipeline starts");

    let mut receivers = Vec::new();
    let mut handles = Vec::new();
    for t in 0..4 {
        let mut sub = pipeline.submitter().expect("submitter");
        let it = Arc::clone(&it);
        handles.push(std::thread::spawn(move || {
            let mut rxs = Vec::new();
            for n in 0..100 {
                let user = format!("u{}", n % 60); // users repeat across threads
                let req = format!("t{t}-r{n}");
                let (tx, rx) = oneshot::channel();
                let mut tx = Some(tx);
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let res = sub.try_submit(|e| {
                        e.fill(
                            &Purchase {
                                sale_id: "s",
                                item_id: "i",
                                user_id: &user,
                                request_id: &req,
                                quantity: 1,
                                received_ms: 1,
                            },
                            Arc::clone(&it),
                            tx.take(),
                        )
                    });
                    if res.is_ok() {
                        break;
                    }
                    assert!(std::time::Instant::now() < deadline, "ring stayed full");
                    std::thread::sleep(Duration::from_millis(1));
                }
                rxs.push(rx);
            }
            rxs
        }));
    }
    for h in handles {
        receivers.extend(h.join().expect("producer thread"));
    }
    let replies: Vec<Reply> = receivers
        .into_iter()
        .map(|rx| rx.blocking_recv().expect("every request is answered"))
        .collect();
    pipeline.shutdown();

    let wins: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == Status::Success)
        .collect();
    assert_eq!(wins.len(), 50, "exactly the stock is sold");
    let ids: HashSet<OrderId> = wins.iter().filter_map(|r| r.order_id).collect();
    assert_eq!(ids.len(), 50, "one order id per win");
    assert!(replies.iter().all(|r| matches!(
        r.status,
        Status::Success | Status::SoldOut | Status::Duplicate
    )));
    let sent: HashSet<OrderId> = sink.sent().iter().map(|o| o.order_id).collect();
    assert_eq!(sent, ids, "every win reaches the sink, nothing else");
    assert_eq!(journal.durable_count(), 400, "every decision journaled");
    assert!(journal.commits() < 400, "commits are grouped");
    let stock = store.stock("s", "i").expect("item");
    assert_eq!((stock.available, stock.locked), (0, 50));
}

#[test]
fn the_checkpoint_moves_at_most_once_per_interval_of_the_clock() {
    let journal = FakeJournal::default();
    let shared = Shared::default();
    let clock = ManualClock::at(1_000);
    let mut stage = JournalStage::new(
        Box::new(journal.clone()),
        Arc::new(Stats::default()),
        Arc::clone(&shared.outstanding),
        clock.clone(),
    );
    let it = item(100, 1);
    let checkpoint = || *journal.checkpoint.lock().expect("lock");
    let batch = |n: usize| {
        let events: Vec<Event> = (0..3)
            .map(|k| slot(&it, &format!("u{n}-{k}"), &format!("r{n}-{k}")).0)
            .collect();
        for e in &events {
            e.decide(Status::SoldOut, None);
        }
        events
    };
    stage.on_batch(&refs(&batch(0)));
    assert_eq!(checkpoint(), 0, "not before an interval has passed");
    clock.advance(CHECKPOINT_INTERVAL / 2);
    stage.on_batch(&refs(&batch(1)));
    stage.on_idle();
    assert_eq!(checkpoint(), 0, "half an interval is not enough");
    clock.advance(CHECKPOINT_INTERVAL / 2);
    stage.on_idle();
    assert_eq!(
        checkpoint(),
        7,
        "every decision is final: past the last LSN"
    );
    stage.on_batch(&refs(&batch(2)));
    assert_eq!(checkpoint(), 7, "the next move waits for the next interval");
    clock.advance(CHECKPOINT_INTERVAL);
    stage.on_idle();
    assert_eq!(checkpoint(), 10);
}
