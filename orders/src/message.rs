//! What arrives on the topics, decoded from bytes into values (no socket
//! here): an order (a win on `seckill.orders`), an order event (paid,
//! cancelled, expired or failed on `seckill.order-events`), or the reason
//! a message is poison. Decoding never panics; every field a row needs is
//! checked against the bounds the daemon itself enforces, so what the
//! database refuses is a constraint of the database, not a surprise.

use std::fmt;

use seckill_io::kafka::SCHEMA_VERSION;
use seckill_io::redis::OrderState;
use serde::Deserialize;

/// Longest sale and item id (the daemon's admin API bound).
pub const ID_LEN_MAX: usize = 64;
/// Longest user and request id (the daemon's purchase bound).
pub const CLIENT_ID_LEN_MAX: usize = 128;
/// Most units one order holds (the daemon's purchase bound).
pub const QUANTITY_MAX: u32 = 1000;
/// Highest price of one unit (the daemon's admin API bound).
pub const PRICE_CENTS_MAX: u64 = 1_000_000_000_000;
/// Latest time a message may carry (the daemon's latest sale end, year
/// 9999): every time fits the columns' signed 64 bits.
pub const TIME_MS_MAX: u64 = seckill_io::redis::SALE_END_MS_MAX;

/// A win, as the daemon published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderIn {
    pub order_id: String,
    pub request_id: String,
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
    /// The price of one unit.
    pub price_cents: u64,
    pub quantity: u32,
    /// When the daemon decided the win (epoch ms): the message's age for
    /// the backlog release.
    pub created_ms: u64,
}

/// What an event does to its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Paid,
    Cancelled,
    Expired,
    Failed,
}

impl EventKind {
    pub fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "paid" => EventKind::Paid,
            "cancelled" => EventKind::Cancelled,
            "expired" => EventKind::Expired,
            "failed" => EventKind::Failed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        self.target().as_str()
    }

    /// The state the order is in after it.
    pub fn target(self) -> OrderState {
        match self {
            EventKind::Paid => OrderState::Paid,
            EventKind::Cancelled => OrderState::Cancelled,
            EventKind::Expired => OrderState::Expired,
            EventKind::Failed => OrderState::Failed,
        }
    }
}

/// An order event, as the daemon's outbox (or this service) published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIn {
    pub kind: EventKind,
    pub order_id: String,
    pub sale_id: String,
    pub item_id: String,
    /// Why (`backlog` for a failed order), when the event says.
    pub reason: Option<String>,
    pub at_ms: u64,
}

/// Why a message cannot become a row: the message goes to the retry topic
/// and, after the last attempt, to the dead-letter queue with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poison {
    /// Not JSON, or not the shape of the topic's messages.
    BadJson(String),
    /// A schema version this service does not know.
    UnknownSchema(u64),
    /// A field out of its bounds (or missing).
    Invalid(String),
    /// An order id already stored with other content, or a request id
    /// that already belongs to another order (the business check against
    /// the stored record, seed 003 §5.5).
    Conflict(String),
    /// The database refused the row (a constraint violation).
    Constraint(String),
    /// The item's stock hash fails its own arithmetic (seed 003 §9): its
    /// orders are kept for a human instead of created.
    StockAnomaly(String),
    /// Redis holds no record of the order the backlog release would free.
    UnknownOrder(String),
}

impl Poison {
    /// The machine-readable reason (`dlq list`, metrics, headers).
    pub fn kind(&self) -> &'static str {
        match self {
            Poison::BadJson(_) => "bad_json",
            Poison::UnknownSchema(_) => "unknown_schema",
            Poison::Invalid(_) => "invalid",
            Poison::Conflict(_) => "conflict",
            Poison::Constraint(_) => "constraint",
            Poison::StockAnomaly(_) => "stock_anomaly",
            Poison::UnknownOrder(_) => "unknown_order",
        }
    }

    /// Goes to the dead-letter queue at once, without the retry ladder: a
    /// human has to look at the item first.
    pub fn for_a_human(&self) -> bool {
        matches!(self, Poison::StockAnomaly(_))
    }
}

impl fmt::Display for Poison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Poison::BadJson(e) => write!(f, "not a message of this topic: {e}"),
            Poison::UnknownSchema(v) => write!(
                f,
                "schema version {v} is unknown (this service reads {SCHEMA_VERSION})"
            ),
            Poison::Invalid(e)
            | Poison::Conflict(e)
            | Poison::Constraint(e)
            | Poison::StockAnomaly(e)
            | Poison::UnknownOrder(e) => f.write_str(e),
        }
    }
}

/// Every field optional, so one parse tells a bad version from a missing
/// field (serde would report either as "missing field").
#[derive(Deserialize)]
struct RawOrder {
    v: Option<u64>,
    order_id: Option<String>,
    request_id: Option<String>,
    sale_id: Option<String>,
    item_id: Option<String>,
    user_id: Option<String>,
    price_cents: Option<u64>,
    quantity: Option<u32>,
    created_ms: Option<u64>,
}

#[derive(Deserialize)]
struct RawEvent {
    v: Option<u64>,
    event: Option<String>,
    order_id: Option<String>,
    sale_id: Option<String>,
    item_id: Option<String>,
    reason: Option<String>,
    at_ms: Option<u64>,
}

fn version(v: Option<u64>) -> Result<(), Poison> {
    match v.unwrap_or(1) {
        v if v == u64::from(SCHEMA_VERSION) => Ok(()),
        v => Err(Poison::UnknownSchema(v)),
    }
}

fn field<T>(name: &str, v: Option<T>) -> Result<T, Poison> {
    v.ok_or_else(|| Poison::Invalid(format!("field {name} is missing")))
}

fn id(name: &str, v: Option<String>, len_max: usize) -> Result<String, Poison> {
    let v = field(name, v)?;
    if v.is_empty() || v.len() > len_max || v.chars().any(char::is_control) {
        return Err(Poison::Invalid(format!(
            "{name} must be 1 to {len_max} bytes without control characters"
        )));
    }
    Ok(v)
}

/// An order id is 16 hex digits (the stock script's sha1 prefix).
fn time(name: &str, v: Option<u64>) -> Result<u64, Poison> {
    let v = field(name, v)?;
    if v == 0 || v > TIME_MS_MAX {
        return Err(Poison::Invalid(format!(
            "{name} must be an epoch time in ms up to {TIME_MS_MAX}"
        )));
    }
    Ok(v)
}

fn order_id(v: Option<String>) -> Result<String, Poison> {
    let v = field("order_id", v)?;
    if v.len() != 16 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Poison::Invalid("order_id must be 16 hex digits".into()));
    }
    Ok(v)
}

pub fn decode_order(payload: &[u8]) -> Result<OrderIn, Poison> {
    let raw: RawOrder =
        serde_json::from_slice(payload).map_err(|e| Poison::BadJson(e.to_string()))?;
    version(raw.v)?;
    let quantity = field("quantity", raw.quantity)?;
    if quantity == 0 || quantity > QUANTITY_MAX {
        return Err(Poison::Invalid(format!(
            "quantity must be 1 to {QUANTITY_MAX}"
        )));
    }
    let price_cents = field("price_cents", raw.price_cents)?;
    if price_cents > PRICE_CENTS_MAX {
        return Err(Poison::Invalid(format!(
            "price_cents may be at most {PRICE_CENTS_MAX}"
        )));
    }
    Ok(OrderIn {
        order_id: order_id(raw.order_id)?,
        request_id: id("request_id", raw.request_id, CLIENT_ID_LEN_MAX)?,
        sale_id: id("sale_id", raw.sale_id, ID_LEN_MAX)?,
        item_id: id("item_id", raw.item_id, ID_LEN_MAX)?,
        user_id: id("user_id", raw.user_id, CLIENT_ID_LEN_MAX)?,
        price_cents,
        quantity,
        created_ms: time("created_ms", raw.created_ms)?,
    })
}

pub fn decode_event(payload: &[u8]) -> Result<EventIn, Poison> {
    let raw: RawEvent =
        serde_json::from_slice(payload).map_err(|e| Poison::BadJson(e.to_string()))?;
    version(raw.v)?;
    let event = field("event", raw.event)?;
    let kind = EventKind::parse(&event)
        .ok_or_else(|| Poison::Invalid(format!("unknown event {event:?}")))?;
    let reason = match raw.reason {
        Some(r) if r.len() > 32 => return Err(Poison::Invalid("reason is too long".into())),
        r => r,
    };
    Ok(EventIn {
        kind,
        order_id: order_id(raw.order_id)?,
        sale_id: id("sale_id", raw.sale_id, ID_LEN_MAX)?,
        item_id: id("item_id", raw.item_id, ID_LEN_MAX)?,
        reason,
        at_ms: time("at_ms", raw.at_ms)?,
    })
}

/// The `failed` event this service publishes after a backlog release.
pub fn failed_event(order: &OrderIn, reason: &str, at_ms: u64) -> Vec<u8> {
    let v = serde_json::json!({
        "v": SCHEMA_VERSION,
        "event": "failed",
        "reason": reason,
        "order_id": order.order_id,
        "sale_id": order.sale_id,
        "item_id": order.item_id,
        "user_id": order.user_id,
        "quantity": order.quantity,
        "request_id": order.request_id,
        "at_ms": at_ms,
    });
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"v":1,"order_id":"00112233aabbccdd","request_id":"r1","sale_id":"s","item_id":"i","user_id":"u","price_cents":100,"quantity":1,"created_ms":5,"lsn":9}"#;

    #[test]
    fn an_order_of_the_daemon_decodes() {
        let o = decode_order(ORDER.as_bytes()).expect("decodes");
        assert_eq!(o.order_id, "00112233aabbccdd");
        assert_eq!(o.created_ms, 5);
        // A message without a version is version 1.
        let no_v = ORDER.replace(r#""v":1,"#, "");
        assert!(decode_order(no_v.as_bytes()).is_ok());
    }

    #[test]
    fn what_cannot_be_a_row_is_poison_with_its_reason() {
        let cases = [
            ("{not json".to_string(), "bad_json"),
            (ORDER.replace(r#""v":1"#, r#""v":2"#), "unknown_schema"),
            (
                ORDER.replace(r#""quantity":1"#, r#""quantity":0"#),
                "invalid",
            ),
            (ORDER.replace("00112233aabbccdd", "xyz"), "invalid"),
            (
                ORDER.replace(r#""user_id":"u""#, r#""user_id":"""#),
                "invalid",
            ),
            (ORDER.replace(r#","created_ms":5"#, ""), "invalid"),
            (
                ORDER.replace(
                    r#""sale_id":"s""#,
                    &format!(r#""sale_id":"{}""#, "s".repeat(65)),
                ),
                "invalid",
            ),
            (
                ORDER.replace(r#""price_cents":100"#, r#""price_cents":10000000000000"#),
                "invalid",
            ),
            (r#"[1,2]"#.to_string(), "bad_json"),
            (
                ORDER.replace(r#""created_ms":5"#, r#""created_ms":18446744073709551615"#),
                "invalid",
            ),
        ];
        for (msg, kind) in cases {
            let err = decode_order(msg.as_bytes()).expect_err(&msg);
            assert_eq!(err.kind(), kind, "{msg}: {err}");
        }
    }

    #[test]
    fn events_decode_and_a_failed_event_reads_back() {
        let e = decode_event(
            br#"{"v":1,"event":"paid","order_id":"00112233aabbccdd","sale_id":"s","item_id":"i","user_id":"u","quantity":1,"request_id":"r","at_ms":7}"#,
        )
        .expect("decodes");
        assert_eq!(e.kind, EventKind::Paid);
        assert_eq!(e.at_ms, 7);
        let o = decode_order(ORDER.as_bytes()).expect("order");
        let f = decode_event(&failed_event(&o, "backlog", 9)).expect("failed event");
        assert_eq!(f.kind, EventKind::Failed);
        assert_eq!(f.reason.as_deref(), Some("backlog"));
        assert!(decode_event(br#"{"event":"refunded","order_id":"00112233aabbccdd","sale_id":"s","item_id":"i","at_ms":1}"#).is_err());
    }
}
