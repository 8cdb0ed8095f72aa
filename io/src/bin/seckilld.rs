//! seckilld: config → recover the WAL → serve → drain on SIGTERM/SIGINT.

use anyhow::Context;
use clap::Parser;
use seckill_io::{Cli, Daemon};

/// mimalloc: per-thread free lists make the small, short-lived allocations
/// of request handling (hyper's buffers and headers, answers) cheaper than
/// glibc's malloc; see docs/benchmarks.md. The bare reference server uses
/// the same allocator, so the two stay comparable.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = cli.into_config().context("invalid configuration")?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cfg.log)
                .context("invalid log filter (SECKILL_LOG)")?,
        )
        .init();
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
