use std::sync::Arc;

use crate::event::Event;
use crate::outcome::Status;
use crate::stage::Stage;
use crate::status::{winner_key, StatusBoard};

/// Decides locally what needs no trip to Redis: a request id already
/// answered (idempotency), an item known to be sold out, a user who already
/// holds `per_user_limit` wins. Everything else stays `Undecided` for the
/// stock script, which remains the authority.
pub struct Dedupe {
    board: Arc<StatusBoard>,
    key: String,
}

impl Dedupe {
    pub fn new(board: Arc<StatusBoard>) -> Dedupe {
        Dedupe {
            board,
            key: String::with_capacity(128),
        }
    }
}

impl Stage for Dedupe {
    fn name(&self) -> &'static str {
        "dedupe"
    }

    fn on_batch(&mut self, events: &[&Event]) {
        for e in events {
            if !e.is_client() {
                // Replayed work goes to the stock script as it is: a local
                // flag must not override what Redis stored for it.
                continue;
            }
            let Some(item) = e.item.as_ref() else {
                e.decide(Status::Rejected, None);
                continue;
            };
            if let Some((status, order_id)) = self.board.final_answer(&e.request_id) {
                e.decide(status, order_id);
                e.mark_replayed();
                continue;
            }
            if item.answers_sold_out() {
                e.decide(Status::SoldOut, None);
                continue;
            }
            if item.wins_forgotten() {
                // This may be a retried win the board let go of: the
                // winners hint would call it a duplicate.
                continue;
            }
            winner_key(&mut self.key, &e.sale_id, &e.item_id, &e.user_id);
            if self.board.wins(&self.key) >= item.per_user_limit {
                e.decide(Status::Duplicate, None);
            }
        }
    }
}
