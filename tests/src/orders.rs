//! The order service in tests: `seckill-orders` as a child process (so a
//! test can SIGKILL it mid-batch), its subcommands, and waiting on its
//! rows.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::sql::SqlServer;
use crate::{free_port, workspace_bin, Broker, Proc, RedisServer};

/// librdkafka properties for every client of a test stack: one message per
/// record batch. tansu (the test broker) fetches from the first batch
/// *starting* at or after the asked offset, so a consumer resuming in the
/// middle of a batch (after a pause, a restart or a rebalance) would skip
/// the batch's rest; a real Kafka returns the batch that holds the offset.
/// docs/orders.md ("Brokers") says more.
pub const ONE_MESSAGE_BATCHES: &str = "batch.num.messages=1";

/// The service's environment for a test: its dependencies, a free port,
/// a short session timeout (a killed consumer's partitions move within
/// seconds), short retry delays.
pub fn orders_env(redis: &RedisServer, broker: &Broker, db_url: &str) -> Vec<(String, String)> {
    [
        ("SECKILL_REDIS_URL", redis.url()),
        ("SECKILL_KAFKA_BROKERS", broker.brokers()),
        ("SECKILL_DATABASE_URL", db_url.to_string()),
        ("SECKILL_ORDERS_LISTEN", format!("127.0.0.1:{}", free_port())),
        (
            "SECKILL_KAFKA_PROPERTIES",
            format!("{ONE_MESSAGE_BATCHES},session.timeout.ms=6000,heartbeat.interval.ms=500,debug=cgrp"),
        ),
        ("SECKILL_KAFKA_PARTITIONS", "3".to_string()),
        ("SECKILL_RETRY_DELAY_MS", "200".to_string()),
        ("SECKILL_RETRY_BACKOFF_MAX_MS", "1000".to_string()),
        ("SECKILL_LOG", "info,librdkafka=debug,rdkafka=debug".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Sets `key` in `env` (replacing it).
pub fn set_env(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
}

/// `seckill-orders run` as a child process.
pub struct OrdersProcess {
    child: Proc,
    pub port: u16,
}

impl OrdersProcess {
    /// Starts the service and waits until its HTTP side answers.
    pub fn start(env: &[(String, String)], log: &Path) -> OrdersProcess {
        let listen = env
            .iter()
            .find(|(k, _)| k == "SECKILL_ORDERS_LISTEN")
            .map(|(_, v)| v.clone())
            .expect("SECKILL_ORDERS_LISTEN in the environment");
        let port: u16 = listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("orders log");
        let child = Command::new(workspace_bin("seckill-orders"))
            .arg("run")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn seckill-orders");
        let p = OrdersProcess {
            child: Proc(Some(child)),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(port, "/livez").is_none() {
            assert!(
                Instant::now() < deadline,
                "seckill-orders did not serve on {port}; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// `GET path`: status and body, `None` when nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        get(self.port, path)
    }

    /// SIGKILL: mid-batch, no commit, no leaving the group.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGTERM and wait; whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        self.child.terminate()
    }
}

/// A plain HTTP/1.0 GET on loopback.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Runs `seckill-orders <args>` to its end.
pub fn orders_command(env: &[(String, String)], args: &[&str]) -> Output {
    Command::new(workspace_bin("seckill-orders"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("SECKILL_LOG", "warn")
        .output()
        .expect("run seckill-orders")
}

/// Waits (up to `within`) until `sql` counts `want`; the last count.
pub fn wait_count(db: &SqlServer, name: &str, sql: &str, want: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let n = db
            .exec_in(name, sql)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1);
        if n == want || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A message as it is on the broker: key and payload.
pub type RawMessage = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Every message of `topic`.
pub fn read_raw(brokers: &str, topic: &str) -> Vec<RawMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = seckill_io::kafka::base_config(brokers, &[])
        .set("group.id", format!("test-raw-{}", free_port()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut left = 0i64;
    for t in md.topics() {
        for p in t.partitions() {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            left += hi - lo;
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < left && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
        }
    }
    out
}

/// Produces `msgs` to `topic` again, one message per record batch.
pub fn produce_raw(brokers: &str, topic: &str, msgs: &[RawMessage]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = seckill_io::kafka::base_config(brokers, &[])
        .set("batch.num.messages", "1")
        .create()
        .expect("producer");
    for (k, v) in msgs {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(k) = k {
            r = r.key(k.as_slice());
        }
        if let Some(v) = v {
            r = r.payload(v.as_slice());
        }
        let mut r = r;
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    p.poll(Duration::from_millis(10));
                    r = back;
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// A series of the service's `/metrics` (`family{labels}`), 0 when the
/// service has none of it yet; a service that does not answer fails the
/// test.
pub fn metric(p: &OrdersProcess, series: &str) -> f64 {
    let Some((200, text)) = p.get("/metrics") else {
        panic!("seckill-orders on {} answers no /metrics", p.port);
    };
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The payload of the message at `offset` of `topic`'s `partition`.
pub fn read_at(brokers: &str, topic: &str, partition: i32, offset: i64) -> Option<Vec<u8>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = seckill_io::kafka::base_config(brokers, &[])
        .set("group.id", format!("test-at-{}", free_port()))
        .set("enable.auto.commit", "false")
        .create()
        .ok()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .ok()?;
    consumer.assign(&tpl).ok()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            if m.offset() == offset {
                return m.payload().map(<[u8]>::to_vec);
            }
        }
    }
    None
}

/// The parked entries `seckill-orders dlq list --json` prints.
pub fn dlq_list(env: &[(String, String)]) -> Vec<serde_json::Value> {
    let out = orders_command(env, &["dlq", "list", "--json"]);
    assert!(
        out.status.success(),
        "dlq list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Nothing left over: no dead letter, no event waiting for its order.
pub fn assert_clean(db: &SqlServer, name: &str) {
    assert_eq!(
        db.count(name, "SELECT COUNT(*) FROM seckill_dlq"),
        0,
        "dead letters"
    );
    assert_eq!(
        db.count(name, "SELECT COUNT(*) FROM seckill_order_events_waiting"),
        0,
        "events waiting"
    );
}
