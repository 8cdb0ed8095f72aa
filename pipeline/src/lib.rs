//! # seckill-pipeline: who wins, decided in a ring
//!
//! The domain of seckill with no sockets: the ring slot ([`event`]), the
//! stages ([`stage`]), the ports they talk through ([`port`]) and in-memory
//! fakes of those ports ([`fake`]).
//!
//! ```text
//!  HTTP ingress (seckill-io)
//!      │ try_submit (never blocks; full ring → 503)
//!      ▼
//!  ┌─────────── RING (disruptor, multi-producer) ───────────────────────┐
//!  │ dedupe  ─► deduct ─────────► journal ─────────┬─► publish ──► OrderSink (Kafka)
//!  │ (status    (StockStore:       (Journal: append │
//!  │  board,     ONE call per       each decision,  └─► reply ───► oneshot → HTTP
//!  │  sold-out,  batch; failure     ONE commit per
//!  │  winners)   → pending)         batch)
//!  └─────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Each stage runs on its own thread and takes everything the ring holds
//! for it (up to `batch_len_max`) at once — the "smart batching" that makes
//! one Redis call and one disk flush serve a whole batch. The journal sits
//! after the decision so the log has one writer and one flush per batch,
//! and so a decision is durable before anyone (the client, Kafka) hears of
//! it.

pub mod backoff;
pub mod catalog;
pub mod clock;
pub mod event;
pub mod fake;
pub mod health;
pub mod outcome;
pub mod port;
pub mod progress;
pub mod ring;
pub mod stage;
pub mod stats;
pub mod status;

pub use catalog::{Catalog, Item};
pub use clock::{now_ms, Clock, ManualClock, SharedClock, SystemClock};
pub use event::{Event, Origin, Purchase, Reply};
pub use outcome::{Decision, OrderId, OwnedDecision, Status};
pub use ring::{
    Pipeline, PipelineConfig, PipelineError, Ports, Resume, RingFull, Shared, Submitter,
};
pub use stats::Stats;
pub use status::{RequestState, StatusBoard};
