//! seckilld: config → recover the WAL → serve → drain on SIGTERM/SIGINT.
//!
//! Exit codes: 0 a clean stop (or a valid `--check-config`); 1 a failure
//! at start or while running (Redis and Kafka being down is not one: the
//! daemon degrades); 2 a usage error or an invalid configuration; 3 the WAL
//! is corrupt — restarting will not help, run `seckill-replay verify` and
//! `salvage` (systemd: `RestartPreventExitStatus=3`).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use seckill_io::config::LogFormat;
use seckill_io::{Cli, Config, Daemon, DaemonError};

/// mimalloc: per-thread free lists make the small, short-lived allocations
/// of request handling (hyper's buffers and headers, answers) cheaper than
/// glibc's malloc; see docs/benchmarks.md. The bare reference server uses
/// the same allocator, so the two stay comparable.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_WAL_CORRUPT: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let check_only = cli.check_config;
    let cfg = match cli.into_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if check_only {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = init_logs(&cfg) {
        eprintln!("error: {e:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "seckilld stopped");
            eprintln!("error: {e:#}");
            let corrupt = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<DaemonError>(),
                    Some(DaemonError::Wal(seckill_wal::WalError::Corruption { .. }))
                        | Some(DaemonError::Replay(seckill_replay::ReplayError::Wal(
                            seckill_wal::WalError::Corruption { .. }
                        )))
                )
            });
            ExitCode::from(if corrupt {
                EXIT_WAL_CORRUPT
            } else {
                EXIT_FAILURE
            })
        }
    }
}

/// Log lines to stdout: text (colours only on a terminal) or JSON.
fn init_logs(cfg: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log)
        .context("invalid log filter (SECKILL_LOG / RUST_LOG)")?;
    let fmt = tracing_subscriber::fmt().with_env_filter(filter);
    match cfg.log_format {
        LogFormat::Text => fmt.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => fmt.json().with_ansi(false).init(),
    }
    Ok(())
}

fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.worker_threads)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(async move {
        let daemon = Daemon::start(cfg)
            .await
            .context("seckilld failed to start")?;
        // The address on stdout, for scripts that start us on port 0.
        println!("listening on {}", daemon.addr);
        wait_for_signal().await?;
        daemon.shutdown().await.context("shutdown failed")
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
