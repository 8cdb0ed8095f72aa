//! Request states, order ids, and the decision record the journal writes.

use std::fmt;

/// Every state a request can be in (DESIGN §3). `Undecided` never leaves
/// the process: it is the value of a ring slot before the deduct stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Undecided = 0,
    Pending = 1,
    Success = 2,
    OrderCreated = 3,
    Paid = 4,
    Cancelled = 5,
    Expired = 6,
    SoldOut = 7,
    Duplicate = 8,
    LimitExceeded = 9,
    NotStarted = 10,
    Ended = 11,
    Rejected = 12,
    /// The decision could not be made durable (journal failure): the client
    /// is told to retry; the stored outcome in Redis makes that safe.
    Unavailable = 13,
    /// Won, then released by the order service: the win's message was
    /// older than its backlog limit when it was consumed, so no order was
    /// created and the unit went back on sale (seed 003 §5.6).
    Failed = 14,
}

impl Status {
    pub const ALL: [Status; 15] = [
        Status::Undecided,
        Status::Pending,
        Status::Success,
        Status::OrderCreated,
        Status::Paid,
        Status::Cancelled,
        Status::Expired,
        Status::SoldOut,
        Status::Duplicate,
        Status::LimitExceeded,
        Status::NotStarted,
        Status::Ended,
        Status::Rejected,
        Status::Unavailable,
        Status::Failed,
    ];

    pub fn from_u8(v: u8) -> Option<Status> {
        Status::ALL.get(v as usize).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Undecided => "undecided",
            Status::Pending => "pending",
            Status::Success => "success",
            Status::OrderCreated => "order_created",
            Status::Paid => "paid",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
            Status::SoldOut => "sold_out",
            Status::Duplicate => "duplicate",
            Status::LimitExceeded => "limit_exceeded",
            Status::NotStarted => "not_started",
            Status::Ended => "ended",
            Status::Rejected => "rejected",
            Status::Unavailable => "unavailable",
            Status::Failed => "failed",
        }
    }

    /// The request won a unit (whatever happened to the order since).
    pub fn is_win(self) -> bool {
        matches!(
            self,
            Status::Success
                | Status::OrderCreated
                | Status::Paid
                | Status::Cancelled
                | Status::Expired
                | Status::Failed
        )
    }

    /// Decided for good: a retry of the same request id gets this again.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Status::Undecided | Status::Pending | Status::Unavailable
        )
    }

    /// Order of the lifecycle, so a late update never moves a request back
    /// (a Kafka acknowledgement can arrive before the reply stage records
    /// `success`).
    pub fn rank(self) -> u8 {
        match self {
            Status::Undecided => 0,
            Status::Unavailable => 1,
            Status::Pending => 2,
            Status::Success => 3,
            Status::OrderCreated => 4,
            Status::Paid | Status::Cancelled | Status::Expired | Status::Failed => 5,
            _ => 3,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deterministic order id: derived by the stock script from sale, item,
/// user and the user's win sequence, so a replay reproduces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(pub u64);

impl OrderId {
    /// Parses the 16 lowercase hex digits the script returns.
    pub fn parse(s: &str) -> Option<OrderId> {
        if s.len() != 16 {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(OrderId)
    }
}

impl OrderId {
    /// The 16 lowercase hex digits, without allocating.
    pub fn hex(self) -> [u8; 16] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 16];
        for (i, d) in out.iter_mut().enumerate() {
            *d = DIGITS[((self.0 >> (60 - 4 * i)) & 0xf) as usize];
        }
        out
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The journal's payload for one decision. Encoded by hand (length-prefixed
/// fields) so the journal stage writes it without allocating.
///
/// ```text
/// version u8 | status u8 | order_id u64 | price_cents u64 | quantity u32 |
/// per_user_limit u32 | received_ms u64 | sale str | item str | user str |
/// request str
/// ```
/// where `str` is `len u16 | utf-8 bytes`. Changing it changes the on-disk
/// format: bump `DECISION_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub status: Status,
    pub order_id: Option<OrderId>,
    pub price_cents: u64,
    pub quantity: u32,
    pub per_user_limit: u32,
    pub received_ms: u64,
    pub sale_id: &'a str,
    pub item_id: &'a str,
    pub user_id: &'a str,
    pub request_id: &'a str,
}

pub const DECISION_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed decision record: {0}")]
pub struct DecodeError(pub &'static str);

impl<'a> Decision<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(DECISION_VERSION);
        out.push(self.status as u8);
        out.extend_from_slice(&self.order_id.map_or(0, |o| o.0).to_le_bytes());
        out.extend_from_slice(&self.price_cents.to_le_bytes());
        out.extend_from_slice(&self.quantity.to_le_bytes());
        out.extend_from_slice(&self.per_user_limit.to_le_bytes());
        out.extend_from_slice(&self.received_ms.to_le_bytes());
        for s in [self.sale_id, self.item_id, self.user_id, self.request_id] {
            // Ingress bounds every id far below u16::MAX.
            let len = s.len().min(u16::MAX as usize);
            out.extend_from_slice(&(len as u16).to_le_bytes());
            out.extend_from_slice(&s.as_bytes()[..len]);
        }
    }

    pub fn decode(buf: &'a [u8]) -> Result<Decision<'a>, DecodeError> {
        let mut r = Cursor { buf, at: 0 };
        if r.u8()? != DECISION_VERSION {
            return Err(DecodeError("unknown version"));
        }
        let status = Status::from_u8(r.u8()?).ok_or(DecodeError("unknown status"))?;
        let order = r.u64()?;
        let price_cents = r.u64()?;
        let quantity = r.u32()?;
        let per_user_limit = r.u32()?;
        let received_ms = r.u64()?;
        let sale_id = r.str()?;
        let item_id = r.str()?;
        let user_id = r.str()?;
        let request_id = r.str()?;
        Ok(Decision {
            status,
            order_id: status.is_win().then_some(OrderId(order)),
            price_cents,
            quantity,
            per_user_limit,
            received_ms,
            sale_id,
            item_id,
            user_id,
            request_id,
        })
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError("overflow"))?;
        let s = self.buf.get(self.at..end).ok_or(DecodeError("truncated"))?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.take(2)?);
        let n = u16::from_le_bytes(b) as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError("invalid utf-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_round_trips_and_garbage_is_an_error() {
        let d = Decision {
            status: Status::Success,
            order_id: Some(OrderId(0xdead_beef)),
            price_cents: 1999,
            quantity: 1,
            per_user_limit: 1,
            received_ms: 1_700_000_000_000,
            sale_id: "s1",
            item_id: "i1",
            user_id: "u-1",
            request_id: "r-1",
        };
        let mut buf = Vec::new();
        d.encode(&mut buf);
        assert_eq!(Decision::decode(&buf), Ok(d));
        for cut in 0..buf.len() {
            assert!(Decision::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Decision::decode(&[9, 9, 9]).is_err());
    }

    #[test]
    fn order_id_prints_and_parses_as_16_hex_digits() {
        let id = OrderId(0x0123_4567_89ab_cdef);
        assert_eq!(id.to_string(), "0123456789abcdef");
        assert_eq!(&id.hex(), b"0123456789abcdef");
        assert_eq!(&OrderId(u64::MAX).hex(), b"ffffffffffffffff");
        assert_eq!(&OrderId(0).hex(), b"0000000000000000");
        assert_eq!(OrderId::parse(&id.to_string()), Some(id));
        assert_eq!(OrderId::parse("xyz"), None);
    }

    #[test]
    fn status_codes_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::from_u8(s as u8), Some(s));
        }
    }
}

/// A decision read back from the journal, with owned strings (replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedDecision {
    pub status: Status,
    pub order_id: Option<OrderId>,
    pub price_cents: u64,
    pub quantity: u32,
    pub per_user_limit: u32,
    pub received_ms: u64,
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
    pub request_id: String,
}

impl From<&Decision<'_>> for OwnedDecision {
    fn from(d: &Decision<'_>) -> Self {
        OwnedDecision {
            status: d.status,
            order_id: d.order_id,
            price_cents: d.price_cents,
            quantity: d.quantity,
            per_user_limit: d.per_user_limit,
            received_ms: d.received_ms,
            sale_id: d.sale_id.to_string(),
            item_id: d.item_id.to_string(),
            user_id: d.user_id.to_string(),
            request_id: d.request_id.to_string(),
        }
    }
}

impl OwnedDecision {
    pub fn as_decision(&self) -> Decision<'_> {
        Decision {
            status: self.status,
            order_id: self.order_id,
            price_cents: self.price_cents,
            quantity: self.quantity,
            per_user_limit: self.per_user_limit,
            received_ms: self.received_ms,
            sale_id: &self.sale_id,
            item_id: &self.item_id,
            user_id: &self.user_id,
            request_id: &self.request_id,
        }
    }
}
