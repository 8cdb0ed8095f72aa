//! Applying waiting events: the rows of `seckill_order_events_waiting`
//! joined with their orders' states, folded through the state machine
//! into the updates one statement per (state, reason) makes — without I/O,
//! so the fold has a test of its own.

use std::collections::{BTreeMap, HashMap};

use seckill_io::redis::OrderState;

use super::Applied;
use crate::state::{parse_state, step, Step};

/// One waiting event joined with its order's state.
pub(super) struct WaitingRow {
    pub(super) order_id: String,
    pub(super) event: String,
    pub(super) reason: Option<String>,
    pub(super) state: String,
}

/// The updates applying events makes: (state, reason) → the orders.
pub(super) type Updates<'a> = BTreeMap<(String, Option<String>), Vec<&'a str>>;

/// What applying a list of waiting events changes, and what it did.
pub(super) fn fold_waiting(rows: &[WaitingRow]) -> (Updates<'_>, Applied) {
    let mut now: HashMap<&str, OrderState> = HashMap::new();
    let mut updates: Updates<'_> = BTreeMap::new();
    let mut applied = Applied::default();
    for r in rows {
        let Some(ev) = crate::message::EventKind::parse(&r.event) else {
            continue;
        };
        let current = match now.get(r.order_id.as_str()) {
            Some(s) => *s,
            None => parse_state(&r.state).unwrap_or(OrderState::AwaitingPayment),
        };
        match step(current, ev) {
            Step::Apply(s) => {
                now.insert(&r.order_id, s);
                let reason = if s == OrderState::Failed {
                    r.reason.clone()
                } else {
                    None
                };
                updates
                    .entry((s.as_str().to_string(), reason))
                    .or_default()
                    .push(&r.order_id);
                applied.applied += 1;
            }
            Step::Same => applied.same += 1,
            Step::Conflict(s) => applied.conflicts.push((
                r.order_id.clone(),
                s.as_str().to_string(),
                r.event.clone(),
            )),
        }
    }
    (updates, applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(order: &str, event: &str, state: &str) -> WaitingRow {
        WaitingRow {
            order_id: order.into(),
            event: event.into(),
            reason: (event == "failed").then(|| "backlog".to_string()),
            state: state.into(),
        }
    }

    #[test]
    fn waiting_events_fold_through_the_state_machine() {
        let rows = [
            row("a", "paid", "awaiting_payment"),
            // A second event of the same order, after it was paid here.
            row("a", "expired", "awaiting_payment"),
            row("b", "failed", "awaiting_payment"),
            row("c", "cancelled", "cancelled"),
        ];
        let (updates, applied) = fold_waiting(&rows);
        assert_eq!(applied.applied, 2);
        assert_eq!(applied.same, 1);
        assert_eq!(
            applied.conflicts,
            vec![("a".into(), "paid".into(), "expired".into())]
        );
        assert_eq!(updates[&("paid".to_string(), None)], vec!["a"]);
        assert_eq!(
            updates[&("failed".to_string(), Some("backlog".to_string()))],
            vec!["b"]
        );
    }
}
