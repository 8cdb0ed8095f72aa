//! What the status API answers: the latest known state of every request
//! this daemon decided, and the winners it knows of (the dedupe stage's
//! one-per-user hint).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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
    /// The board's eviction epoch when the entry was made.
    epoch: u32,
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
            epoch: 0,
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

    /// `sale \x1f item`: the item the request was for.
    fn item_key(&self) -> &str {
        let mut seps = self.ids.match_indices(ID_SEP).map(|(i, _)| i);
        let _ = seps.next();
        match seps.next() {
            Some(end) => &self.ids[..end],
            None => &self.ids,
        }
    }

    /// May leave the board when it is over its bound: decided for good
    /// (a retry gets the same answer from the stock script's stored
    /// outcome) or a 503 (a retry is decided anew). Pending requests stay
    /// (clients poll them) and so do wins Kafka has not acknowledged yet.
    fn evictable(&self) -> bool {
        (self.status.is_final() && self.status != Status::Success)
            || self.status == Status::Unavailable
    }
}

/// Request id → state; plus counters by status for the demo and metrics.
#[derive(Debug)]
pub struct StatusBoard {
    requests: DashMap<String, RequestState>,
    /// `sale \x1f item \x1f user` → wins known to this process.
    winners: DashMap<String, u32>,
    by_status: [AtomicU64; Status::ALL.len()],
    /// Bumped by each eviction for size: entries made since the last one
    /// stay.
    epoch: AtomicU32,
    evicted: AtomicU64,
}

/// What one [`StatusBoard::evict`] let go of.
#[derive(Debug, Default)]
pub struct Evicted {
    pub requests: usize,
    pub winners: usize,
    /// `(sale, item)` of the wins let go: a request id the board no longer
    /// knows may be one of them.
    pub forgotten_items: Vec<(String, String)>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            requests: DashMap::new(),
            winners: DashMap::new(),
            by_status: std::array::from_fn(|_| AtomicU64::new(0)),
            epoch: AtomicU32::new(0),
            evicted: AtomicU64::new(0),
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
            epoch: _,
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
                        epoch: self.epoch.load(Ordering::Relaxed),
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

    /// Keeps the board bounded. First every entry of a sale `gone` says is
    /// gone (it ended, plus a retention); then, while more than `len_max`
    /// requests are known, the evictable ones made before the previous
    /// pass (an epoch, so the newest stay). A win goes only if
    /// `may_forget_win(sale, item)` agrees — it is asked before the entry
    /// goes, so the item is marked (no `sold_out` from its flag for ids the
    /// board does not know) before any of its wins is let go of. The
    /// winners hint (the stock script enforces the per-user limit anyway)
    /// is cleared past `len_max` too.
    pub fn evict(
        &self,
        gone: impl Fn(&str) -> bool,
        may_forget_win: impl Fn(&str, &str) -> bool,
        len_max: usize,
    ) -> Evicted {
        let mut out = Evicted::default();
        let mut forgotten: HashSet<String> = HashSet::new();
        let over = self.requests.len() > len_max;
        let epoch = if over {
            self.epoch.fetch_add(1, Ordering::Relaxed)
        } else {
            u32::MAX
        };
        self.requests.retain(|_, s| {
            let drop = if gone(s.sale_id()) {
                true
            } else if over && s.epoch != epoch && s.evictable() {
                !s.status.is_win() || {
                    let key = s.item_key();
                    forgotten.contains(key) || {
                        let ok = may_forget_win(s.sale_id(), s.item_id());
                        if ok {
                            forgotten.insert(key.to_string());
                        }
                        ok
                    }
                }
            } else {
                false
            };
            if drop {
                out.requests += 1;
                self.by_status[s.status as usize].fetch_sub(1, Ordering::Relaxed);
            }
            !drop
        });
        let clear_all = self.winners.len() > len_max;
        self.winners.retain(|k, _| {
            let sale = k.split(ID_SEP).next().unwrap_or_default();
            let drop = clear_all || gone(sale);
            out.winners += usize::from(drop);
            !drop
        });
        out.forgotten_items = forgotten
            .into_iter()
            .filter_map(|k| {
                let (sale, item) = k.split_once(ID_SEP)?;
                Some((sale.to_string(), item.to_string()))
            })
            .collect();
        self.evicted
            .fetch_add(out.requests as u64, Ordering::Relaxed);
        out
    }

    /// Entries let go of by [`StatusBoard::evict`] since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Known winners (the per-user hint).
    pub fn winners_len(&self) -> usize {
        self.winners.len()
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

    /// Takes back a win the deduct stage counted (its batch could not be
    /// journaled: until it is, a retry must not be called a duplicate).
    pub fn remove_win(&self, key: &str) {
        if let Some(mut n) = self.winners.get_mut(key) {
            *n = n.saturating_sub(1);
        }
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
    fn eviction_keeps_pending_and_unacknowledged_wins_and_the_newest() {
        let b = StatusBoard::default();
        b.advance_ids("old-sold-out", Status::SoldOut, None, "s", "i", "u1");
        b.advance_ids("old-pending", Status::Pending, None, "s", "i", "u2");
        b.advance_ids("old-win", Status::Success, Some(OrderId(1)), "s", "i", "u3");
        b.order_acknowledged("old-acked", OrderId(2), "s", "i", "u4");
        let e = b.evict(|_| false, |_, _| true, 100);
        assert_eq!(e.requests, 0, "under the bound nothing goes");
        // The first pass over the bound only starts an epoch; the next one
        // lets go of what was made before it.
        assert_eq!(b.evict(|_| false, |_, _| true, 2).requests, 0);
        b.advance_ids("new", Status::SoldOut, None, "s", "i", "u5");
        let e = b.evict(|_| false, |_, _| true, 2);
        assert_eq!(e.requests, 2, "{e:?}");
        assert!(b.get("old-sold-out").is_none());
        assert!(b.get("old-acked").is_none());
        assert!(b.get("new").is_some(), "made since the last pass: kept");
        assert_eq!(e.forgotten_items, vec![("s".to_string(), "i".to_string())]);
        assert!(b.get("old-pending").is_some());
        assert!(b.get("old-win").is_some());
        assert_eq!(b.count(Status::SoldOut), 1);
        assert_eq!(b.count(Status::OrderCreated), 0);
        assert_eq!(b.evicted(), 2);
    }

    #[test]
    fn a_win_goes_only_when_its_item_may_forget_it() {
        let b = StatusBoard::default();
        b.order_acknowledged("won", OrderId(1), "s", "sold-out", "u1");
        b.advance_ids("lost", Status::SoldOut, None, "s", "sold-out", "u2");
        b.advance_ids("x", Status::SoldOut, None, "s", "sold-out", "u3");
        assert_eq!(b.evict(|_| false, |_, _| false, 1).requests, 0);
        let asked = std::sync::Mutex::new(Vec::new());
        let e = b.evict(
            |_| false,
            |sale, item| {
                asked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{sale}/{item}"));
                false
            },
            1,
        );
        assert_eq!(e.requests, 2, "the sold-out answers go");
        assert!(b.get("won").is_some(), "the win stays: its item keeps it");
        assert!(e.forgotten_items.is_empty());
        assert_eq!(
            *asked.lock().unwrap_or_else(|e| e.into_inner()),
            vec!["s/sold-out"]
        );
    }

    #[test]
    fn a_gone_sale_leaves_the_board_whole() {
        let b = StatusBoard::default();
        b.advance_ids("a", Status::Pending, None, "ended", "i", "u");
        b.advance_ids("b", Status::SoldOut, None, "live", "i", "u");
        let mut k = String::new();
        winner_key(&mut k, "ended", "i", "u");
        b.add_win(&k);
        let e = b.evict(|sale| sale == "ended", |_, _| true, 1_000);
        assert_eq!((e.requests, e.winners), (1, 1));
        assert!(b.get("a").is_none() && b.get("b").is_some());
        assert_eq!(b.wins(&k), 0);
        assert!(e.forgotten_items.is_empty(), "a gone sale needs no marker");
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
