//! seckill-replay: the operator's tool for the WAL.
//!
//! Exit codes: 0 fine, 1 usage or I/O error, 2 corruption found.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use seckill_replay::{inspect, ReplayError};
use seckill_wal::WalError;

/// Inspect and verify seckill's write-ahead log (read-only).
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let from = match args.cmd {
        Cmd::Inspect { from_lsn, .. } => from_lsn,
        Cmd::Verify => 1,
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
