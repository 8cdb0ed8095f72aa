use std::sync::Arc;

use crate::event::{Event, Origin, Reply};
use crate::stage::Stage;
use crate::status::StatusBoard;

/// Answers the waiting HTTP request — only after the journal stage, so an
/// answer is never ahead of the disk — and records the state for the status
/// API.
pub struct ReplyStage {
    board: Arc<StatusBoard>,
}

impl ReplyStage {
    pub fn new(board: Arc<StatusBoard>) -> ReplyStage {
        ReplyStage { board }
    }
}

impl Stage for ReplyStage {
    fn name(&self) -> &'static str {
        "reply"
    }

    fn on_batch(&mut self, events: &[&Event]) {
        for e in events {
            let status = e.status();
            let order_id = e.order_id();
            let record = match e.origin {
                Origin::Client => !e.is_replayed(),
                // A re-driven intent that got its final answer: the client
                // polling the status API sees it now.
                Origin::Redrive { .. } => status.is_final() && e.lsn() != 0,
                Origin::Republish { .. } => false,
            };
            if record {
                self.board.advance_ids(
                    &e.request_id,
                    status,
                    order_id,
                    &e.sale_id,
                    &e.item_id,
                    &e.user_id,
                );
            }
            if let Some(tx) = e.take_replier() {
                // The client may have gone away; its decision stands.
                let _ = tx.send(Reply { status, order_id });
            }
        }
    }
}
