//! What the repository ships for teams on Prometheus: the alerting rules
//! pass `promtool check rules` and their own `promtool test rules` cases,
//! and the Grafana dashboard and the rules name only metrics a live
//! daemon exports.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use seckill_tests::Stack;

fn monitoring_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("docs/monitoring")
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring_dir())
        .output()
        .expect("promtool on PATH (apt-get install prometheus)");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[test]
fn the_alerting_rules_pass_promtool_and_their_own_tests() {
    let (ok, said) = promtool(&["check", "rules", "alerts.yml"]);
    assert!(ok, "promtool check rules: {said}");
    let (ok, said) = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(ok, "promtool test rules: {said}");
}

/// Every `seckill_…` and `process_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("seckill_") || t.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// The families of a scrape, with their types (`# TYPE name kind`).
fn families(scrape: &str) -> Vec<(String, String)> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some((p.next()?.to_string(), p.next()?.to_string()))
        })
        .collect()
}

fn exported(name: &str, families: &[(String, String)]) -> bool {
    families.iter().any(|(f, kind)| {
        f == name
            || (kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.as_str())))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_rules_name_only_exported_metrics() {
    let Stack {
        redis: _redis,
        broker: _broker,
        daemon: _daemon,
        base,
        wal: _wal,
        client,
    } = Stack::start(false, |c| c.require_token = false).await;
    let now = seckill_pipeline::now_ms();
    seckill_tests::one_item_sale(&client, &base, "mon", now - 1_000, 5).await;
    let scrape = seckill_tests::scrape(&client, &base).await;
    let families = families(&scrape);

    let dashboard = std::fs::read_to_string(monitoring_dir().join("grafana-dashboard.json"))
        .expect("the dashboard");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let exprs: Vec<String> = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(
        exprs.len() >= 10,
        "the dashboard has {} queries",
        exprs.len()
    );
    let rules =
        std::fs::read_to_string(monitoring_dir().join("alerts.yml")).expect("the alerting rules");
    let rule_exprs: Vec<&str> = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();

    for (what, names) in [
        ("dashboard", metric_names(&exprs.join("\n"))),
        ("alerting rules", metric_names(&rule_exprs.join("\n"))),
    ] {
        assert!(names.len() >= 8, "{what} names only {names:?}");
        let missing: Vec<&String> = names.iter().filter(|n| !exported(n, &families)).collect();
        assert!(
            missing.is_empty(),
            "the {what} name metrics the daemon does not export: {missing:?}"
        );
    }
}
