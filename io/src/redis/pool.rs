//! The admin side's connections, kept for the next call: admin, order,
//! status and background calls reuse an open connection instead of a TCP
//! connect (and a Redis `HELLO`) per call.
//!
//! Written here rather than taken from `r2d2`: r2d2 waits out its whole
//! connection timeout retrying a refused connect, where the daemon wants the
//! refusal at once (the probe and the 503 `redis_unavailable` answer come
//! from it). A connection goes back to the pool only while it is open
//! (redis-rs closes one on an unrecoverable error; a late reply after a
//! timeout is skipped by redis-rs itself), and at most [`IDLE_MAX`] wait.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{ConnectionLike, RedisError};

use super::conn::Connector;
use super::conn::RedisConn;

/// Most idle connections kept.
pub const IDLE_MAX: usize = 8;
/// A connection idle this long is checked (`PING`; with Sentinels, `ROLE`)
/// before it is lent: the Redis it leads to may have restarted, or been
/// demoted by a failover, meanwhile.
pub const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Open connections ready for the next call.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<(RedisConn, Instant)>>,
    stats: PoolStats,
}

/// What the pool did, for metrics and tests.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Connections opened (a reused one is not counted).
    pub opened: AtomicU64,
    /// Calls served by a kept connection.
    pub reused: AtomicU64,
}

impl Pool {
    /// A kept connection, or a new one (connect, read and write bounded
    /// by `timeout`).
    pub fn get(
        self: &Arc<Self>,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<Pooled, RedisError> {
        // Taken out in a statement of its own: the lock is released before
        // the check (a round trip) and before `clear` locks again.
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let kept = idle.and_then(|(mut c, since)| {
            if since.elapsed() < CHECK_AFTER_IDLE || connector.still_good(&mut c) {
                Some(c)
            } else {
                self.clear();
                None
            }
        });
        let conn = match kept {
            Some(c) => {
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
                c
            }
            None => {
                let c = connector.connect(timeout)?;
                self.stats.opened.fetch_add(1, Ordering::Relaxed);
                c
            }
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: Arc::clone(self),
        })
    }

    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Drops every kept connection (after a failure: they may all lead
    /// to a Redis that is gone).
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A connection lent by the pool; it goes back when dropped, if still open.
pub struct Pooled {
    conn: Option<RedisConn>,
    pool: Arc<Pool>,
}

impl Deref for Pooled {
    type Target = RedisConn;

    fn deref(&self) -> &RedisConn {
        // Some from construction until drop.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut RedisConn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if !conn.is_open() {
            self.pool.clear();
            return;
        }
        let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_MAX {
            idle.push((conn, Instant::now()));
        }
    }
}
