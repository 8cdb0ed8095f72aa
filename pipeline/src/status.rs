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
    /// Sale, item and user id, joined by [`ID_SEP`]: one allocation per
    /// board entry instead of three.
    ids: Box<str>,
}

/// Separates the ids in [`RequestState`]; no id may hold it (ids are
/// letters, digits and `_ - . : @`).
pub const ID_SEP: char = '\x1f';

impl RequestState {
    pub fn new(
        status: Status,
        order_id: Option<OrderId>,
        sale_id: &str,
        item_id: &str,
        user_id: &str,
    ) -> RequestState {
        let mut ids = String::with_capacity(sale_id.len() + item_id.len() + user_id.len() + 2);
        ids.push_str(sale_id);
        ids.push(ID_SEP);
        ids.push_str(item_id);
        ids.push(ID_SEP);
        ids.push_str(user_id);
        RequestState {
            status,
            order_id,
            ids: ids.into_boxed_str(),
        }
    }

    fn id(&self, n: usize) -> &str {
        self.ids.split(ID_SEP).nth(n).unwrap_or_default()
    }

    pub fn sale_id(&self) -> &str {
        self.id(0)
    }

    pub fn item_id(&self) -> &str {
        self.id(1)
    }

    pub fn user_id(&self) -> &str {
        self.id(2)
    }
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
    buf.push(ID_SEP);
    buf.push_str(item_id);
    buf.push(ID_SEP);
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
        let RequestState {
            status,
            order_id,
            ids,
        } = state;
        self.advance_with(request_id, status, order_id, || ids);
    }

    /// [`StatusBoard::advance`] for the hot path: the entry's ids are built
    /// (allocated) only when the request is new to the board.
    pub fn advance_ids(
        &self,
        request_id: &str,
        status: Status,
        order_id: Option<OrderId>,
        sale_id: &str,
        item_id: &str,
        user_id: &str,
    ) {
        self.advance_with(request_id, status, order_id, || {
            RequestState::new(status, order_id, sale_id, item_id, user_id).ids
        });
    }

    fn advance_with(
        &self,
        request_id: &str,
        status: Status,
        order_id: Option<OrderId>,
        ids: impl FnOnce() -> Box<str>,
    ) {
        let counted = match self.requests.get_mut(request_id) {
            Some(mut cur) => {
                if status.rank() >= cur.status.rank() && cur.status != status {
                    let was = cur.status;
                    cur.status = status;
                    cur.order_id = order_id.or(cur.order_id);
                    self.by_status[was as usize].fetch_sub(1, Ordering::Relaxed);
                    true
                } else {
                    false
                }
            }
            None => {
                self.requests.insert(
                    request_id.to_string(),
                    RequestState {
                        status,
                        order_id,
                        ids: ids(),
                    },
                );
                true
            }
        };
        if counted {
            self.by_status[status as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks a won request's order as acknowledged by the order sink
    /// (allocating only for a request new to the board: an acknowledgement
    /// may overtake the reply).
    pub fn order_acknowledged(
        &self,
        request_id: &str,
        order_id: OrderId,
        sale_id: &str,
        item_id: &str,
        user_id: &str,
    ) {
        self.advance_ids(
            request_id,
            Status::OrderCreated,
            Some(order_id),
            sale_id,
            item_id,
            user_id,
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
        RequestState::new(status, Some(OrderId(1)), "s", "i", "u")
    }

    #[test]
    fn a_state_keeps_its_three_ids() {
        let s = RequestState::new(Status::Success, None, "sale-1", "item:2", "u@x");
        assert_eq!(
            (s.sale_id(), s.item_id(), s.user_id()),
            ("sale-1", "item:2", "u@x")
        );
        let b = StatusBoard::default();
        b.advance_ids("r", Status::Success, Some(OrderId(9)), "s", "i", "u");
        b.advance_ids("r", Status::OrderCreated, None, "x", "y", "z");
        let got = b.get("r").expect("entry");
        assert_eq!(got.status, Status::OrderCreated);
        assert_eq!(
            got.order_id,
            Some(OrderId(9)),
            "a later state keeps the order id"
        );
        assert_eq!(
            (got.sale_id(), got.item_id(), got.user_id()),
            ("s", "i", "u")
        );
    }

    #[test]
    fn an_acknowledgement_is_never_overwritten_by_a_late_success() {
        let b = StatusBoard::default();
        b.order_acknowledged("r", OrderId(1), "s", "i", "u");
        b.advance("r", state(Status::Success));
        assert_eq!(b.get("r").map(|s| s.status), Some(Status::OrderCreated));
        assert_eq!(b.count(Status::OrderCreated), 1);
        assert_eq!(b.count(Status::Success), 0);
    }
}
