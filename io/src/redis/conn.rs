//! Connections to "Redis", whatever it is: a server, the master the
//! Sentinels name, or a Redis Cluster ([`Connector`] makes them). The
//! admin side's code is written once against [`RedisConn`]: a command
//! goes to the master of its key's slot, a pipeline is split per master
//! and its answers come back in order (see `cluster`). Transactions
//! (`MULTI`) are not used with a cluster: what must be atomic is one Lua
//! script on one item's keys.

use std::sync::Arc;
use std::time::Duration;

use redis::{Client, Cmd, Connection, ConnectionLike, ErrorKind, RedisError, RedisResult, Value};

use super::cluster::{Cluster, Route, Routed};
use super::resp;
use super::slots::slot_of;
use super::target::{open, RedisTarget};

/// A connection to a server, or to every master of a cluster.
pub enum RedisConn {
    Single(Connection),
    Cluster(Box<Cluster>),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisConn::Single(_) => f.write_str("RedisConn::Single"),
            RedisConn::Cluster(c) => c.fmt(f),
        }
    }
}

/// Where a command (its arguments) goes in a cluster.
pub fn route(args: &[&[u8]]) -> Route {
    let Some(name) = args.first() else {
        return Route::Any;
    };
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if is("EVAL") || is("EVALSHA") || is("EVAL_RO") || is("EVALSHA_RO") || is("FCALL") {
        let keys = args
            .get(2)
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        return match args.get(3) {
            Some(key) if keys > 0 => Route::Slot(slot_of(key)),
            _ => Route::Any,
        };
    }
    if is("SCRIPT") || is("PING") || is("FUNCTION") {
        return Route::AllMasters;
    }
    if is("PUBLISH") || is("TIME") || is("ECHO") || is("INFO") || is("CLUSTER") {
        return Route::Any;
    }
    match args.get(1) {
        Some(key) => Route::Slot(slot_of(key)),
        None => Route::Any,
    }
}

impl RedisConn {
    /// Runs the packed commands of `buf` over the cluster, one answer each.
    fn cluster_commands(c: &mut Cluster, buf: &[u8]) -> RedisResult<Vec<Value>> {
        let cmds = resp::split(buf).ok_or_else(|| {
            RedisError::from((
                ErrorKind::Client,
                "a command the cluster router cannot read",
            ))
        })?;
        let routed: Vec<Routed<'_>> = cmds
            .iter()
            .map(|p| {
                let args: Vec<&[u8]> = p.args.iter().map(|r| &buf[r.clone()]).collect();
                Routed {
                    bytes: &buf[p.whole.clone()],
                    route: route(&args),
                }
            })
            .collect();
        Ok(c.run(&routed, None)?.values)
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => Self::cluster_commands(c, cmd)?
                .pop()
                .ok_or_else(|| RedisError::from((ErrorKind::Client, "no command sent"))),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(_) if offset > 0 => Err(RedisError::from((
                ErrorKind::Client,
                "a transaction (MULTI) is not sent to a Redis Cluster",
            ))),
            RedisConn::Cluster(c) => {
                let mut v = Self::cluster_commands(c, cmd)?;
                v.truncate(count);
                Ok(v)
            }
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            RedisConn::Single(c) => c.req_command(cmd),
            RedisConn::Cluster(_) => self.req_packed_command(&cmd.get_packed_command()),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(_) => 0,
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            RedisConn::Single(c) => c.check_connection(),
            RedisConn::Cluster(_) => redis::cmd("PING").query::<String>(self).is_ok(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            RedisConn::Single(c) => c.is_open(),
            RedisConn::Cluster(c) => c.is_open(),
        }
    }
}

/// Makes the connections of one target. Cheap to clone.
///
/// With cluster nodes, a connection is a [`Cluster`]: the slot map and one
/// connection per master, each command sent where its key lives.
///
/// With Sentinels, every new connection asks them in turn
/// (`SENTINEL get-master-addr-by-name`) and then checks with `ROLE` that
/// the server it was sent to is a master: a connection is only ever made
/// to the master the Sentinels elected last, so a daemon follows a
/// failover by reconnecting (each user of a connection drops it on an
/// error, and Sentinel disconnects the clients of a master it demotes).
/// Written here rather than taken from the `redis` crate's `sentinel`
/// module, which connects without a timeout and, with native TLS, without
/// the target's certificates.
#[derive(Clone)]
pub struct Connector {
    /// The client when there are no Sentinels.
    direct: Option<Client>,
    target: Arc<RedisTarget>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.target.fmt(f)
    }
}

impl Connector {
    /// What makes this target's connections (a Sentinel target asks
    /// where the master is for every new connection, a cluster reads its
    /// slot map).
    pub fn new(target: &RedisTarget) -> Result<Connector, RedisError> {
        // Checks the URL and the certificates now, not at the first call.
        let direct = target.client()?;
        if target.is_sentinel() && target.master_name.is_empty() {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "Sentinels are set without the master's name",
            )));
        }
        if target.is_sentinel() && target.is_cluster() {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "Sentinels and cluster nodes exclude each other (a cluster fails over by itself)",
            )));
        }
        Ok(Connector {
            direct: (!target.is_sentinel() && !target.is_cluster()).then_some(direct),
            target: Arc::new(target.clone()),
        })
    }

    /// A new connection; connect, read and write bounded by `timeout`
    /// (with Sentinels, each step: a Sentinel that does not answer costs
    /// one timeout before the next is asked).
    pub fn connect(&self, timeout: Duration) -> Result<RedisConn, RedisError> {
        if self.target.is_cluster() {
            return Cluster::connect(Arc::clone(&self.target), timeout)
                .map(|c| RedisConn::Cluster(Box::new(c)));
        }
        self.connect_server(timeout).map(RedisConn::Single)
    }

    /// A plain connection to one server: the server, the master the
    /// Sentinels name, or any node of a cluster (for a subscriber: a
    /// cluster carries every `PUBLISH` to every node).
    pub fn connect_server(&self, timeout: Duration) -> Result<Connection, RedisError> {
        match &self.direct {
            Some(client) => open(client, timeout),
            None if self.target.is_cluster() => {
                Cluster::connect(Arc::clone(&self.target), timeout)?.any_node()
            }
            None => self.via_sentinels(timeout),
        }
    }

    /// Whether this connector speaks to a cluster.
    pub fn is_cluster(&self) -> bool {
        self.target.is_cluster()
    }

    /// Whether a kept connection may still be used: it answers, and with
    /// Sentinels it still leads to a master (a failover may have turned
    /// it into a replica that answers every write `READONLY`).
    pub fn still_good(&self, conn: &mut RedisConn) -> bool {
        match conn {
            RedisConn::Single(c) if self.direct.is_none() => role(c).is_ok_and(|r| r == "master"),
            other => other.check_connection(),
        }
    }

    fn via_sentinels(&self, timeout: Duration) -> Result<Connection, RedisError> {
        let t = &self.target;
        let mut last = RedisError::from((ErrorKind::Io, "no Sentinel answered"));
        for sentinel in &t.sentinels {
            let addr = match master_addr(sentinel, &t.master_name, timeout) {
                Ok(Some(addr)) => addr,
                Ok(None) => {
                    last = RedisError::from((
                        ErrorKind::Io,
                        "a Sentinel knows no master of this name",
                        format!("{sentinel}: {}", t.master_name),
                    ));
                    continue;
                }
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let client = match t.client_at(Some((&addr.0, addr.1))) {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let mut conn = match open(&client, timeout) {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            // During a failover a Sentinel may still name the old master
            // (down, or back as a replica): never write to a replica.
            match role(&mut conn) {
                Ok(r) if r == "master" => return Ok(conn),
                Ok(r) => {
                    last = RedisError::from((
                        ErrorKind::Io,
                        "the server a Sentinel named is not a master",
                        format!("{}:{} is a {r}", addr.0, addr.1),
                    ));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Where one Sentinel says the master `name` is (`None`: it knows none).
fn master_addr(
    sentinel: &str,
    name: &str,
    timeout: Duration,
) -> Result<Option<(String, u16)>, RedisError> {
    let client = Client::open(format!("redis://{sentinel}/"))?;
    let mut conn = open(&client, timeout)?;
    redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(name)
        .query(&mut conn)
}

/// The first field of `ROLE`: `master`, `slave` or `sentinel`.
fn role(conn: &mut Connection) -> Result<String, RedisError> {
    let v = conn.req_command(&redis::cmd("ROLE"))?;
    match v {
        Value::Array(fields) => match fields.first() {
            Some(first) => Ok(redis::from_redis_value_ref(first)?),
            None => Err(RedisError::from((ErrorKind::Parse, "empty ROLE answer"))),
        },
        other => Ok(redis::from_redis_value(other)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_target_needs_the_masters_name_and_says_so_when_none_answers() {
        let mut t = RedisTarget::url("redis://127.0.0.1:1/");
        t.sentinels = vec!["127.0.0.1:1".into()];
        assert!(Connector::new(&t).is_err());
        t.master_name = "seckill".into();
        let c = Connector::new(&t).expect("connector");
        // Nothing listens on port 1.
        assert!(c.connect(Duration::from_millis(200)).is_err());
    }

    #[test]
    fn commands_are_routed_by_their_key() {
        let slot = |k: &[u8]| Route::Slot(slot_of(k));
        assert_eq!(
            route(&[b"HGET", b"seckill:{s:i}:stock", b"available"]),
            slot(b"{s:i}")
        );
        assert_eq!(
            route(&[b"EVALSHA", b"abc", b"2", b"seckill:{s:i}:stock", b"x"]),
            slot(b"s:i")
        );
        assert_eq!(route(&[b"evalsha", b"abc", b"0"]), Route::Any);
        assert_eq!(route(&[b"SCRIPT", b"LOAD", b"return 1"]), Route::AllMasters);
        assert_eq!(route(&[b"PING"]), Route::AllMasters);
        assert_eq!(route(&[b"PUBLISH", b"chan", b"m"]), Route::Any);
        assert_eq!(route(&[]), Route::Any);
    }
}
