//! Redis Cluster, spoken directly (no proxy).
//!
//! Longer than 500 lines on purpose: the slot map, the node connections
//! and the redirections are one state machine over the same connections
//! (an answer left unread on one of them must close it); the pure parts
//! (slots, addresses, the map's wire format) are in `slots.rs`.
//!
//! The slot map is read with `CLUSTER SLOTS`; one connection per master is
//! opened when first needed; every command goes to the master of its key's
//! hash slot, the commands of one call pipelined per master — every master
//! written before any is read, so a call costs one round trip however many
//! masters it touches. The cluster's redirections are followed, each a
//! bounded number of times:
//!
//! | answer | what happened | what is done |
//! |---|---|---|
//! | `MOVED slot addr` | the slot has a new owner | the map is corrected, the command sent there, the map read again |
//! | `ASK slot addr` | the slot is being migrated and this key already left | the command goes to `addr` behind `ASKING`, the map is kept |
//! | `TRYAGAIN` | a multi-key command met a slot half migrated | the same command again, shortly |
//! | `CLUSTERDOWN` | the cluster lost a slot's master | again, shortly; then the caller's error |
//!
//! A command that was redirected was not executed, so sending it again
//! never applies it twice.
//!
//! Written here rather than taken from the `redis` crate's cluster client:
//! the deduct stage needs its batch's script calls grouped per master with
//! one `WAIT` behind each master's share on the same connection; the
//! crate's synchronous pipeline leaves `MOVED` answers in its results
//! instead of following them, its default retries wait for minutes, and
//! with native TLS it cannot take a CA of our own. A node connection here
//! is made like any other connection of the system ([`RedisTarget`]: TLS,
//! the password, the timeouts).

use std::sync::Arc;
use std::time::Duration;

use redis::{Connection, ErrorKind, RedisError, ServerErrorKind, Value};

use super::slots::{parse_slots, redirect, split_host_port, SLOT_COUNT};
use super::target::{open, RedisTarget};

/// Rounds of redirections one call follows before it gives up.
const ATTEMPTS_MAX: u32 = 8;
/// No master known for a slot yet.
const NO_NODE: u16 = u16::MAX;

/// Where one command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The master of this hash slot.
    Slot(u16),
    /// Any master (a command without a key: `PUBLISH`, `TIME`).
    Any,
    /// Every master, one after the other (`SCRIPT LOAD`, `PING`): one
    /// answer, the first error if any.
    AllMasters,
}

/// A command written in the Redis protocol, and where it goes.
#[derive(Debug, Clone, Copy)]
pub struct Routed<'a> {
    pub bytes: &'a [u8],
    pub route: Route,
}

struct Node {
    host: String,
    port: u16,
    conn: Option<Connection>,
}

/// Connections to the masters of one cluster and its slot map. Not shared:
/// each user (the deduct stage, a pooled admin connection) has its own.
pub struct Cluster {
    target: Arc<RedisTarget>,
    /// Connect and write timeout, and the read timeout of a new node
    /// connection unless `read_timeout` is set.
    timeout: Duration,
    read_timeout: Duration,
    /// Masters seen in the slot map (and redirections), by index.
    nodes: Vec<Node>,
    /// Slot → index in `nodes` of its master.
    owner: Vec<u16>,
    /// The map is known to be out of date: read it again before the next
    /// call.
    stale: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("masters", &self.masters())
            .finish()
    }
}

/// What one call answered: a value per command, in order, and with
/// `WAIT`, the fewest replicas any master's share reached.
#[derive(Debug)]
pub struct Answers {
    pub values: Vec<Value>,
    pub acked_min: Option<i64>,
}

impl Cluster {
    /// Reads the slot map from the first seed (`target.cluster_nodes`)
    /// that answers.
    pub fn connect(target: Arc<RedisTarget>, timeout: Duration) -> Result<Cluster, RedisError> {
        let mut c = Cluster {
            target,
            timeout,
            read_timeout: timeout,
            nodes: Vec::new(),
            owner: vec![NO_NODE; usize::from(SLOT_COUNT)],
            stale: true,
            buf: Vec::with_capacity(4 << 10),
        };
        c.refresh()?;
        Ok(c)
    }

    /// The read timeout of node connections (a call with `WAIT` answers
    /// after WAIT's own timeout).
    pub fn set_read_timeout(&mut self, read: Duration) -> Result<(), RedisError> {
        self.read_timeout = read;
        for n in &mut self.nodes {
            if let Some(c) = &n.conn {
                c.set_read_timeout(Some(read))?;
            }
        }
        Ok(())
    }

    /// The masters as `host:port`, in the order of the slots they own
    /// first.
    pub fn masters(&self) -> Vec<String> {
        let mut seen: Vec<u16> = Vec::new();
        for &o in &self.owner {
            if o != NO_NODE && !seen.contains(&o) {
                seen.push(o);
            }
        }
        seen.iter()
            .filter_map(|&i| self.nodes.get(usize::from(i)))
            .map(|n| format!("{}:{}", n.host, n.port))
            .collect()
    }

    /// The master owning `slot` as `host:port`, if the map names one.
    pub fn master_of(&self, slot: u16) -> Option<String> {
        let i = *self.owner.get(usize::from(slot))?;
        self.nodes
            .get(usize::from(i))
            .map(|n| format!("{}:{}", n.host, n.port))
    }

    /// Reads the slot map again: from a master already connected, else
    /// from any master known, else from the seeds.
    pub fn refresh(&mut self) -> Result<(), RedisError> {
        let mut last = RedisError::from((ErrorKind::Io, "no cluster node answered"));
        let mut candidates: Vec<(String, u16)> = Vec::new();
        // Connected ones first: no connect.
        for n in self.nodes.iter().filter(|n| n.conn.is_some()) {
            candidates.push((n.host.clone(), n.port));
        }
        for n in &self.nodes {
            candidates.push((n.host.clone(), n.port));
        }
        for seed in &self.target.cluster_nodes {
            if let Some((h, p)) = split_host_port(seed) {
                candidates.push((h.to_string(), p));
            }
        }
        candidates.dedup();
        for (host, port) in candidates {
            let i = self.node_index(&host, port);
            let slots = match self.conn(i) {
                Ok(conn) => redis::cmd("CLUSTER").arg("SLOTS").query::<Value>(conn),
                Err(e) => Err(e),
            };
            match slots {
                Ok(v) => match self.take_slots(&v, &host) {
                    Ok(()) => {
                        self.stale = false;
                        return Ok(());
                    }
                    Err(e) => last = e,
                },
                Err(e) => {
                    self.drop_conn(i);
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Takes a `CLUSTER SLOTS` answer asked of `asked`.
    fn take_slots(&mut self, v: &Value, asked: &str) -> Result<(), RedisError> {
        let mut owner = vec![NO_NODE; usize::from(SLOT_COUNT)];
        for r in parse_slots(v, asked)? {
            let i = self.node_index(&r.host, r.port);
            for slot in owner
                .iter_mut()
                .take(usize::from(r.last) + 1)
                .skip(usize::from(r.first))
            {
                *slot = i;
            }
        }
        self.owner = owner;
        // Connections to nodes that no longer own a slot are closed.
        for (i, n) in self.nodes.iter_mut().enumerate() {
            let i = u16::try_from(i).unwrap_or(NO_NODE);
            if n.conn.is_some() && !self.owner.contains(&i) {
                n.conn = None;
            }
        }
        Ok(())
    }

    /// The index of a node, added if new.
    fn node_index(&mut self, host: &str, port: u16) -> u16 {
        if let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.host == host && n.port == port)
        {
            return u16::try_from(i).unwrap_or(NO_NODE);
        }
        self.nodes.push(Node {
            host: host.to_string(),
            port,
            conn: None,
        });
        u16::try_from(self.nodes.len() - 1).unwrap_or(NO_NODE)
    }

    fn conn(&mut self, i: u16) -> Result<&mut Connection, RedisError> {
        let (timeout, read) = (self.timeout, self.read_timeout);
        let node = self
            .nodes
            .get_mut(usize::from(i))
            .ok_or_else(|| RedisError::from((ErrorKind::Io, "no master for the slot")))?;
        if node.conn.is_none() {
            let client = self.target.client_at(Some((&node.host, node.port)))?;
            let conn = open(&client, timeout)?;
            conn.set_read_timeout(Some(read))?;
            node.conn = Some(conn);
        }
        node.conn
            .as_mut()
            .ok_or_else(|| RedisError::from((ErrorKind::Io, "no connection")))
    }

    fn drop_conn(&mut self, i: u16) {
        if let Some(n) = self.nodes.get_mut(usize::from(i)) {
            n.conn = None;
        }
    }

    fn master_indexes(&self) -> Vec<u16> {
        let mut seen: Vec<u16> = Vec::new();
        for &o in &self.owner {
            if o != NO_NODE && !seen.contains(&o) {
                seen.push(o);
            }
        }
        seen
    }

    /// The masters, as indexes [`owner`](Self::owner) answers, in the
    /// order of the slots they own first.
    pub fn master_ids(&self) -> Vec<u16> {
        self.master_indexes()
    }

    /// The master of `slot` (an index of [`master_ids`](Self::master_ids)).
    pub fn owner(&self, slot: u16) -> Option<u16> {
        self.owner
            .get(usize::from(slot))
            .copied()
            .filter(|&o| o != NO_NODE)
    }

    /// Whether every open node connection is still open.
    pub fn is_open(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.conn.as_ref().is_none_or(redis::ConnectionLike::is_open))
    }

    /// Sends `cmds` — each to its route, pipelined per master — and
    /// follows redirections. With `wait = Some((n, timeout_ms))` every
    /// master's share ends with `WAIT n timeout_ms` on the same
    /// connection, and the answer carries the fewest acknowledgements.
    ///
    /// An I/O error, a timeout or redirections that do not settle end the
    /// call with an error; the commands whose answers were read may have
    /// been applied (the callers' commands are idempotent by request id,
    /// or harmless to repeat).
    pub fn run(
        &mut self,
        cmds: &[Routed<'_>],
        wait: Option<(u32, u64)>,
    ) -> Result<Answers, RedisError> {
        let mut values: Vec<Option<Value>> = vec![None; cmds.len()];
        let mut acked_min: Option<i64> = None;
        // Broadcasts first: a `SCRIPT LOAD` precedes the calls it serves.
        for (i, c) in cmds.iter().enumerate() {
            if c.route == Route::AllMasters {
                values[i] = Some(self.broadcast(c.bytes)?);
            }
        }
        // (command, where: None = the owner of its slot, Some(node) = an
        // ASK redirection to that node).
        let mut todo: Vec<(usize, Option<u16>)> = cmds
            .iter()
            .enumerate()
            .filter(|(_, c)| c.route != Route::AllMasters)
            .map(|(i, _)| (i, None))
            .collect();
        let mut attempt = 0;
        while !todo.is_empty() {
            if attempt == ATTEMPTS_MAX {
                return Err(RedisError::from((
                    ErrorKind::Server(ServerErrorKind::TryAgain),
                    "cluster redirections did not settle",
                )));
            }
            // The map is read again before a call, never in the middle of
            // one: a node asked may not have heard of a migration yet, and
            // would undo what a `MOVED` taught. A failed read keeps the old
            // map: the redirections correct it one slot at a time.
            if attempt == 0 && self.stale {
                let _ = self.refresh();
            }
            attempt += 1;
            let groups = self.group(cmds, &todo)?;
            let (again, backoff) = self.round(cmds, &groups, wait, &mut values, &mut acked_min)?;
            todo = again;
            if backoff && !todo.is_empty() {
                std::thread::sleep(Duration::from_millis(2u64 << attempt.min(5)));
            }
        }
        Ok(Answers {
            values: values
                .into_iter()
                .map(|v| v.unwrap_or(Value::Nil))
                .collect(),
            acked_min,
        })
    }

    /// The commands of `todo` per node: (node, [(command, behind ASKING)]).
    #[allow(clippy::type_complexity)]
    fn group(
        &self,
        cmds: &[Routed<'_>],
        todo: &[(usize, Option<u16>)],
    ) -> Result<Vec<(u16, Vec<(usize, bool)>)>, RedisError> {
        let any = self.master_indexes().first().copied().unwrap_or(NO_NODE);
        let mut groups: Vec<(u16, Vec<(usize, bool)>)> = Vec::new();
        for &(i, ask) in todo {
            let (node, asking) = match (ask, cmds[i].route) {
                (Some(n), _) => (n, true),
                (None, Route::Slot(s)) => (self.owner[usize::from(s % SLOT_COUNT)], false),
                (None, _) => (any, false),
            };
            if node == NO_NODE {
                return Err(RedisError::from((
                    ErrorKind::Server(ServerErrorKind::ClusterDown),
                    "no master serves a slot of this call",
                )));
            }
            match groups.iter_mut().find(|(n, _)| *n == node) {
                Some((_, list)) => list.push((i, asking)),
                None => groups.push((node, vec![(i, asking)])),
            }
        }
        Ok(groups)
    }

    /// One round trip: every group written, then every answer read.
    /// Returns the commands to send again and whether to pause first.
    #[allow(clippy::type_complexity)]
    fn round(
        &mut self,
        cmds: &[Routed<'_>],
        groups: &[(u16, Vec<(usize, bool)>)],
        wait: Option<(u32, u64)>,
        values: &mut [Option<Value>],
        acked_min: &mut Option<i64>,
    ) -> Result<(Vec<(usize, Option<u16>)>, bool), RedisError> {
        let mut buf = std::mem::take(&mut self.buf);
        let mut sent: Vec<u16> = Vec::with_capacity(groups.len());
        for (node, list) in groups {
            buf.clear();
            for &(i, asking) in list {
                if asking {
                    buf.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
                }
                buf.extend_from_slice(cmds[i].bytes);
            }
            if let Some((n, ms)) = wait {
                super::resp::array(&mut buf, 3);
                super::resp::bulk(&mut buf, &[b"WAIT"]);
                super::resp::bulk_u64(&mut buf, u64::from(n));
                super::resp::bulk_u64(&mut buf, ms);
            }
            let written = self.conn(*node).and_then(|c| c.send_packed_command(&buf));
            if let Err(e) = written {
                self.drop_conn(*node);
                for n in sent {
                    self.drop_conn(n);
                }
                self.stale = true;
                self.buf = buf;
                return Err(e);
            }
            sent.push(*node);
        }
        self.buf = buf;
        let mut again = Vec::new();
        let mut backoff = false;
        for (k, (node, list)) in groups.iter().enumerate() {
            let read = self.read_group(*node, list, wait.is_some(), values, acked_min, &mut again);
            match read {
                Ok(b) => backoff |= b,
                Err(e) => {
                    // Unread answers are left on these connections: none
                    // may be used again.
                    for (n, _) in &groups[k..] {
                        self.drop_conn(*n);
                    }
                    self.stale = true;
                    return Err(e);
                }
            }
        }
        Ok((again, backoff))
    }

    fn read_group(
        &mut self,
        node: u16,
        list: &[(usize, bool)],
        waited: bool,
        values: &mut [Option<Value>],
        acked_min: &mut Option<i64>,
        again: &mut Vec<(usize, Option<u16>)>,
    ) -> Result<bool, RedisError> {
        let mut backoff = false;
        for &(i, asking) in list {
            if asking {
                // ASKING's own +OK.
                self.conn(node)?.recv_response()?;
            }
            let v = self.conn(node)?.recv_response()?;
            let Value::ServerError(e) = &v else {
                values[i] = Some(v);
                continue;
            };
            match e.kind() {
                Some(ServerErrorKind::Moved) => {
                    if let Some((slot, host, port)) = redirect(e.details()) {
                        let n = self.node_index(&host, port);
                        self.owner[usize::from(slot)] = n;
                    }
                    self.stale = true;
                    again.push((i, None));
                }
                Some(ServerErrorKind::Ask) => match redirect(e.details()) {
                    Some((_, host, port)) => {
                        let n = self.node_index(&host, port);
                        again.push((i, Some(n)));
                    }
                    None => values[i] = Some(v),
                },
                Some(ServerErrorKind::TryAgain) | Some(ServerErrorKind::ClusterDown) => {
                    backoff = true;
                    again.push((i, None));
                }
                _ => values[i] = Some(v),
            }
        }
        if waited {
            match self.conn(node)?.recv_response()? {
                Value::Int(n) => *acked_min = Some(acked_min.map_or(n, |m| m.min(n))),
                other => {
                    return Err(RedisError::from((
                        ErrorKind::Parse,
                        "unexpected WAIT answer",
                        format!("{other:?}"),
                    )))
                }
            }
        }
        Ok(backoff)
    }

    /// Sends one command to every master in turn: the first master's
    /// answer, or the first error.
    fn broadcast(&mut self, bytes: &[u8]) -> Result<Value, RedisError> {
        if self.stale {
            let _ = self.refresh();
        }
        let mut first = None;
        for i in self.master_indexes() {
            let answer = self.conn(i).and_then(|c| {
                c.send_packed_command(bytes)?;
                c.recv_response()
            });
            let v = match answer {
                Ok(v) => v,
                Err(e) => {
                    self.drop_conn(i);
                    self.stale = true;
                    return Err(e);
                }
            };
            if let Value::ServerError(_) = v {
                return Ok(v);
            }
            first.get_or_insert(v);
        }
        first.ok_or_else(|| RedisError::from((ErrorKind::Io, "the cluster has no master")))
    }

    /// A plain connection to the first master (or seed) that answers, for
    /// what is not routed by key (a subscriber: the cluster's bus carries
    /// every `PUBLISH` to every node).
    pub fn any_node(&mut self) -> Result<Connection, RedisError> {
        let mut last = RedisError::from((ErrorKind::Io, "no cluster node answered"));
        let mut addrs: Vec<(String, u16)> = self
            .master_indexes()
            .iter()
            .filter_map(|&i| self.nodes.get(usize::from(i)))
            .map(|n| (n.host.clone(), n.port))
            .collect();
        for seed in &self.target.cluster_nodes {
            if let Some((h, p)) = split_host_port(seed) {
                addrs.push((h.to_string(), p));
            }
        }
        for (host, port) in addrs {
            match self
                .target
                .client_at(Some((&host, port)))
                .and_then(|c| open(&c, self.timeout))
            {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
