//! The invariant checker: counts from Redis (the stock hash), from the
//! Kafka topic and from every answer the clients got, and says what broke.
//! Used by the load generator and by the end-to-end and chaos tests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

use seckill_io::kafka::{self, OrderMessage};
use seckill_io::redis::StockHash;

/// One answer a client got.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub item_id: String,
    pub user_id: String,
    pub request_id: String,
    /// HTTP status (0: no answer at all).
    pub http: u16,
    /// The `status` field, or the `error` code of an error answer.
    pub status: String,
    pub order_id: Option<String>,
    pub latency_us: u64,
    /// The purchase token the client used (sent again on a retry).
    #[serde(skip)]
    pub token: Option<std::sync::Arc<str>>,
}

/// What the checker found. `violations` empty means every invariant held.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub successes: u64,
    pub distinct_success_orders: u64,
    pub kafka_orders: u64,
    pub kafka_distinct_orders: u64,
    pub kafka_duplicates: u64,
    pub pending: u64,
    pub locked_plus_sold: i64,
    pub violations: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks invariants 1–3 of the design for one sale.
///
/// - No oversell: for every item, `locked + sold ≤ total` and
///   `available + locked + sold = total`.
/// - Every `success` has one order id, distinct from every other, and that
///   order is on Kafka; Kafka holds no order nobody won.
/// - Nobody holds more than `per_user_limit` wins of an item.
/// - Wins counted by Redis equal the successes answered (when every answer
///   arrived).
pub fn check(
    answers: &[Answer],
    stock: &BTreeMap<String, StockHash>,
    orders: &[OrderMessage],
    per_user_limit: u32,
) -> CheckReport {
    let mut r = CheckReport::default();
    let mut success_ids: HashMap<&str, &Answer> = HashMap::new();
    let mut by_request: HashMap<&str, &str> = HashMap::new();
    let mut wins_per_user: HashMap<(&str, &str), u32> = HashMap::new();
    let mut wins_per_item: HashMap<&str, i64> = HashMap::new();
    let mut counted_requests: HashSet<&str> = HashSet::new();
    for a in answers {
        if a.status == "pending" {
            r.pending += 1;
        }
        if a.status != "success" {
            continue;
        }
        let Some(oid) = a.order_id.as_deref() else {
            r.violations.push(format!(
                "request {} answered success without an order id",
                a.request_id
            ));
            continue;
        };
        r.successes += 1;
        // The same request id answered twice (a retry) must carry the same id.
        if let Some(prev) = by_request.insert(&a.request_id, oid) {
            if prev != oid {
                r.violations.push(format!(
                    "request {} got two order ids: {prev} and {oid}",
                    a.request_id
                ));
            }
        }
        if !counted_requests.insert(&a.request_id) {
            continue;
        }
        if let Some(other) = success_ids.insert(oid, a) {
            if other.request_id != a.request_id {
                r.violations.push(format!(
                    "order id {oid} given to two requests ({} and {})",
                    other.request_id, a.request_id
                ));
            }
        }
        *wins_per_user.entry((&a.item_id, &a.user_id)).or_insert(0) += 1;
        *wins_per_item.entry(&a.item_id).or_insert(0) += 1;
    }
    r.distinct_success_orders = success_ids.len() as u64;
    for ((item, user), n) in &wins_per_user {
        if *n > per_user_limit {
            r.violations.push(format!(
                "user {user} won item {item} {n} times (limit {per_user_limit})"
            ));
        }
    }
    for (item, s) in stock {
        r.locked_plus_sold += s.locked + s.sold;
        if s.locked + s.sold > s.total || s.available < 0 {
            r.violations.push(format!(
                "item {item} oversold: total {} locked {} sold {} available {}",
                s.total, s.locked, s.sold, s.available
            ));
        }
        if s.available + s.locked + s.sold != s.total {
            r.violations.push(format!(
                "item {item} does not add up: {} + {} + {} != {}",
                s.available, s.locked, s.sold, s.total
            ));
        }
        let won = wins_per_item.get(item.as_str()).copied().unwrap_or(0);
        let unanswered = answers
            .iter()
            .filter(|a| a.item_id == *item && a.http == 0)
            .count();
        if unanswered == 0 && r.pending == 0 && won != s.locked + s.sold {
            r.violations.push(format!(
                "item {item}: Redis holds {} units, clients were told of {won} wins",
                s.locked + s.sold
            ));
        }
    }
    let mut kafka_ids: HashSet<&str> = HashSet::new();
    for o in orders {
        r.kafka_orders += 1;
        if !kafka_ids.insert(&o.order_id) {
            r.kafka_duplicates += 1;
        }
        if let Some(a) = success_ids.get(o.order_id.as_str()) {
            if a.request_id != o.request_id || a.user_id != o.user_id {
                r.violations.push(format!(
                    "order {} on Kafka belongs to {}/{}, answered to {}/{}",
                    o.order_id, o.request_id, o.user_id, a.request_id, a.user_id
                ));
            }
        }
    }
    r.kafka_distinct_orders = kafka_ids.len() as u64;
    for oid in success_ids.keys() {
        if !kafka_ids.contains(oid) {
            r.violations.push(format!(
                "order {oid} was answered success but is not on Kafka"
            ));
        }
    }
    let total_locked: i64 = stock.values().map(|s| s.locked + s.sold).sum();
    if r.kafka_distinct_orders as i64 > total_locked {
        r.violations.push(format!(
            "Kafka holds {} distinct orders but Redis only {total_locked} units",
            r.kafka_distinct_orders
        ));
    }
    r.violations.sort();
    r.violations.dedup();
    if r.violations.len() > VIOLATIONS_SHOWN {
        let more = r.violations.len() - VIOLATIONS_SHOWN;
        r.violations.truncate(VIOLATIONS_SHOWN);
        r.violations.push(format!("… and {more} more"));
    }
    r
}

/// Violations listed in full; past this, a count.
const VIOLATIONS_SHOWN: usize = 20;

/// Reads every order of `sale_id` on `seckill.orders`, from the beginning,
/// until at least `expected` arrived and the topic stayed quiet for a
/// second, or `timeout` passed.
pub fn read_orders(
    brokers: &str,
    sale_id: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<OrderMessage>, rdkafka::error::KafkaError> {
    read_orders_on(brokers, kafka::ORDERS_TOPIC, sale_id, expected, timeout)
}

/// [`read_orders`] on an orders topic of another name.
pub fn read_orders_on(
    brokers: &str,
    topic: &str,
    sale_id: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<OrderMessage>, rdkafka::error::KafkaError> {
    read_json(
        brokers,
        topic,
        |o: &OrderMessage| o.sale_id == sale_id,
        expected,
        timeout,
    )
}

/// An event of `seckill.order-events`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct OrderEvent {
    /// `paid`, `cancelled` or `expired`.
    pub event: String,
    pub order_id: String,
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
    pub quantity: u32,
    pub request_id: String,
    pub at_ms: u64,
}

/// Reads the order events of one sale (as [`read_orders`]).
pub fn read_order_events(
    brokers: &str,
    sale_id: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<OrderEvent>, rdkafka::error::KafkaError> {
    read_json(
        brokers,
        kafka::ORDER_EVENTS_TOPIC,
        |e: &OrderEvent| e.sale_id == sale_id,
        expected,
        timeout,
    )
}

fn read_json<T: serde::de::DeserializeOwned>(
    brokers: &str,
    topic: &str,
    keep: impl Fn(&T) -> bool,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<T>, rdkafka::error::KafkaError> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    // A reader that sees nothing for this long while messages are missing
    // starts over with a new consumer (and reads from the beginning again):
    // one that asked a broker that had just come back empty may hold stale
    // partition metadata.
    const FRESH_START_AFTER: Duration = Duration::from_secs(10);
    while Instant::now() < deadline {
        out.clear();
        if read_once(
            brokers,
            topic,
            &keep,
            expected,
            deadline,
            FRESH_START_AFTER,
            &mut out,
        )? {
            break;
        }
    }
    Ok(out)
}

/// One consumer's read of `topic` from the beginning; true when it is
/// done (enough messages, or the deadline), false to start over.
fn read_once<T: serde::de::DeserializeOwned>(
    brokers: &str,
    topic: &str,
    keep: &impl Fn(&T) -> bool,
    expected: usize,
    deadline: Instant,
    fresh_start_after: Duration,
    out: &mut Vec<T>,
) -> Result<bool, rdkafka::error::KafkaError> {
    let consumer: BaseConsumer = kafka::base_config(brokers, &[])
        .set("group.id", format!("seckill-check-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    // The topic may not exist yet (a broker that just came back empty gets
    // it re-created by the daemon): wait for its partitions.
    let mut tpl = TopicPartitionList::new();
    loop {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)?;
            }
        }
        if tpl.count() > 0 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    consumer.assign(&tpl)?;
    let mut last_msg = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_msg = Instant::now();
                if let Some(Ok(o)) = m.payload().map(serde_json::from_slice::<T>) {
                    if keep(&o) {
                        out.push(o);
                    }
                }
            }
            Some(Err(e)) => tracing::debug!(error = %e, "consumer error"),
            None => {
                if out.len() >= expected && last_msg.elapsed() > Duration::from_secs(1) {
                    return Ok(true);
                }
                // Only with time left for the fresh one to read it all.
                let left = deadline.saturating_duration_since(Instant::now());
                if out.len() < expected
                    && last_msg.elapsed() > fresh_start_after
                    && left > fresh_start_after
                {
                    tracing::debug!(topic, read = out.len(), "nothing new: a fresh consumer");
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}
