//! The order service when things go wrong, on real processes: poison
//! messages through the retry topic to the dead-letter queue and back, a
//! stock hash that fails its check, the backlog release, events before
//! their order, pay / cancel / expiry in the rows, and `reconcile`.
//!
//! One file on purpose, longer than most: the scenarios share their
//! fixtures (the stack, the sale, the buyers, the waits) and read side by
//! side.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hyper::Method;
use seckill_benches::load::{self, ItemSpec, Plan};
use seckill_io::kafka::{ORDERS_TOPIC, ORDER_EVENTS_TOPIC};
use seckill_io::redis::item_keys;
use seckill_tests::orders::{
    dlq_list, metric, orders_command, orders_env, produce_raw, read_at, read_raw, set_env,
    wait_count, OrdersProcess, ONE_MESSAGE_BATCHES,
};
use seckill_tests::sql::{Engine, SqlServer};
use seckill_tests::{Stack, ADMIN_TOKEN};

const ROWS: &str = "SELECT COUNT(*) FROM seckill_orders";

async fn stack(tweak: impl FnOnce(&mut seckill_io::Config)) -> Stack {
    Stack::start(false, |c| {
        c.kafka_properties = ONE_MESSAGE_BATCHES.parse().expect("properties");
        c.kafka_partitions = 3;
        tweak(c);
    })
    .await
}

fn item(id: &str, stock: u64) -> ItemSpec {
    ItemSpec {
        item_id: id.into(),
        title: id.into(),
        price_cents: 500,
        stock,
        per_user_limit: 1,
        shards: 1,
    }
}

async fn open_sale(s: &Stack, sale: &str, items: &[ItemSpec]) {
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
}

/// Users `first..first + n` buy (user u buys item u % items): the answers.
async fn buy(
    s: &Stack,
    sale: &str,
    items: &[&str],
    first: usize,
    n: usize,
) -> Vec<seckill_benches::check::Answer> {
    let mut plan = Plan::new(&s.base, sale, items, first + n);
    plan.first_user = first;
    load::run(&load::client(32), &plan).await.answers
}

fn wins(answers: &[seckill_benches::check::Answer]) -> Vec<&seckill_benches::check::Answer> {
    answers.iter().filter(|a| a.status == "success").collect()
}

fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn by_state(db: &SqlServer, name: &str) -> BTreeMap<String, i64> {
    db.exec_in(
        name,
        "SELECT state, COUNT(*) FROM seckill_orders GROUP BY state",
    )
    .expect("states")
    .lines()
    .filter_map(|l| l.split_once('\t'))
    .map(|(s, n)| (s.to_string(), n.trim().parse().unwrap_or(-1)))
    .collect()
}

/// An item whose stock hash fails its check keeps its wins in the DLQ (for
/// a human); a message that is not JSON goes there after its retries.
/// Once the stock hash is mended, `dlq redrive --all` turns the kept wins
/// into rows; the bad message comes back to the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dlq_with_its_reason_and_is_redriven_after_the_fix() {
    let s = stack(|_| {}).await;
    let db = SqlServer::start(Engine::Postgres);
    let url = db.create_database("orders_p");
    let dir = tempfile::tempdir().expect("tmp");
    let mut env = orders_env(&s.redis, &s.broker, &url);
    set_env(&mut env, "SECKILL_RETRY_ATTEMPTS_MAX", "2");
    set_env(&mut env, "SECKILL_DLQ_REDRIVE_INTERVAL_MS", "0");
    // The redrive comes after this: the redriven wins are older, and are
    // created all the same (only the main stream's late wins are released).
    set_env(&mut env, "SECKILL_BACKLOG_RELEASE_AFTER_MS", "5000");
    let svc = OrdersProcess::start(&env, &dir.path().join("orders.log"));

    open_sale(&s, "poison", &[item("good", 10), item("hot", 10)]).await;
    // A Redis that lost a write: the hash no longer adds up.
    let stock_key = item_keys("poison", "hot").stock;
    let mut r = s.redis.connection();
    let () = redis::cmd("HSET")
        .arg(&stock_key)
        .arg("total")
        .arg(5)
        .query(&mut r)
        .expect("HSET");
    let answers = buy(&s, "poison", &["good", "hot"], 0, 20).await;
    assert_eq!(wins(&answers).len(), 20);
    let brokers = s.broker.brokers();
    produce_raw(
        &brokers,
        ORDERS_TOPIC,
        &[(Some(b"k".to_vec()), Some(b"{oops".to_vec()))],
    );

    assert_eq!(
        wait_count(&db, "orders_p", ROWS, 10, Duration::from_secs(60)),
        10
    );
    let parked = wait_for(
        "the DLQ never held the 11 messages",
        Duration::from_secs(60),
        || {
            let l = dlq_list(&env);
            (l.len() == 11).then_some(l)
        },
    );
    let kinds: BTreeMap<String, usize> = parked.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e["error_kind"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
        m
    });
    assert_eq!(
        kinds,
        BTreeMap::from([("bad_json".into(), 1), ("stock_anomaly".into(), 10)])
    );
    for e in &parked {
        assert_eq!(e["source_topic"], ORDERS_TOPIC, "{e}");
        assert_eq!(e["state"], "parked");
        // The original offsets: the message there is the one kept.
        let (p, o) = (
            e["source_partition"].as_i64().unwrap_or(-1),
            e["source_offset"].as_i64().unwrap_or(-1),
        );
        let at = read_at(&brokers, ORDERS_TOPIC, p as i32, o).expect("the source message");
        assert_eq!(
            String::from_utf8_lossy(&at),
            e["payload"].as_str().unwrap_or(""),
            "{e}"
        );
        if e["error_kind"] == "bad_json" {
            assert_eq!(e["attempts"], 3, "the first try and two retries: {e}");
        } else {
            assert_eq!(e["attempts"], 1, "kept at once, no retry: {e}");
            assert!(e["error"].as_str().unwrap_or("").contains("total 5"), "{e}");
        }
    }
    assert_eq!(
        metric(
            &svc,
            "seckill_orders_stock_anomaly{item=\"hot\",sale=\"poison\"}"
        ),
        1.0
    );
    assert_eq!(metric(&svc, "seckill_orders_dlq_parked"), 11.0);

    // The fix, then the redrive — past the backlog threshold.
    let () = redis::cmd("HSET")
        .arg(&stock_key)
        .arg("total")
        .arg(10)
        .query(&mut r)
        .expect("HSET");
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let out = orders_command(&env, &["dlq", "redrive", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("redriven: 11"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        wait_count(&db, "orders_p", ROWS, 20, Duration::from_secs(60)),
        20,
        "the kept wins are rows now"
    );
    assert_eq!(
        by_state(&db, "orders_p"),
        BTreeMap::from([("awaiting_payment".into(), 20)]),
        "redriven late, created all the same"
    );
    let back = wait_for(
        "the bad message never came back",
        Duration::from_secs(60),
        || {
            let l = dlq_list(&env);
            (l.len() == 1 && l[0]["parks"] == 2).then_some(l)
        },
    );
    assert_eq!(back[0]["error_kind"], "bad_json");
    assert_eq!(
        metric(
            &svc,
            "seckill_orders_stock_anomaly{item=\"hot\",sale=\"poison\"}"
        ),
        0.0
    );
    // Only parked entries can be redriven; an unknown id is said so.
    let out = orders_command(&env, &["dlq", "redrive", "--id", "999999"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("skipped (unknown or not parked): 1"));
}

/// The background redrive feeds the DLQ back on its interval (seed 003:
/// hourly; here every second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_redrive_retries_the_dlq_on_its_interval() {
    let s = stack(|_| {}).await;
    let db = SqlServer::start(Engine::MariaDb);
    let url = db.create_database("orders_r");
    let dir = tempfile::tempdir().expect("tmp");
    let mut env = orders_env(&s.redis, &s.broker, &url);
    set_env(&mut env, "SECKILL_RETRY_ATTEMPTS_MAX", "0");
    set_env(&mut env, "SECKILL_DLQ_REDRIVE_INTERVAL_MS", "1000");
    let _svc = OrdersProcess::start(&env, &dir.path().join("orders.log"));
    produce_raw(
        &s.broker.brokers(),
        ORDERS_TOPIC,
        &[(
            None,
            Some(br#"{"v":7,"order_id":"0123456789abcdef"}"#.to_vec()),
        )],
    );
    let e = wait_for(
        "never redriven in the background",
        Duration::from_secs(60),
        || {
            let l = dlq_list(&env);
            l.first()
                .filter(|e| e["parks"].as_i64().unwrap_or(0) >= 3)
                .cloned()
        },
    );
    assert_eq!(e["error_kind"], "unknown_schema", "{e}");
    assert!(
        e["error"].as_str().unwrap_or("").contains("version 7"),
        "{e}"
    );
    assert_eq!(db.count("orders_r", ROWS), 0);
}

/// Wins consumed after `backlog_release_after_ms` are released (seed 003
/// §5.6): the unit is back on sale, the row is `failed`, a `failed` event
/// is out, the buyer's request reads `failed`, and later buyers win the
/// units. `reconcile` finds the three records agreeing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_wins_are_released_and_their_units_sold_again() {
    let s = stack(|_| {}).await;
    let db = SqlServer::start(Engine::Postgres);
    let url = db.create_database("orders_b");
    let dir = tempfile::tempdir().expect("tmp");
    let mut env = orders_env(&s.redis, &s.broker, &url);
    set_env(&mut env, "SECKILL_BACKLOG_RELEASE_AFTER_MS", "3000");

    open_sale(&s, "backlog", &[item("tv", 20)]).await;
    let first = buy(&s, "backlog", &["tv"], 0, 30).await;
    let old = wins(&first);
    assert_eq!(old.len(), 20, "sold out");
    // The consumer was down past the threshold.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let _svc = OrdersProcess::start(&env, &dir.path().join("orders.log"));
    assert_eq!(
        wait_count(&db, "orders_b", ROWS, 20, Duration::from_secs(60)),
        20
    );
    assert_eq!(
        db.count(
            "orders_b",
            "SELECT COUNT(*) FROM seckill_orders WHERE state = 'failed' AND reason = 'backlog'"
        ),
        20
    );
    let mut r = s.redis.connection();
    let stock: BTreeMap<String, i64> = redis::cmd("HGETALL")
        .arg(item_keys("backlog", "tv").stock)
        .query(&mut r)
        .expect("stock");
    assert_eq!(
        (stock["available"], stock["locked"], stock["sold"]),
        (20, 0, 0),
        "{stock:?}"
    );
    let (code, body) = load::send(
        &s.client,
        Method::GET,
        &format!("{}/api/v1/requests/{}", s.base, old[0].request_id),
        None,
        vec![],
    )
    .await
    .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!((code, v["status"].as_str()), (200, Some("failed")), "{v}");
    let brokers = s.broker.brokers();
    let failed = tokio::task::spawn_blocking(move || {
        read_raw(&brokers, ORDER_EVENTS_TOPIC)
            .into_iter()
            .filter_map(|(_, p)| serde_json::from_slice::<serde_json::Value>(&p?).ok())
            .filter(|e| e["event"] == "failed" && e["reason"] == "backlog")
            .count()
    })
    .await
    .expect("events");
    assert_eq!(failed, 20, "one failed event per released win");

    // The units are on sale again, on the daemon that saw them sold out.
    let second = buy(&s, "backlog", &["tv"], 100, 30).await;
    assert_eq!(
        wins(&second).len(),
        20,
        "later buyers won the released units"
    );
    assert_eq!(
        wait_count(&db, "orders_b", ROWS, 40, Duration::from_secs(60)),
        40
    );
    let states = by_state(&db, "orders_b");
    assert_eq!(states.get("awaiting_payment"), Some(&20), "{states:?}");
    let out = orders_command(&env, &["reconcile", "--sale", "backlog"]);
    assert!(
        out.status.success(),
        "reconcile after a release: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Paid, cancelled and expired orders reach their rows; an event that
/// arrives before its order waits for it and is applied then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_cancel_and_expiry_reach_the_rows_and_early_events_wait() {
    let s = stack(|c| {
        c.pay_timeout_ms = 4_000;
        c.sweep_interval_ms = 200;
    })
    .await;
    let db = SqlServer::start(Engine::MariaDb);
    let url = db.create_database("orders_e");
    let dir = tempfile::tempdir().expect("tmp");
    let env = orders_env(&s.redis, &s.broker, &url);
    let svc = OrdersProcess::start(&env, &dir.path().join("orders.log"));
    open_sale(&s, "events", &[item("cam", 4)]).await;
    let answers = buy(&s, "events", &["cam"], 0, 4).await;
    let w = wins(&answers);
    assert_eq!(w.len(), 4);
    assert_eq!(
        wait_count(&db, "orders_e", ROWS, 4, Duration::from_secs(60)),
        4
    );
    for (a, action) in [(w[0], "pay"), (w[1], "cancel")] {
        let url = format!(
            "{}/api/v1/orders/{}/{action}",
            s.base,
            a.order_id.as_deref().unwrap_or("")
        );
        let body = serde_json::to_vec(&serde_json::json!({ "user_id": a.user_id })).expect("json");
        let (code, _) = load::send(&s.client, Method::POST, &url, None, body)
            .await
            .expect("http");
        assert_eq!(code, 200, "{action}");
    }
    let states = wait_for(
        "the rows never showed the events",
        Duration::from_secs(60),
        || {
            let st = by_state(&db, "orders_e");
            (st.get("expired") == Some(&2)).then_some(st)
        },
    );
    assert_eq!(
        states,
        BTreeMap::from([
            ("cancelled".into(), 1),
            ("expired".into(), 2),
            ("paid".into(), 1)
        ])
    );
    let state_of = |a: &seckill_benches::check::Answer| {
        db.exec_in(
            "orders_e",
            &format!(
                "SELECT state FROM seckill_orders WHERE order_id = '{}'",
                a.order_id.as_deref().unwrap_or("")
            ),
        )
        .expect("state")
    };
    assert_eq!(state_of(w[0]), "paid");
    assert_eq!(state_of(w[1]), "cancelled");

    // An event before its order: it waits, then applies.
    let early = "00000000abcdef12";
    let brokers = s.broker.brokers();
    let now = seckill_pipeline::now_ms();
    let event = serde_json::json!({"v": 1, "event": "paid", "order_id": early, "sale_id": "events",
        "item_id": "cam", "user_id": "late", "quantity": 1, "request_id": "late-1", "at_ms": now});
    produce_raw(
        &brokers,
        ORDER_EVENTS_TOPIC,
        &[(
            Some(early.as_bytes().to_vec()),
            Some(event.to_string().into_bytes()),
        )],
    );
    wait_for(
        "the early event never waited",
        Duration::from_secs(30),
        || {
            (db.count(
                "orders_e",
                "SELECT COUNT(*) FROM seckill_order_events_waiting",
            ) == 1)
                .then_some(())
        },
    );
    let order = serde_json::json!({"v": 1, "order_id": early, "request_id": "late-1", "sale_id": "events",
        "item_id": "cam", "user_id": "late", "price_cents": 500, "quantity": 1, "created_ms": now, "lsn": 1});
    produce_raw(
        &brokers,
        ORDERS_TOPIC,
        &[(Some(b"cam".to_vec()), Some(order.to_string().into_bytes()))],
    );
    let state = wait_for(
        "the early event never applied",
        Duration::from_secs(30),
        || {
            let st = db
                .exec_in(
                    "orders_e",
                    &format!("SELECT state FROM seckill_orders WHERE order_id = '{early}'"),
                )
                .ok()?;
            (st == "paid").then_some(st)
        },
    );
    assert_eq!(state, "paid");
    assert_eq!(
        db.count(
            "orders_e",
            "SELECT COUNT(*) FROM seckill_order_events_waiting"
        ),
        0
    );
    assert!(metric(&svc, "seckill_orders_messages_total{outcome=\"event\"}") >= 5.0);
}

/// `reconcile` agrees on a clean sale and names an injected mismatch: a
/// row deleted, a unit altered in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_names_a_deleted_row_and_an_altered_unit() {
    let s = stack(|_| {}).await;
    let db = SqlServer::start(Engine::MariaDb);
    let url = db.create_database("orders_x");
    let dir = tempfile::tempdir().expect("tmp");
    let env = orders_env(&s.redis, &s.broker, &url);
    let _svc = OrdersProcess::start(&env, &dir.path().join("orders.log"));
    open_sale(&s, "recon", &[item("a", 15), item("b", 15)]).await;
    let answers = buy(&s, "recon", &["a", "b"], 0, 40).await;
    let w = wins(&answers);
    assert_eq!(w.len(), 30);
    assert_eq!(
        wait_count(&db, "orders_x", ROWS, 30, Duration::from_secs(60)),
        30
    );
    let out = orders_command(&env, &["reconcile", "--sale", "recon"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "a clean sale: {text}");
    assert!(text.contains("0 mismatch"), "{text}");

    let gone = w
        .iter()
        .find(|a| a.item_id == "a")
        .and_then(|a| a.order_id.clone())
        .expect("a win of a");
    db.exec_in(
        "orders_x",
        &format!("DELETE FROM seckill_orders WHERE order_id = '{gone}'"),
    )
    .expect("delete");
    let mut r = s.redis.connection();
    let () = redis::cmd("HINCRBY")
        .arg(item_keys("recon", "b").stock)
        .arg("available")
        .arg(1)
        .query(&mut r)
        .expect("HINCRBY");
    let out = orders_command(&env, &["reconcile", "--sale", "recon"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "mismatches exit 3: {text}");
    assert!(
        text.contains(&format!(
            "mismatch a: order {gone}: on seckill.orders, no row"
        )),
        "{text}"
    );
    assert!(text.contains("mismatch b: stock hash:"), "{text}");
    let json = orders_command(&env, &["reconcile", "--sale", "recon", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json report");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2));
}
