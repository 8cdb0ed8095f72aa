//! The stock store of the deduct stage: one batched Lua call
//! (`deduct.lua`) per ring batch, written straight in the Redis protocol.
//! An item split into stock shards sends each request to its user's home
//! shard; a request whose home is dry walks the other shards
//! (`borrow.rs`).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use redis::{ConnectionLike, ErrorKind, RedisError, ServerErrorKind, Value};
use seckill_pipeline::port::{DeductGroup, DeductOutcome, StockStore, StoreError};

use super::calls::{parse, reply_lines, Borrow, Parsed, Part, Scratch, Tag};
use super::cluster::{Route, Routed};
use super::conn::{Connector, RedisConn};
use super::keys;
use super::layout::{home_shard, Layouts, Tags};
use super::resp;
use super::target::RedisTarget;

/// The stock script (see its header for KEYS and ARGV).
pub const DEDUCT_LUA: &str = include_str!("deduct.lua");
/// A borrowed unit taken from a shard (see its header).
pub(super) const TAKE_LUA: &str = include_str!("take.lua");
/// A borrow ended on the home shard (see its header).
pub(super) const FINISH_LUA: &str = include_str!("finish.lua");

pub(super) fn classify(err: &RedisError) -> StoreError {
    if err.is_timeout() {
        StoreError::Timeout
    } else if err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        // A master demoted by a failover, or one Sentinel has not
        // confirmed yet: the master is elsewhere.
        || err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || err.kind() == ErrorKind::Server(ServerErrorKind::MasterDown)
        // A cluster that lost a slot's master, or redirections that did
        // not settle (a migration under way): decided again later.
        || err.kind() == ErrorKind::Server(ServerErrorKind::ClusterDown)
        || err.kind() == ErrorKind::Server(ServerErrorKind::TryAgain)
        || err.kind() == ErrorKind::Server(ServerErrorKind::Moved)
        || err.kind() == ErrorKind::Server(ServerErrorKind::Ask)
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
/// On a Redis Cluster every call is one item's, sent to the master of the
/// item's slot: one pipelined round trip per master, all masters at once.
///
/// A sharded item's requests go to their users' home shards (one call per
/// shard with requests); only a request whose home is dry costs more round
/// trips (see `borrow.rs`).
///
/// With [`wait_replicas`](RedisStockStore::wait_replicas) every round trip
/// ends with one `WAIT n timeout` (per master on a cluster): a batch whose
/// writes fewer than n replicas acknowledged is not decided (the stage
/// decides it `pending` and re-drives it; the stored outcomes make that
/// idempotent).
pub struct RedisStockStore {
    connector: Connector,
    conn: Option<RedisConn>,
    timeout: Duration,
    pub(super) shas: Shas,
    per_item: bool,
    /// Replicas that must acknowledge a batch (0: no `WAIT`).
    wait_replicas: u32,
    /// How long `WAIT` may block, in ms.
    wait_timeout_ms: u64,
    /// Which items are sharded, and their shards' tags.
    pub(super) layouts: Arc<Layouts>,
    /// The commands being written (reused across batches).
    pub(super) buf: Vec<u8>,
    /// Where each script call lies in `buf`, and the hash slot of its keys.
    pub(super) calls: Vec<(Range<usize>, u16)>,
    scratch: Scratch,
}

/// The scripts' SHA-1s, as `EVALSHA` names them.
pub(super) struct Shas {
    pub deduct: String,
    pub take: String,
    pub finish: String,
}

impl RedisStockStore {
    pub fn new(
        target: impl Into<RedisTarget>,
        timeout: Duration,
    ) -> Result<RedisStockStore, StoreError> {
        let connector =
            Connector::new(&target.into()).map_err(|e| StoreError::Protocol(e.to_string()))?;
        let sha = |s: &str| redis::Script::new(s).get_hash().to_string();
        Ok(RedisStockStore {
            connector,
            conn: None,
            timeout,
            shas: Shas {
                deduct: sha(DEDUCT_LUA),
                take: sha(TAKE_LUA),
                finish: sha(FINISH_LUA),
            },
            per_item: false,
            wait_replicas: 0,
            wait_timeout_ms: 0,
            layouts: Arc::default(),
            buf: Vec::with_capacity(16 << 10),
            calls: Vec::with_capacity(64),
            scratch: Scratch::default(),
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

    /// The registry of sharded items (the admin side's, so that what the
    /// catalog reads is what the store sends).
    pub fn layouts(mut self, layouts: Arc<Layouts>) -> RedisStockStore {
        self.layouts = layouts;
        self
    }

    fn connection(&mut self) -> Result<&mut RedisConn, StoreError> {
        if self.conn.is_none() {
            let mut conn = self
                .connector
                .connect(self.timeout)
                .map_err(|e| classify(&e))?;
            if self.wait_replicas > 0 {
                // The reply comes after WAIT's own timeout.
                let read = self.timeout + Duration::from_millis(self.wait_timeout_ms);
                match &mut conn {
                    RedisConn::Single(c) => c.set_read_timeout(Some(read)),
                    RedisConn::Cluster(c) => c.set_read_timeout(read),
                }
                .map_err(|e| classify(&e))?;
            }
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }

    fn load_scripts(&mut self) -> Result<(), StoreError> {
        let conn = self.connection()?;
        for script in [DEDUCT_LUA, TAKE_LUA, FINISH_LUA] {
            let _: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(script)
                .query(conn)
                .map_err(|e| classify(&e))?;
        }
        Ok(())
    }

    /// Whether calls must each touch one hash slot (a cluster, a proxy).
    pub(super) fn one_slot_per_call(&self) -> bool {
        self.per_item || matches!(self.conn, Some(RedisConn::Cluster(_)))
    }

    /// Sends the calls written in `buf` (`calls`) in one round trip and
    /// returns one reply per call. A restarted Redis that forgot the
    /// scripts gets them again, and the calls go once more (they are
    /// idempotent by request id). With `WAIT`, fewer acknowledgements
    /// than asked is an outage. On any error the connection is dropped: a
    /// timed-out one may still deliver a late reply.
    pub(super) fn send(&mut self) -> Result<Vec<Value>, StoreError> {
        self.connection()?;
        let replies = match self.send_once() {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => self
                .load_scripts()
                .and_then(|()| self.send_once().map_err(|e| classify(&e))),
            other => other.map_err(|e| classify(&e)),
        };
        let mut replies = match replies {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        if self.wait_replicas > 0 {
            let acked = match replies.pop() {
                Some(Value::Int(n)) => n,
                other => {
                    self.conn = None;
                    return Err(StoreError::Protocol(format!(
                        "unexpected WAIT answer {other:?}"
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
        }
        Ok(replies)
    }

    /// One try of [`send`](Self::send): the replies, `WAIT`'s last.
    fn send_once(&mut self) -> Result<Vec<Value>, RedisError> {
        let wait = (self.wait_replicas > 0).then_some((self.wait_replicas, self.wait_timeout_ms));
        let buf = &mut self.buf;
        let replies = match self.conn.as_mut() {
            None => {
                return Err(RedisError::from((
                    ErrorKind::Io,
                    "redis connection not established",
                )))
            }
            Some(RedisConn::Single(conn)) => {
                let end = buf.len();
                if let Some((n, ms)) = wait {
                    resp::array(buf, 3);
                    resp::bulk(buf, &[b"WAIT"]);
                    resp::bulk_u64(buf, u64::from(n));
                    resp::bulk_u64(buf, ms);
                }
                let count = self.calls.len() + usize::from(wait.is_some());
                let r = conn.req_packed_commands(buf, 0, count);
                // The WAIT goes again with a retry, written anew.
                buf.truncate(end);
                r?
            }
            Some(RedisConn::Cluster(cluster)) => {
                let routed: Vec<Routed<'_>> = self
                    .calls
                    .iter()
                    .map(|(range, slot)| Routed {
                        bytes: &buf[range.clone()],
                        route: Route::Slot(*slot),
                    })
                    .collect();
                let answers = cluster.run(&routed, wait)?;
                let mut replies = answers.values;
                if wait.is_some() {
                    replies.push(Value::Int(answers.acked_min.unwrap_or(0)));
                }
                replies
            }
        };
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

    /// Writes the deduct calls of `parts` (one call for all of them, or
    /// one per part where a call may touch one slot only).
    fn write_deduct(
        &mut self,
        groups: &[DeductGroup<'_>],
        tags: &[Option<Tags>],
        parts: &[Part],
        flat: &[(usize, usize)],
        idx: &[usize],
    ) {
        let chunk_len = if self.one_slot_per_call() {
            1
        } else {
            parts.len().max(1)
        };
        self.buf.clear();
        self.calls.clear();
        for chunk in parts.chunks(chunk_len) {
            let buf = &mut self.buf;
            let start = buf.len();
            let args: usize = chunk.iter().map(|p| 5 + 6 + 3 * p.reqs.len()).sum();
            resp::array(buf, 3 + 1 + args);
            resp::bulk(buf, &[b"EVALSHA"]);
            resp::bulk(buf, &[self.shas.deduct.as_bytes()]);
            resp::bulk_u64(buf, 5 * chunk.len() as u64);
            let mut slot = 0;
            for p in chunk {
                let g = &groups[p.group];
                let tag = part_tag(g, tags[p.group].as_deref(), p.shard);
                slot = tag.slot();
                for suffix in keys::DEDUCT_KEY_SUFFIXES {
                    tag.key(buf, suffix);
                }
            }
            resp::bulk_u64(buf, chunk.len() as u64);
            for p in chunk {
                let g = &groups[p.group];
                resp::bulk(buf, &[g.sale_id.as_bytes()]);
                resp::bulk(buf, &[g.item_id.as_bytes()]);
                resp::bulk_u64(buf, u64::from(g.per_user_limit));
                resp::bulk_u64(buf, g.pay_deadline_ms);
                resp::bulk_u64(buf, p.reqs.len() as u64);
                match (p.shard, tags[p.group].as_deref()) {
                    (Some(h), Some(t)) => resp::bulk_u64(buf, ((h + 1) % t.len()) as u64),
                    _ => resp::bulk(buf, &[]),
                }
                for &gi in &idx[p.reqs.clone()] {
                    let (gr, i) = flat[gi];
                    let r = &groups[gr].requests[i];
                    resp::bulk(buf, &[r.request_id.as_bytes()]);
                    resp::bulk(buf, &[r.user_id.as_bytes()]);
                    resp::bulk_u64(buf, u64::from(r.quantity));
                }
            }
            self.calls.push((start..buf.len(), slot));
        }
    }
}

/// The tag a part's keys live under.
fn part_tag<'a>(g: &DeductGroup<'a>, tags: Option<&'a [String]>, shard: Option<usize>) -> Tag<'a> {
    match (tags, shard) {
        (Some(t), Some(j)) => Tag::Shard(&t[j]),
        _ => Tag::Own(g.sale_id, g.item_id),
    }
}

impl StockStore for RedisStockStore {
    fn deduct(
        &mut self,
        groups: &[DeductGroup<'_>],
        out: &mut Vec<DeductOutcome>,
    ) -> Result<(), StoreError> {
        // The buffers go back whatever the call's fate: a warm store
        // allocates nothing for a batch but Redis's replies.
        let mut sc = std::mem::take(&mut self.scratch);
        let r = self.deduct_with(&mut sc, groups, out);
        sc.clear();
        self.scratch = sc;
        r
    }
}

impl RedisStockStore {
    fn deduct_with(
        &mut self,
        sc: &mut Scratch,
        groups: &[DeductGroup<'_>],
        out: &mut Vec<DeductOutcome>,
    ) -> Result<(), StoreError> {
        self.connection()?;
        // The batch's requests as one flat list (group, index in it), and
        // the parts: per item, its own tag, or each home shard with requests.
        sc.flat.extend(
            groups
                .iter()
                .enumerate()
                .flat_map(|(g, grp)| (0..grp.requests.len()).map(move |i| (g, i))),
        );
        sc.tags.extend(groups.iter().map(|g| {
            self.layouts
                .known(g.sale_id, g.item_id)
                .filter(|t| t.len() > 1)
        }));
        let Scratch {
            flat,
            tags,
            idx,
            parts,
            results,
        } = sc;
        let mut base = 0;
        for (g, grp) in groups.iter().enumerate() {
            let n = grp.requests.len();
            match tags[g].as_deref() {
                None => {
                    let s = idx.len();
                    idx.extend(base..base + n);
                    parts.push(Part {
                        group: g,
                        shard: None,
                        reqs: s..idx.len(),
                    });
                }
                Some(t) => {
                    for h in 0..t.len() {
                        let s = idx.len();
                        idx.extend(
                            (0..n)
                                .filter(|&i| home_shard(grp.requests[i].user_id, t.len()) == h)
                                .map(|i| base + i),
                        );
                        if idx.len() > s {
                            parts.push(Part {
                                group: g,
                                shard: Some(h),
                                reqs: s..idx.len(),
                            });
                        }
                    }
                }
            }
            base += n;
        }
        self.write_deduct(groups, tags, parts, flat, idx);
        let replies = self.send()?;
        results.resize(flat.len(), None);
        let mut borrows = Vec::new();
        let chunk_len = if self.one_slot_per_call() {
            1
        } else {
            parts.len().max(1)
        };
        if replies.len() != parts.chunks(chunk_len).len() {
            return Err(StoreError::Protocol(format!(
                "{} replies for {} calls",
                replies.len(),
                parts.chunks(chunk_len).len()
            )));
        }
        for (chunk, reply) in parts.chunks(chunk_len).zip(&replies) {
            let mut lines = reply_lines(reply)?;
            for p in chunk {
                for &gi in &idx[p.reqs.clone()] {
                    let line = lines.next().ok_or_else(|| {
                        StoreError::Protocol("fewer outcomes than requests".into())
                    })?;
                    match (parse(line)?, p.shard, tags[p.group].as_ref()) {
                        (Parsed::Final(o), _, _) => results[gi] = Some(o),
                        (Parsed::Borrow { shard }, Some(home), Some(t))
                            if shard < t.len() && shard != home =>
                        {
                            borrows.push(Borrow {
                                request: gi,
                                home,
                                at: shard,
                            });
                        }
                        (Parsed::Borrow { .. }, _, _) => {
                            return Err(StoreError::Protocol(format!(
                                "a borrow for an item this daemon holds unsharded: {line:?}"
                            )))
                        }
                    }
                }
            }
            if lines.next().is_some() {
                return Err(StoreError::Protocol("more outcomes than requests".into()));
            }
        }
        if !borrows.is_empty() {
            self.walk(groups, tags, flat, borrows, results)?;
        }
        let first = out.len();
        for r in results.drain(..) {
            match r {
                Some(o) => out.push(o),
                None => {
                    out.truncate(first);
                    return Err(StoreError::Protocol("a request left undecided".into()));
                }
            }
        }
        Ok(())
    }
}
