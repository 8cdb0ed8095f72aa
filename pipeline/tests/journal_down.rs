//! A journal that cannot write (a full disk): the wins Redis decided in the
//! failed batch are held and written as soon as the journal writes again,
//! then handed on to be published; meanwhile the deduct stage takes no
//! stock but for one probe batch.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use seckill_pipeline::fake::{FakeJournal, FakeStore};
use seckill_pipeline::health::State;
use seckill_pipeline::stage::{Deduct, DeductShared, JournalStage, Stage, JOURNAL_PROBE_INTERVAL};
use seckill_pipeline::{Event, Item, ManualClock, OrderId, Purchase, Shared, Stats, Status};

fn item() -> Arc<Item> {
    Arc::new(Item::new("s", "i", "thing", 100, 1_000, 1, 0, u64::MAX))
}

fn slot(item: &Arc<Item>, user: &str, req: &str) -> Event {
    let mut e = Event::default();
    e.fill(
        &Purchase {
            sale_id: "s",
            item_id: "i",
            user_id: user,
            request_id: req,
            quantity: 1,
            received_ms: 1,
        },
        Arc::clone(item),
        None,
    );
    e
}

/// A journal stage on `journal`, reporting to `shared`.
fn journal_stage(journal: &FakeJournal, shared: &Shared, clock: &Arc<ManualClock>) -> JournalStage {
    let mut stage = JournalStage::new(
        Box::new(journal.clone()),
        Arc::new(Stats::default()),
        Arc::clone(&shared.outstanding),
        clock.clone(),
    );
    stage.report_to(
        Arc::clone(&shared.journal),
        Arc::clone(&shared.rescued),
        Arc::clone(&shared.board),
    );
    stage
}

#[test]
fn wins_of_a_failed_write_are_held_then_written_and_handed_on() {
    let clock = ManualClock::at(1_000);
    let journal = FakeJournal::default();
    let shared = Shared::default();
    let mut stage = journal_stage(&journal, &shared, &clock);
    let it = item();

    journal.full.store(true, Ordering::SeqCst);
    let events = [slot(&it, "u1", "r1"), slot(&it, "u2", "r2")];
    events[0].decide(Status::Success, Some(OrderId(7)));
    events[1].decide(Status::SoldOut, None);
    stage.on_batch(&[&events[0], &events[1]]);
    assert_eq!(
        events[0].status(),
        Status::Unavailable,
        "the client hears 503"
    );
    assert_eq!(shared.journal.state(), State::Down);
    assert_eq!(shared.rescued.held(), 1, "only the win is held");
    assert!(shared.rescued.take().is_empty());

    // Still full: the retry fails, the win stays held.
    clock.advance(Duration::from_millis(300));
    stage.on_idle();
    assert_eq!(shared.rescued.held(), 1);

    // Space is back: the next retry writes it.
    journal.full.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_millis(300));
    stage.on_idle();
    assert_eq!(shared.rescued.held(), 0);
    assert_eq!(shared.journal.state(), State::Up);
    let written = shared.rescued.take();
    assert_eq!(written.len(), 1);
    let (lsn, win) = &written[0];
    assert_eq!(win.request_id, "r1");
    assert_eq!(win.order_id, Some(OrderId(7)));
    assert!(
        shared.outstanding.contains(*lsn),
        "Kafka must acknowledge it"
    );
    assert_eq!(
        journal.decisions().last().map(|d| d.request_id.clone()),
        Some("r1".into())
    );
    assert_eq!(shared.rescued.rescued(), 1);
    assert_eq!(
        shared.board.final_answer("r1"),
        Some((Status::Success, Some(OrderId(7)))),
        "once written, a retry hears its win"
    );
}

#[test]
fn while_the_journal_is_down_no_stock_is_taken_but_for_a_probe() {
    let clock = ManualClock::at(1_000);
    let store = FakeStore::with_item("s", "i", 10);
    let shared = Shared::default();
    let mut deduct = Deduct::new(
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
        clock.clone(),
    );
    let it = item();
    shared.journal.fail("disk full");
    shared.rescued.set_held(1);
    let a = slot(&it, "u1", "r1");
    deduct.on_batch(&[&a]);
    assert_eq!(a.status(), Status::Unavailable);
    assert_eq!(
        store.calls(),
        0,
        "held wins: the journal stage probes itself"
    );

    shared.rescued.set_held(0);
    clock.advance(JOURNAL_PROBE_INTERVAL);
    let b = slot(&it, "u2", "r2");
    deduct.on_batch(&[&b]);
    assert_eq!(store.calls(), 1, "one probe batch goes through");
    assert!(b.status().is_win());
    let c = slot(&it, "u3", "r3");
    deduct.on_batch(&[&c]);
    assert_eq!(
        c.status(),
        Status::Unavailable,
        "the next waits for the interval"
    );
    assert_eq!(store.calls(), 1);
}

#[test]
fn a_journal_down_with_no_held_win_probes_itself_back_up() {
    let clock = ManualClock::at(1_000);
    let journal = FakeJournal::default();
    let shared = Shared::default();
    let mut stage = journal_stage(&journal, &shared, &clock);
    let it = item();
    journal.full.store(true, Ordering::SeqCst);
    let lost = slot(&it, "u1", "r1");
    lost.decide(Status::SoldOut, None);
    stage.on_batch(&[&lost]);
    assert_eq!(shared.journal.state(), State::Down);
    assert_eq!(shared.rescued.held(), 0);
    clock.advance(JOURNAL_PROBE_INTERVAL);
    stage.on_idle();
    assert_eq!(shared.journal.state(), State::Down, "still full");
    // No purchase arrives (the daemon is unready), yet it comes back.
    journal.full.store(false, Ordering::SeqCst);
    clock.advance(JOURNAL_PROBE_INTERVAL);
    stage.on_idle();
    assert_eq!(shared.journal.state(), State::Up);
}
