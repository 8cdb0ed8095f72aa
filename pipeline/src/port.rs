//! The ports: what the pipeline needs from the outside world. `seckill-io`
//! implements them on Redis, Kafka and the WAL; [`crate::fake`] implements
//! them in memory, with scripted faults, for tests.

use std::time::Duration;

use crate::outcome::{Decision, OrderId};

/// One request as the stock script sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeductRequest<'a> {
    pub request_id: &'a str,
    pub user_id: &'a str,
    pub quantity: u32,
}

/// The requests of one ring batch for one item, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeductGroup<'a> {
    pub sale_id: &'a str,
    pub item_id: &'a str,
    pub per_user_limit: u32,
    /// When an unpaid win is released (epoch ms), registered with the win.
    pub pay_deadline_ms: u64,
    pub requests: &'a [DeductRequest<'a>],
}

/// What the stock authority decided for one request. A request id it has
/// seen before gets its stored outcome again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeductOutcome {
    Success(OrderId),
    SoldOut,
    /// The user already holds `per_user_limit` wins of this item.
    Duplicate,
    /// More units than the per-user limit in one request.
    LimitExceeded,
    /// The store knows no stock for this item.
    UnknownItem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No answer in time: the outcome is unknown (the stored outcome by
    /// request id makes a retry safe).
    #[error("stock store timed out")]
    Timeout,
    /// Cannot reach the store.
    #[error("stock store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something we do not understand: a bug or a
    /// version mismatch, not a transient fault.
    #[error("stock store protocol error: {0}")]
    Protocol(String),
}

impl StoreError {
    /// A transient failure: degrade to `pending` and retry later.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, StoreError::Protocol(_))
    }
}

/// The stock authority (Redis in production).
pub trait StockStore: Send {
    /// Decides every request of every group in ONE round trip, appending one
    /// outcome per request to `out`, in group order then request order.
    /// (A store that splits an item's stock may need more round trips for
    /// the requests its first one could not decide; it still answers every
    /// request, or fails the whole call.)
    fn deduct(
        &mut self,
        groups: &[DeductGroup<'_>],
        out: &mut Vec<DeductOutcome>,
    ) -> Result<(), StoreError>;
}

/// An order to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order<'a> {
    pub order_id: OrderId,
    pub request_id: &'a str,
    pub sale_id: &'a str,
    pub item_id: &'a str,
    pub user_id: &'a str,
    pub price_cents: u64,
    pub quantity: u32,
    pub created_ms: u64,
    /// Where the decision sits in the journal.
    pub lsn: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The producer's local queue is full; try again shortly. Must never
    /// stall the ring: the publish stage keeps the order aside.
    #[error("order sink queue is full")]
    QueueFull,
    #[error("order sink unavailable: {0}")]
    Unavailable(String),
}

/// Where won orders go (Kafka in production). Delivery is asynchronous: the
/// sink reports acknowledgements to the [`crate::status::StatusBoard`] it
/// was built with.
pub trait OrderSink: Send {
    /// Enqueues one order without blocking.
    fn publish(&mut self, order: &Order<'_>) -> Result<(), SinkError>;
    /// Waits up to `timeout` for every enqueued order to be acknowledged.
    fn flush(&mut self, timeout: Duration) -> Result<(), SinkError>;
    /// Sends again what the broker failed to acknowledge (called when the
    /// publish stage is idle; the sink paces itself). Returns how many
    /// orders it handed over.
    fn retry_failed(&mut self) -> usize {
        0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// No room on disk: new work is refused, written work is intact.
    #[error("journal disk is full")]
    DiskFull,
    #[error("journal I/O failure: {0}")]
    Io(String),
}

/// What a journal record says about its decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A client's request and what was decided (possibly `pending`).
    Decision,
    /// The final decision of a request journaled as `pending` earlier.
    Resolved,
}

/// The write-ahead journal (the WAL in production). One writer: the
/// journal stage.
pub trait Journal: Send {
    /// Appends a decision; returns its LSN. Not durable until `commit`.
    fn append(&mut self, kind: RecordKind, decision: &Decision<'_>) -> Result<u64, JournalError>;
    /// Makes every append so far durable; one call per ring batch.
    fn commit(&mut self) -> Result<Duration, JournalError>;
    /// Records that everything below `lsn` is decided and published, and
    /// lets the journal drop what lies wholly below it.
    fn checkpoint(&mut self, lsn: u64) -> Result<(), JournalError>;
    /// After a failed write, whether the journal could write now (a WAL
    /// prepares its next segment), without writing a record.
    fn probe(&mut self) -> Result<(), JournalError> {
        Ok(())
    }
}
