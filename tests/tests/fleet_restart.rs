//! Three `seckilld` processes behind the shipped nginx configuration, one
//! of them stopped mid-sale: SIGKILLed and restarted on its journal while
//! the clients keep buying through nginx (the stock sold exactly, every
//! win once on Kafka), or SIGTERMed under load (its drain time lets nginx
//! move on: not one request fails at the client).

use std::time::Duration;

use seckill_benches::load::{self, HttpClient, Plan};
use seckill_tests::settle::settle;
use seckill_tests::{
    daemon_config, distinct_requests, free_port, open_checked_sale, verdict_within, Broker,
    DaemonProcess, Nginx, RedisServer, CHECKED_ITEM,
};

const DAEMONS: usize = 3;

struct Fleet {
    redis: RedisServer,
    broker: Broker,
    daemons: Vec<DaemonProcess>,
    configs: Vec<seckill_io::Config>,
    nginx: Nginx,
    _dirs: Vec<tempfile::TempDir>,
    logs: tempfile::TempDir,
    client: HttpClient,
}

impl Fleet {
    fn start(drain_ms: u64) -> Fleet {
        let redis = RedisServer::start();
        let broker = Broker::start();
        let logs = tempfile::tempdir().expect("tmp");
        let admin: Vec<u16> = (0..DAEMONS).map(|_| free_port()).collect();
        let mut dirs = Vec::new();
        let mut configs = Vec::new();
        for (n, port) in admin.iter().enumerate() {
            let wal = tempfile::tempdir().expect("tmp");
            let mut c = daemon_config(&redis, &broker, wal.path());
            c.listen = format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("address");
            c.admin_listen = format!("127.0.0.1:{port}");
            c.peers = admin
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != n)
                .map(|(_, p)| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",");
            c.trusted_proxies = "1".into();
            c.require_token = false;
            c.shutdown_drain_ms = drain_ms;
            dirs.push(wal);
            configs.push(c);
        }
        let daemons: Vec<DaemonProcess> = configs
            .iter()
            .enumerate()
            .map(|(n, c)| DaemonProcess::start(c, &logs.path().join(format!("d{n}.log"))))
            .collect();
        let ports: Vec<u16> = configs.iter().map(|c| c.listen.port()).collect();
        let nginx = Nginx::shipped(&ports);
        Fleet {
            redis,
            broker,
            daemons,
            configs,
            nginx,
            _dirs: dirs,
            logs,
            client: load::client(32),
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.nginx.port)
    }

    fn admin(&self, n: usize) -> String {
        format!("http://{}", self.configs[n].admin_listen)
    }

    async fn open_sale(&self, sale: &str, stock: u64) {
        open_checked_sale(&self.client, &self.admin(0), sale, stock).await;
    }
}

fn plan(base: &str, sale: &str, users: usize, rate: u32) -> Plan {
    Plan {
        base: base.to_string(),
        sale_id: sale.to_string(),
        items: vec![CHECKED_ITEM.into()],
        users,
        first_user: 0,
        request_prefix: String::new(),
        clicks_per_user: 2,
        retries: 3,
        concurrency: 32,
        time_max: Duration::from_secs(120),
        rate_per_sec: std::num::NonZeroU32::new(rate),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_sigkilled_mid_sale_and_restarted_on_its_journal_loses_nothing() {
    let mut fleet = Fleet::start(0);
    fleet.open_sale("killed", 600).await;
    // 2,000 users × 2 clicks at 800 purchases/s: about 5 s of sale.
    let (base, client) = (fleet.base(), fleet.client.clone());
    let sale =
        tokio::spawn(async move { load::run(&client, &plan(&base, "killed", 2_000, 800)).await });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    fleet.daemons[1].kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let log = fleet.logs.path().join("d1-restarted.log");
    let cfg = fleet.configs[1].clone();
    fleet.daemons[1] = tokio::task::spawn_blocking(move || DaemonProcess::start(&cfg, &log))
        .await
        .expect("restart");
    let report = sale.await.expect("the sale");
    assert!(report.requests >= 2_000 * 2, "{:?}", report.by_http);
    let fin = settle(
        &fleet.client,
        &fleet.base(),
        "killed",
        &report.answers,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        distinct_requests(&fin, "pending"),
        0,
        "every request resolved; logs in {}",
        fleet.logs.path().display()
    );
    assert_eq!(
        distinct_requests(&fin, "success"),
        600,
        "the stock sold exactly: {:?} (http {:?})",
        report.by_status,
        report.by_http
    );
    let v = verdict_within(
        &fleet.redis,
        &fleet.broker,
        "killed",
        &fin,
        Duration::from_secs(60),
    )
    .await;
    assert!(v.ok(), "{:?}", v.violations);
    assert_eq!(v.kafka_distinct_orders, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_one_daemon_under_load_fails_no_request() {
    let mut fleet = Fleet::start(2_000);
    fleet.open_sale("drained", 5_000).await;
    // 3,000 users × 2 clicks at 600 purchases/s: about 10 s of sale, the
    // daemon stopped after 2 s.
    let (base, client) = (fleet.base(), fleet.client.clone());
    let sale =
        tokio::spawn(async move { load::run(&client, &plan(&base, "drained", 3_000, 600)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut stopped = fleet.daemons.remove(2);
    let clean = tokio::task::spawn_blocking(move || stopped.terminate())
        .await
        .expect("terminate");
    assert!(clean, "the daemon exits 0 after its drain");
    let report = sale.await.expect("the sale");
    assert!(
        report.by_http.keys().all(|s| matches!(s, 200 | 202)),
        "not one request failed at the client: {:?}; logs in {}",
        report.by_http,
        fleet.logs.path().display()
    );
    let fin = settle(
        &fleet.client,
        &fleet.base(),
        "drained",
        &report.answers,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        distinct_requests(&fin, "success"),
        3_000,
        "{:?}",
        report.by_status
    );
    let v = verdict_within(
        &fleet.redis,
        &fleet.broker,
        "drained",
        &fin,
        Duration::from_secs(60),
    )
    .await;
    assert!(v.ok(), "{:?}", v.violations);
}
