//! Three daemons behind the shipped nginx configuration (round robin, no
//! stickiness), as a fleet runs: retrying clients through nginx get the
//! stock sold exactly, every win once on Kafka, nobody over the limit —
//! also with Redis frozen mid-sale, when every daemon stays ready and the
//! pending answers resolve through any daemon after the thaw.

use std::time::Duration;

use hyper::Method;
use seckill_benches::load::{self, send, HttpClient, Plan};
use seckill_tests::settle::{redis_up, settle};
use seckill_tests::{
    another_daemon, distinct_requests, free_port, open_checked_sale, scrape, verdict_within, Nginx,
    Stack, CHECKED_ITEM,
};

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
    admin_ports: Vec<u16>,
    admin: String,
}

impl Fleet {
    async fn start() -> Fleet {
        Fleet::start_with(|_| {}, "max_fails=1 fail_timeout=5s").await
    }

    /// Every daemon's configuration adjusted by `tweak` too; `upstream`:
    /// the parameters of nginx's `server` lines.
    async fn start_with(tweak: fn(&mut seckill_io::Config), upstream: &str) -> Fleet {
        let admin_ports: Vec<u16> = (0..DAEMONS).map(|_| free_port()).collect();
        let member = |n: usize| {
            let f = fleet_member(n, &admin_ports);
            move |c: &mut seckill_io::Config| {
                f(c);
                tweak(c);
            }
        };
        let stack = Stack::start(false, member(0)).await;
        let mut others = Vec::new();
        for n in 1..DAEMONS {
            others.push(another_daemon(&stack.redis, &stack.broker, member(n)).await);
        }
        let mut ports = vec![stack.daemon.addr.port()];
        ports.extend(others.iter().map(|(d, _, _)| d.addr.port()));
        let nginx = Nginx::shipped_with(&ports, upstream);
        Fleet {
            stack,
            others,
            nginx,
            admin_ports: admin_ports.clone(),
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
        open_checked_sale(&self.stack.client, &self.admin, sale, stock).await;
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
        items: vec![CHECKED_ITEM.into()],
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
    assert_eq!(
        distinct_requests(&fin, "success"),
        500,
        "{:?}",
        report.by_status
    );
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
        distinct_requests(&before.answers, "success"),
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
        distinct_requests(&during.answers, "pending") > 0,
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
        distinct_requests(&fin, "pending"),
        0,
        "every pending request resolved through nginx"
    );
    assert_eq!(distinct_requests(&fin, "success"), 300);
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

/// One user's rate, configured for the fleet, holds across the three
/// daemons: each admits a third of it (the fleet hash says there are
/// three), so a user hammering through round-robin nginx is admitted at
/// the configured rate (plus its burst) within ±10 %, not three times it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_hammering_through_nginx_is_held_to_the_fleet_rate() {
    const RATE: u32 = 20;
    const BURST: u32 = 20;
    // nginx never takes a daemon out of the rotation here (max_fails=0):
    // a connect that is slow on a busy box would leave two daemons the
    // whole user's traffic for 5 s, and the fleet would admit 2/3 of the
    // rate meanwhile — nginx's doing (docs/deploy.md), not the limiter's.
    let fleet = Fleet::start_with(
        |c| {
            c.rate_user_per_s = RATE;
            c.rate_user_burst = BURST;
        },
        "max_fails=0",
    )
    .await;
    fleet.open_sale("limited", 1_000).await;
    let client = &fleet.stack.client;
    // Every daemon has seen the other two in the fleet hash.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for port in &fleet.admin_ports {
        loop {
            let m = scrape(client, &format!("http://127.0.0.1:{port}")).await;
            if m.lines().any(|l| l == "seckill_rate_limit_share 3") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "daemon on {port} never saw a fleet of 3"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // 100 purchases a second from one user for 5 s (bounded: 500).
    let url = format!(
        "{}/api/v1/sales/limited/items/{CHECKED_ITEM}/purchase",
        fleet.base()
    );
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let started = std::time::Instant::now();
    let (mut admitted, mut limited, mut other) = (0u32, 0u32, Vec::new());
    for i in 0..500 {
        tick.tick().await;
        let body = format!(r#"{{"user_id":"hammer","request_id":"hammer-{i}"}}"#).into_bytes();
        match send(client, Method::POST, &url, None, body).await {
            Ok((429, _)) => limited += 1,
            Ok((200 | 202, _)) => admitted += 1,
            Ok((s, b)) => other.push((s, String::from_utf8_lossy(&b).into_owned())),
            Err(e) => other.push((0, e.to_string())),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    assert!(other.is_empty(), "only admitted or limited: {other:?}");
    let expected = f64::from(BURST) + f64::from(RATE) * secs;
    let ratio = f64::from(admitted) / expected;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "admitted {admitted} in {secs:.1} s, expected {expected:.0} (ratio {ratio:.2}); limited {limited}"
    );
    fleet.stop().await;
}
