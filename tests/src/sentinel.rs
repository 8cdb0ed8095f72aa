//! Replication for the tests: a replica of a test Redis
//! ([`RedisServer::start_replica_of`]), and a replicated Redis watched by
//! real Sentinels: one master, its replicas
//! and three `redis-sentinel` processes (quorum 2), each on a free
//! loopback port, so a test can SIGKILL the master and watch the
//! Sentinels promote a replica. The replicas reach their first master
//! through a [`LinkHold`], which can hold back the replication stream: a
//! replica behind its master, as across a slow link, without which one box
//! replicates too fast for a master's loss to lose anything.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{free_port, wait_for_port, Proc, RedisServer};

/// The master's name in the Sentinels' configuration.
pub const MASTER_NAME: &str = "seckill";
const SENTINELS: usize = 3;
/// How long a master may be silent before a Sentinel calls it down.
const DOWN_AFTER_MS: u64 = 1_000;

/// One `redis-server` of the set.
struct Node {
    port: u16,
    child: Proc,
    /// The master it replicates at its first start (`None`: the master).
    replica_of: Option<u16>,
}

/// A master, replicas and three Sentinels.
pub struct SentinelSet {
    nodes: Vec<Node>,
    sentinels: Vec<(u16, Proc)>,
    /// Between the first master and its replicas.
    link: LinkHold,
    dir: tempfile::TempDir,
}

impl SentinelSet {
    /// A master and `replicas` replicas, in sync, and three Sentinels
    /// that agree on the master.
    pub fn start(replicas: usize) -> SentinelSet {
        let dir = tempfile::tempdir().expect("temp dir");
        let master = free_port();
        let link = LinkHold::start(master);
        let mut set = SentinelSet {
            nodes: Vec::new(),
            sentinels: Vec::new(),
            link,
            dir,
        };
        set.nodes.push(Node {
            port: master,
            child: Proc::default(),
            replica_of: None,
        });
        for _ in 0..replicas {
            set.nodes.push(Node {
                port: free_port(),
                child: Proc::default(),
                replica_of: Some(set.link.port),
            });
        }
        for i in 0..set.nodes.len() {
            set.start_node(i);
        }
        set.wait_replicas_online(replicas, Duration::from_secs(20));
        for n in 0..SENTINELS {
            let port = free_port();
            let conf = set.dir.path().join(format!("sentinel-{n}.conf"));
            // A Sentinel rewrites its configuration file: one each.
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {MASTER_NAME} 10000\n\
                 sentinel parallel-syncs {MASTER_NAME} 2\n",
                dir = set.dir.path().display()
            );
            std::fs::write(&conf, text).expect("sentinel.conf");
            let child = sentinel_command(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-sentinel on PATH (apt-get install redis-sentinel)");
            let mut p = Proc::default();
            p.set(child);
            assert!(
                wait_for_port(port, Duration::from_secs(10)),
                "sentinel did not listen on {port}"
            );
            set.sentinels.push((port, p));
        }
        // Every Sentinel knows the replicas and its peers before a test
        // may count on a failover.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = set.sentinels.iter().all(|(port, _)| {
                let info = sentinel_master_info(*port);
                field(&info, "num-slaves") == Some(replicas.to_string())
                    && field(&info, "num-other-sentinels") == Some((SENTINELS - 1).to_string())
            });
            if ready {
                return set;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the Sentinels did not see every replica and each other");
    }

    fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &node.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(m) = node.replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &m.to_string()]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        node.child.set(child);
        assert!(
            wait_for_port(node.port, Duration::from_secs(10)),
            "redis-server did not listen on {}",
            node.port
        );
    }

    /// `host:port,…` of the Sentinels (`redis_sentinels`).
    pub fn sentinels(&self) -> String {
        self.sentinels
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The URL of the node on `port`.
    pub fn url_of(port: u16) -> String {
        format!("redis://127.0.0.1:{port}/")
    }

    /// The port of the master the Sentinels name now.
    pub fn master_port(&self) -> u16 {
        let port = self.sentinels[0].0;
        let mut c = connect(port);
        let (_, p): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER_NAME)
            .query(&mut c)
            .expect("sentinel answers");
        p
    }

    /// SIGKILLs the node on `port` (no shutdown, no last write).
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            n.child.kill();
        }
    }

    /// Holds back (`true`) or lets through the first master's
    /// replication stream: its replicas stop receiving its writes (and so
    /// acknowledging them); what is held is delivered when let through, and
    /// lost if the master dies first.
    pub fn hold_replication(&self, hold: bool) {
        self.link.hold(hold);
    }

    /// Starts the node on `port` again with its first configuration (an
    /// old master comes back as a master; the Sentinels turn it into a
    /// replica of the new one).
    pub fn restart(&mut self, port: u16) {
        if let Some(i) = self.nodes.iter().position(|n| n.port == port) {
            self.nodes[i].child.kill();
            self.start_node(i);
        }
    }

    /// Waits until the Sentinels name a master other than `old` and it
    /// answers as one; its port.
    pub fn wait_failover(&self, old: u16, timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let now = self.master_port();
            if now != old && role(now).as_deref() == Some("master") {
                return now;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no failover within {timeout:?}");
    }

    /// Waits until the current master has `n` replicas online.
    pub fn wait_replicas_online(&self, n: usize, timeout: Duration) {
        // Before the Sentinels start, the first node is the master.
        let port = if self.sentinels.is_empty() {
            self.nodes[0].port
        } else {
            self.master_port()
        };
        wait_replicas_online(port, n, timeout);
    }
}

/// `redis-sentinel FILE`, or `redis-server FILE --sentinel` where only the
/// server is installed (the same binary).
fn sentinel_command(conf: &std::path::Path) -> Command {
    let packaged = Command::new("redis-sentinel")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if packaged {
        let mut c = Command::new("redis-sentinel");
        c.arg(conf);
        c
    } else {
        let mut c = Command::new("redis-server");
        c.arg(conf).arg("--sentinel");
        c
    }
}

fn connect(port: u16) -> redis::Connection {
    redis::Client::open(SentinelSet::url_of(port))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .expect("connect")
}

/// `ROLE` of the node on `port`, if it answers.
fn role(port: u16) -> Option<String> {
    let c = redis::Client::open(SentinelSet::url_of(port)).ok()?;
    let mut c = c
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    let v: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).ok()?;
    redis::from_redis_value_ref(v.first()?).ok()
}

/// `SENTINEL master NAME` as field/value pairs.
fn sentinel_master_info(port: u16) -> Vec<(String, String)> {
    let Ok(c) = redis::Client::open(SentinelSet::url_of(port)) else {
        return Vec::new();
    };
    let Ok(mut c) = c.get_connection_with_timeout(Duration::from_millis(500)) else {
        return Vec::new();
    };
    let flat: Vec<String> = redis::cmd("SENTINEL")
        .arg("master")
        .arg(MASTER_NAME)
        .query(&mut c)
        .unwrap_or_default();
    flat.chunks(2)
        .filter_map(|kv| match kv {
            [k, v] => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

fn field(info: &[(String, String)], key: &str) -> Option<String> {
    info.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// A TCP relay between replicas and their master that can hold back the
/// master's bytes (kept, in order) and drops what it holds when the master
/// goes away — the writes a dead master never got to send.
pub struct LinkHold {
    pub port: u16,
    held: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl LinkHold {
    pub fn start(upstream: u16) -> LinkHold {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let held = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (Arc::clone(&held), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((down, _)) => {
                        if let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) {
                            relay(down, up, Arc::clone(&h));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        LinkHold { port, held, stop }
    }

    pub fn hold(&self, hold: bool) {
        self.held.store(hold, Ordering::SeqCst);
    }
}

impl Drop for LinkHold {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Two pumps: replica → master as is; master → replica through the hold.
fn relay(down: TcpStream, up: TcpStream, held: Arc<AtomicBool>) {
    let (Ok(mut down_w), Ok(mut up_r)) = (down.try_clone(), up.try_clone()) else {
        return;
    };
    let (mut down_r, mut up_w) = (down, up);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut down_r, &mut up_w);
        let _ = up_w.shutdown(std::net::Shutdown::Both);
    });
    std::thread::spawn(move || {
        let _ = up_r.set_read_timeout(Some(Duration::from_millis(20)));
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 16 << 10];
        loop {
            match up_r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => kept.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
            if !held.load(Ordering::SeqCst) && !kept.is_empty() {
                if down_w.write_all(&kept).is_err() {
                    break;
                }
                kept.clear();
            }
        }
        // The master is gone: what was held never reaches the replica.
        let _ = down_w.shutdown(std::net::Shutdown::Both);
    });
}

impl RedisServer {
    /// A server of our own replicating `master`, returned once the master
    /// sees it online.
    pub fn start_replica_of(master: &RedisServer) -> RedisServer {
        let replica = RedisServer::start();
        let _: () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(master.port)
            .query(&mut replica.connection())
            .expect("replicaof");
        wait_replicas_online(master.port, 1, Duration::from_secs(20));
        replica
    }
}

/// Waits until the Redis on `port` has `n` replicas online.
pub fn wait_replicas_online(port: u16, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let online = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut c| {
                redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut c)
            })
            .map(|info| {
                info.lines()
                    .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                    .count()
            })
            .unwrap_or(0);
        if online >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the Redis on {port} did not get {n} replicas online");
}
