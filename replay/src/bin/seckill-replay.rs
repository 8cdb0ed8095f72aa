//! seckill-replay: the operator's tool for the WAL.
//!
//! Exit codes: 0 fine, 1 usage or I/O error, 2 corruption found.
//! Stop the daemon before `salvage`: the WAL directory has one writer.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use seckill_replay::{inspect, ReplayError};
use seckill_wal::{Options, Wal, WalError};

/// Inspect, verify and salvage seckill's write-ahead log. `inspect` and
/// `verify` never change a byte; `salvage` cuts at the first corruption.
#[derive(Debug, Parser)]
#[command(name = "seckill-replay", version)]
struct Args {
    /// The WAL directory (as the daemon's wal_dir).
    #[arg(long, env = "SECKILL_WAL_DIR", default_value = "seckill-wal")]
    wal_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Segments, records by kind, decisions by outcome, pending and
    /// unpublished counts.
    Inspect {
        /// Start at this LSN.
        #[arg(long, default_value_t = 1)]
        from_lsn: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reads every record and checks every checksum.
    Verify,
    /// After a corruption: keeps every record before it, moves the later
    /// segments to `quarantine/` in the WAL directory, and reports both.
    /// The daemon then starts from what was kept.
    Salvage,
}

/// The segment size the log was written with (all segments share it).
fn segment_bytes(dir: &std::path::Path) -> u64 {
    seckill_wal::segment::list(dir)
        .ok()
        .and_then(|segs| segs.last().and_then(|(_, p)| std::fs::metadata(p).ok()))
        .map_or(Options::default().segment_bytes, |m| m.len())
}

fn salvage(dir: &std::path::Path) -> ExitCode {
    let opts = Options {
        segment_bytes: segment_bytes(dir),
        ..Options::default()
    };
    match Wal::salvage(dir, opts) {
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

fn main() -> ExitCode {
    let args = Args::parse();
    let from = match args.cmd {
        Cmd::Inspect { from_lsn, .. } => from_lsn,
        Cmd::Verify => 1,
        Cmd::Salvage => return salvage(&args.wal_dir),
    };
    match inspect(&args.wal_dir, from) {
        Ok(inv) => {
            match args.cmd {
                Cmd::Inspect { json: true, .. } => {
                    println!("{}", serde_json::to_string_pretty(&inv).unwrap_or_default());
                }
                Cmd::Inspect { .. } => {
                    println!("WAL {}", args.wal_dir.display());
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
                    println!("  unpublished  {}", inv.unpublished);
                }
                Cmd::Verify => println!("ok: {} records, every checksum holds", inv.records),
                Cmd::Salvage => {}
            }
            ExitCode::SUCCESS
        }
        Err(ReplayError::Wal(e @ WalError::Corruption { .. })) => {
            eprintln!("corruption: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
