//! A real Redis Cluster for the tests: `masters` `redis-server` processes
//! with `--cluster-enabled yes` on free loopback ports (the cluster bus on
//! a port of its own), joined by `redis-cli --cluster create`, every slot
//! assigned. Slots move with `redis-cli --cluster reshard`, as an operator
//! moves them. Start one per test binary: creating a cluster takes a few
//! seconds.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use seckill_io::redis::RedisTarget;

use crate::{free_port, Proc};

/// How long a node may be silent before the others call it failing.
const NODE_TIMEOUT_MS: u64 = 2_000;

struct Node {
    port: u16,
    child: Proc,
    alive: bool,
}

/// The masters of a Redis Cluster, killed when dropped.
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// A cluster of `masters` masters and no replicas, every slot served.
    pub fn start(masters: usize) -> RedisCluster {
        Self::start_with_replicas(masters, 0)
    }

    /// A cluster of `masters` masters, each with `replicas` replicas (a
    /// killed master's replica takes its slots over by itself).
    pub fn start_with_replicas(masters: usize, replicas: usize) -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut c = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..masters * (1 + replicas) {
            let port = free_port();
            let child = c.spawn(port);
            c.nodes.push(Node {
                port,
                child,
                alive: true,
            });
        }
        for n in &c.nodes {
            wait_ping(n.port);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &c.nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        create.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        let out = run(&mut create);
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        c.wait_ok(Duration::from_secs(30));
        if replicas > 0 {
            // Every master's replicas in sync, so a `WAIT` is answered.
            let masters: std::collections::HashSet<u16> = c
                .slot_ranges()
                .into_iter()
                .map(|(_, _, port)| port)
                .collect();
            for port in masters {
                crate::sentinel::wait_replicas_online(port, replicas, Duration::from_secs(30));
            }
        }
        c
    }

    fn spawn(&self, port: u16) -> Proc {
        let node_dir = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--cluster-port", &free_port().to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .arg("--dir")
            .arg(&node_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        let mut p = Proc::default();
        p.set(child);
        p
    }

    /// SIGKILLs the master on `port` (its slots are unserved until an
    /// operator or a replica takes them over).
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            n.child.kill();
            n.alive = false;
        }
    }

    /// Starts the node on `port` again, with its cluster configuration:
    /// a master that was replaced rejoins as its successor's replica.
    pub fn restart(&mut self, port: u16) {
        let child = self.spawn(port);
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            n.child = child;
            n.alive = true;
        }
        wait_ping(port);
    }

    /// The nodes as `host:port,…` (the daemon's `redis_cluster_nodes`).
    pub fn nodes(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// A URL of one node (scheme and credentials for the daemon).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.nodes[0].port)
    }

    /// How seckill reaches this cluster (every node a seed).
    pub fn target(&self) -> RedisTarget {
        RedisTarget {
            cluster_nodes: self
                .nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port))
                .collect(),
            ..RedisTarget::url(&self.url())
        }
    }

    /// A plain connection to the node on `port`.
    pub fn node(&self, port: u16) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect to a cluster node")
    }

    /// The node id of the master on `port`.
    pub fn node_id(&self, port: u16) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.node(port))
            .expect("CLUSTER MYID")
    }

    /// The port of the master that serves `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot = seckill_io::redis::slot_of(key.as_bytes());
        self.slot_ranges()
            .into_iter()
            .find(|(s, e, _)| (*s..=*e).contains(&slot))
            .map(|(_, _, p)| p)
            .expect("every slot is served")
    }

    /// The slot ranges and their masters' ports, as a running node sees
    /// them.
    fn slot_ranges(&self) -> Vec<(u16, u16, u16)> {
        let alive = self.nodes.iter().find(|n| n.alive).expect("a node runs");
        let mut c = self.node(alive.port);
        let v: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut c)
            .expect("slots");
        let redis::Value::Array(ranges) = v else {
            panic!("CLUSTER SLOTS: {v:?}");
        };
        ranges
            .into_iter()
            .filter_map(|r| {
                let redis::Value::Array(f) = r else {
                    return None;
                };
                let start: u16 = redis::from_redis_value_ref(f.first()?).ok()?;
                let end: u16 = redis::from_redis_value_ref(f.get(1)?).ok()?;
                let redis::Value::Array(m) = f.get(2)? else {
                    return None;
                };
                let port: u16 = redis::from_redis_value_ref(m.get(1)?).ok()?;
                Some((start, end, port))
            })
            .collect()
    }

    /// Moves `slots` slots from the master on `from` to the one on `to`
    /// with `redis-cli --cluster reshard` (their keys migrated with
    /// `MIGRATE`, as an operator does it), and waits until every node
    /// agrees again.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) -> Output {
        let out = run(Command::new("redis-cli")
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{from}"))
            .args(["--cluster-from", &self.node_id(from)])
            .args(["--cluster-to", &self.node_id(to)])
            .args(["--cluster-slots", &slots.to_string()])
            .arg("--cluster-yes"));
        self.wait_ok(Duration::from_secs(30));
        out
    }

    /// Until every node still running reports `cluster_state:ok` with
    /// every slot assigned, and agrees on the slot map.
    pub fn wait_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut ok = true;
            let mut maps = Vec::new();
            for n in self.nodes.iter().filter(|n| n.alive) {
                let Ok(mut c) = redis::Client::open(format!("redis://127.0.0.1:{}/", n.port))
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                else {
                    ok = false;
                    break;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut c)
                    .unwrap_or_default();
                ok &= info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_assigned:16384");
                let map: redis::Value = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query(&mut c)
                    .unwrap_or(redis::Value::Nil);
                maps.push(format!("{map:?}"));
            }
            maps.sort();
            maps.dedup();
            if ok && maps.len() == 1 {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not settle");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn wait_ping(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut c) = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        {
            if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server did not come up on port {port}");
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .expect("redis-cli on PATH (apt-get install redis-tools)")
}
