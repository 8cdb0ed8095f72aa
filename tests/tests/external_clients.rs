//! The daemon as outside clients meet it, through two Python scripts run
//! against a live daemon (packages in target/pyenv, installed by
//! scripts/setup.sh):
//!
//! * `scripts/openapi-check.py`: `/api/v1/openapi.json` passes an
//!   independent validator (`openapi-spec-validator`), and a client
//!   generated from it (`openapi-python-client`) creates a sale with the
//!   declared bearer scheme and buys one unit;
//! * `scripts/fuzz-http.py`: a black-box fuzz run over raw sockets —
//!   malformed request lines, huge and slow headers and bodies, pipelined
//!   garbage, invalid UTF-8, duplicate JSON keys, numbers and ids at and
//!   past every bound — bounded in time and count: no crash, every answer
//!   4xx or a closed connection, no change of state.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use seckill_tests::{Stack, ADMIN_TOKEN};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs a script of `scripts/` with the test virtualenv's Python; its
/// output is printed, its exit status returned.
async fn run_script(script: &str, args: &[&str], time_max: Duration) -> bool {
    let root = workspace();
    let python = root.join("target/pyenv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs the Python test packages)",
        python.display()
    );
    let mut child = Command::new(&python)
        .arg(root.join("scripts").join(script))
        .args(args)
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the script");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            return status.success();
        }
        if started.elapsed() > time_max {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            panic!("{script} ran past {time_max:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates_and_a_client_generated_from_it_buys() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon,
        base,
        wal: _wal,
        client: _client,
    } = Stack::start(false, |_| {}).await;
    assert!(
        run_script(
            "openapi-check.py",
            &[&base, ADMIN_TOKEN],
            Duration::from_secs(240)
        )
        .await,
        "openapi-check.py failed (its output is above)"
    );
    daemon.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_box_fuzz_run_gets_only_4xx_or_closed_connections_and_changes_nothing() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon,
        base,
        wal: _wal,
        client: _client,
    } = Stack::start(false, |_| {}).await;
    let header_timeout = daemon.app.cfg.header_timeout_ms.to_string();
    assert!(
        run_script(
            "fuzz-http.py",
            &[
                &base,
                ADMIN_TOKEN,
                "--seconds",
                "20",
                "--seed",
                "1",
                "--header-timeout-ms",
                &header_timeout,
            ],
            Duration::from_secs(180)
        )
        .await,
        "fuzz-http.py found failures (its output is above)"
    );
    daemon.shutdown().await.expect("shutdown");
}
