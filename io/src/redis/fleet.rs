//! The dashboard's reads and writes: every daemon's own figures in one
//! hash (so any daemon's dashboard shows the fleet), and the stock hashes
//! of the items on screen. Called once a second by the dashboard task,
//! never per request.

use redis::RedisError;

use super::catalog::{RedisAdmin, StockHash};
use super::keys::{item_keys, FLEET};

/// How long the fleet hash outlives the last daemon that wrote to it.
const FLEET_TTL_MS: u64 = 60_000;

/// What one dashboard tick reads from Redis.
#[derive(Debug, Default)]
pub struct DashboardRead {
    /// Per item asked for: its stock hash (`None`: not in Redis).
    pub stocks: Vec<Option<StockHash>>,
    /// Every daemon's figures as it wrote them (daemon id, JSON).
    pub fleet: Vec<(String, String)>,
}

impl RedisAdmin {
    /// One pipelined round trip: writes this daemon's figures into the
    /// fleet hash, drops the entries of daemons gone for good (`stale`),
    /// and — when `read` — reads the fleet hash and the stock hash of every
    /// item in `items`.
    pub fn dashboard_tick(
        &self,
        daemon: &str,
        figures: &str,
        stale: &[String],
        items: &[(&str, &str)],
        read: bool,
    ) -> Result<DashboardRead, RedisError> {
        let mut c = self.conn()?;
        let mut pipe = redis::pipe();
        pipe.hset(FLEET, daemon, figures).ignore();
        pipe.pexpire(FLEET, FLEET_TTL_MS as i64).ignore();
        if !stale.is_empty() {
            pipe.hdel(FLEET, stale).ignore();
        }
        if !read {
            pipe.query::<()>(&mut *c)?;
            return Ok(DashboardRead::default());
        }
        pipe.hgetall(FLEET);
        for (sale, item) in items {
            pipe.cmd("HMGET")
                .arg(item_keys(sale, item).stock)
                .arg("available")
                .arg("locked")
                .arg("sold")
                .arg("total");
        }
        let mut replies: Vec<redis::Value> = pipe.query(&mut *c)?;
        let mut replies = replies.drain(..);
        let fleet: Vec<(String, String)> = match replies.next() {
            Some(v) => redis::from_redis_value(v)?,
            None => Vec::new(),
        };
        let stocks = replies
            .map(|v| {
                let f: Vec<Option<i64>> = redis::from_redis_value(v)?;
                if f.iter().all(Option::is_none) {
                    return Ok(None);
                }
                let g = |i: usize| f.get(i).copied().flatten().unwrap_or(0);
                Ok(Some(StockHash {
                    available: g(0),
                    locked: g(1),
                    sold: g(2),
                    total: g(3),
                }))
            })
            .collect::<Result<_, RedisError>>()?;
        Ok(DashboardRead { stocks, fleet })
    }

    /// Removes this daemon from the fleet hash (a clean stop).
    pub fn leave_fleet(&self, daemon: &str) -> Result<(), RedisError> {
        let mut c = self.conn()?;
        redis::cmd("HDEL").arg(FLEET).arg(daemon).query(&mut *c)
    }
}
