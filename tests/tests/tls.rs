//! Production transports: Redis over TLS (`rediss://`, a CA, a client
//! certificate, the password from a file) and Kafka over TLS
//! (`security.protocol=SSL` through `kafka_properties`), each against a
//! real server that speaks only TLS.

use std::time::Duration;

use seckill_benches::load::{self, Plan};
use seckill_io::redis::{item_keys, RedisAdmin, RedisTarget};
use seckill_tests::tls::{Certs, TlsProxy, TlsRedis};
use seckill_tests::{
    daemon_config, free_port, one_item_sale, wait_acknowledged, Broker, DaemonProcess, RedisServer,
};

fn sale_plan(base: &str, sale: &str, users: usize) -> Plan {
    let mut plan = Plan::new(base, sale, &["i"], users);
    plan.time_max = Duration::from_secs(60);
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_a_password_from_a_file_sells_the_stock_exactly() {
    let certs = Certs::generate();
    let redis = TlsRedis::start(&certs, "a-redis-password-0123");

    // What the TLS server refuses: no CA (the system's trust store does
    // not know the test CA), no client certificate, a wrong password.
    let ping = |t: RedisTarget| {
        RedisAdmin::new(t, Duration::from_secs(2))
            .expect("client")
            .ping()
            .is_ok()
    };
    assert!(ping(redis.target(&certs)), "the full configuration works");
    let mut t = redis.target(&certs);
    t.ca_pem = None;
    assert!(!ping(t), "an unknown CA is refused");
    let mut t = redis.target(&certs);
    t.client_pem = None;
    assert!(!ping(t), "no client certificate is refused");
    let mut t = redis.target(&certs);
    t.password = Some("wrong".into());
    assert!(!ping(t), "a wrong password is refused");

    // seckilld as an operator runs it: the URL without the password, the
    // password and the certificates in files.
    let dir = tempfile::tempdir().expect("tmp");
    let password_file = dir.path().join("redis-password");
    std::fs::write(&password_file, "a-redis-password-0123\n").expect("password file");
    let broker = Broker::start();
    let unused = RedisServer::start();
    let mut cfg = daemon_config(&unused, &broker, &dir.path().join("wal"));
    cfg.listen = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    cfg.redis_url = redis.url();
    cfg.redis_password_file = password_file;
    cfg.redis_tls_ca_file = certs.ca();
    cfg.redis_tls_cert_file = certs.path("client.pem");
    cfg.redis_tls_key_file = certs.path("client.key");
    let log = dir.path().join("seckilld.log");
    let daemon = DaemonProcess::start(&cfg, &log);
    drop(unused);
    let base = format!("http://{}", daemon.addr);
    let client = load::client(16);
    one_item_sale(&client, &base, "tls", seckill_pipeline::now_ms(), 50).await;
    let report = load::run(&client, &sale_plan(&base, "tls", 120)).await;
    assert_eq!(
        report.by_status.get("success").copied(),
        Some(50),
        "{:?}; log in {}",
        report.by_status,
        log.display()
    );
    assert_eq!(report.by_status.get("sold_out").copied(), Some(70));

    let mut c = redis
        .target(&certs)
        .client()
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .expect("TLS connection");
    let stock: (i64, i64) = redis::cmd("HMGET")
        .arg(item_keys("tls", "i").stock)
        .arg("available")
        .arg("locked")
        .query(&mut c)
        .expect("the stock hash");
    assert_eq!(stock, (0, 50), "Redis over TLS holds the sale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_tls_carries_every_order() {
    let certs = Certs::generate();
    // The broker advertises the proxy: every connection a client makes,
    // bootstrap or partition leader, goes through TLS.
    let (tls_port, plain_port) = (free_port(), free_port());
    let _proxy = TlsProxy::start(&certs, tls_port, plain_port);
    let broker = Broker::start_advertising(plain_port, tls_port);
    let redis = RedisServer::start();
    let wal = tempfile::tempdir().expect("tmp");
    let mut cfg = daemon_config(&redis, &broker, wal.path());
    cfg.kafka_brokers = format!("127.0.0.1:{tls_port}");
    let ca = certs.ca();
    cfg.kafka_properties = seckill_io::config::KafkaProperties(vec![
        ("security.protocol".into(), "SSL".into()),
        ("ssl.ca.location".into(), ca.display().to_string()),
        ("client.id".into(), "seckilld-tls-test".into()),
    ]);
    let daemon = seckill_io::Daemon::start(cfg).await.expect("daemon starts");
    let base = format!("http://{}", daemon.addr);
    let client = load::client(16);
    one_item_sale(&client, &base, "tls-kafka", seckill_pipeline::now_ms(), 40).await;
    let report = load::run(&client, &sale_plan(&base, "tls-kafka", 60)).await;
    assert_eq!(
        report.by_status.get("success").copied(),
        Some(40),
        "{:?}",
        report.by_status
    );
    wait_acknowledged(&daemon.app, 40).await;
    daemon.shutdown().await.expect("daemon stops");
}
