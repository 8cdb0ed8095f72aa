//! The clauses PostgreSQL and MySQL/MariaDB spell differently; everything
//! else is the same SQL (placeholders are the query builder's business).

pub struct Dialect {
    /// After a multi-row `INSERT … VALUES`: a row whose key is present is
    /// left as it is. (Not `INSERT IGNORE`: that would also turn a value
    /// out of range into a warning and a mangled row.)
    pub keep_present: &'static str,
    /// After the `INSERT` of new orders: present ones (same order id) are
    /// left as they are; where the engine can, the statement returns the
    /// order ids it inserted.
    pub insert_orders: &'static str,
    /// `insert_orders` returns the inserted ids (PostgreSQL's `RETURNING`):
    /// the batch needs no lookup of present rows before writing, only of
    /// the few it did not insert. MySQL cannot tell, so its batches look
    /// their wins up first.
    pub returns_inserted: bool,
    /// After the `INSERT` of closed rows: a present row still awaiting
    /// payment takes the new state; any other present row stays.
    pub close_awaiting: &'static str,
    /// After the `INSERT` of dead-letter entries: a present entry (same
    /// source message) takes the new failure and is parked again.
    pub repark: &'static str,
}

pub const POSTGRES: Dialect = Dialect {
    keep_present: " ON CONFLICT DO NOTHING",
    // A request id under another order id is an error (a constraint the
    // batch's one-by-one pass pins on its message), not a silent skip.
    insert_orders: " ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
    returns_inserted: true,
    close_awaiting: " ON CONFLICT (order_id) DO UPDATE SET \
        reason = EXCLUDED.reason, updated_ms = EXCLUDED.updated_ms, state = EXCLUDED.state \
        WHERE seckill_orders.state = 'awaiting_payment'",
    repark: " ON CONFLICT (source_topic, source_partition, source_offset) DO UPDATE SET \
        error_kind = EXCLUDED.error_kind, error = EXCLUDED.error, attempts = EXCLUDED.attempts, \
        last_failed_ms = EXCLUDED.last_failed_ms, parks = seckill_dlq.parks + 1, \
        state = 'parked'",
};

/// MySQL evaluates the assignments of `ON DUPLICATE KEY UPDATE` left to
/// right, each seeing the ones before: `state` is assigned last so the
/// other columns still test the old state.
pub const MYSQL: Dialect = Dialect {
    keep_present: " ON DUPLICATE KEY UPDATE order_id = order_id",
    insert_orders: " ON DUPLICATE KEY UPDATE order_id = order_id",
    returns_inserted: false,
    close_awaiting: " ON DUPLICATE KEY UPDATE \
        reason = IF(state = 'awaiting_payment', VALUES(reason), reason), \
        updated_ms = IF(state = 'awaiting_payment', VALUES(updated_ms), updated_ms), \
        state = IF(state = 'awaiting_payment', VALUES(state), state)",
    repark: " ON DUPLICATE KEY UPDATE error_kind = VALUES(error_kind), error = VALUES(error), \
        attempts = VALUES(attempts), last_failed_ms = VALUES(last_failed_ms), \
        parks = parks + 1, state = 'parked'",
};
