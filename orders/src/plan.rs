//! What a batch's wins become, decided without I/O from what was read
//! (the decoded messages, the rows already stored, the items whose stock
//! hash failed its check) — so every rule has a test of its own:
//!
//! | the win                                                    | becomes                          |
//! |------------------------------------------------------------|----------------------------------|
//! | its order id stored with the same content                  | nothing (a redelivery)           |
//! | its order id stored with other content                     | poison `conflict`                |
//! | its request id stored under another order id               | poison `conflict`                |
//! | seen earlier in the same batch (same content)              | nothing                          |
//! | its item's stock hash fails the check                      | the DLQ at once (`stock_anomaly`)|
//! | older than `backlog_release_after_ms`, no row yet          | released in Redis, row `failed`  |
//! | otherwise                                                  | a row `awaiting_payment`         |

use std::collections::{HashMap, HashSet};

use crate::message::{EventIn, OrderIn, Poison};
use crate::store::{DlqIn, OrderRow};

/// One message of the batch, decoded.
#[derive(Debug)]
pub enum Kind {
    Order(OrderIn),
    Event(EventIn),
    /// A message of the dead-letter topic, to record.
    Dlq(DlqIn),
    Poison(Poison),
}

/// The business check's verdict on the batch's wins.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Wins with no row yet: created or released.
    pub candidates: Vec<usize>,
    pub duplicates: Vec<usize>,
    pub poison: Vec<(usize, Poison)>,
}

/// What a win is against the stored rows: `None` when no row holds its
/// order id or its request id.
fn against_rows(
    o: &OrderIn,
    by_order: &HashMap<&str, &OrderRow>,
    by_request: &HashMap<&str, &OrderRow>,
) -> Option<Result<(), Poison>> {
    if let Some(row) = by_order.get(o.order_id.as_str()) {
        return Some(if row.matches(o) {
            Ok(())
        } else {
            Err(Poison::Conflict(format!(
                "order {} is stored with other content (request {}, user {})",
                o.order_id, row.request_id, row.user_id
            )))
        });
    }
    by_request.get(o.request_id.as_str()).map(|row| {
        Err(Poison::Conflict(format!(
            "request {} already belongs to order {}",
            o.request_id, row.order_id
        )))
    })
}

fn index(stored: &[OrderRow]) -> (HashMap<&str, &OrderRow>, HashMap<&str, &OrderRow>) {
    (
        stored.iter().map(|r| (r.order_id.as_str(), r)).collect(),
        stored.iter().map(|r| (r.request_id.as_str(), r)).collect(),
    )
}

/// Checks every win against the stored rows (by order id and by request
/// id) and against the wins before it in the batch.
pub fn check(batch: &[Kind], stored: &[OrderRow]) -> Checked {
    let (by_order, by_request) = index(stored);
    // Earlier wins of this batch: order id → its message, request id → its
    // order id.
    let mut seen: HashMap<&str, &OrderIn> = HashMap::new();
    let mut seen_request: HashMap<&str, &str> = HashMap::new();
    let mut out = Checked::default();
    for (i, k) in batch.iter().enumerate() {
        let Kind::Order(o) = k else { continue };
        match against_rows(o, &by_order, &by_request) {
            Some(Ok(())) => {
                out.duplicates.push(i);
                continue;
            }
            Some(Err(p)) => {
                out.poison.push((i, p));
                continue;
            }
            None => {}
        }
        if let Some(first) = seen.get(o.order_id.as_str()) {
            if *first == o {
                out.duplicates.push(i);
            } else {
                out.poison.push((
                    i,
                    Poison::Conflict(format!(
                        "order {} arrived twice with different content",
                        o.order_id
                    )),
                ));
            }
            continue;
        }
        if let Some(other) = seen_request.get(o.request_id.as_str()) {
            out.poison.push((
                i,
                Poison::Conflict(format!(
                    "request {} already belongs to order {other}",
                    o.request_id
                )),
            ));
            continue;
        }
        seen.insert(&o.order_id, o);
        seen_request.insert(&o.request_id, &o.order_id);
        out.candidates.push(i);
    }
    out
}

/// Checks the wins at `at` (already unique in their batch) against the
/// stored rows only: for the wins looked up after the batch's first check
/// (the old ones before a release, the ones an insert skipped).
pub fn against(batch: &[Kind], at: &[usize], stored: &[OrderRow]) -> Checked {
    let (by_order, by_request) = index(stored);
    let mut out = Checked::default();
    for &i in at {
        let Some(Kind::Order(o)) = batch.get(i) else {
            continue;
        };
        match against_rows(o, &by_order, &by_request) {
            Some(Ok(())) => out.duplicates.push(i),
            Some(Err(p)) => out.poison.push((i, p)),
            None => out.candidates.push(i),
        }
    }
    out
}

/// The items of the candidates, once each.
pub fn items<'a>(batch: &'a [Kind], candidates: &[usize]) -> Vec<(&'a str, &'a str)> {
    let mut seen = HashSet::new();
    candidates
        .iter()
        .filter_map(|&i| match batch.get(i) {
            Some(Kind::Order(o)) => Some((o.sale_id.as_str(), o.item_id.as_str())),
            _ => None,
        })
        .filter(|it| seen.insert(*it))
        .collect()
}

/// Where the candidates go.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub create: Vec<usize>,
    pub release: Vec<usize>,
    /// Kept for a human: their item's stock hash failed its check.
    pub park: Vec<(usize, Poison)>,
}

/// Splits the candidates by their item's stock check (`anomalies`: item →
/// what is wrong) and by their age (`release_after_ms`: `None` when the
/// backlog release is off); `never_release` exempts a win from the age
/// rule (one back from the retry topic).
pub fn split(
    batch: &[Kind],
    candidates: &[usize],
    anomalies: &HashMap<(String, String), String>,
    release_after_ms: Option<u64>,
    now_ms: u64,
    never_release: &dyn Fn(usize) -> bool,
) -> Split {
    let mut out = Split::default();
    for &i in candidates {
        let Some(Kind::Order(o)) = batch.get(i) else {
            continue;
        };
        if let Some(why) = anomalies.get(&(o.sale_id.clone(), o.item_id.clone())) {
            out.park.push((
                i,
                Poison::StockAnomaly(format!(
                    "stock of {}/{} fails its check: {why}",
                    o.sale_id, o.item_id
                )),
            ));
            continue;
        }
        let old = !never_release(i)
            && release_after_ms.is_some_and(|after| now_ms.saturating_sub(o.created_ms) > after);
        if old {
            out.release.push(i);
        } else {
            out.create.push(i);
        }
    }
    out
}

/// The batch's events, once per (order, event): the copies are
/// redeliveries (counted).
pub fn events(batch: &[Kind]) -> (Vec<&EventIn>, usize) {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut copies = 0;
    for k in batch {
        if let Kind::Event(e) = k {
            if seen.insert((e.order_id.as_str(), e.kind)) {
                out.push(e);
            } else {
                copies += 1;
            }
        }
    }
    (out, copies)
}

/// The batch's dead letters, once per source message (the last copy: a
/// message parked twice, say after a crash between publishing and
/// committing, or by two redrives).
pub fn dead_letters(batch: &[Kind]) -> Vec<DlqIn> {
    let mut by_source: HashMap<&crate::meta::Source, &DlqIn> = HashMap::new();
    let mut order = Vec::new();
    for k in batch {
        if let Kind::Dlq(d) = k {
            if by_source.insert(&d.source, d).is_none() {
                order.push(&d.source);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|s| by_source.get(s).map(|d| (*d).clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, request: &str, created_ms: u64) -> OrderIn {
        OrderIn {
            order_id: id.into(),
            request_id: request.into(),
            sale_id: "s".into(),
            item_id: "i".into(),
            user_id: "u".into(),
            price_cents: 100,
            quantity: 1,
            created_ms,
        }
    }

    fn row(o: &OrderIn) -> OrderRow {
        OrderRow {
            order_id: o.order_id.clone(),
            request_id: o.request_id.clone(),
            sale_id: o.sale_id.clone(),
            item_id: o.item_id.clone(),
            user_id: o.user_id.clone(),
            quantity: 1,
            price_cents: 100,
            state: "awaiting_payment".into(),
            reason: None,
            created_ms: 1,
            updated_ms: 1,
        }
    }

    #[test]
    fn the_business_check_walks_every_row_of_its_table() {
        let stored_same = order("a000000000000001", "r1", 1);
        let mut stored_other = order("a000000000000002", "r2", 1);
        let stored_request = order("a000000000000003", "r3", 1);
        let batch = vec![
            Kind::Order(stored_same.clone()),
            Kind::Order(order("a000000000000002", "r2", 1)),
            Kind::Order(order("a000000000000009", "r3", 1)),
            Kind::Order(order("a000000000000004", "r4", 1)),
            Kind::Order(order("a000000000000004", "r4", 1)),
            Kind::Order(order("a000000000000004", "r4-other", 1)),
            Kind::Order(order("a000000000000005", "r4", 1)),
            Kind::Poison(Poison::BadJson("x".into())),
        ];
        stored_other.user_id = "someone else".into();
        let stored = vec![row(&stored_same), row(&stored_other), row(&stored_request)];
        let c = check(&batch, &stored);
        assert_eq!(c.candidates, vec![3]);
        assert_eq!(c.duplicates, vec![0, 4]);
        let poison: Vec<(usize, &str)> = c.poison.iter().map(|(i, p)| (*i, p.kind())).collect();
        assert_eq!(
            poison,
            vec![
                (1, "conflict"),
                (2, "conflict"),
                (5, "conflict"),
                (6, "conflict")
            ]
        );
    }

    #[test]
    fn old_wins_are_released_and_anomalous_items_parked() {
        let mut other_item = order("b000000000000003", "q3", 9_000);
        other_item.item_id = "broken".into();
        let batch = vec![
            Kind::Order(order("b000000000000001", "q1", 9_000)),
            Kind::Order(order("b000000000000002", "q2", 1_000)),
            Kind::Order(other_item),
        ];
        let anomalies = HashMap::from([(
            ("s".to_string(), "broken".to_string()),
            "locked 3 + sold 9 > total 10".to_string(),
        )]);
        let s = split(&batch, &[0, 1, 2], &anomalies, Some(5_000), 10_000, &|_| {
            false
        });
        assert_eq!(s.create, vec![0]);
        assert_eq!(s.release, vec![1]);
        assert_eq!(s.park.len(), 1);
        assert_eq!(s.park[0].0, 2);
        assert!(s.park[0].1.for_a_human());
        // Backlog release off: nothing is released, however old.
        let s = split(&batch, &[0, 1], &HashMap::new(), None, 10_000, &|_| false);
        // A win back from the retry topic is created however old.
        let retried = split(&batch, &[1], &HashMap::new(), Some(5_000), 10_000, &|i| {
            i == 1
        });
        assert_eq!(retried.create, vec![1]);
        assert_eq!(s.create, vec![0, 1]);
        // Looked up late: the stored row of win 1 makes it a duplicate.
        let Kind::Order(second) = &batch[1] else {
            unreachable!()
        };
        let late = against(&batch, &[0, 1], &[row(second)]);
        assert_eq!((late.candidates, late.duplicates), (vec![0], vec![1]));
        assert_eq!(items(&batch, &[0, 1, 2]), vec![("s", "i"), ("s", "broken")]);
    }
}
