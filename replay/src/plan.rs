//! What replay does with each journaled decision: one pure table.
//!
//! | record    | outcome               | resolved later? | action      |
//! |-----------|-----------------------|-----------------|-------------|
//! | Decision  | pending               | no              | Redrive     |
//! | Decision  | pending               | yes             | Nothing     |
//! | Decision  | win (success, …)      | –               | Republish   |
//! | Decision  | rejection / other     | –               | Nothing     |
//! | Resolved  | win                   | –               | Republish   |
//! | Resolved  | rejection             | –               | Nothing     |
//! | Resolved  | pending               | –               | Nothing (never written) |
//! | Other     | –                     | –               | Nothing     |
//!
//! Legend: *Redrive* — send the intent through the stock script again, in
//! LSN order (the script returns the stored outcome if Redis decided it
//! before the crash); *Republish* — hand the order to Kafka again (same
//! deterministic order id; consumers drop duplicates). Kafka's
//! acknowledgements are not journaled (the record kind once meant for them
//! is reserved and never written), so every win from the checkpoint on is
//! republished.

use seckill_pipeline::Status;
use seckill_wal::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Redrive,
    Republish,
    Nothing,
}

/// The table above.
pub fn action(kind: Kind, status: Status, resolved_later: bool) -> Action {
    match (kind, status) {
        (Kind::Decision, Status::Pending) if !resolved_later => Action::Redrive,
        (Kind::Decision | Kind::Resolved, s) if s.is_win() => Action::Republish,
        _ => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_table() {
        use Action::*;
        let rows = [
            (Kind::Decision, Status::Pending, false, Redrive),
            (Kind::Decision, Status::Pending, true, Nothing),
            (Kind::Decision, Status::Success, false, Republish),
            (Kind::Decision, Status::OrderCreated, false, Republish),
            (Kind::Decision, Status::SoldOut, false, Nothing),
            (Kind::Decision, Status::Duplicate, false, Nothing),
            (Kind::Decision, Status::Unavailable, false, Nothing),
            (Kind::Resolved, Status::Success, false, Republish),
            (Kind::Resolved, Status::SoldOut, false, Nothing),
            (Kind::Resolved, Status::Pending, false, Nothing),
            (Kind::Other, Status::Success, false, Nothing),
        ];
        for (kind, status, later, want) in rows {
            assert_eq!(
                action(kind, status, later),
                want,
                "{kind:?} {status:?} {later}"
            );
        }
    }
}
