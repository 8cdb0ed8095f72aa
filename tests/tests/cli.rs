//! `seckilld` as an operator meets it: `--help` never shows a secret,
//! `--check-config` refuses placeholders and short keys with exit code 2,
//! a corrupt WAL exits 3 (so a restart policy does not loop), and the log
//! has no colour codes nor a Redis password when it goes to a file.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use seckill_tests::{free_port, seckilld_bin};
use seckill_wal::{Kind, Options, Wal};

const GOOD_KEY: &str = "0123456789abcdef0123456789abcdef";

/// `seckilld` with a clean environment plus `env`.
fn seckilld(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(seckilld_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("SECKILL_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

fn output(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("run seckilld");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn help_never_shows_a_secret_from_the_environment() {
    let (code, text) = output(
        seckilld(&[
            ("SECKILL_ADMIN_TOKEN", "admin-secret-value-123"),
            ("SECKILL_TOKEN_KEY", "token-key-secret-value-0123456789"),
            (
                "SECKILL_REDIS_URL",
                "redis://:redis-secret-pw-456@127.0.0.1:6379/",
            ),
            ("SECKILL_REDIS_PASSWORD", "redis-pass-secret-789"),
        ])
        .arg("--help"),
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("SECKILL_TOKEN_KEY"), "{text}");
    for secret in [
        "admin-secret-value",
        "token-key-secret",
        "redis-secret-pw",
        "redis-pass-secret",
    ] {
        assert!(!text.contains(secret), "--help shows {secret}");
    }
}

#[test]
fn check_config_refuses_placeholders_and_short_secrets_with_exit_code_2() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../seckill.example.toml");
    let (code, text) = output(seckilld(&[]).args(["--config", example, "--check-config"]));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("placeholder"), "{text}");

    let (code, text) =
        output(seckilld(&[("SECKILL_TOKEN_KEY", "too-short-key")]).arg("--check-config"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("token_key"), "{text}");

    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("token-key");
    std::fs::write(&key, format!("{GOOD_KEY}\n")).expect("write");
    let (code, text) = output(
        seckilld(&[
            ("SECKILL_TOKEN_KEY_FILE", key.to_str().expect("utf-8 path")),
            ("SECKILL_ADMIN_TOKEN", "an-admin-token-of-our-own"),
        ])
        .arg("--check-config"),
    );
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_corrupt_wal_exits_with_its_own_code() {
    let dir = tempfile::tempdir().expect("tmp");
    let opts = Options {
        segment_bytes: 1 << 20,
        ..Options::default()
    };
    {
        let (mut wal, _) = Wal::open(dir.path(), opts.clone()).expect("open");
        for n in 0..50u32 {
            wal.append(Kind::Other, &n.to_le_bytes()).expect("append");
        }
        wal.commit().expect("commit");
    }
    let segs = seckill_wal::segment::list(dir.path()).expect("segments");
    let path = &segs[0].1;
    let mut bytes = std::fs::read(path).expect("read");
    bytes[seckill_wal::segment::SEGMENT_HEADER_LEN + 30] ^= 0x01;
    std::fs::write(path, bytes).expect("write");

    let (code, text) = output(&mut seckilld(&[
        ("SECKILL_WAL_DIR", dir.path().to_str().expect("utf-8 path")),
        ("SECKILL_WAL_SEGMENT_BYTES", "1048576"),
        ("SECKILL_TOKEN_KEY", GOOD_KEY),
        ("SECKILL_LISTEN", "127.0.0.1:0"),
    ]));
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("corrupt"), "{text}");
}

/// Runs the daemon against a Redis that refuses connections and returns
/// its first log line about it (then kills it).
fn redis_warning(format: &str) -> String {
    let wal = tempfile::tempdir().expect("tmp");
    let dead = format!("redis://:hunter2-password@127.0.0.1:{}/", free_port());
    let mut child = seckilld(&[
        ("SECKILL_WAL_DIR", wal.path().to_str().expect("utf-8 path")),
        ("SECKILL_TOKEN_KEY", GOOD_KEY),
        ("SECKILL_LISTEN", "127.0.0.1:0"),
        ("SECKILL_REDIS_URL", &dead),
        (
            "SECKILL_KAFKA_BROKERS",
            &format!("127.0.0.1:{}", free_port()),
        ),
        ("SECKILL_LOG_FORMAT", format),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn seckilld");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("redis is not reachable") {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("the daemon logs the unreachable Redis");
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn logs_to_a_file_have_no_colours_and_no_redis_password() {
    let line = redis_warning("text");
    assert!(
        !line.contains('\u{1b}'),
        "ANSI codes in a log file: {line:?}"
    );
    assert!(!line.contains("hunter2"), "the password is logged: {line}");
    assert!(line.contains("***@127.0.0.1"), "{line}");

    let line = redis_warning("json");
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(v["level"], "WARN", "{v}");
    assert!(!line.contains("hunter2"), "{line}");
}
