//! seckill-orders: the wins on Kafka into SQL.
//!
//! Exit codes: 0 done (or a clean stop); 1 a failure (a dependency the
//! command needs did not answer); 2 a usage error or an invalid
//! configuration; 3 `reconcile` found a mismatch.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use seckill_io::config::LogFormat;
use seckill_orders::config::{Config, Settings};
use seckill_orders::store::Store;
use seckill_orders::{dlq, reconcile, service};

/// seckill-orders — the order service of seckill.
///
/// Consumes the wins (`seckill.orders`) and the order events
/// (`seckill.order-events`) into PostgreSQL or MySQL/MariaDB, one
/// transaction per poll batch, offsets committed after the commit; poison
/// messages go through `seckill.orders.retry` to `seckill.orders.dlq`; a
/// win older than `backlog_release_after_ms` is released in Redis instead.
/// Every option can be set in the TOML file (`--config`), by its SECKILL_*
/// environment variable, or by its flag.
#[derive(Debug, Parser)]
#[command(name = "seckill-orders", version)]
struct Cli {
    /// TOML configuration file (keys as the flags, with `_`).
    #[arg(long, env = "SECKILL_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Consume into the database and serve /healthz, /readyz, /metrics and
    /// the order queries (the default).
    Run,
    /// The dead-letter queue.
    Dlq {
        #[command(subcommand)]
        cmd: DlqCmd,
    },
    /// Compare Redis, the seckill.orders topic and the database for one
    /// sale, item by item; exit 3 on any mismatch.
    Reconcile {
        #[arg(long)]
        sale: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCmd {
    /// The parked entries: id, where the message came from, why it failed.
    List {
        /// Redriven entries too.
        #[arg(long)]
        all: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Send entries back through the retry topic (once what failed them is
    /// fixed).
    Redrive {
        /// The entries (repeat the flag, or separate with commas).
        #[arg(long, value_delimiter = ',', required_unless_present = "all")]
        id: Vec<i64>,
        /// Every parked entry.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

const EXIT_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_MISMATCH: u8 = 3;

fn main() -> ExitCode {
    // The settings apply whatever the subcommand (`dlq list --database-url …`).
    let command = Cli::command().mut_args(|a| {
        if a.get_id() == "config" {
            a
        } else {
            a.global(true)
        }
    });
    let cli = match command
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let cfg = match cli.settings.into_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = init_logs(&cfg) {
        eprintln!("error: {e:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match rt.block_on(dispatch(cli.cmd.unwrap_or(Cmd::Run), cfg)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Log lines to stderr (stdout is the commands' output).
fn init_logs(cfg: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log)
        .context("invalid log filter (SECKILL_LOG / RUST_LOG)")?;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => fmt.json().with_ansi(false).init(),
    }
    Ok(())
}

async fn dispatch(cmd: Cmd, cfg: Config) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Run => {
            let s = service::Service::start(cfg)
                .await
                .context("seckill-orders failed to start")?;
            // The address on stdout, for scripts that start us on port 0.
            println!("listening on {}", s.addr);
            wait_for_signal().await?;
            s.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Dlq { cmd } => {
            let store = open(&cfg).await?;
            match cmd {
                DlqCmd::List { all, json } => {
                    let rows = store.dlq_list(all, dlq::REDRIVE_MAX).await?;
                    if json {
                        for r in &rows {
                            println!("{}", serde_json::to_string(r)?);
                        }
                    } else {
                        print_dlq(&rows);
                    }
                }
                DlqCmd::Redrive { id, all } => {
                    let producer = seckill_orders::kafka::Producer::new(&cfg)?;
                    let ids = (!all).then_some(id.as_slice());
                    let done = dlq::redrive(&store, &producer, &cfg.topics().retry, ids).await?;
                    println!(
                        "redriven: {} {:?}; skipped (unknown or not parked): {} {:?}",
                        done.redriven.len(),
                        done.redriven,
                        done.skipped.len(),
                        done.skipped
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Reconcile { sale, json } => {
            let store = open(&cfg).await?;
            let report = reconcile::reconcile(&cfg, &store, &sale).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(if report.mismatches() > 0 {
                ExitCode::from(EXIT_MISMATCH)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// The database, its schema brought up to date.
async fn open(cfg: &Config) -> anyhow::Result<Store> {
    let store = Store::connect_lazy(
        &cfg.database_url,
        2,
        std::time::Duration::from_millis(cfg.db_timeout_ms),
    )?;
    store.migrate().await.context("cannot reach the database")?;
    Ok(store)
}

fn print_dlq(rows: &[seckill_orders::store::DlqRow]) {
    println!(
        "{:>6}  {:<9} {:<34} {:<14} {:>8} {:>5}  error",
        "id", "state", "source", "reason", "attempts", "parks"
    );
    for r in rows {
        let source = format!(
            "{}:{}@{}",
            r.source_topic, r.source_partition, r.source_offset
        );
        let mut error = r.error.clone();
        if error.len() > 80 {
            let mut cut = 80;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
            error.push('…');
        }
        println!(
            "{:>6}  {:<9} {:<34} {:<14} {:>8} {:>5}  {error}",
            r.id, r.state, source, r.error_kind, r.attempts, r.parks
        );
    }
    println!(
        "{} entr{}",
        rows.len(),
        if rows.len() == 1 { "y" } else { "ies" }
    );
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
