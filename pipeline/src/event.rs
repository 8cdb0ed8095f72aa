//! The ring slot. The ingress fills the request fields through `&mut Event`
//! (inside `try_publish`); the stages only ever get `&Event`, so what a
//! stage decides for later stages lives in atomics.
//!
//! Ordering: a stage output is written only by the stages that own it —
//! `status` and `order_id` by dedupe (an answer it already knows) or else
//! by deduct, `replayed` by dedupe, `lsn` by journal — and read only by
//! stages after the writer. No two stages ever write a field of the same
//! slot at once: deduct runs on a slot only after dedupe released it. The
//! ring's barrier orders them — a stage stores its cursor (Release) when it
//! drops its batch, and the next stage loads it (Acquire) before reading
//! the slot — so the fields themselves use `Relaxed`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::catalog::Item;
use crate::outcome::{Decision, OrderId, Status};

/// What the reply stage sends back to the waiting HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub order_id: Option<OrderId>,
}

pub type Replier = oneshot::Sender<Reply>;

/// A purchase request as the ingress parsed it (borrowed from the body).
#[derive(Debug, Clone, Copy)]
pub struct Purchase<'a> {
    pub sale_id: &'a str,
    pub item_id: &'a str,
    pub user_id: &'a str,
    pub request_id: &'a str,
    pub quantity: u32,
    pub received_ms: u64,
}

/// Where a slot's request comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Origin {
    /// A client's purchase, waiting for its answer.
    #[default]
    Client,
    /// A pending intent journaled at `lsn`, re-driven through the stock
    /// script by replay. Its decision is journaled as `Resolved`.
    Redrive { lsn: u64 },
    /// A win journaled at `lsn` whose order must be published again
    /// (after a crash or a Kafka outage). Nothing is decided or journaled.
    Republish { lsn: u64 },
}

#[derive(Debug, Default)]
pub struct Event {
    pub origin: Origin,
    // Written by the ingress. Strings keep their capacity across laps of
    // the ring, so filling a slot does not allocate once the ring is warm.
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
    pub request_id: String,
    pub quantity: u32,
    pub received_ms: u64,
    pub price_cents: u64,
    pub per_user_limit: u32,
    /// The catalog item, for its sold-out flag (absent for a replayed
    /// intent whose sale this process does not know).
    pub item: Option<Arc<Item>>,
    /// When a client's request entered the ring (for the stage latency
    /// metrics); `None` for replayed work.
    pub entered: Option<Instant>,
    /// Taken by the reply stage (the only reader).
    reply: Mutex<Option<Replier>>,

    // Stage outputs (see the module comment for the ordering argument).
    /// dedupe / deduct: the decision.
    status: AtomicU8,
    /// deduct: the order id of a win.
    order_id: AtomicU64,
    /// dedupe: the answer was already known (a retried request id); journal
    /// and publish skip it.
    replayed: AtomicBool,
    /// journal: the LSN of the decision record (0: not journaled).
    lsn: AtomicU64,
}

impl Event {
    /// Fills a slot for a new request; resets every stage output.
    pub fn fill(&mut self, p: &Purchase<'_>, item: Arc<Item>, reply: Option<Replier>) {
        self.price_cents = item.price_cents;
        self.per_user_limit = item.per_user_limit;
        self.fill_common(Origin::Client, p, Some(item), reply);
        self.entered = Some(Instant::now());
    }

    /// Fills a slot from a journaled decision, for replay.
    pub fn fill_replay(&mut self, origin: Origin, d: &Decision<'_>, item: Option<Arc<Item>>) {
        self.price_cents = d.price_cents;
        self.per_user_limit = d.per_user_limit;
        let p = Purchase {
            sale_id: d.sale_id,
            item_id: d.item_id,
            user_id: d.user_id,
            request_id: d.request_id,
            quantity: d.quantity,
            received_ms: d.received_ms,
        };
        self.fill_common(origin, &p, item, None);
        if let Origin::Republish { lsn } = origin {
            // Already decided and journaled: only the publish stage acts.
            *self.status.get_mut() = d.status as u8;
            *self.order_id.get_mut() = d.order_id.map_or(0, |o| o.0);
            *self.lsn.get_mut() = lsn;
        }
    }

    fn fill_common(
        &mut self,
        origin: Origin,
        p: &Purchase<'_>,
        item: Option<Arc<Item>>,
        reply: Option<Replier>,
    ) {
        self.origin = origin;
        for (dst, src) in [
            (&mut self.sale_id, p.sale_id),
            (&mut self.item_id, p.item_id),
            (&mut self.user_id, p.user_id),
            (&mut self.request_id, p.request_id),
        ] {
            dst.clear();
            dst.push_str(src);
        }
        self.quantity = p.quantity;
        self.received_ms = p.received_ms;
        self.item = item;
        self.entered = None;
        *self.reply.get_mut().unwrap_or_else(|e| e.into_inner()) = reply;
        *self.status.get_mut() = Status::Undecided as u8;
        *self.order_id.get_mut() = 0;
        *self.replayed.get_mut() = false;
        *self.lsn.get_mut() = 0;
    }

    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Relaxed)).unwrap_or(Status::Undecided)
    }

    pub fn decide(&self, status: Status, order_id: Option<OrderId>) {
        self.order_id
            .store(order_id.map_or(0, |o| o.0), Ordering::Relaxed);
        self.status.store(status as u8, Ordering::Relaxed);
    }

    pub fn order_id(&self) -> Option<OrderId> {
        self.status()
            .is_win()
            .then(|| OrderId(self.order_id.load(Ordering::Relaxed)))
    }

    pub fn mark_replayed(&self) {
        self.replayed.store(true, Ordering::Relaxed);
    }

    pub fn is_replayed(&self) -> bool {
        self.replayed.load(Ordering::Relaxed)
    }

    pub fn set_lsn(&self, lsn: u64) {
        self.lsn.store(lsn, Ordering::Relaxed);
    }

    pub fn lsn(&self) -> u64 {
        self.lsn.load(Ordering::Relaxed)
    }

    pub fn take_replier(&self) -> Option<Replier> {
        self.reply.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn is_client(&self) -> bool {
        self.origin == Origin::Client
    }
}
