//! Daemons as a fleet: any daemon answers for a request another one holds,
//! a sale created through one is known to all when the admin call returns,
//! and the admin socket is apart from the public one.

use std::time::{Duration, Instant};

use hyper::Method;
use seckill_benches::load::{create_sale, send, HttpClient, ItemSpec};
use seckill_tests::{another_daemon, free_port, Stack, ADMIN_TOKEN};

async fn get(client: &HttpClient, url: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
    let (status, body) = send(client, Method::GET, url, bearer, Vec::new())
        .await
        .expect("an answer");
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

async fn buy(
    client: &HttpClient,
    base: &str,
    sale: &str,
    user: &str,
    request: &str,
) -> serde_json::Value {
    let url = format!("{base}/api/v1/sales/{sale}/items/i/purchase");
    let body = format!(r#"{{"user_id":"{user}","request_id":"{request}"}}"#).into_bytes();
    let (_, body) = send(client, Method::POST, &url, None, body)
        .await
        .expect("an answer");
    serde_json::from_slice(&body).expect("JSON answer")
}

fn item(stock: u64) -> ItemSpec {
    ItemSpec {
        item_id: "i".into(),
        title: "item".into(),
        price_cents: 100,
        stock,
        per_user_limit: 1,
        shards: 1,
    }
}

/// The catalog sync runs once a second; a client that fetches its token
/// from another daemon right after the admin call must not hear
/// `unknown_item` (nor `unknown_sale` on the sale page). Five sales, each
/// asked for at once: without the catch-up, all five would have to land
/// just after a sync tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_created_through_one_daemon_is_known_to_another_when_the_call_returns() {
    let Stack {
        redis,
        broker,
        daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |_| {}).await;
    let (b, _wal_b, base_b) = another_daemon(&redis, &broker, |_| {}).await;
    let now = seckill_pipeline::now_ms();
    for n in 0..5 {
        let sale = format!("fresh{n}");
        create_sale(
            &client,
            &base,
            ADMIN_TOKEN,
            &sale,
            now + 30_000,
            now + 600_000,
            &[item(10)],
        )
        .await
        .expect("sale created on A");
        let (status, page) = get(&client, &format!("{base_b}/api/v1/sales/{sale}"), None).await;
        assert_eq!(
            status, 200,
            "B's sale page right after the admin call: {page}"
        );
        let token = seckill_benches::load::token(&client, &base_b, &sale, "i", "u1").await;
        assert!(
            matches!(token, Ok(Some(_))),
            "B hands out a token right after the admin call: {token:?}"
        );
        let (status, admin) = get(
            &client,
            &format!("{base_b}/admin/v1/sales/{sale}"),
            Some(ADMIN_TOKEN),
        )
        .await;
        assert_eq!(status, 200, "B's admin view: {admin}");
    }
    // Still a 404 for a sale nobody created.
    let (status, page) = get(&client, &format!("{base_b}/api/v1/sales/nobody"), None).await;
    assert_eq!(
        (status, page["error"].as_str()),
        (404, Some("unknown_sale"))
    );
    b.shutdown().await.expect("B stops");
    daemon.shutdown().await.expect("A stops");
}

/// With `admin_listen`, the public socket serves the API and the health
/// checks only; the admin socket the admin API, `/metrics`, the dashboard
/// and the health checks, not the public API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_is_apart_from_the_public_one() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| c.admin_listen = "127.0.0.1:0".into()).await;
    let admin = format!("http://{}", daemon.admin_addr.expect("an admin socket"));
    let token = Some(ADMIN_TOKEN);
    for (door, path, bearer, want) in [
        (&base, "/api/v1/time", None, 200),
        (&base, "/readyz", None, 200),
        (&base, "/livez", None, 200),
        (&base, "/admin/v1/sales", token, 404),
        (&base, "/metrics", None, 404),
        (&base, "/dashboard", None, 404),
        (&base, "/internal/v1/requests/r1", token, 404),
        (&admin, "/admin/v1/sales", token, 200),
        (&admin, "/metrics", None, 200),
        (&admin, "/dashboard", None, 200),
        (&admin, "/readyz", None, 200),
        (&admin, "/api/v1/time", None, 404),
    ] {
        let (status, _) = send(
            &client,
            Method::GET,
            &format!("{door}{path}"),
            bearer,
            Vec::new(),
        )
        .await
        .expect("an answer");
        assert_eq!(status, want, "GET {door}{path}");
    }
    daemon.shutdown().await.expect("stops");
}

/// Redis frozen: a purchase on A is answered `pending` and lives in A's
/// WAL only. A poll that reaches B is answered from A's board (`pending`),
/// not 503 or 404; after the thaw it resolves on B. A request id nobody
/// holds is 404 while every peer answers, and an honest 503 with
/// Retry-After while one of them is dead (it might hold the request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_request_is_answered_by_any_daemon() {
    let (admin_a, admin_b, dead) = (free_port(), free_port(), free_port());
    let peers_of_a = format!("127.0.0.1:{admin_b}");
    let Stack {
        redis,
        broker,
        daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| {
        c.require_token = false;
        c.admin_listen = format!("127.0.0.1:{admin_a}");
        c.peers = peers_of_a;
    })
    .await;
    let (b, _wal_b, base_b) = another_daemon(&redis, &broker, |c| {
        c.require_token = false;
        c.admin_listen = format!("127.0.0.1:{admin_b}");
        c.peers = format!("127.0.0.1:{admin_a}");
    })
    .await;
    let now = seckill_pipeline::now_ms();
    let admin = format!("http://127.0.0.1:{admin_a}");
    create_sale(
        &client,
        &admin,
        ADMIN_TOKEN,
        "held",
        now - 1_000,
        now + 600_000,
        &[item(5)],
    )
    .await
    .expect("sale created");
    let warm = buy(&client, &base_b, "held", "warm", "warm").await;
    assert_eq!(warm["status"], "success", "{warm}");

    redis.freeze();
    let held = buy(&client, &base, "held", "u1", "r1").await;
    assert_eq!(held["status"], "pending", "{held}");
    let (status, poll) = get(&client, &format!("{base_b}/api/v1/requests/r1"), None).await;
    assert_eq!(status, 200, "B answers for A's pending request: {poll}");
    assert_eq!(poll["status"], "pending", "{poll}");
    assert_eq!(poll["user_id"], "u1");
    redis.thaw();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, poll) = get(&client, &format!("{base_b}/api/v1/requests/r1"), None).await;
        if status == 200 && poll["status"] != "pending" {
            assert!(
                matches!(poll["status"].as_str(), Some("success" | "order_created")),
                "{poll}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "r1 never resolved on B: {status} {poll}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Nobody holds `ghost`: 404 while A answers.
    let (status, poll) = get(&client, &format!("{base_b}/api/v1/requests/ghost"), None).await;
    assert_eq!(
        (status, poll["error"].as_str()),
        (404, Some("unknown_request")),
        "{poll}"
    );
    b.shutdown().await.expect("B stops");

    // A daemon that lists a dead peer cannot say `ghost` is nobody's.
    let (c, _wal_c, base_c) = another_daemon(&redis, &broker, |c| {
        c.require_token = false;
        c.peers = format!("127.0.0.1:{admin_a},127.0.0.1:{dead}");
    })
    .await;
    let (status, body) = send(
        &client,
        Method::GET,
        &format!("{base_c}/api/v1/requests/ghost2"),
        None,
        Vec::new(),
    )
    .await
    .expect("an answer");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(
        (status, v["error"].as_str()),
        (503, Some("peer_unavailable")),
        "{v}"
    );
    // A's request is still found through A.
    let (status, poll) = get(&client, &format!("{base_c}/api/v1/requests/r1"), None).await;
    assert_eq!(status, 200, "{poll}");
    c.shutdown().await.expect("C stops");
    daemon.shutdown().await.expect("A stops");
}

/// The shipped systemd unit passes `systemd-analyze verify` (where the
/// machine has it), pointed at this build's seckilld.
#[test]
fn the_shipped_systemd_unit_verifies() {
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("no systemd-analyze here: the unit is not verified");
        return;
    };
    assert!(out.status.success());
    let unit = include_str!("../../docs/deploy/seckilld.service");
    assert!(
        unit.contains("RestartPreventExitStatus=2 3"),
        "no restart loop on a corrupt WAL or a bad setting"
    );
    assert!(unit.contains("StateDirectory=seckilld") && unit.contains("LimitNOFILE="));
    let bin = seckill_tests::seckilld_bin();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("seckilld.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/seckilld", &bin.display().to_string()),
    )
    .expect("unit written");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !said.contains(path.to_str().unwrap_or("seckilld.service")),
        "systemd-analyze verify: {said}"
    );
}
