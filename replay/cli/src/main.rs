//! seckill-replay: the operator's tool for the WAL.
//!
//! Exit codes: 0 done (nothing left), 1 usage, I/O or connection error,
//! 2 corruption found, 3 work left (a dependency was still down).
//! `run` and `salvage` need the daemon stopped: the WAL has one writer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use seckill_io::config::Settings;
use seckill_io::DaemonError;
use seckill_replay::{inspect, ReplayError};
use seckill_wal::{Options, Wal, WalError};

/// Inspect, verify, salvage and re-drive seckill's write-ahead log.
///
/// `inspect` and `verify` never change a byte. `run` does, with the daemon
/// stopped, what the daemon does at start: re-drive every pending intent
/// through the stock script (in journal order) and publish every win since
/// the checkpoint, then move the checkpoint. `salvage` cuts the log at the
/// first corruption, keeping everything before it.
#[derive(Debug, Parser)]
#[command(name = "seckill-replay", version)]
struct Args {
    /// TOML configuration file of the daemon (for `run`: Redis, Kafka).
    #[arg(long, env = "SECKILL_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The daemon settings `--help` lists: what this tool uses. Every other
/// daemon setting is still read (from `--config`, `SECKILL_*` or a flag),
/// since `run` starts the daemon's ring, but is not listed.
const LISTED: &[&str] = &[
    "config",
    "wal_dir",
    "wal_segment_bytes",
    "redis_url",
    "redis_url_file",
    "redis_password",
    "redis_password_file",
    "redis_tls_ca_file",
    "redis_tls_cert_file",
    "redis_tls_key_file",
    "redis_sentinels",
    "redis_master_name",
    "redis_cluster_nodes",
    "redis_timeout_ms",
    "redis_wait_replicas",
    "redis_wait_timeout_ms",
    "kafka_brokers",
    "kafka_properties",
    "kafka_orders_topic",
    "kafka_message_timeout_ms",
    "help",
    "version",
];

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Segments, records by kind, decisions by outcome, pending intents and
    /// wins (each republished by `run`).
    Inspect {
        /// Start at this LSN.
        #[arg(long, default_value_t = 1)]
        from_lsn: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reads every record and checks every checksum, with the rule the
    /// daemon's start applies (exit code 2 where it would refuse to start).
    Verify,
    /// After a corruption: keeps every record before it, moves the later
    /// segments to `quarantine/`, and reports both. The daemon's next start
    /// publishes every win Redis holds again, to cover what was set aside.
    Salvage,
    /// Re-drives pending intents and republishes wins (daemon stopped).
    Run {
        /// Start at this LSN instead of the checkpoint.
        #[arg(long)]
        from_lsn: Option<u64>,
        /// Show what would be done, per item, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Give up waiting for Redis and Kafka after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn segment_bytes(dir: &std::path::Path) -> u64 {
    seckill_wal::segment::list(dir)
        .ok()
        .and_then(|segs| segs.last().and_then(|(_, p)| std::fs::metadata(p).ok()))
        .map_or(Options::default().segment_bytes, |m| m.len())
}

fn exit_for(e: &DaemonError) -> ExitCode {
    match e {
        DaemonError::Wal(WalError::Corruption { .. })
        | DaemonError::Replay(ReplayError::Wal(WalError::Corruption { .. })) => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

fn main() -> ExitCode {
    // Usage errors exit 1 (clap's own 2 is this tool's "corruption").
    let command = Args::command().mut_args(|a| {
        let listed = LISTED.contains(&a.get_id().as_str());
        a.hide(!listed)
    });
    let args = match command
        .try_get_matches()
        .and_then(|m| Args::from_arg_matches(&m))
    {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // What the replay does (a torn tail cut, a round re-driven) is logged
    // like the daemon's, to stderr; SECKILL_LOG or RUST_LOG filters it.
    let filter = std::env::var("SECKILL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let file = match &args.config {
        Some(p) => match seckill_io::config::load_file(p) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        },
        None => Settings::default(),
    };
    let cfg = match args.settings.clone().over(file).read_secret_files() {
        Ok(s) => s.resolve(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let dir = cfg.wal_dir.clone();
    match args.cmd {
        Cmd::Inspect { from_lsn, json } => match inspect(&dir, from_lsn) {
            Ok(inv) if json => {
                println!("{}", serde_json::to_string_pretty(&inv).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(inv) => {
                println!("WAL {}", dir.display());
                println!("  segments     {}", inv.segments);
                println!("  records      {}", inv.records);
                println!("  LSNs         {:?} ..= {:?}", inv.first_lsn, inv.last_lsn);
                println!("  checkpoint   {:?}", inv.checkpoint);
                for (k, n) in &inv.by_kind {
                    println!("  kind {k:<10} {n}");
                }
                for (s, n) in &inv.by_status {
                    println!("  outcome {s:<14} {n}");
                }
                println!("  pending      {}", inv.pending);
                println!("  wins         {}", inv.wins);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit_for(&DaemonError::Replay(e))
            }
        },
        Cmd::Verify => match seckill_wal::verify(&dir) {
            Ok(report) => {
                println!(
                    "ok: {} records in {} segments (last LSN {}), every checksum holds",
                    report.records, report.segments, report.last_lsn
                );
                if let Some(t) = &report.torn_tail {
                    println!(
                        "torn tail in {} at byte {} ({} bytes, cut at the next open): {}",
                        t.segment.display(),
                        t.offset,
                        t.bytes_cut,
                        t.reason
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("corruption or error: {e}");
                exit_for(&DaemonError::Wal(e))
            }
        },
        Cmd::Salvage => {
            let opts = Options {
                segment_bytes: segment_bytes(&dir),
                ..Options::default()
            };
            match Wal::salvage(&dir, opts) {
                Ok((_, report)) => {
                    match &report.corruption {
                        None => println!("nothing to salvage: every record is valid"),
                        Some((seg, off, reason)) => {
                            println!("corruption in {} at byte {off}: {reason}", seg.display());
                            println!(
                                "kept {} records (up to LSN {})",
                                report.records_kept, report.last_lsn_kept
                            );
                            for q in &report.quarantined {
                                println!("quarantined {}", q.display());
                            }
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("salvage failed: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Run {
            from_lsn,
            dry_run,
            timeout_s,
            json,
        } => {
            let mut cfg = cfg;
            cfg.wal_segment_bytes = segment_bytes(&dir);
            if dry_run {
                return match seckill_io::offline::plan(&cfg, from_lsn) {
                    Ok((from, work)) => {
                        print_plan(from, &work);
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        exit_for(&e)
                    }
                };
            }
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} done ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let b = bar.clone();
            let progress: seckill_io::offline::Progress = Arc::new(move |done, total| {
                b.set_length(total);
                b.set_position(done);
            });
            let result = rt.block_on(seckill_io::offline::run(
                &cfg,
                from_lsn,
                Duration::from_secs(timeout_s),
                progress,
            ));
            bar.finish_and_clear();
            match result {
                Ok(s) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                    } else {
                        println!("replay from LSN {}", s.from_lsn);
                        println!("  {:<24} {:>8}", "pending intents found", s.pending_found);
                        for (status, n) in &s.resolved {
                            println!("    resolved {status:<15} {n:>8}");
                        }
                        println!("  {:<24} {:>8}", "still pending", s.still_pending);
                        println!("  {:<24} {:>8}", "wins to publish", s.wins_found);
                        println!("  {:<24} {:>8}", "acknowledged by Kafka", s.published);
                        println!("  {:<24} {:>8}", "unacknowledged", s.unacknowledged);
                        println!("  {:<24} {:>8}", "checkpoint now", s.checkpoint);
                        println!("  redis {} · kafka {}", s.redis, s.kafka);
                    }
                    if s.complete() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(3)
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit_for(&e)
                }
            }
        }
    }
}

fn print_plan(from: u64, work: &seckill_replay::Work) {
    let mut per_item: std::collections::BTreeMap<(String, String), (u64, u64)> = Default::default();
    for (_, d) in &work.redrive {
        per_item
            .entry((d.sale_id.clone(), d.item_id.clone()))
            .or_default()
            .0 += 1;
    }
    for (_, d) in &work.republish {
        per_item
            .entry((d.sale_id.clone(), d.item_id.clone()))
            .or_default()
            .1 += 1;
    }
    println!("dry run from LSN {from} (nothing changed)");
    println!(
        "  {:<20} {:<20} {:>10} {:>10}",
        "sale", "item", "re-drive", "publish"
    );
    for ((sale, item), (r, p)) in &per_item {
        println!("  {sale:<20} {item:<20} {r:>10} {p:>10}");
    }
    println!(
        "  {:<41} {:>10} {:>10}",
        "total",
        work.redrive.len(),
        work.republish.len()
    );
}
