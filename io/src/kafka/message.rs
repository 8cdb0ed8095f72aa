//! The message on `seckill.orders` and what a delivery report carries
//! back: the wire format, in one place.

use seckill_pipeline::port::Order;
use seckill_pipeline::status::ID_SEP;
use seckill_pipeline::OrderId;

/// The version of the messages on `seckill.orders` and
/// `seckill.order-events` (their field `v`; a message without one is
/// version 1). A consumer refuses a version it does not know.
pub const SCHEMA_VERSION: u32 = 1;

fn schema_v1() -> u32 {
    1
}

/// The message on `seckill.orders`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderMessage {
    #[serde(default = "schema_v1")]
    pub v: u32,
    pub order_id: String,
    pub request_id: String,
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
    pub price_cents: u64,
    pub quantity: u32,
    pub created_ms: u64,
    pub lsn: u64,
}

/// What a delivery report needs to update the status board and the
/// checkpoint bookkeeping: one allocation per order (the ids in one
/// string, split when the report arrives, off the hot path).
pub struct Pending {
    pub(super) lsn: u64,
    pub(super) order_id: OrderId,
    /// request, sale, item and user id, separated by [`ID_SEP`] (the
    /// status board's separator: a character no id may hold).
    ids: String,
}

impl Pending {
    pub(super) fn new(order: &Order<'_>) -> Pending {
        let mut ids = String::with_capacity(
            order.request_id.len()
                + order.sale_id.len()
                + order.item_id.len()
                + order.user_id.len()
                + 3,
        );
        for (i, part) in [
            order.request_id,
            order.sale_id,
            order.item_id,
            order.user_id,
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                ids.push(ID_SEP);
            }
            ids.push_str(part);
        }
        Pending {
            lsn: order.lsn,
            order_id: order.order_id,
            ids,
        }
    }

    pub(super) fn request_id(&self) -> &str {
        self.ids.split(ID_SEP).next().unwrap_or_default()
    }

    /// request, sale, item and user id.
    pub(super) fn ids(&self) -> [&str; 4] {
        let mut parts = self.ids.split(ID_SEP);
        std::array::from_fn(|_| parts.next().unwrap_or_default())
    }
}

/// An order as it goes on the topic, borrowed from the ring slot (the
/// same JSON as [`OrderMessage`]).
#[derive(serde::Serialize)]
struct OrderMessageRef<'a> {
    v: u32,
    order_id: &'a str,
    request_id: &'a str,
    sale_id: &'a str,
    item_id: &'a str,
    user_id: &'a str,
    price_cents: u64,
    quantity: u32,
    created_ms: u64,
    lsn: u64,
}

pub fn encode_order(order: &Order<'_>, buf: &mut Vec<u8>) {
    buf.clear();
    let hex = order.order_id.hex();
    let msg = OrderMessageRef {
        v: SCHEMA_VERSION,
        // Hex digits are ASCII.
        order_id: std::str::from_utf8(&hex).unwrap_or_default(),
        request_id: order.request_id,
        sale_id: order.sale_id,
        item_id: order.item_id,
        user_id: order.user_id,
        price_cents: order.price_cents,
        quantity: order.quantity,
        created_ms: order.created_ms,
        lsn: order.lsn,
    };
    // Serializing plain strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, &msg);
}
