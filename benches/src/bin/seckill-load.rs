//! seckill-load: plays a flash sale against a running seckilld and checks
//! the invariants afterwards (from Redis, the Kafka topic and every answer).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use hyper::Method;
use seckill_benches::check;
use seckill_benches::load::{self, ItemSpec, Plan};
use seckill_io::redis::{RedisAdmin, RedisTarget};

/// Load generator (压测) for seckilld: creates a sale with a countdown, lets
/// simulated users race for it over keep-alive connections, reports
/// throughput, latency percentiles and answers, then checks that nothing was
/// oversold, every win is on Kafka and nobody won twice. Exit code 0 only
/// when every invariant held.
#[derive(Debug, Parser)]
#[command(name = "seckill-load", version)]
struct Args {
    /// Base URL of the daemon.
    #[arg(long, env = "SECKILL_TARGET", default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Admin bearer token of the daemon.
    #[arg(long, env = "SECKILL_ADMIN_TOKEN")]
    admin_token: String,
    /// Redis of the daemon (to read the stock afterwards).
    #[arg(
        long,
        env = "SECKILL_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    redis_url: String,
    /// Nodes of the daemon's Redis Cluster (`host:port`, comma
    /// separated), if it is one.
    #[arg(long, env = "SECKILL_REDIS_CLUSTER_NODES", default_value = "")]
    redis_cluster_nodes: String,
    /// Kafka brokers of the daemon (to read the orders afterwards).
    #[arg(long, env = "SECKILL_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    /// The daemon's orders topic (its `kafka_orders_topic`).
    #[arg(long, env = "SECKILL_KAFKA_ORDERS_TOPIC", default_value = seckill_io::kafka::ORDERS_TOPIC)]
    kafka_orders_topic: String,
    /// Sale id to create (default: a fresh one per run).
    #[arg(long)]
    sale: Option<String>,
    /// Items in the sale; user n buys item n mod items.
    #[arg(long, default_value_t = 1)]
    items: usize,
    /// Stock of each item.
    #[arg(long, default_value_t = 100)]
    stock: u64,
    /// Stock shards of each item (1: not split; on a Redis Cluster each
    /// shard on another master).
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// Simulated users.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Purchases each user sends (each with its own request id).
    #[arg(long, default_value_t = 2)]
    clicks: usize,
    /// Times each request is sent again with the same request id.
    #[arg(long, default_value_t = 0)]
    retries: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Countdown before the sale starts, in seconds.
    #[arg(long, default_value_t = 3)]
    countdown_s: u64,
    /// Hard stop for the run, in seconds.
    #[arg(long, default_value_t = 120)]
    time_max_s: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// A named flash sale (sets items, stock, users and clicks):
    /// hot-item (1 item × 1,000, 100,000 users × 2 clicks),
    /// sold-out-storm (1 item × 0, 100,000 users × 2 clicks),
    /// many-items (500 items × 100, 200,000 users × 1 click),
    /// all-win (1 item × 200,000, 100,000 users × 1 click: every request
    /// is a real win — a deduction, a journaled decision, a Kafka order),
    /// degraded (1 item × 1,000, 20,000 users; needs --redis-pid: Redis is
    /// frozen before the start, every answer is `pending`, then it is
    /// thawed and the answers settle).
    #[arg(long, value_parser = ["hot-item", "sold-out-storm", "many-items", "all-win", "degraded"])]
    scenario: Option<String>,
    /// PID of the redis-server to freeze (SIGSTOP) before the start and
    /// thaw (SIGCONT) after --outage-s, for the degraded scenario.
    #[arg(long)]
    redis_pid: Option<u32>,
    /// How long Redis stays frozen after the start, in seconds.
    #[arg(long, default_value_t = 5)]
    outage_s: u64,
    /// After the burst, wait up to this many seconds for every `pending`
    /// answer to be decided (polling the status API, as clients do) before
    /// the check. The degraded scenario sets 60.
    #[arg(long, default_value_t = 0)]
    settle_s: u64,
    /// Only measure: skip the invariant check (e.g. against seckill-bare).
    #[arg(long)]
    no_check: bool,
    /// Open-loop: send this many requests per second on a fixed schedule,
    /// each one's latency measured from when it was due (so a stall is
    /// charged to every request queued behind it: no coordinated
    /// omission). Default: closed-loop, as fast as the concurrency allows.
    #[arg(long)]
    rate: Option<u32>,
}

impl Args {
    fn apply_scenario(&mut self) {
        let (items, stock, users, clicks) = match self.scenario.as_deref() {
            Some("hot-item") => (1, 1_000, 100_000, 2),
            Some("sold-out-storm") => (1, 0, 100_000, 2),
            Some("many-items") => (500, 100, 200_000, 1),
            Some("all-win") => (1, 200_000, 100_000, 1),
            Some("degraded") => {
                self.settle_s = self.settle_s.max(60);
                (1, 1_000, 20_000, 1)
            }
            _ => return,
        };
        self.items = items;
        self.stock = stock;
        self.users = users;
        self.clicks = clicks;
    }
}

async fn server_now_ms(client: &load::HttpClient, base: &str) -> anyhow::Result<u64> {
    let (code, body) = load::send(
        client,
        Method::GET,
        &format!("{base}/api/v1/time"),
        None,
        vec![],
    )
    .await
    .context("GET /api/v1/time")?;
    if code != 200 {
        bail!("GET /api/v1/time answered {code}");
    }
    let v: serde_json::Value = serde_json::from_slice(&body).context("time answer")?;
    v["now_ms"].as_u64().context("time answer without now_ms")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.apply_scenario();
    if args.scenario.as_deref() == Some("degraded") && args.redis_pid.is_none() {
        bail!("the degraded scenario needs --redis-pid (the redis-server to freeze)");
    }
    if args.items == 0 || args.users == 0 || args.clicks == 0 {
        bail!("--items, --users and --clicks must be at least 1");
    }
    let client = load::client(args.concurrency);
    let base = args.target.trim_end_matches('/').to_string();
    let now = server_now_ms(&client, &base).await?;
    let sale = args.sale.clone().unwrap_or_else(|| format!("sale-{now}"));
    let items: Vec<ItemSpec> = (0..args.items)
        .map(|i| ItemSpec {
            item_id: format!("item-{i}"),
            title: format!("Flash item #{i}"),
            price_cents: 1999,
            stock: args.stock,
            per_user_limit: 1,
            shards: args.shards,
        })
        .collect();
    let start_ms = now + args.countdown_s * 1000;
    load::create_sale(
        &client,
        &base,
        &args.admin_token,
        &sale,
        start_ms,
        start_ms + 3_600_000,
        &items,
    )
    .await
    .context("creating the sale")?;
    eprintln!(
        "sale {sale}: {} item(s) × {} units, {} users × {} clicks, starts in {} s",
        args.items, args.stock, args.users, args.clicks, args.countdown_s
    );
    let plan = Plan {
        base: base.clone(),
        sale_id: sale.clone(),
        items: items.iter().map(|i| i.item_id.clone()).collect(),
        users: args.users,
        first_user: 0,
        request_prefix: String::new(),
        clicks_per_user: args.clicks,
        retries: args.retries,
        concurrency: args.concurrency,
        time_max: Duration::from_secs(args.time_max_s),
        rate_per_sec: args.rate.and_then(std::num::NonZeroU32::new),
    };
    // Tokens are handed out from a minute before the start: every user
    // fetches its own during the countdown, as a real client would.
    let opens = start_ms.saturating_sub(55_000);
    let now = server_now_ms(&client, &base).await?;
    if now < opens {
        tokio::time::sleep(Duration::from_millis(opens - now)).await;
    }
    let fetched = std::time::Instant::now();
    let tokens = load::fetch_tokens(&client, &plan, plan.time_max).await;
    eprintln!(
        "{} of {} purchase tokens fetched in {:.2} s",
        tokens.iter().filter(|t| t.is_some()).count(),
        tokens.len(),
        fetched.elapsed().as_secs_f64()
    );
    loop {
        let now = server_now_ms(&client, &base).await?;
        if now >= start_ms {
            break;
        }
        let left = start_ms - now;
        eprintln!("  … {:.1} s", left as f64 / 1000.0);
        tokio::time::sleep(Duration::from_millis(left.min(1000))).await;
    }
    if let Some(pid) = args.redis_pid {
        signal(pid, "STOP")?;
        eprintln!("redis-server {pid} frozen for {} s", args.outage_s);
        let outage = Duration::from_secs(args.outage_s);
        tokio::spawn(async move {
            tokio::time::sleep(outage).await;
            match signal(pid, "CONT") {
                Ok(()) => eprintln!("redis-server {pid} thawed"),
                Err(e) => eprintln!("could not thaw redis-server {pid}: {e:#}"),
            }
        });
    }
    eprintln!("GO");
    let progress = std::sync::Arc::new(seckill_benches::progress::Progress::default());
    let live = seckill_benches::progress::show(std::sync::Arc::clone(&progress));
    let mut report = load::run_with_progress(&client, &plan, &tokens, Some(progress)).await;
    drop(live);
    if args.settle_s > 0 {
        let pending = report
            .answers
            .iter()
            .filter(|a| a.status == "pending")
            .count();
        eprintln!(
            "settling {pending} pending answers (up to {} s)",
            args.settle_s
        );
        let settled = seckill_benches::settle::settle(
            &client,
            &base,
            &sale,
            &report.answers,
            Duration::from_secs(args.settle_s),
        )
        .await;
        let elapsed = Duration::from_millis(report.elapsed_ms);
        let first = report.clone();
        report = load::report(settled, elapsed);
        // Throughput and latency are those of the burst, not of settling.
        report.requests_per_sec = first.requests_per_sec;
        report.latency = first.latency;
        report.requests = first.requests;
        report.by_http = first.by_http;
        report.burst_by_status = Some(first.by_status);
    }
    if args.no_check {
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"report": report}))?
            );
        } else {
            print_report(&sale, &report);
        }
        return Ok(());
    }

    let target = RedisTarget {
        cluster_nodes: seckill_io::config::host_port_list(&args.redis_cluster_nodes)
            .map_err(|e| anyhow::anyhow!("--redis-cluster-nodes: {e}"))?,
        ..RedisTarget::url(&args.redis_url)
    };
    let redis = RedisAdmin::new(target, Duration::from_secs(2)).context("redis url")?;
    let mut stock = BTreeMap::new();
    for it in &items {
        let s = redis
            .stock(&sale, &it.item_id)
            .with_context(|| format!("reading stock of {}", it.item_id))?
            .with_context(|| format!("no stock hash for {}", it.item_id))?;
        stock.insert(it.item_id.clone(), s);
    }
    let wins = report
        .answers
        .iter()
        .filter(|a| a.status == "success")
        .count();
    let brokers = args.kafka_brokers.clone();
    let topic = args.kafka_orders_topic.clone();
    let sale_id = sale.clone();
    let orders = tokio::task::spawn_blocking(move || {
        check::read_orders_on(&brokers, &topic, &sale_id, wins, Duration::from_secs(30))
    })
    .await
    .context("join")?
    .context("reading seckill.orders")?;
    let verdict = check::check(&report.answers, &stock, &orders, 1);

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "sale_id": sale, "report": report, "stock": stock, "check": verdict,
            }))?
        );
    } else {
        print_report(&sale, &report);
        println!("stock (Redis):");
        for (item, s) in &stock {
            println!(
                "  {item:<16} total {}  available {}  locked {}  sold {}",
                s.total, s.available, s.locked, s.sold
            );
        }
        println!(
            "orders (Kafka) {} ({} distinct, {} duplicate deliveries)",
            verdict.kafka_orders, verdict.kafka_distinct_orders, verdict.kafka_duplicates
        );
        println!("\ninvariants:");
        println!(
            "  no oversell, every win on Kafka, nobody over the limit: {}",
            if verdict.ok() { "OK" } else { "VIOLATED" }
        );
        for v in &verdict.violations {
            println!("  ✗ {v}");
        }
    }
    if !verdict.ok() {
        std::process::exit(1);
    }
    Ok(())
}

fn print_report(sale: &str, report: &load::Report) {
    println!("\n== seckill load: sale {sale} ==");
    println!("requests      {:>10}", report.requests);
    println!("elapsed       {:>10} ms", report.elapsed_ms);
    println!("throughput    {:>10.0} req/s", report.requests_per_sec);
    let l = &report.latency;
    println!(
        "latency µs    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
    );
    if let Some(burst) = &report.burst_by_status {
        println!("answers during the burst:");
        for (status, n) in burst {
            println!("  {status:<16} {n:>8}");
        }
        println!("answers once settled:");
    } else {
        println!("answers:");
    }
    for (status, n) in &report.by_status {
        println!("  {status:<16} {n:>8}");
    }
    println!("HTTP codes:");
    for (code, n) in &report.by_http {
        println!("  {code:<16} {n:>8}");
    }
}

/// Sends a signal with kill(1) (no unsafe code for one signal).
fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}
