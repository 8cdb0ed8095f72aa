//! Three daemons behind the shipped nginx configuration (round robin, no
//! stickiness), as a fleet runs: retrying clients through nginx get the
//! stock sold exactly, every win once on Kafka, nobody over the limit —
//! also with Redis frozen mid-sale, when every daemon stays ready and the
//! pending answers resolve through any daemon after the thaw.

use std::time::Duration;

use hyper::Method;
use seckill_benches::check::Answer;
use seckill_benches::load::{self, create_sale, send, HttpClient, ItemSpec, Plan};
use seckill_tests::settle::{redis_up, settle};
use seckill_tests::{another_daemon, free_port, verdict_within, Nginx, Stack, ADMIN_TOKEN};

const DAEMONS: usize = 3;

/// The daemons' configuration in a fleet of `admin_ports`: daemon `n` has
/// its admin socket on `admin_ports[n]` and the others as peers; nginx is
/// its one trusted proxy.
fn fleet_member(n: usize, admin_ports: &[u16]) -> impl FnOnce(&mut seckill_io::Config) + use<> {
    let admin = admin_ports[n];
    let peers = admin_ports
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != n)
        .map(|(_, p)| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    move |c: &mut seckill_io::Config| {
        c.admin_listen = format!("127.0.0.1:{admin}");
        c.peers = peers;
        c.trusted_proxies = "1".into();
        c.require_token = false;
    }
}

struct Fleet {
    stack: Stack,
    others: Vec<(seckill_io::Daemon, tempfile::TempDir, String)>,
    nginx: Nginx,
    admin: String,
}

impl Fleet {
    async fn start() -> Fleet {
        let admin_ports: Vec<u16> = (0..DAEMONS).map(|_| free_port()).collect();
        let stack = Stack::start(false, fleet_member(0, &admin_ports)).await;
        let mut others = Vec::new();
        for n in 1..DAEMONS {
            others.push(
                another_daemon(&stack.redis, &stack.broker, fleet_member(n, &admin_ports)).await,
            );
        }
        let mut ports = vec![stack.daemon.addr.port()];
        ports.extend(others.iter().map(|(d, _, _)| d.addr.port()));
        let nginx = Nginx::shipped(&ports);
        Fleet {
            stack,
            others,
            nginx,
            admin: format!("http://127.0.0.1:{}", admin_ports[0]),
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.nginx.port)
    }

    fn bases(&self) -> Vec<String> {
        let mut v = vec![self.stack.base.clone()];
        v.extend(self.others.iter().map(|(_, _, b)| b.clone()));
        v
    }

    async fn open_sale(&self, sale: &str, stock: u64) {
        let now = seckill_pipeline::now_ms();
        let item = ItemSpec {
            item_id: "item".into(),
            title: "fleet".into(),
            price_cents: 100,
            stock,
            per_user_limit: 1,
        };
        create_sale(
            &self.stack.client,
            &self.admin,
            ADMIN_TOKEN,
            sale,
            now,
            now + 600_000,
            &[item],
        )
        .await
        .expect("sale created");
    }

    async fn stop(self) {
        for (d, _, _) in self.others {
            d.shutdown().await.expect("daemon stops");
        }
        self.stack.daemon.shutdown().await.expect("daemon stops");
    }
}

fn plan(base: &str, sale: &str, users: std::ops::Range<usize>) -> Plan {
    Plan {
        base: base.to_string(),
        sale_id: sale.to_string(),
        items: vec!["item".into()],
        users: users.end,
        first_user: users.start,
        request_prefix: String::new(),
        clicks_per_user: 2,
        retries: 1,
        concurrency: 32,
        time_max: Duration::from_secs(90),
        rate_per_sec: None,
    }
}

/// Distinct requests answered `status` (a retry is the same request).
fn count(answers: &[Answer], status: &str) -> usize {
    answers
        .iter()
        .filter(|a| a.status == status)
        .map(|a| &a.request_id)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

async fn ready(client: &HttpClient, base: &str) -> u16 {
    send(
        client,
        Method::GET,
        &format!("{base}/readyz"),
        None,
        Vec::new(),
    )
    .await
    .map(|(s, _)| s)
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_behind_nginx_sell_the_stock_exactly() {
    let fleet = Fleet::start().await;
    fleet.open_sale("fleet", 500).await;
    let client = &fleet.stack.client;
    let report = load::run(client, &plan(&fleet.base(), "fleet", 0..2_000)).await;
    assert_eq!(report.requests, 2_000 * 2 * 2, "{:?}", report.by_http);
    assert!(
        report.by_http.keys().all(|s| matches!(s, 200 | 202)),
        "only decided answers through nginx: {:?}",
        report.by_http
    );
    let fin = settle(
        client,
        &fleet.base(),
        "fleet",
        &report.answers,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(count(&fin, "success"), 500, "{:?}", report.by_status);
    let s = &fleet.stack;
    let v = verdict_within(&s.redis, &s.broker, "fleet", &fin, Duration::from_secs(30)).await;
    assert!(v.ok(), "{:?}", v.violations);
    assert_eq!(v.kafka_distinct_orders, 500);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_behind_nginx_keeps_every_daemon_ready_and_polls_resolve_anywhere() {
    let fleet = Fleet::start().await;
    fleet.open_sale("frozen-fleet", 300).await;
    let client = &fleet.stack.client;
    let before = load::run(client, &plan(&fleet.base(), "frozen-fleet", 0..100)).await;
    assert_eq!(
        count(&before.answers, "success"),
        100,
        "{:?}",
        before.by_status
    );

    fleet.stack.redis.freeze();
    let during = load::run(client, &plan(&fleet.base(), "frozen-fleet", 100..400)).await;
    for base in fleet.bases() {
        assert_eq!(
            ready(client, &base).await,
            200,
            "{base} stays ready with Redis frozen"
        );
    }
    assert!(
        count(&during.answers, "pending") > 0,
        "{:?}",
        during.by_status
    );
    assert!(
        during.by_http.keys().all(|s| matches!(s, 200 | 202)),
        "pending, never an error, while Redis is frozen: {:?}",
        during.by_http
    );
    // Every pending request, polled through nginx (any daemon), is known.
    for a in during
        .answers
        .iter()
        .filter(|a| a.status == "pending")
        .take(50)
    {
        let url = format!("{}/api/v1/requests/{}", fleet.base(), a.request_id);
        let (status, body) = send(client, Method::GET, &url, None, Vec::new())
            .await
            .expect("an answer");
        assert_eq!(
            status,
            200,
            "{} polled through nginx: {}",
            a.request_id,
            String::from_utf8_lossy(&body)
        );
    }
    fleet.stack.redis.thaw();
    for base in fleet.bases() {
        assert!(
            redis_up(client, &base, Duration::from_secs(30)).await,
            "{base} sees Redis again"
        );
    }

    let mut all = before.answers.clone();
    all.extend(during.answers.iter().cloned());
    let fin = settle(
        client,
        &fleet.base(),
        "frozen-fleet",
        &all,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        count(&fin, "pending"),
        0,
        "every pending request resolved through nginx"
    );
    assert_eq!(count(&fin, "success"), 300);
    let s = &fleet.stack;
    let v = verdict_within(
        &s.redis,
        &s.broker,
        "frozen-fleet",
        &fin,
        Duration::from_secs(30),
    )
    .await;
    assert!(v.ok(), "{:?}", v.violations);
    fleet.stop().await;
}
