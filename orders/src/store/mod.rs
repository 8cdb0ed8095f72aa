//! The database of record: PostgreSQL or MySQL/MariaDB, chosen by the URL.
//! The statements are written once (`backend.rs`, compiled for each
//! engine); only the "insert unless present" and "upsert" clauses differ,
//! and they are named per engine in `dialect.rs`. The schema is created
//! and migrated at start from the versioned files in `migrations/<engine>/`.
//!
//! Errors come in two kinds the caller branches on: `Unavailable` (the
//! database is down, slow or busy: the batch waits and is tried again) and
//! `Refused` (a constraint or data error: some message of the batch is
//! poison, and the batch is split to find it).

use std::time::Duration;

use seckill_io::redis::OrderState;

use crate::message::{EventIn, OrderIn};
use crate::meta::Source;

mod backend;
mod dialect;
mod waiting;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database did not answer, answered too late, or is busy: try
    /// the same work again later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused what was written (a constraint or a value out
    /// of a column's range): the work itself is wrong.
    #[error("database refused the write: {0}")]
    Refused(String),
    #[error("cannot migrate the schema: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (postgres://… or mysql://…)")]
    Url,
}

impl StoreError {
    fn of(e: sqlx::Error) -> StoreError {
        if let sqlx::Error::Database(db) = &e {
            use sqlx::error::ErrorKind;
            let refused = matches!(
                db.kind(),
                ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation
            ) || db
                .code()
                // SQLSTATE classes 21 (cardinality: one statement touching a
                // key twice), 22 (data exception) and 23 (integrity
                // constraint violation), as both engines report them.
                .is_some_and(|c| c.starts_with("21") || c.starts_with("22") || c.starts_with("23"));
            if refused {
                return StoreError::Refused(db.message().to_string());
            }
        }
        StoreError::Unavailable(e.to_string())
    }
}

/// One row of `seckill_orders`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OrderRow {
    pub order_id: String,
    pub request_id: String,
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
    pub quantity: i32,
    pub price_cents: i64,
    pub state: String,
    pub reason: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl OrderRow {
    /// Whether the row holds what the message says (the business check of
    /// a redelivered win).
    pub fn matches(&self, o: &OrderIn) -> bool {
        self.request_id == o.request_id
            && self.sale_id == o.sale_id
            && self.item_id == o.item_id
            && self.user_id == o.user_id
            && i64::from(self.quantity) == i64::from(o.quantity)
            && u64::try_from(self.price_cents).ok() == Some(o.price_cents)
    }
}

/// A row to write from a win.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub order: &'a OrderIn,
    pub state: OrderState,
    pub reason: Option<&'a str>,
    /// Where the win's message was first read.
    pub partition: i32,
    pub offset: i64,
}

/// A message of the dead-letter topic, to record.
#[derive(Debug, Clone)]
pub struct DlqIn {
    pub source: Source,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub error_kind: String,
    pub error: String,
    pub attempts: u32,
    pub first_failed_ms: u64,
    pub last_failed_ms: u64,
}

/// One entry of the dead-letter queue.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DlqRow {
    pub id: i64,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    #[serde(serialize_with = "lossy")]
    pub key: Option<Vec<u8>>,
    #[serde(serialize_with = "lossy")]
    pub payload: Option<Vec<u8>>,
    pub error_kind: String,
    pub error: String,
    pub attempts: i32,
    pub first_failed_ms: i64,
    pub last_failed_ms: i64,
    pub parks: i32,
    pub state: String,
    pub redriven_ms: Option<i64>,
}

/// Bytes as text for people (`dlq list --json`): invalid UTF-8 shows as
/// U+FFFD.
fn lossy<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_some(&String::from_utf8_lossy(b)),
        None => s.serialize_none(),
    }
}

/// What one batch writes, in one transaction.
#[derive(Debug, Default)]
pub struct Write<'a> {
    /// Wins that become `awaiting_payment` rows (no-ops where present).
    pub orders: Vec<NewOrder<'a>>,
    /// Wins already closed in Redis when consumed (a backlog release):
    /// inserted in their state, or an `awaiting_payment` row moved to it.
    pub closed: Vec<NewOrder<'a>>,
    /// Events: kept in the history, applied where their order exists, left
    /// waiting where it does not yet.
    pub events: Vec<&'a EventIn>,
    pub dlq: Vec<DlqIn>,
}

impl Write<'_> {
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.closed.is_empty()
            && self.events.is_empty()
            && self.dlq.is_empty()
    }

    pub fn len(&self) -> usize {
        self.orders.len() + self.closed.len() + self.events.len() + self.dlq.len()
    }
}

/// What a write did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub applied: Applied,
    /// The order ids of `Write::orders` that were inserted (the others
    /// were present), where the engine tells (PostgreSQL); `None` for
    /// MySQL, whose batches look their wins up before writing.
    pub inserted: Option<std::collections::BTreeSet<String>>,
    /// The order ids of `Write::orders` that have no row after the insert
    /// (MySQL: an `ON DUPLICATE KEY` on the request id skipped them
    /// without a word); always empty on PostgreSQL, which refuses instead.
    pub missing: Vec<String>,
}

/// What applying waiting events did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub applied: usize,
    pub same: usize,
    /// (order id, the state it is in, the event that could not apply).
    pub conflicts: Vec<(String, String, String)>,
}

/// The cursor of a page of a user's orders: the last row's creation time
/// and order id (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_ms: i64,
    pub order_id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_ms, self.order_id)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (ms, id) = s.split_once('.')?;
        let created_ms = ms.parse().ok()?;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Cursor {
            created_ms,
            order_id: id.to_string(),
        })
    }
}

/// The database, with a time limit on every call.
pub struct Store {
    db: Db,
    timeout: Duration,
}

enum Db {
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
}

/// Runs the same call on whichever engine this is, within the time limit.
macro_rules! call {
    ($self:ident, $f:ident ( $($arg:expr),* )) => {{
        let fut = async {
            match &$self.db {
                Db::Pg(p) => backend::pg::$f(p, $($arg),*).await,
                Db::My(p) => backend::my::$f(p, $($arg),*).await,
            }
        };
        match tokio::time::timeout($self.timeout, fut).await {
            Ok(r) => r.map_err(StoreError::of),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                $self.timeout.as_millis()
            ))),
        }
    }};
}

impl Store {
    /// A pool that connects when first used (so the service starts, and
    /// says it is not ready, while the database is down).
    pub fn connect_lazy(url: &str, pool_max: u32, timeout: Duration) -> Result<Store, StoreError> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options: sqlx::postgres::PgConnectOptions =
                url.parse().map_err(|_| StoreError::Url)?;
            // A plan per execution: the batch's statements are prepared
            // once, while the table is small, and PostgreSQL's generic plan
            // for them (chosen then) scans the whole table once it is big.
            let options = options.options([("plan_cache_mode", "force_custom_plan")]);
            Db::Pg(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(pool_max)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(options),
            )
        } else if let Some(rest) = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
        {
            Db::My(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(pool_max)
                    .acquire_timeout(timeout)
                    .connect_lazy(&format!("mysql://{rest}"))
                    .map_err(|_| StoreError::Url)?,
            )
        } else {
            return Err(StoreError::Url);
        };
        Ok(Store { db, timeout })
    }

    /// `postgres` or `mysql`.
    pub fn engine(&self) -> &'static str {
        match self.db {
            Db::Pg(_) => "postgres",
            Db::My(_) => "mysql",
        }
    }

    /// Creates the schema, or brings it to the newest version (under the
    /// migrator's lock, so services starting together migrate once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let r = match &self.db {
            Db::Pg(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
            Db::My(p) => sqlx::migrate!("./migrations/mysql").run(p).await,
        };
        r.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => StoreError::of(e),
            e => StoreError::Migrate(e),
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        call!(self, ping())
    }

    /// The rows holding any of these order ids or request ids.
    pub async fn existing(
        &self,
        order_ids: &[&str],
        request_ids: &[&str],
    ) -> Result<Vec<OrderRow>, StoreError> {
        if order_ids.is_empty() && request_ids.is_empty() {
            return Ok(Vec::new());
        }
        call!(self, existing(order_ids, request_ids))
    }

    /// Writes one batch in one transaction and applies the waiting events
    /// of its orders.
    pub async fn write(&self, w: &Write<'_>, now_ms: i64) -> Result<Written, StoreError> {
        call!(self, write(w, now_ms))
    }

    /// Whether a batch must look its wins up before writing them (the
    /// engine cannot say which rows an insert skipped).
    pub fn looks_up_first(&self) -> bool {
        match self.db {
            Db::Pg(_) => !backend::pg::returns_inserted(),
            Db::My(_) => !backend::my::returns_inserted(),
        }
    }

    /// Applies waiting events whose order has arrived, oldest first, at
    /// most `limit` (the background pass behind the per-batch one).
    pub async fn apply_waiting(&self, now_ms: i64, limit: i64) -> Result<Applied, StoreError> {
        call!(self, apply_waiting(now_ms, limit))
    }

    /// Events still waiting for their order.
    pub async fn waiting_len(&self) -> Result<i64, StoreError> {
        call!(self, waiting_len())
    }

    pub async fn order(&self, order_id: &str) -> Result<Option<OrderRow>, StoreError> {
        call!(self, order(order_id))
    }

    /// A page of a user's orders, newest first, after `cursor`.
    pub async fn user_orders(
        &self,
        user_id: &str,
        cursor: Option<&Cursor>,
        limit: i64,
    ) -> Result<Vec<OrderRow>, StoreError> {
        call!(self, user_orders(user_id, cursor, limit))
    }

    /// Every row of a sale (reconcile).
    pub async fn sale_rows(&self, sale_id: &str) -> Result<Vec<OrderRow>, StoreError> {
        call!(self, sale_rows(sale_id))
    }

    /// Rows per state, for every sale or one.
    pub async fn state_counts(
        &self,
        sale_id: Option<&str>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        call!(self, state_counts(sale_id))
    }

    /// The parked entries of the dead-letter queue (`all`: the redriven
    /// ones too), oldest first.
    pub async fn dlq_list(&self, all: bool, limit: i64) -> Result<Vec<DlqRow>, StoreError> {
        call!(self, dlq_list(all, limit))
    }

    pub async fn dlq_get(&self, ids: &[i64]) -> Result<Vec<DlqRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        call!(self, dlq_get(ids))
    }

    /// Marks an entry redriven, unless it was parked again meanwhile (its
    /// `parks` moved): whether it was marked.
    pub async fn dlq_mark_redriven(
        &self,
        id: i64,
        parks: i32,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        call!(self, dlq_mark_redriven(id, parks, now_ms))
    }

    pub async fn dlq_parked(&self) -> Result<i64, StoreError> {
        call!(self, dlq_parked())
    }
}
