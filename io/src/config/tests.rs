//! The settings' sources, precedence and checks.

use super::*;

#[test]
fn flags_beat_the_file_and_the_file_beats_defaults() {
    let file: Settings = toml::from_str(
        "ring_size = 1024\nadmin_token = \"file\"\ntoken_key = \"0123456789abcdef\"\n",
    )
    .expect("toml");
    let flags = Settings {
        admin_token: Some("flag".into()),
        ..Settings::default()
    };
    let cfg = flags.over(file).resolve();
    assert_eq!(cfg.admin_token, "flag");
    assert_eq!(cfg.ring_size, 1024);
    assert_eq!(cfg.batch_len_max, 64);
}

#[test]
fn the_example_config_parses_and_refuses_its_placeholders() {
    let s: Settings =
        toml::from_str(include_str!("../../../seckill.example.toml")).expect("example parses");
    let err = s
        .clone()
        .resolve()
        .validate()
        .expect_err("placeholders refused");
    assert!(err.to_string().contains("placeholder"), "{err}");
    let own = Settings {
        admin_token: Some("an-admin-token-of-our-own".into()),
        token_key: Some("0123456789abcdef0123456789abcdef".into()),
        ..Settings::default()
    };
    own.over(s)
        .resolve()
        .validate()
        .expect("valid with secrets of one's own");
}

#[test]
fn unknown_keys_and_bad_values_are_refused() {
    assert!(toml::from_str::<Settings>("no_such_key = 1").is_err());
    let cfg = Settings {
        ring_size: Some(1000),
        ..Settings::default()
    }
    .resolve();
    assert!(cfg.validate().is_err());
}

#[test]
fn sentinels_need_the_masters_name_a_cluster_excludes_them_and_a_wait_needs_a_timeout() {
    let base = || {
        let mut c = Config::defaults();
        c.admin_token = "an-admin-token-of-our-own".into();
        c.token_key = "0123456789abcdef0123456789abcdef".into();
        c
    };
    let mut c = base();
    c.redis_sentinels = "127.0.0.1:26379, 127.0.0.1:26380".into();
    let err = c.validate().expect_err("no master name");
    assert!(err.to_string().contains("redis_master_name"), "{err}");
    c.redis_master_name = "seckill".into();
    c.validate().expect("sentinels with a name");
    let t = c.redis_target().expect("target");
    assert_eq!(t.sentinels, ["127.0.0.1:26379", "127.0.0.1:26380"]);
    assert_eq!(t.master_name, "seckill");
    assert!(t.is_sentinel());
    c.redis_sentinels = "127.0.0.1".into();
    let err = c.validate().expect_err("no port");
    assert!(err.to_string().contains("redis_sentinels"), "{err}");

    let mut c = base();
    c.redis_cluster_nodes = "127.0.0.1:7000,127.0.0.1:7001".into();
    c.validate().expect("cluster nodes");
    let t = c.redis_target().expect("target");
    assert_eq!(t.cluster_nodes, ["127.0.0.1:7000", "127.0.0.1:7001"]);
    assert!(t.is_cluster() && !t.is_sentinel());
    c.redis_sentinels = "127.0.0.1:26379".into();
    c.redis_master_name = "seckill".into();
    let err = c
        .validate()
        .expect_err("a cluster does not sit behind Sentinels");
    assert!(err.to_string().contains("redis_cluster_nodes"), "{err}");
    c.redis_sentinels.clear();
    c.redis_master_name.clear();
    c.redis_cluster_nodes = "127.0.0.1".into();
    let err = c.validate().expect_err("no port");
    assert!(err.to_string().contains("redis_cluster_nodes"), "{err}");

    let mut c = base();
    c.redis_wait_replicas = 1;
    c.validate().expect("the default WAIT timeout");
    c.redis_wait_timeout_ms = 0;
    let err = c.validate().expect_err("WAIT 1 0 blocks for ever");
    assert!(err.to_string().contains("redis_wait_timeout_ms"), "{err}");
}
