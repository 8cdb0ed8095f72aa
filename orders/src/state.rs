//! The order's state machine, as one pure table:
//!
//! ```text
//!                    ┌── paid ──────► paid
//!                    ├── cancelled ─► cancelled
//!  awaiting_payment ─┼── expired ───► expired       (every state right of
//!                    └── failed ────► failed         an arrow is final)
//! ```
//!
//! | current \ event         | the event's own state | another state |
//! |-------------------------|-----------------------|---------------|
//! | `awaiting_payment`      | apply                 | apply         |
//! | final, same as event    | same (a redelivery)   | —             |
//! | final, other than event | —                     | conflict      |
//!
//! Redis closes an order once (the pay / cancel / expire / fail scripts
//! check `closed` atomically), so a conflict means two systems disagree:
//! it is counted and logged, and the row keeps its first final state.

use seckill_io::redis::OrderState;

use crate::message::EventKind;

/// What an event does to an order in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The order moves to this state.
    Apply(OrderState),
    /// Already there: a redelivered event, nothing to do.
    Same,
    /// Closed in another state; the row stays as it is.
    Conflict(OrderState),
}

pub fn step(current: OrderState, event: EventKind) -> Step {
    let target = event.target();
    match current {
        OrderState::AwaitingPayment => Step::Apply(target),
        s if s == target => Step::Same,
        s => Step::Conflict(s),
    }
}

/// A state as the database stores it (`awaiting_payment` included).
pub fn parse_state(s: &str) -> Option<OrderState> {
    match s {
        "awaiting_payment" => Some(OrderState::AwaitingPayment),
        s => OrderState::parse(s),
    }
}

/// Every state, in the order tables list them.
pub const STATES: [OrderState; 5] = [
    OrderState::AwaitingPayment,
    OrderState::Paid,
    OrderState::Cancelled,
    OrderState::Expired,
    OrderState::Failed,
];

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: [EventKind; 4] = [
        EventKind::Paid,
        EventKind::Cancelled,
        EventKind::Expired,
        EventKind::Failed,
    ];

    /// Walks every row of the table above.
    #[test]
    fn every_state_and_event_meets_the_table() {
        for state in STATES {
            for ev in EVENTS {
                let got = step(state, ev);
                let want = if state == OrderState::AwaitingPayment {
                    Step::Apply(ev.target())
                } else if state == ev.target() {
                    Step::Same
                } else {
                    Step::Conflict(state)
                };
                assert_eq!(got, want, "{state:?} + {ev:?}");
            }
        }
    }

    #[test]
    fn states_read_back_as_written() {
        for s in STATES {
            assert_eq!(parse_state(s.as_str()), Some(s));
        }
        assert_eq!(parse_state("refunded"), None);
    }
}
