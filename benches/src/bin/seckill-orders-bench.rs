//! seckill-orders-bench: wins for the order service's benchmark, without a
//! daemon in the way. `fill` puts N wins on `seckill.orders` as fast as
//! the broker takes them (for orders/s: the service starts on a full
//! topic); `pace` sends them at a steady rate with `created_ms` = the time
//! of sending (for the decision-to-row lag at a given load). Both write
//! the items' stock hashes first, consistent with the wins (every unit
//! locked), so the service's stock check passes as it would after a sale.
//! `./scripts/bench-orders-sql.sh` drives it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use seckill_io::kafka::{OrderMessage, ORDERS_TOPIC, SCHEMA_VERSION};
use seckill_io::redis::item_keys;

#[derive(Debug, Parser)]
#[command(name = "seckill-orders-bench", version)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:19092")]
    kafka_brokers: String,
    #[arg(long, default_value = "redis://127.0.0.1:16379/")]
    redis_url: String,
    /// The sale the wins belong to (one benchmark run, one sale).
    #[arg(long)]
    sale: String,
    /// Items the wins are spread over.
    #[arg(long, default_value_t = 16)]
    items: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// N wins as fast as the broker takes them.
    Fill {
        #[arg(long)]
        count: usize,
    },
    /// `rate` wins a second for `seconds`.
    Pace {
        #[arg(long)]
        rate: usize,
        #[arg(long)]
        seconds: u64,
    },
}

/// Counts the wins the broker refused.
#[derive(Default)]
struct Failures(AtomicU64);

impl ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if r.is_err() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn now_ms() -> u64 {
    seckill_pipeline::now_ms()
}

/// Every unit of every item locked: what a sold-out sale looks like
/// before its payments.
fn write_stock(redis_url: &str, sale: &str, items: usize, total: usize) -> anyhow::Result<()> {
    let mut c = redis::Client::open(redis_url)?.get_connection()?;
    for i in 0..items {
        let units = total / items + usize::from(i < total % items);
        let k = item_keys(sale, &format!("item-{i}"));
        let () = redis::cmd("HSET")
            .arg(&k.stock)
            .arg(&[
                ("available", 0),
                ("locked", units),
                ("sold", 0),
                ("total", units),
            ])
            .query(&mut c)
            .context("write the stock hash")?;
    }
    Ok(())
}

fn message(sale: &str, items: usize, n: usize) -> (String, Vec<u8>) {
    let item = format!("item-{}", n % items);
    // Distinct per sale and win: 16 hex digits like the stock script's.
    let salt = sale
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)));
    let m = OrderMessage {
        v: SCHEMA_VERSION,
        order_id: format!("{:016x}", (salt << 32) ^ n as u64),
        request_id: format!("{sale}-r{n}"),
        sale_id: sale.to_string(),
        item_id: item.clone(),
        user_id: format!("{sale}-u{n}"),
        price_cents: 1999,
        quantity: 1,
        created_ms: now_ms(),
        lsn: n as u64 + 1,
    };
    (item, serde_json::to_vec(&m).unwrap_or_default())
}

fn send(p: &BaseProducer<Failures>, key: &str, payload: &[u8]) {
    let mut r = BaseRecord::to(ORDERS_TOPIC).key(key).payload(payload);
    loop {
        match p.send(r) {
            Ok(()) => return,
            Err((_, back)) => {
                p.poll(Duration::from_millis(5));
                r = back;
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The topic in the partitions the daemon gives it.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(seckill_io::kafka::ensure_topics(
            &args.kafka_brokers,
            &[],
            &seckill_io::kafka::TopicSpec::new(3),
            &seckill_io::kafka::Topics::default(),
        ))
        .context("create the topics")?;
    let p: BaseProducer<Failures> = seckill_io::kafka::base_config(&args.kafka_brokers, &[])
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Failures::default())
        .context("producer")?;
    let started = Instant::now();
    let total = match args.cmd {
        Cmd::Fill { count } => {
            write_stock(&args.redis_url, &args.sale, args.items, count)?;
            for n in 0..count {
                let (key, payload) = message(&args.sale, args.items, n);
                send(&p, &key, &payload);
                p.poll(Duration::ZERO);
            }
            count
        }
        Cmd::Pace { rate, seconds } => {
            let count = rate * seconds as usize;
            write_stock(&args.redis_url, &args.sale, args.items, count)?;
            // Open loop: win n is due at start + n / rate.
            for n in 0..count {
                let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                while let Some(wait) = due.checked_duration_since(Instant::now()) {
                    if wait.is_zero() {
                        break;
                    }
                    p.poll(wait);
                }
                let (key, payload) = message(&args.sale, args.items, n);
                send(&p, &key, &payload);
            }
            count
        }
    };
    p.flush(Duration::from_secs(120)).context("flush")?;
    let refused = p.context().0.load(Ordering::Relaxed);
    anyhow::ensure!(refused == 0, "the broker refused {refused} wins");
    let s = started.elapsed().as_secs_f64();
    println!(
        "produced {total} wins in {s:.2} s ({:.0}/s)",
        total as f64 / s.max(1e-9)
    );
    Ok(())
}
