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

    /// Walks every row of the table above, written out.
    #[test]
    fn every_state_and_event_meets_the_table() {
        use EventKind::{Cancelled as C, Expired as E, Failed as F, Paid as P};
        use OrderState::{AwaitingPayment as Aw, Cancelled, Expired, Failed, Paid};
        let table = [
            (Aw, P, Step::Apply(Paid)),
            (Aw, C, Step::Apply(Cancelled)),
            (Aw, E, Step::Apply(Expired)),
            (Aw, F, Step::Apply(Failed)),
            (Paid, P, Step::Same),
            (Paid, C, Step::Conflict(Paid)),
            (Paid, E, Step::Conflict(Paid)),
            (Paid, F, Step::Conflict(Paid)),
            (Cancelled, P, Step::Conflict(Cancelled)),
            (Cancelled, C, Step::Same),
            (Cancelled, E, Step::Conflict(Cancelled)),
            (Cancelled, F, Step::Conflict(Cancelled)),
            (Expired, P, Step::Conflict(Expired)),
            (Expired, C, Step::Conflict(Expired)),
            (Expired, E, Step::Same),
            (Expired, F, Step::Conflict(Expired)),
            (Failed, P, Step::Conflict(Failed)),
            (Failed, C, Step::Conflict(Failed)),
            (Failed, E, Step::Conflict(Failed)),
            (Failed, F, Step::Same),
        ];
        assert_eq!(table.len(), STATES.len() * EVENTS.len());
        for (state, ev, want) in table {
            assert_eq!(step(state, ev), want, "{state:?} + {ev:?}");
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
