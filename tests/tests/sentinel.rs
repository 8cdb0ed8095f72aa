//! Redis failover under a sale: a master, two replicas and three real
//! Sentinels; `seckilld` finds the master through the Sentinels. The
//! master is SIGKILLed mid-sale at 400 purchases/s; the daemon follows the
//! promotion, drains what it held `pending`, and the invariant checker
//! reads the promoted master.
//!
//! With `redis_wait_replicas = 1` every batch's stock writes reach a
//! replica before its answers: nothing is lost. With 0 (asynchronous
//! replication, Redis's default) the test reports what the failover lost
//! — the seed's "replica behind the master sells the same units twice".

use std::time::{Duration, Instant};

use seckill_benches::check::{Answer, CheckReport};
use seckill_benches::load::{self, Plan};
use seckill_tests::sentinel::{SentinelSet, MASTER_NAME};
use seckill_tests::settle::settle;
use seckill_tests::{
    daemon_config_at, distinct_requests, free_port, open_checked_sale, verdict_at, Broker,
    DaemonProcess, CHECKED_ITEM,
};

const STOCK: u64 = 2_000;
const USERS: usize = 3_000;

struct Outcome {
    answers: Vec<Answer>,
    report: CheckReport,
    /// From the SIGKILL to the Sentinels' new master.
    failover: Duration,
}

async fn failover_mid_sale(wait_replicas: u32) -> Outcome {
    let mut set = tokio::task::spawn_blocking(|| SentinelSet::start(2))
        .await
        .expect("sentinel set");
    let broker = Broker::start();
    let wal = tempfile::tempdir().expect("tmp");
    let logs = tempfile::tempdir().expect("tmp");
    let first_master = set.master_port();
    // The URL gives the scheme and database; the Sentinels the host.
    let mut cfg = daemon_config_at(&SentinelSet::url_of(first_master), &broker, wal.path());
    cfg.listen = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    cfg.redis_sentinels = set.sentinels();
    cfg.redis_master_name = MASTER_NAME.into();
    cfg.redis_wait_replicas = wait_replicas;
    cfg.require_token = false;
    let log = logs.path().join("seckilld.log");
    let daemon = DaemonProcess::start(&cfg, &log);
    let base = format!("http://{}", daemon.addr);
    let client = load::client(32);
    let sale = format!("failover-{wait_replicas}");
    open_checked_sale(&client, &base, &sale, STOCK).await;

    // 3,000 users × 1 click at 400 purchases/s: 7.5 s of sale. After 2.5 s
    // the replicas fall behind (their stream held back for 0.8 s, as
    // across a slow link) and the master is SIGKILLed: what it had not
    // sent them is lost with it.
    let plan = Plan {
        base: base.clone(),
        sale_id: sale.clone(),
        items: vec![CHECKED_ITEM.into()],
        users: USERS,
        first_user: 0,
        request_prefix: String::new(),
        clicks_per_user: 1,
        retries: 3,
        concurrency: 32,
        time_max: Duration::from_secs(120),
        rate_per_sec: std::num::NonZeroU32::new(400),
    };
    let (c, p) = (client.clone(), plan.clone());
    let run = tokio::spawn(async move { load::run(&c, &p).await });
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    set.hold_replication(true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    set.kill(first_master);
    let killed = Instant::now();
    let (set, new_master) = tokio::task::spawn_blocking(move || {
        let new = set.wait_failover(first_master, Duration::from_secs(30));
        (set, new)
    })
    .await
    .expect("failover");
    let failover = killed.elapsed();
    let report = run.await.expect("the sale");
    assert!(report.requests >= USERS, "{:?}", report.by_http);
    let fin = settle(
        &client,
        &base,
        &sale,
        &report.answers,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        distinct_requests(&fin, "pending"),
        0,
        "the daemon follows the promotion and drains its pending: {:?}; log {}",
        report.by_status,
        log.display()
    );
    let v = verdict_at(
        &SentinelSet::url_of(new_master),
        &broker,
        &sale,
        &fin,
        Duration::from_secs(60),
    )
    .await;
    eprintln!(
        "wait_replicas {wait_replicas}: failover in {failover:?}, {} wins answered, statuses {:?}",
        distinct_requests(&fin, "success"),
        report.by_status
    );
    drop(set);
    Outcome {
        answers: fin,
        report: v,
        failover,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_a_win_survives_the_masters_sigkill() {
    let o = failover_mid_sale(1).await;
    assert!(o.report.ok(), "{:?}", o.report.violations);
    assert_eq!(
        distinct_requests(&o.answers, "success") as u64,
        STOCK,
        "3,000 buyers for 2,000 units: the stock sold exactly, once (failover in {:?})",
        o.failover
    );
    assert_eq!(o.report.kafka_distinct_orders, STOCK);
}

/// Asynchronous replication: the replicas miss the master's last writes,
/// and the units those wins took are sold again after the failover — the
/// oversell of the seed's §9. The daemon still follows the failover and
/// resolves every request; what the checker finds is reported (it is the
/// price of `wait_replicas = 0`, documented in docs/operations.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wait_the_failover_is_followed_and_its_loss_reported() {
    let o = failover_mid_sale(0).await;
    let wins = distinct_requests(&o.answers, "success") as u64;
    eprintln!(
        "without WAIT: {wins} wins answered for {STOCK} units, Redis holds {}; violations {:?}",
        o.report.locked_plus_sold, o.report.violations
    );
    // What a lost write can cause, and nothing else: units sold again
    // (more wins than Redis holds, a user winning twice). Never an answer
    // that contradicts itself or an order missing from Kafka.
    for v in &o.report.violations {
        assert!(
            v.contains("clients were told of")
                || v.contains("won item")
                || v.contains("Kafka holds")
                || v.starts_with("…"),
            "a violation a lost replica write does not explain: {v}"
        );
    }
    // The master decided about 0.8 s × 400/s of wins its replicas never
    // received; the promoted replica sells those units again (2,321 wins
    // for 2,000 units in the runs of docs/operations.md). Reported, not
    // required: on a box loaded by other tests the timing can leave
    // nothing behind the replicas.
    assert!(wins >= STOCK, "the stock sells out: {wins} wins");
    if wins == STOCK {
        eprintln!("without WAIT: this run lost nothing (the replicas were not behind)");
    }
    assert!(
        wins < STOCK + 600,
        "at most what was decided while the replicas were behind: {wins}"
    );
}
