use std::time::Duration;

use redis::{Client, Connection, ConnectionLike, ErrorKind, RedisError, ServerErrorKind, Value};
use seckill_pipeline::port::{DeductGroup, DeductOutcome, StockStore, StoreError};
use seckill_pipeline::OrderId;

const DEDUCT_LUA: &str = include_str!("deduct.lua");

/// Latest sale end accepted (9999-12-31T23:59:59.999Z).
pub const SALE_END_MS_MAX: u64 = 253_402_300_799_999;

/// The keys of one item. They share the hash tag `{sale:item}`, so one
/// script call can touch them all, on a single Redis or a Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemKeys {
    pub stock: String,
    pub buyers: String,
    pub req: String,
    pub unpaid: String,
    pub orders: String,
    pub info: String,
    /// Orders that left `locked`: order id → `paid|cancelled|expired:<ms>`.
    pub closed: String,
    /// Order events (JSON) waiting to be published to Kafka.
    pub events: String,
}

pub fn item_keys(sale_id: &str, item_id: &str) -> ItemKeys {
    let tag = format!("seckill:{{{sale_id}:{item_id}}}");
    ItemKeys {
        stock: format!("{tag}:stock"),
        buyers: format!("{tag}:buyers"),
        req: format!("{tag}:req"),
        unpaid: format!("{tag}:unpaid"),
        orders: format!("{tag}:orders"),
        info: format!("{tag}:info"),
        closed: format!("{tag}:closed"),
        events: format!("{tag}:events"),
    }
}

fn classify(err: &RedisError) -> StoreError {
    if err.is_timeout() {
        StoreError::Timeout
    } else if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() {
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
pub struct RedisStockStore {
    client: Client,
    conn: Option<Connection>,
    timeout: Duration,
    script_sha: String,
    per_item: bool,
    /// The command being written (reused across batches).
    buf: Vec<u8>,
}

impl RedisStockStore {
    pub fn new(url: &str, timeout: Duration) -> Result<RedisStockStore, StoreError> {
        let client = Client::open(url).map_err(|e| StoreError::Protocol(e.to_string()))?;
        Ok(RedisStockStore {
            client,
            conn: None,
            timeout,
            script_sha: redis::Script::new(DEDUCT_LUA).get_hash().to_string(),
            per_item: false,
            buf: Vec::with_capacity(16 << 10),
        })
    }

    /// One script call per item instead of one per batch.
    pub fn per_item(mut self, per_item: bool) -> RedisStockStore {
        self.per_item = per_item;
        self
    }

    fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self.conn.is_none() {
            let conn = self
                .client
                .get_connection_with_timeout(self.timeout)
                .map_err(|e| classify(&e))?;
            conn.set_read_timeout(Some(self.timeout))
                .map_err(|e| classify(&e))?;
            conn.set_write_timeout(Some(self.timeout))
                .map_err(|e| classify(&e))?;
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
                for suffix in [&b"stock"[..], b"buyers", b"req", b"unpaid", b"orders"] {
                    resp::bulk(
                        buf,
                        &[
                            b"seckill:{",
                            g.sale_id.as_bytes(),
                            b":",
                            g.item_id.as_bytes(),
                            b"}:",
                            suffix,
                        ],
                    );
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
                self.load_script()?;
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
        let expected: usize = groups.iter().map(|g| g.requests.len()).sum();
        let first = out.len();
        for v in &replies {
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

/// The stock hash of one item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StockHash {
    pub available: i64,
    pub locked: i64,
    pub sold: i64,
    pub total: i64,
}

/// Admin-side Redis access (loading sales, reading stock, probing).
#[derive(Clone)]
pub struct RedisAdmin {
    pub(super) client: Client,
    timeout: Duration,
}

/// What the admin API writes for one item.
#[derive(Debug, Clone)]
pub struct ItemLoad<'a> {
    pub item_id: &'a str,
    pub title: &'a str,
    pub price_cents: u64,
    pub stock: u64,
    pub per_user_limit: u32,
}

impl RedisAdmin {
    pub fn new(url: &str, timeout: Duration) -> Result<RedisAdmin, RedisError> {
        Ok(RedisAdmin {
            client: Client::open(url)?,
            timeout,
        })
    }

    pub(super) fn conn(&self) -> Result<Connection, RedisError> {
        let c = self.client.get_connection_with_timeout(self.timeout)?;
        c.set_read_timeout(Some(self.timeout))?;
        c.set_write_timeout(Some(self.timeout))?;
        Ok(c)
    }

    pub fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.conn()?;
        redis::cmd("PING").query::<String>(&mut c).map(|_| ())
    }

    /// Replaces a sale: resets every item's stock, buyers, stored outcomes
    /// and unpaid orders, and writes the sale and item metadata (the seed's
    /// round/info/products layout). Keys expire a day after the sale ends.
    pub fn load_sale(
        &self,
        sale_id: &str,
        start_ms: u64,
        end_ms: u64,
        items: &[ItemLoad<'_>],
    ) -> Result<(), RedisError> {
        let mut c = self.conn()?;
        // Redis refuses expiry times past its range; the admin API bounds
        // `end_ms` to the year 9999, this keeps direct callers safe too.
        let expire_at_ms = end_ms.min(SALE_END_MS_MAX).saturating_add(24 * 3600 * 1000);
        let mut pipe = redis::pipe();
        pipe.atomic();
        let round_info = format!("seckill:round:{sale_id}:info");
        let round_items = format!("seckill:round:{sale_id}:items");
        // The rounds of a day (the seed's `seckill::#{date}::rounds`): a
        // replaced round leaves the list of its old day.
        let old_start: Option<u64> = redis::cmd("HGET")
            .arg(&round_info)
            .arg("start_ms")
            .query(&mut c)?;
        if let Some(old) = old_start {
            pipe.lrem(day_rounds_key(old), 0, sale_id).ignore();
        }
        let day_rounds = day_rounds_key(start_ms);
        pipe.lrem(&day_rounds, 0, sale_id).ignore();
        pipe.rpush(&day_rounds, sale_id).ignore();
        pipe.cmd("PEXPIREAT")
            .arg(&day_rounds)
            .arg(expire_at_ms)
            .ignore();
        pipe.del(&round_items).ignore();
        pipe.hset_multiple(
            &round_info,
            &[
                ("start_ms", start_ms.to_string()),
                ("end_ms", end_ms.to_string()),
            ],
        )
        .ignore();
        for it in items {
            let k = item_keys(sale_id, it.item_id);
            pipe.del(&[
                &k.stock, &k.buyers, &k.req, &k.unpaid, &k.orders, &k.info, &k.closed, &k.events,
            ])
            .ignore();
            pipe.hset_multiple(
                &k.stock,
                &[
                    ("available", it.stock),
                    ("locked", 0),
                    ("sold", 0),
                    ("total", it.stock),
                ],
            )
            .ignore();
            pipe.hset_multiple(
                &k.info,
                &[
                    ("title", it.title.to_string()),
                    ("price_cents", it.price_cents.to_string()),
                    ("per_user_limit", it.per_user_limit.to_string()),
                    ("start_ms", start_ms.to_string()),
                    ("end_ms", end_ms.to_string()),
                ],
            )
            .ignore();
            pipe.rpush(&round_items, it.item_id).ignore();
            // The script fills these hashes; a placeholder field (ids are
            // never empty) lets them carry the sale's expiry from the start.
            for key in [&k.buyers, &k.req, &k.orders, &k.closed] {
                pipe.hset(key, "", "").ignore();
            }
            for key in [&k.stock, &k.info, &k.buyers, &k.req, &k.orders, &k.closed] {
                pipe.cmd("PEXPIREAT").arg(key).arg(expire_at_ms).ignore();
            }
        }
        for key in [&round_info, &round_items] {
            pipe.cmd("PEXPIREAT").arg(key).arg(expire_at_ms).ignore();
        }
        // Every daemon re-reads the sale metadata when this moves.
        pipe.incr(CATALOG_VERSION, 1).ignore();
        pipe.query::<()>(&mut c)
    }

    /// The catalog version: bumped by every sale load.
    pub fn catalog_version(&self) -> Result<u64, RedisError> {
        let mut c = self.conn()?;
        let v: Option<u64> = redis::cmd("GET").arg(CATALOG_VERSION).query(&mut c)?;
        Ok(v.unwrap_or(0))
    }

    /// `available` and the number of wins of every item, in one pipelined
    /// round trip (what each daemon reads once a second).
    pub fn item_counters(&self, items: &[(&str, &str)]) -> Result<Vec<(i64, u64)>, RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let mut pipe = redis::pipe();
        for (sale, item) in items {
            let k = item_keys(sale, item);
            pipe.hget(&k.stock, "available");
            pipe.hlen(&k.orders);
        }
        let v: Vec<Option<i64>> = pipe.query(&mut c)?;
        Ok(v.chunks(2)
            .map(|p| {
                let available = p.first().copied().flatten().unwrap_or(0);
                // The orders hash carries a placeholder field.
                let wins = p.get(1).copied().flatten().unwrap_or(0).max(1) as u64 - 1;
                (available, wins)
            })
            .collect())
    }

    pub fn stock(&self, sale_id: &str, item_id: &str) -> Result<Option<StockHash>, RedisError> {
        let mut c = self.conn()?;
        let k = item_keys(sale_id, item_id);
        let v: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(&k.stock)
            .arg("available")
            .arg("locked")
            .arg("sold")
            .arg("total")
            .query(&mut c)?;
        if v.iter().all(Option::is_none) {
            return Ok(None);
        }
        let g = |i: usize| v.get(i).copied().flatten().unwrap_or(0);
        Ok(Some(StockHash {
            available: g(0),
            locked: g(1),
            sold: g(2),
            total: g(3),
        }))
    }
}

/// Bumped by every sale load: daemons re-read the metadata when it moves.
const CATALOG_VERSION: &str = "seckill:catalog:version";

/// The list of the rounds starting on the (UTC) day of `start_ms`.
pub fn day_rounds_key(start_ms: u64) -> String {
    format!("seckill:day:{}:rounds", utc_date(start_ms))
}

/// `YYYY-MM-DD` (UTC) of an epoch time in ms.
pub fn utc_date(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => t.date().to_string(),
        Err(_) => "9999-12-31".to_string(),
    }
}

/// A sale as stored in Redis by the admin API.
#[derive(Debug)]
pub struct StoredSale {
    pub sale_id: String,
    pub items: Vec<seckill_pipeline::Item>,
}

impl RedisAdmin {
    /// Reads every sale round and its items (so a restarted daemon, or a
    /// second one, knows the sales another daemon created).
    pub fn load_sales(&self) -> Result<Vec<StoredSale>, RedisError> {
        let mut c = self.conn()?;
        // SCAN, not KEYS: never block a production Redis.
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("seckill:round:*:info")
                .arg("COUNT")
                .arg(1000)
                .query(&mut c)?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let sale_ids: Vec<&str> = keys
            .iter()
            .filter_map(|k| {
                k.strip_prefix("seckill:round:")
                    .and_then(|k| k.strip_suffix(":info"))
            })
            .collect();
        // Two pipelined round trips however many sales and items there
        // are: every daemon runs this once a second.
        let mut pipe = redis::pipe();
        for sale_id in &sale_ids {
            pipe.cmd("LRANGE")
                .arg(format!("seckill:round:{sale_id}:items"))
                .arg(0)
                .arg(-1);
        }
        let item_lists: Vec<Vec<String>> = if sale_ids.is_empty() {
            Vec::new()
        } else {
            pipe.query(&mut c)?
        };
        let mut pipe = redis::pipe();
        for (sale_id, item_ids) in sale_ids.iter().zip(&item_lists) {
            for item_id in item_ids {
                let k = item_keys(sale_id, item_id);
                pipe.cmd("HGETALL").arg(&k.info);
                pipe.cmd("HMGET")
                    .arg(&k.stock)
                    .arg("total")
                    .arg("available");
            }
        }
        let replies: Vec<redis::Value> = if item_lists.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            pipe.query(&mut c)?
        };
        let mut replies = replies.into_iter();
        let mut out = Vec::new();
        for (sale_id, item_ids) in sale_ids.iter().zip(item_lists) {
            let mut items = Vec::new();
            for item_id in item_ids {
                let (Some(info), Some(stock)) = (replies.next(), replies.next()) else {
                    break;
                };
                let info: std::collections::HashMap<String, String> =
                    redis::from_redis_value(info).unwrap_or_default();
                let stock: Vec<Option<i64>> = redis::from_redis_value(stock).unwrap_or_default();
                let num = |f: &str| info.get(f).and_then(|v| v.parse::<u64>().ok());
                let (Some(price), Some(limit), Some(start), Some(end)) = (
                    num("price_cents"),
                    num("per_user_limit"),
                    num("start_ms"),
                    num("end_ms"),
                ) else {
                    continue;
                };
                let total = stock.first().copied().flatten().unwrap_or(0).max(0) as u64;
                let available = stock.get(1).copied().flatten().unwrap_or(0);
                let item = seckill_pipeline::Item::new(
                    sale_id,
                    &item_id,
                    info.get("title").map_or("", String::as_str),
                    price,
                    total,
                    limit.min(u64::from(u32::MAX)) as u32,
                    start,
                    end,
                );
                item.set_remaining(available);
                items.push(item);
            }
            out.push(StoredSale {
                sale_id: sale_id.to_string(),
                items,
            });
        }
        Ok(out)
    }
}

/// A win as the stock script recorded it in `seckill:{S:I}:orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWin {
    pub order_id: String,
    pub user_id: String,
    pub quantity: u32,
    pub request_id: String,
}

impl RedisAdmin {
    /// How many wins each item has (`HLEN` of its orders hash, placeholder
    /// excluded), in one round trip.
    pub fn win_counts(&self, items: &[(&str, &str)]) -> Result<Vec<u64>, RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let mut pipe = redis::pipe();
        for (sale, item) in items {
            pipe.hlen(item_keys(sale, item).orders);
        }
        let lens: Vec<u64> = pipe.query(&mut c)?;
        Ok(lens.into_iter().map(|n| n.saturating_sub(1)).collect())
    }

    /// Every win of an item.
    pub fn wins(&self, sale_id: &str, item_id: &str) -> Result<Vec<StoredWin>, RedisError> {
        let mut c = self.conn()?;
        let all: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(item_keys(sale_id, item_id).orders)
            .query(&mut c)?;
        Ok(all
            .into_iter()
            .filter(|(oid, _)| !oid.is_empty())
            .filter_map(|(order_id, v)| {
                let mut parts = v.splitn(3, '|');
                let user_id = parts.next()?.to_string();
                let quantity = parts.next()?.parse().ok()?;
                let request_id = parts.next()?.to_string();
                Some(StoredWin {
                    order_id,
                    user_id,
                    quantity,
                    request_id,
                })
            })
            .collect())
    }
}
