//! The order service end to end, on real processes: a daemon selling on a
//! spawned `redis-server` and tansu broker, `seckill-orders` as a child
//! process, and a PostgreSQL or MariaDB server of the test's own.

use std::collections::BTreeSet;

type Win = (String, String, String);
use std::time::Duration;

use seckill_benches::load::{self, ItemSpec, Plan};
use seckill_tests::orders::{
    metric, orders_env, produce_raw, read_raw, set_env, wait_count, OrdersProcess,
    ONE_MESSAGE_BATCHES,
};
use seckill_tests::sql::{Engine, SqlServer};
use seckill_tests::{Stack, ADMIN_TOKEN};

const ROWS: &str = "SELECT COUNT(*) FROM seckill_orders";

fn items(n: usize, stock: u64) -> Vec<ItemSpec> {
    (0..n)
        .map(|i| ItemSpec {
            item_id: format!("item-{i}"),
            title: format!("item {i}"),
            price_cents: 1999,
            stock,
            per_user_limit: 1,
            shards: 1,
        })
        .collect()
}

/// A stack whose Kafka clients send one message per record batch (see
/// `ONE_MESSAGE_BATCHES`), its topics in three partitions.
async fn stack() -> Stack {
    Stack::start(false, |c| {
        c.kafka_properties = ONE_MESSAGE_BATCHES.parse().expect("properties");
        c.kafka_partitions = 3;
    })
    .await
}

/// Sells `items` to `users` users (one click each, `rate` purchases a
/// second when given) and returns the wins: (order id, request id, user).
async fn sell_at(
    s: &Stack,
    sale: &str,
    items: &[ItemSpec],
    users: usize,
    rate: Option<u32>,
) -> BTreeSet<(String, String, String)> {
    let now = seckill_pipeline::now_ms();
    load::create_sale(
        &s.client,
        &s.base,
        ADMIN_TOKEN,
        sale,
        now,
        now + 600_000,
        items,
    )
    .await
    .expect("sale created");
    let names: Vec<&str> = items.iter().map(|i| i.item_id.as_str()).collect();
    let mut plan = Plan::new(&s.base, sale, &names, users);
    plan.time_max = Duration::from_secs(120);
    plan.rate_per_sec = rate.and_then(std::num::NonZeroU32::new);
    let report = load::run(&load::client(64), &plan).await;
    report
        .answers
        .iter()
        .filter(|a| a.status == "success")
        .map(|a| {
            (
                a.order_id.clone().expect("a win has an order id"),
                a.request_id.clone(),
                a.user_id.clone(),
            )
        })
        .collect()
}

async fn sell(
    s: &Stack,
    sale: &str,
    items: &[ItemSpec],
    users: usize,
) -> BTreeSet<(String, String, String)> {
    sell_at(s, sale, items, users, None).await
}

/// The rows, every one (a doubled row would show twice), sorted.
fn rows(db: &SqlServer, name: &str, sql: &str) -> Vec<Win> {
    let mut v: Vec<Win> = db
        .exec_in(name, sql)
        .expect("rows")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.split('\t').map(str::to_string);
            (
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The wins, sorted, to compare with `rows`.
fn listed(wins: &BTreeSet<Win>) -> Vec<Win> {
    wins.iter().cloned().collect()
}

/// `topic`: the orders topic's name, given to the daemon and the service
/// alike (`None`: the default).
async fn a_sale_of_1000_is_1000_rows_even_delivered_three_times(
    engine: Engine,
    topic: Option<&str>,
) {
    let s = match topic {
        None => stack().await,
        Some(t) => {
            let t = t.to_string();
            Stack::start(false, move |c| {
                c.kafka_properties = ONE_MESSAGE_BATCHES.parse().expect("properties");
                c.kafka_partitions = 3;
                c.kafka_orders_topic = t;
                c.kafka_events_topic = "shop.events".into();
            })
            .await
        }
    };
    let wins = sell(&s, "rows", &items(2, 500), 1500).await;
    assert_eq!(wins.len(), 1000, "the whole stock sold");

    let db = SqlServer::start(engine);
    let url = db.create_database("orders_a");
    let dir = tempfile::tempdir().expect("tmp");
    let mut env = orders_env(&s.redis, &s.broker, &url);
    if let Some(t) = topic {
        set_env(&mut env, "SECKILL_KAFKA_ORDERS_TOPIC", t);
        set_env(&mut env, "SECKILL_KAFKA_EVENTS_TOPIC", "shop.events");
    }
    let topic = topic.unwrap_or(seckill_io::kafka::ORDERS_TOPIC).to_string();
    let svc = OrdersProcess::start(&env, &dir.path().join("orders.log"));
    let n = wait_count(&db, "orders_a", ROWS, 1000, Duration::from_secs(90));
    assert_eq!(n, 1000, "one row per win; log in {}", dir.path().display());
    let stored = rows(
        &db,
        "orders_a",
        "SELECT order_id, request_id, user_id FROM seckill_orders",
    );
    assert_eq!(
        stored,
        listed(&wins),
        "the rows are the wins, field for field"
    );
    assert_eq!(
        db.count(
            "orders_a",
            "SELECT COUNT(*) FROM seckill_orders WHERE state <> 'awaiting_payment'"
        ),
        0
    );

    // Every message twice more: the same order ids, no new row.
    let brokers = s.broker.brokers();
    let all = tokio::task::spawn_blocking(move || {
        let msgs = read_raw(&brokers, &topic);
        produce_raw(&brokers, &topic, &msgs);
        produce_raw(&brokers, &topic, &msgs);
        msgs.len()
    })
    .await
    .expect("redelivery");
    assert_eq!(all, 1000);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while metric(&svc, "seckill_orders_messages_total{outcome=\"duplicate\"}") < 2000.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the copies were never read"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(db.count("orders_a", ROWS), 1000, "still one row per win");
    assert_eq!(
        rows(
            &db,
            "orders_a",
            "SELECT order_id, request_id, user_id FROM seckill_orders"
        ),
        listed(&wins)
    );
    seckill_tests::orders::assert_clean(&db, "orders_a");
    drop(svc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_sale_of_1000_is_1000_rows_even_delivered_three_times() {
    a_sale_of_1000_is_1000_rows_even_delivered_three_times(Engine::Postgres, None).await;
}

/// On MariaDB with topics of the operator's naming (daemon and service).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_a_sale_of_1000_is_1000_rows_even_delivered_three_times() {
    a_sale_of_1000_is_1000_rows_even_delivered_three_times(Engine::MariaDb, Some("shop.wins"))
        .await;
}

const WINS: &str = "SELECT order_id, request_id, user_id FROM seckill_orders";

/// The database SIGKILLed mid-stream: the service pauses, says it is not
/// ready, retries, and once the database is back every win is one row.
async fn the_database_killed_mid_stream_loses_and_doubles_nothing(engine: Engine) {
    let s = stack().await;
    let mut db = SqlServer::start(engine);
    let url = db.create_database("orders_k");
    let dir = tempfile::tempdir().expect("tmp");
    let env = orders_env(&s.redis, &s.broker, &url);
    let svc = OrdersProcess::start(&env, &dir.path().join("orders.log"));
    // Rows flow while the sale runs (1,500 wins at 500 purchases/s).
    let sale = {
        let st = &s;
        async move { sell_at(st, "kill-db", &items(3, 500), 1500, Some(500)).await }
    };
    let killer = async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let mid = db.count("orders_k", ROWS);
        db.kill();
        mid
    };
    let (wins, rows_at_kill) = tokio::join!(sale, killer);
    assert_eq!(wins.len(), 1500);
    assert!(
        rows_at_kill > 0 && rows_at_kill < 1500,
        "killed mid-stream: {rows_at_kill} rows then"
    );
    // Down: not ready, paused, retrying.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = svc.get("/readyz").map(|(c, _)| c);
        if ready == Some(503) && metric(&svc, "seckill_orders_paused") == 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never said it was not ready: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        metric(
            &svc,
            "seckill_orders_batch_retries_total{dependency=\"database\"}"
        ) >= 1.0
    );
    db.restart();
    let n = wait_count(&db, "orders_k", ROWS, 1500, Duration::from_secs(90));
    assert_eq!(
        n,
        1500,
        "every win a row after the restart; log in {}",
        dir.path().display()
    );
    assert_eq!(rows(&db, "orders_k", WINS), listed(&wins));
    seckill_tests::orders::assert_clean(&db, "orders_k");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while svc.get("/readyz").map(|(c, _)| c) != Some(200) {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(metric(&svc, "seckill_orders_paused"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_mid_stream_loses_and_doubles_nothing() {
    the_database_killed_mid_stream_loses_and_doubles_nothing(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_killed_mid_stream_loses_and_doubles_nothing() {
    the_database_killed_mid_stream_loses_and_doubles_nothing(Engine::MariaDb).await;
}

/// The service SIGKILLed in the middle of a batch (its transaction held
/// open by a frozen database): restarted, it writes every win once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_killed_mid_batch_loses_and_doubles_nothing() {
    let s = stack().await;
    let db = SqlServer::start(Engine::Postgres);
    let url = db.create_database("orders_c");
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("orders.log");
    let env = orders_env(&s.redis, &s.broker, &url);
    let mut svc = OrdersProcess::start(&env, &log);
    let sale = {
        let st = &s;
        async move { sell_at(st, "kill-consumer", &items(2, 600), 1200, Some(600)).await }
    };
    let killer = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // Frozen, the database holds the batch's transaction open: the
        // kill lands mid-batch, offsets uncommitted.
        db.freeze();
        tokio::time::sleep(Duration::from_millis(500)).await;
        svc.kill();
        db.thaw();
        db.count("orders_c", ROWS)
    };
    let (wins, at_kill) = tokio::join!(sale, killer);
    assert_eq!(wins.len(), 1200);
    assert!(at_kill < 1200, "killed before the end: {at_kill} rows");
    let svc = OrdersProcess::start(&env, &log);
    let n = wait_count(&db, "orders_c", ROWS, 1200, Duration::from_secs(90));
    assert_eq!(n, 1200, "every win once; log in {}", log.display());
    assert_eq!(rows(&db, "orders_c", WINS), listed(&wins));
    seckill_tests::orders::assert_clean(&db, "orders_c");
    drop(svc);
}

/// How many partitions a service holds (its `/healthz`).
fn assigned(p: &OrdersProcess) -> u64 {
    p.get("/healthz")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["partitions_assigned"].as_u64())
        .unwrap_or(0)
}

fn wait_until(what: &str, ok: &dyn Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Two services in one group share the partitions; the second one is
/// stopped mid-run — SIGTERM (it leaves the group) or SIGKILL (its session
/// expires) — and the survivor takes its partitions over from their
/// committed offsets: every win is one row.
///
/// The SIGKILL case runs on librdkafka's mock cluster: tansu (the test
/// broker) reassigns a member's partitions when it leaves the group, but
/// not when its session expires — it keeps the group's generation and
/// hands the survivor its old assignment again (docs/orders.md,
/// "Brokers"). A real Kafka, like the mock, rebalances after
/// `session.timeout.ms`.
async fn two_consumers_one_stopped_lose_and_double_nothing(kill: bool) {
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    for t in seckill_orders::config::Config::defaults().topics().all() {
        mock.create_topic(t, 3, 1).expect("mock topic");
    }
    let bootstrap = mock.bootstrap_servers();
    let s = if kill {
        let b = bootstrap.clone();
        Stack::start(false, move |c| {
            c.kafka_brokers = b;
            c.kafka_partitions = 3;
        })
        .await
    } else {
        stack().await
    };
    let db = SqlServer::start(Engine::MariaDb);
    let url = db.create_database("orders_g");
    let dir = tempfile::tempdir().expect("tmp");
    let mut env_a = orders_env(&s.redis, &s.broker, &url);
    let mut env_b = orders_env(&s.redis, &s.broker, &url);
    if kill {
        seckill_tests::orders::set_env(&mut env_a, "SECKILL_KAFKA_BROKERS", &bootstrap);
        seckill_tests::orders::set_env(&mut env_b, "SECKILL_KAFKA_BROKERS", &bootstrap);
        for env in [&mut env_a, &mut env_b] {
            let props =
                "session.timeout.ms=6000,heartbeat.interval.ms=500,max.poll.interval.ms=10000";
            seckill_tests::orders::set_env(env, "SECKILL_KAFKA_PROPERTIES", props);
        }
    }
    let a = OrdersProcess::start(&env_a, &dir.path().join("a.log"));
    wait_until("the first consumer never joined", &|| assigned(&a) > 0);
    let mut b = OrdersProcess::start(&env_b, &dir.path().join("b.log"));
    wait_until("the group never shared its partitions", &|| {
        assigned(&b) > 0 && assigned(&a) > 0
    });
    let total = assigned(&a) + assigned(&b);
    let sale = {
        let st = &s;
        async move { sell_at(st, "group", &items(4, 400), 1600, Some(500)).await }
    };
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mid = db.count("orders_g", ROWS);
        if kill {
            b.kill();
        } else {
            assert!(b.terminate(), "a clean stop exits 0");
        }
        mid
    };
    let (wins, at_stop) = tokio::join!(sale, stopper);
    assert_eq!(wins.len(), 1600);
    assert!(at_stop < 1600, "stopped mid-run: {at_stop} rows then");
    let n = wait_count(&db, "orders_g", ROWS, 1600, Duration::from_secs(120));
    assert_eq!(n, 1600, "every win once; logs in {}", dir.path().display());
    assert_eq!(rows(&db, "orders_g", WINS), listed(&wins));
    seckill_tests::orders::assert_clean(&db, "orders_g");
    assert_eq!(assigned(&a), total, "the survivor holds every partition");
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_one_leaving_mid_run_lose_and_double_nothing() {
    two_consumers_one_stopped_lose_and_double_nothing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_one_killed_mid_run_lose_and_double_nothing() {
    two_consumers_one_stopped_lose_and_double_nothing(true).await;
}
