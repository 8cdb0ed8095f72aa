//! `seckill-orders reconcile --sale S`: the three records of a sale side
//! by side, item by item — Redis (the stock hash, the wins and how each
//! closed, the buyers' counts), the `seckill.orders` topic (every win
//! published), and the database (the rows) — and every place they
//! disagree. Meant for a quiet sale (after its end, the consumer caught
//! up): a win still on its way shows as a mismatch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use seckill_io::redis::{state_of, OrderState, RedisAdmin, StockHash};

use crate::config::Config;
use crate::message::decode_order;
use crate::store::{OrderRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("the topic was not read to its end within {0:?}")]
    TopicTimeout(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] seckill_io::config::ConfigError),
}

/// One item's figures.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ItemReport {
    pub item_id: String,
    pub stock: Option<StockHash>,
    pub redis_wins: usize,
    pub topic_orders: usize,
    pub rows: usize,
    pub rows_by_state: BTreeMap<String, usize>,
    pub mismatches: Vec<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub sale_id: String,
    pub items: Vec<ItemReport>,
}

impl Report {
    pub fn mismatches(&self) -> usize {
        self.items.iter().map(|i| i.mismatches.len()).sum()
    }

    /// The summary table, then every mismatch.
    pub fn render(&self) -> String {
        let mut s = format!(
            "sale {}\n{:<20} {:>8} {:>9} {:>7} {:>7} {:>10} {:>8} {:>7} {:>10}\n",
            self.sale_id,
            "item",
            "total",
            "available",
            "locked",
            "sold",
            "redis wins",
            "topic",
            "rows",
            "mismatches"
        );
        for i in &self.items {
            let st = i.stock.unwrap_or_default();
            s.push_str(&format!(
                "{:<20} {:>8} {:>9} {:>7} {:>7} {:>10} {:>8} {:>7} {:>10}\n",
                i.item_id,
                st.total,
                st.available,
                st.locked,
                st.sold,
                i.redis_wins,
                i.topic_orders,
                i.rows,
                i.mismatches.len()
            ));
        }
        for i in &self.items {
            for m in &i.mismatches {
                s.push_str(&format!("mismatch {}: {m}\n", i.item_id));
            }
        }
        s.push_str(&format!("{} mismatch(es)\n", self.mismatches()));
        s
    }
}

/// Every win of `sale` on the orders topic, by item: order id → quantity.
fn topic_orders(
    cfg: &Config,
    sale: &str,
    timeout: Duration,
) -> Result<HashMap<String, HashMap<String, u32>>, ReconcileError> {
    let consumer: BaseConsumer =
        seckill_io::kafka::base_config(&cfg.kafka_brokers, &cfg.kafka_properties.0)
            .set(
                "group.id",
                format!("seckill-reconcile-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .create()?;
    let topic = cfg.kafka_orders_topic.as_str();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for t in md.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            if high > low {
                ends.insert(p.id(), high);
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            }
        }
    }
    let mut out: HashMap<String, HashMap<String, u32>> = HashMap::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(ReconcileError::TopicTimeout(timeout));
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        if let Some(Ok(o)) = m.payload().map(decode_order) {
            if o.sale_id == sale {
                out.entry(o.item_id)
                    .or_default()
                    .insert(o.order_id, o.quantity);
            }
        }
        if ends
            .get(&m.partition())
            .is_some_and(|end| m.offset() + 1 >= *end)
        {
            ends.remove(&m.partition());
        }
    }
    Ok(out)
}

/// The state Redis says an order is in.
fn redis_state(closed: &HashMap<String, String>, order: &str) -> OrderState {
    closed
        .get(order)
        .and_then(|c| state_of(c).0)
        .unwrap_or(OrderState::AwaitingPayment)
}

pub async fn reconcile(cfg: &Config, store: &Store, sale: &str) -> Result<Report, ReconcileError> {
    let redis = RedisAdmin::new(cfg.redis_target()?, cfg.redis_timeout())?;
    let rows = store.sale_rows(sale).await?;
    let (cfg2, sale2) = (cfg.clone(), sale.to_string());
    let topic =
        tokio::task::spawn_blocking(move || topic_orders(&cfg2, &sale2, Duration::from_secs(60)))
            .await
            .map_err(|_| ReconcileError::TopicTimeout(Duration::from_secs(60)))??;
    let mut rows_by_item: HashMap<&str, Vec<&OrderRow>> = HashMap::new();
    for r in &rows {
        rows_by_item.entry(&r.item_id).or_default().push(r);
    }
    let mut items: BTreeSet<String> = redis.round_items(sale)?.into_iter().collect();
    items.extend(rows_by_item.keys().map(|s| s.to_string()));
    items.extend(topic.keys().cloned());
    let mut report = Report {
        sale_id: sale.to_string(),
        items: Vec::new(),
    };
    for item in items {
        let stock = redis.stock(sale, &item)?;
        let wins = redis.wins(sale, &item)?;
        let closed = redis.closed_orders(sale, &item)?;
        let buyer_units = redis.buyer_units(sale, &item)?;
        let on_topic = topic.get(&item).cloned().unwrap_or_default();
        let item_rows = rows_by_item.get(item.as_str()).cloned().unwrap_or_default();
        let mut r = ItemReport {
            item_id: item.clone(),
            stock,
            redis_wins: wins.len(),
            topic_orders: on_topic.len(),
            rows: item_rows.len(),
            ..ItemReport::default()
        };
        for row in &item_rows {
            *r.rows_by_state.entry(row.state.clone()).or_default() += 1;
        }
        let mm = &mut r.mismatches;
        match stock {
            None => mm.push("no stock hash in Redis".into()),
            Some(s) => {
                if let Some(why) = s.anomaly() {
                    mm.push(format!("stock hash: {why}"));
                }
                let units = |want: OrderState| -> i64 {
                    wins.iter()
                        .filter(|w| redis_state(&closed, &w.order_id) == want)
                        .map(|w| i64::from(w.quantity))
                        .sum()
                };
                let (locked, sold) = (units(OrderState::AwaitingPayment), units(OrderState::Paid));
                if s.locked != locked {
                    mm.push(format!(
                        "locked is {} but the unpaid wins hold {locked}",
                        s.locked
                    ));
                }
                if s.sold != sold {
                    mm.push(format!("sold is {} but the paid wins hold {sold}", s.sold));
                }
            }
        }
        let win_units: u64 = wins.iter().map(|w| u64::from(w.quantity)).sum();
        if buyer_units != win_units {
            mm.push(format!(
                "the buyers' counts add up to {buyer_units}, the wins to {win_units}"
            ));
        }
        let in_redis: HashMap<&str, OrderState> = wins
            .iter()
            .map(|w| (w.order_id.as_str(), redis_state(&closed, &w.order_id)))
            .collect();
        let in_db: HashMap<&str, &OrderRow> = item_rows
            .iter()
            .map(|r| (r.order_id.as_str(), *r))
            .collect();
        let orders_topic = &cfg.kafka_orders_topic;
        let mut all: BTreeSet<&str> = in_redis.keys().copied().collect();
        all.extend(on_topic.keys().map(String::as_str));
        all.extend(in_db.keys().copied());
        for id in all {
            let (redis, topic, row) = (in_redis.get(id), on_topic.contains_key(id), in_db.get(id));
            match (redis, topic, row) {
                (Some(_), false, _) => {
                    mm.push(format!("order {id}: won in Redis, not on {orders_topic}"))
                }
                (None, true, _) => {
                    mm.push(format!("order {id}: on {orders_topic}, unknown to Redis"))
                }
                _ => {}
            }
            match (topic, row) {
                (true, None) => mm.push(format!("order {id}: on {orders_topic}, no row")),
                (false, Some(_)) => mm.push(format!("order {id}: a row, not on {orders_topic}")),
                _ => {}
            }
            if let (Some(state), Some(row)) = (redis, row) {
                if row.state != state.as_str() {
                    mm.push(format!(
                        "order {id}: {} in Redis, {} in the database",
                        state.as_str(),
                        row.state
                    ));
                }
            }
        }
        report.items.push(r);
    }
    Ok(report)
}
