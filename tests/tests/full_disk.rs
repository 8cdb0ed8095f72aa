//! A full disk under the WAL, mid-sale, on a real (small) filesystem: the
//! wins Redis decided in the batches the journal could not write are
//! written late and published, so Kafka ends up with exactly the wins Redis
//! holds — none left in Redis alone.
//!
//! The filesystem is a tmpfs of its own, so the test needs root (or
//! CAP_SYS_ADMIN), as `.ci/run` has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use seckill_benches::check;
use seckill_benches::load::{self, ItemSpec, Plan};
use seckill_io::redis::RedisAdmin;
use seckill_tests::settle::settle;
use seckill_tests::{Stack, ADMIN_TOKEN};

/// A tmpfs of `kib` KiB, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(kib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tmp");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the filesystem of `path` with a file, leaving about `keep` bytes.
fn fill_leaving(path: &Path, keep: u64) -> PathBuf {
    use std::io::Write;
    let filler = path.join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0u8; 16 << 10];
    loop {
        let free = free_bytes(path);
        if free <= keep + chunk.len() as u64 {
            break;
        }
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    f.sync_all().ok();
    filler
}

fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

async fn get_json(client: &load::HttpClient, url: &str) -> serde_json::Value {
    let (_, body) = load::send(client, hyper::Method::GET, url, None, vec![])
        .await
        .expect("answer");
    serde_json::from_slice(&body).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_mid_sale_loses_no_win_and_the_sale_resumes_when_space_returns() {
    const SALE: &str = "full-disk";
    let disk = Tmpfs::mount(1024);
    let wal_dir = disk.path().join("wal");
    let Stack {
        redis,
        broker,
        wal: _unused,
        daemon,
        base,
        client,
    } = Stack::start(false, |c| {
        c.wal_dir = wal_dir.clone();
        c.wal_segment_bytes = 64 << 10;
        c.kafka_message_timeout_ms = 5_000;
    })
    .await;
    let now = seckill_pipeline::now_ms();
    let items = [ItemSpec {
        item_id: "item".into(),
        title: "full disk".into(),
        price_cents: 100,
        stock: 50_000,
        per_user_limit: 1,
        shards: 1,
    }];
    load::create_sale(
        &client,
        &base,
        ADMIN_TOKEN,
        SALE,
        now,
        now + 600_000,
        &items,
    )
    .await
    .expect("sale created");
    // The broker is frozen (SIGSTOP), so no order is acknowledged, the
    // checkpoint stays and the log only grows; room is left for a few
    // segments. (Frozen, not killed: the test broker, restarted empty,
    // acknowledges an idempotent producer's retried batches without
    // serving them.)
    broker.freeze();
    let filler = fill_leaving(disk.path(), 150 << 10);
    let plan = Plan {
        base: base.clone(),
        sale_id: SALE.into(),
        items: vec!["item".into()],
        users: 3_000,
        first_user: 0,
        request_prefix: String::new(),
        clicks_per_user: 1,
        retries: 1,
        concurrency: 32,
        time_max: Duration::from_secs(60),
        rate_per_sec: None,
    };
    let during = load::run(&client, &plan).await;
    eprintln!("during the full disk: {:?}", during.by_status);
    let unavailable = during.answers.iter().filter(|a| a.http == 503).count();
    assert!(
        unavailable > 0,
        "the disk never filled: {:?}",
        during.by_status
    );
    let ready = get_json(&client, &format!("{base}/readyz")).await;
    assert_eq!(ready["journal"], "down", "{ready}");
    assert_eq!(ready["ready"], false, "{ready}");
    let stats = &daemon.app.shared;
    assert!(stats.journal.state() == seckill_pipeline::health::State::Down);

    // Space comes back, then the broker.
    std::fs::remove_file(&filler).expect("free the space");
    broker.thaw();
    let answers = settle(
        &client,
        &base,
        SALE,
        &during.answers,
        Duration::from_secs(150),
    )
    .await;
    let open = answers
        .iter()
        .filter(|a| a.http == 0 || a.http >= 500 || a.status == "pending")
        .count();
    assert_eq!(open, 0, "answers still open after the disk came back");
    let ready = get_json(&client, &format!("{base}/readyz")).await;
    assert_eq!(ready["journal"], "up", "{ready}");
    assert!(
        stats.rescued.rescued() > 0,
        "no win of a failed write was written late: the scenario missed the case"
    );
    assert_eq!(stats.rescued.held(), 0);
    assert_eq!(stats.rescued.overflowed(), 0);

    // The checker: every win Redis holds is on Kafka, once.
    let admin = RedisAdmin::new(redis.url(), Duration::from_secs(2)).expect("redis");
    let hash = admin.stock(SALE, "item").expect("stock").expect("hash");
    let mut stock = BTreeMap::new();
    stock.insert("item".to_string(), hash);
    let held = (hash.locked + hash.sold) as usize;
    let brokers = broker.brokers();
    let orders = tokio::task::spawn_blocking(move || {
        check::read_orders(&brokers, SALE, held, Duration::from_secs(150))
    })
    .await
    .expect("join")
    .expect("orders");
    let report = check::check(&answers, &stock, &orders, 1);
    eprintln!(
        "full-disk verdict: {} successes, {} orders ({} distinct), Redis holds {}, rescued {}, violations {:?}",
        report.successes,
        report.kafka_orders,
        report.kafka_distinct_orders,
        held,
        stats.rescued.rescued(),
        report.violations
    );
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(
        report.kafka_distinct_orders, held as u64,
        "Kafka must hold exactly the wins Redis holds"
    );
    daemon.shutdown().await.expect("shutdown");
}
