//! The cost of a fleet-wide per-user rate limit on the hot path, the two
//! ways to build one: shares (each daemon's in-process `governor` bucket
//! charged `n` cells per admission, `n` the live daemons — what seckilld
//! does) vs. a Redis-side limiter (one GCRA script per admission on a
//! spawned redis-server, one round trip each, or 64 pipelined in one).

use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use seckill_io::admission::limits::{LimitConfig, Limits};
use seckill_tests::RedisServer;

/// GCRA in one script: the key holds the theoretical arrival time (µs);
/// an admission moves it by one interval unless that would put it more
/// than the burst ahead of now. Returns 1 (admitted) or 0.
const GCRA: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > burst * interval then return 0 end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(burst * interval / 1000) + 1000)
return 1
";

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn limits(c: &mut Criterion) {
    let users: Vec<String> = (0..4096).map(|n| format!("user-{n}")).collect();
    let mut g = c.benchmark_group("user_limit");
    g.throughput(Throughput::Elements(1));

    let local = Limits::new(LimitConfig {
        user_per_s: 5,
        user_burst: 10,
        ..LimitConfig::default()
    });
    local.set_share(3);
    let mut i = 0usize;
    g.bench_function("shares_in_process", |b| {
        b.iter(|| {
            i = (i + 1) % users.len();
            local.admit_user(&users[i]).is_ok()
        })
    });

    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let script = redis::Script::new(GCRA);
    let interval_us = 1_000_000 / 5;
    g.bench_function("redis_script_per_request", |b| {
        b.iter(|| {
            i = (i + 1) % users.len();
            let admitted: i64 = script
                .key(format!("rl:{}", users[i]))
                .arg(now_us())
                .arg(interval_us)
                .arg(10)
                .invoke(&mut conn)
                .expect("script");
            admitted
        })
    });

    // The Redis limiter at its best: 64 admissions in one pipelined round
    // trip (what a batching ingress could do), per admission.
    let sha = script.get_hash().to_string();
    let _: i64 = script
        .key("rl:warm")
        .arg(now_us())
        .arg(interval_us)
        .arg(10)
        .invoke(&mut conn)
        .expect("load the script");
    g.throughput(Throughput::Elements(64));
    g.bench_function("redis_script_pipelined_64", |b| {
        b.iter(|| {
            let mut p = redis::pipe();
            let now = now_us();
            for _ in 0..64 {
                i = (i + 1) % users.len();
                p.cmd("EVALSHA")
                    .arg(&sha)
                    .arg(1)
                    .arg(format!("rl:{}", users[i]))
                    .arg(now)
                    .arg(interval_us)
                    .arg(10);
            }
            let v: Vec<i64> = p.query(&mut conn).expect("pipeline");
            v
        })
    });
    g.finish();
}

criterion_group!(benches, limits);
criterion_main!(benches);
