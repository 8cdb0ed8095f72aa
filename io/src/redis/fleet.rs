//! The dashboard's reads and writes: every daemon's own figures in one
//! hash (so any daemon's dashboard shows the fleet), and the stock hashes
//! of the items on screen. Called once a second by the dashboard task,
//! never per request.

use redis::RedisError;

use super::catalog::RedisAdmin;
use super::counts::{read_stock, StockHash};
use super::keys::{tag_keys, FLEET};
use super::shards::expand;

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
        let tags = self.tags(&mut c, items)?;
        let flat = expand(&tags);
        for (_, tag) in &flat {
            read_stock(&mut pipe, &tag_keys(tag).stock);
        }
        let mut replies: Vec<redis::Value> = pipe.query(&mut *c)?;
        let mut replies = replies.drain(..);
        let fleet: Vec<(String, String)> = match replies.next() {
            Some(v) => redis::from_redis_value(v)?,
            None => Vec::new(),
        };
        // Each item's shards summed; an item a shard of which has no stock
        // hash reads as none.
        let mut stocks: Vec<Option<StockHash>> = vec![Some(StockHash::default()); items.len()];
        for ((i, _), v) in flat.iter().zip(replies) {
            let f: Vec<Option<i64>> = redis::from_redis_value(v)?;
            stocks[*i] = match (stocks[*i], StockHash::read(&f)) {
                (Some(sum), Some(s)) => Some(sum.plus(&s)),
                _ => None,
            };
        }
        Ok(DashboardRead { stocks, fleet })
    }

    /// Removes this daemon from the fleet hash (a clean stop).
    pub fn leave_fleet(&self, daemon: &str) -> Result<(), RedisError> {
        let mut c = self.conn()?;
        redis::cmd("HDEL").arg(FLEET).arg(daemon).query(&mut *c)
    }
}
