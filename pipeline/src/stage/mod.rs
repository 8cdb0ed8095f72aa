//! The stages. Each is a plain struct with `on_batch(&[&Event])`, so a test
//! can drive it without a ring; `crate::ring` runs each on its own thread.

mod deduct;
mod dedupe;
mod journal;
mod publish;
mod reply;

pub use deduct::{Deduct, DeductShared, JOURNAL_PROBE_INTERVAL};
pub use dedupe::Dedupe;
pub use journal::{JournalStage, CHECKPOINT_INTERVAL};
pub use publish::Publish;
pub use reply::ReplyStage;

use crate::event::Event;

pub trait Stage: Send {
    fn name(&self) -> &'static str;
    /// Handles every event the ring made available at once (smart batching).
    fn on_batch(&mut self, events: &[&Event]);
    /// Whether this stage's latency metric counts the event (it acted on
    /// it). Only client requests carry the time they entered the ring.
    fn measures(&self, e: &Event) -> bool {
        e.entered.is_some()
    }
    /// Called when the ring has nothing for this stage.
    fn on_idle(&mut self) {}
    /// Called once after the last event, before the thread exits.
    fn on_shutdown(&mut self) {}
}
