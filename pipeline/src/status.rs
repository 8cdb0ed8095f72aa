//! What the status API answers: the latest known state of every request
//! this daemon decided, and the winners it knows of (the dedupe stage's
//! one-per-user hint).

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use crate::outcome::{OrderId, Status};

/// The state of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestState {
    pub status: Status,
    pub order_id: Option<OrderId>,
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
}

/// Request id → state; plus counters by status for the demo and metrics.
#[derive(Debug)]
pub struct StatusBoard {
    requests: DashMap<String, RequestState>,
    /// `sale \x1f item \x1f user` → wins known to this process.
    winners: DashMap<String, u32>,
    by_status: [AtomicU64; Status::ALL.len()],
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            requests: DashMap::new(),
            winners: DashMap::new(),
            by_status: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Builds the winners key into a reused buffer (no allocation once warm).
pub fn winner_key(buf: &mut String, sale_id: &str, item_id: &str, user_id: &str) {
    buf.clear();
    buf.push_str(sale_id);
    buf.push('\x1f');
    buf.push_str(item_id);
    buf.push('\x1f');
    buf.push_str(user_id);
}

impl StatusBoard {
    pub fn get(&self, request_id: &str) -> Option<RequestState> {
        self.requests.get(request_id).map(|e| e.clone())
    }

    /// The purchase answer for a request id already decided for good: a
    /// retry gets it again. A win is always answered `success` (with its
    /// order id), whatever happened to the order since.
    pub fn final_answer(&self, request_id: &str) -> Option<(Status, Option<OrderId>)> {
        let s = self.requests.get(request_id)?;
        if !s.status.is_final() {
            return None;
        }
        let status = if s.status.is_win() {
            Status::Success
        } else {
            s.status
        };
        Some((status, s.order_id))
    }

    /// Records a state unless the request already went further along its
    /// lifecycle (an acknowledgement may overtake the reply).
    pub fn advance(&self, request_id: &str, state: RequestState) {
        let status = state.status;
        let counted = match self.requests.get_mut(request_id) {
            Some(mut cur) => {
                if status.rank() >= cur.status.rank() && cur.status != status {
                    let was = cur.status;
                    *cur = RequestState {
                        order_id: state.order_id.or(cur.order_id),
                        ..state
                    };
                    self.by_status[was as usize].fetch_sub(1, Ordering::Relaxed);
                    true
                } else {
                    false
                }
            }
            None => {
                self.requests.insert(request_id.to_string(), state);
                true
            }
        };
        if counted {
            self.by_status[status as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks a won request's order as acknowledged by the order sink.
    pub fn order_acknowledged(&self, request_id: &str, state: RequestState) {
        self.advance(
            request_id,
            RequestState {
                status: Status::OrderCreated,
                ..state
            },
        );
    }

    /// How many requests are currently in `status`.
    pub fn count(&self, status: Status) -> u64 {
        self.by_status[status as usize].load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    pub fn wins(&self, key: &str) -> u32 {
        self.winners.get(key).map_or(0, |v| *v)
    }

    pub fn add_win(&self, key: &str) {
        *self.winners.entry(key.to_string()).or_insert(0) += 1;
    }

    /// Records that the stock authority holds at least `n` wins for this
    /// key (learned from Redis, e.g. decided by another daemon).
    pub fn wins_at_least(&self, key: &str, n: u32) {
        let mut e = self.winners.entry(key.to_string()).or_insert(0);
        *e = (*e).max(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: Status) -> RequestState {
        RequestState {
            status,
            order_id: Some(OrderId(1)),
            sale_id: "s".into(),
            item_id: "i".into(),
            user_id: "u".into(),
        }
    }

    #[test]
    fn an_acknowledgement_is_never_overwritten_by_a_late_success() {
        let b = StatusBoard::default();
        b.order_acknowledged("r", state(Status::Success));
        b.advance("r", state(Status::Success));
        assert_eq!(b.get("r").map(|s| s.status), Some(Status::OrderCreated));
        assert_eq!(b.count(Status::OrderCreated), 1);
        assert_eq!(b.count(Status::Success), 0);
    }
}
