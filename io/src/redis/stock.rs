//! The stock store of the deduct stage: one batched Lua call
//! (`deduct.lua`) per ring batch, written straight in the Redis protocol.

use std::time::Duration;

use redis::{Connection, ConnectionLike, ErrorKind, RedisError, ServerErrorKind, Value};
use seckill_pipeline::port::{DeductGroup, DeductOutcome, StockStore, StoreError};
use seckill_pipeline::OrderId;

use super::keys;
use super::target::{Connector, RedisTarget};

/// The stock script (see its header for KEYS and ARGV).
pub const DEDUCT_LUA: &str = include_str!("deduct.lua");

fn classify(err: &RedisError) -> StoreError {
    if err.is_timeout() {
        StoreError::Timeout
    } else if err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        // A master demoted by a failover, or one Sentinel has not
        // confirmed yet: the master is elsewhere.
        || err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || err.kind() == ErrorKind::Server(ServerErrorKind::MasterDown)
    {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Protocol(err.to_string())
    }
}

/// The deduct stage's connection: synchronous (the stage has its own
/// thread), one round trip per ring batch, reconnecting lazily after a
/// failure. By default one script call decides the whole batch, whatever
/// its items; `per_item` makes it one call per item in one pipelined round
/// trip (each call touching one hash slot, as a Redis Cluster proxy needs).
///
/// With [`wait_replicas`](RedisStockStore::wait_replicas) the same round
/// trip ends with one `WAIT n timeout`: a batch whose writes fewer than n
/// replicas acknowledged is not decided (the stage decides it `pending`
/// and re-drives it; the stored outcomes make that idempotent).
pub struct RedisStockStore {
    connector: Connector,
    conn: Option<Connection>,
    timeout: Duration,
    script_sha: String,
    per_item: bool,
    /// Replicas that must acknowledge a batch (0: no `WAIT`).
    wait_replicas: u32,
    /// How long `WAIT` may block, in ms.
    wait_timeout_ms: u64,
    /// The command being written (reused across batches).
    buf: Vec<u8>,
}

impl RedisStockStore {
    pub fn new(
        target: impl Into<RedisTarget>,
        timeout: Duration,
    ) -> Result<RedisStockStore, StoreError> {
        let connector = target
            .into()
            .connector()
            .map_err(|e| StoreError::Protocol(e.to_string()))?;
        Ok(RedisStockStore {
            connector,
            conn: None,
            timeout,
            script_sha: redis::Script::new(DEDUCT_LUA).get_hash().to_string(),
            per_item: false,
            wait_replicas: 0,
            wait_timeout_ms: 0,
            buf: Vec::with_capacity(16 << 10),
        })
    }

    /// One script call per item instead of one per batch.
    pub fn per_item(mut self, per_item: bool) -> RedisStockStore {
        self.per_item = per_item;
        self
    }

    /// Each batch's writes must reach `replicas` replicas within
    /// `timeout_ms` (one `WAIT` per batch; 0 replicas: none).
    pub fn wait_replicas(mut self, replicas: u32, timeout_ms: u64) -> RedisStockStore {
        self.wait_replicas = replicas;
        self.wait_timeout_ms = timeout_ms;
        self
    }

    fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self.conn.is_none() {
            let conn = self
                .connector
                .connect(self.timeout)
                .map_err(|e| classify(&e))?;
            if self.wait_replicas > 0 {
                // The reply comes after WAIT's own timeout.
                let read = self.timeout + Duration::from_millis(self.wait_timeout_ms);
                conn.set_read_timeout(Some(read))
                    .map_err(|e| classify(&e))?;
            }
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }

    fn load_script(&mut self) -> Result<(), StoreError> {
        let conn = self.connection()?;
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(DEDUCT_LUA)
            .query(conn)
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    /// Sends the batch as one script call (or one per item) in one round
    /// trip. The command is written straight into a reused buffer in the
    /// Redis protocol, so building it allocates nothing once warm; each
    /// call answers with one string (its outcomes joined by newlines).
    fn call(&mut self, groups: &[DeductGroup<'_>]) -> Result<Vec<Value>, RedisError> {
        let chunk_len = if self.per_item {
            1
        } else {
            groups.len().max(1)
        };
        let buf = &mut self.buf;
        buf.clear();
        let mut calls = 0;
        for chunk in groups.chunks(chunk_len) {
            calls += 1;
            let args: usize = chunk.iter().map(|g| 5 + 5 + 3 * g.requests.len()).sum();
            resp::array(buf, 3 + 1 + args);
            resp::bulk(buf, &[b"EVALSHA"]);
            resp::bulk(buf, &[self.script_sha.as_bytes()]);
            resp::bulk_u64(buf, 5 * chunk.len() as u64);
            for g in chunk {
                for suffix in keys::DEDUCT_KEY_SUFFIXES {
                    resp::bulk(buf, &keys::item_key_parts(g.sale_id, g.item_id, suffix));
                }
            }
            resp::bulk_u64(buf, chunk.len() as u64);
            for g in chunk {
                resp::bulk(buf, &[g.sale_id.as_bytes()]);
                resp::bulk(buf, &[g.item_id.as_bytes()]);
                resp::bulk_u64(buf, u64::from(g.per_user_limit));
                resp::bulk_u64(buf, g.pay_deadline_ms);
                resp::bulk_u64(buf, g.requests.len() as u64);
                for r in g.requests {
                    resp::bulk(buf, &[r.request_id.as_bytes()]);
                    resp::bulk(buf, &[r.user_id.as_bytes()]);
                    resp::bulk_u64(buf, u64::from(r.quantity));
                }
            }
        }
        if self.wait_replicas > 0 {
            calls += 1;
            resp::array(buf, 3);
            resp::bulk(buf, &[b"WAIT"]);
            resp::bulk_u64(buf, u64::from(self.wait_replicas));
            resp::bulk_u64(buf, self.wait_timeout_ms);
        }
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable_conn()?,
        };
        let replies = conn.req_packed_commands(&self.buf, 0, calls)?;
        // A script error (NOSCRIPT, or the script failing) comes back as a
        // value; surface the first as the error.
        if let Some(err) = replies.iter().find_map(|v| match v {
            Value::ServerError(e) => Some(e.clone()),
            _ => None,
        }) {
            return Err(err.into());
        }
        Ok(replies)
    }
}

/// Writing commands in the Redis protocol (RESP) without intermediate
/// allocations.
mod resp {
    pub fn array(buf: &mut Vec<u8>, n: usize) {
        buf.push(b'*');
        buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        buf.extend_from_slice(b"\r\n");
    }

    /// One bulk string made of the concatenated parts.
    pub fn bulk(buf: &mut Vec<u8>, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        buf.push(b'$');
        buf.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        buf.extend_from_slice(b"\r\n");
        for p in parts {
            buf.extend_from_slice(p);
        }
        buf.extend_from_slice(b"\r\n");
    }

    pub fn bulk_u64(buf: &mut Vec<u8>, v: u64) {
        bulk(buf, &[itoa::Buffer::new().format(v).as_bytes()]);
    }
}

fn unreachable_conn<T>() -> Result<T, RedisError> {
    Err(RedisError::from((
        ErrorKind::Io,
        "redis connection not established",
    )))
}

fn parse(res: &str) -> Result<DeductOutcome, StoreError> {
    Ok(match res {
        "sold_out" => DeductOutcome::SoldOut,
        "duplicate" => DeductOutcome::Duplicate,
        "limit_exceeded" => DeductOutcome::LimitExceeded,
        "unknown_item" => DeductOutcome::UnknownItem,
        other => {
            let id = other
                .strip_prefix("ok:")
                .and_then(OrderId::parse)
                .ok_or_else(|| StoreError::Protocol(format!("unexpected outcome {other:?}")))?;
            DeductOutcome::Success(id)
        }
    })
}

impl StockStore for RedisStockStore {
    fn deduct(
        &mut self,
        groups: &[DeductGroup<'_>],
        out: &mut Vec<DeductOutcome>,
    ) -> Result<(), StoreError> {
        self.connection()?;
        let replies = match self.call(groups) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                // A restarted Redis forgot the script: load it and go again.
                if let Err(e) = self.load_script() {
                    self.conn = None;
                    return Err(e);
                }
                self.call(groups).map_err(|e| {
                    self.conn = None;
                    classify(&e)
                })?
            }
            Err(e) => {
                // A timed-out or broken connection may still deliver a late
                // reply; never reuse it.
                self.conn = None;
                return Err(classify(&e));
            }
        };
        let mut replies = &replies[..];
        if self.wait_replicas > 0 {
            let (acked, scripts) = match replies.split_last() {
                Some((Value::Int(n), rest)) => (*n, rest),
                other => {
                    self.conn = None;
                    return Err(StoreError::Protocol(format!(
                        "unexpected WAIT answer {:?}",
                        other.map(|(v, _)| v)
                    )));
                }
            };
            if acked < i64::from(self.wait_replicas) {
                // Decided on the master, not yet safe from its loss. The
                // next connection asks the Sentinels again: this master
                // may be one they have replaced, cut off from its replicas.
                self.conn = None;
                return Err(StoreError::Unavailable(format!(
                    "{acked} of {} replicas acknowledged the batch within {} ms",
                    self.wait_replicas, self.wait_timeout_ms
                )));
            }
            replies = scripts;
        }
        let expected: usize = groups.iter().map(|g| g.requests.len()).sum();
        let first = out.len();
        for v in replies {
            let Value::BulkString(bytes) = v else {
                return Err(StoreError::Protocol(format!(
                    "unexpected script answer {v:?}"
                )));
            };
            let text = std::str::from_utf8(bytes)
                .map_err(|_| StoreError::Protocol("script answer is not UTF-8".into()))?;
            for r in text.split('\n') {
                out.push(parse(r)?);
            }
        }
        let got = out.len() - first;
        if got != expected {
            out.truncate(first);
            return Err(StoreError::Protocol(format!(
                "{got} outcomes for {expected} requests"
            )));
        }
        Ok(())
    }
}
