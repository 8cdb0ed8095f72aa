//! The daemon's life: start (recover the WAL → connect → ring → replay
//! what is unfinished → serve) and shutdown (stop intake, drain the ring,
//! commit the WAL, flush the producer, write the checkpoint).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use seckill_pipeline::{Catalog, Pipeline, Shared, SharedClock, SystemClock};
use seckill_replay::Replayer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admission::{Limits, TokenKeys, TrustedProxies};
use crate::app::{blocking, App, KnownWins};
use crate::config::Config;
use crate::error::DaemonError;
use crate::http::Door;
use crate::peers::Peers;
use crate::shutdown::{self, CONNECTION_GRACE};
use crate::tasks;
use crate::wiring::{self, Connected, Recovered};

/// A running daemon.
pub struct Daemon {
    pub addr: SocketAddr,
    /// The admin socket's address, when `admin_listen` gives it one.
    pub admin_addr: Option<SocketAddr>,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    /// The accept loop, then the background tasks: awaited in this order
    /// on shutdown.
    tasks: Vec<JoinHandle<()>>,
    pipeline: Option<Pipeline>,
}

impl Daemon {
    /// Starts the daemon on the system clock.
    pub async fn start(cfg: Config) -> Result<Daemon, DaemonError> {
        Daemon::start_with_clock(cfg, SystemClock::shared()).await
    }

    /// Starts the daemon reading the time from `clock` (a test's manual
    /// clock moves sale windows, token expiry and payment deadlines
    /// without sleeping).
    pub async fn start_with_clock(cfg: Config, clock: SharedClock) -> Result<Daemon, DaemonError> {
        let shared = Shared::default();
        let board = Arc::clone(&shared.board);

        // 1. Recover the journal and read what is unfinished.
        let Recovered {
            wal,
            report,
            work,
            decisions,
        } = wiring::recover(&cfg, &board).await?;
        tracing::info!(segments = report.segments, records = report.records,
            last_lsn = report.last_lsn, checkpoint = ?report.checkpoint, decisions,
            pending = work.redrive.len(), wins_to_publish = work.republish.len(), "WAL recovered");

        // 2. Dependencies.
        let catalog = Arc::new(Catalog::default());
        let known_wins: Arc<KnownWins> = Arc::default();
        let Connected {
            redis,
            store,
            sink,
            sink_stats,
            kafka,
        } = wiring::connect(&cfg, &shared, &catalog, &known_wins, clock.now_ms()).await?;

        // 3. The ring, then replay before any client is let in.
        let (pipeline, submitter) =
            wiring::start_ring(&cfg, store, sink, wal, &shared, &report, Arc::clone(&clock))?;
        let replayer = Arc::new(Mutex::new(Replayer::new(
            submitter.clone(),
            Arc::clone(&catalog),
            shared.clone(),
        )));
        {
            let replayer = Arc::clone(&replayer);
            let redis_health = Arc::clone(&shared.redis);
            let backlog = Arc::clone(&shared.backlog);
            blocking(move || {
                tasks::drain::startup_replay(&replayer, &work, &redis_health, &backlog)
            })
            .await?;
        }

        // After a salvage, the journal lost records: publish every win the
        // stock authority holds (duplicates are dropped by consumers), in
        // the background so a Kafka outage does not hold up start-up.
        if cfg.wal_dir.join(seckill_wal::SALVAGED_MARKER).exists() {
            tokio::spawn(tasks::salvage::run(
                Arc::clone(&replayer),
                redis.clone(),
                Arc::clone(&catalog),
                Arc::clone(&board),
                cfg.wal_dir.clone(),
                Arc::clone(&clock),
            ));
        }

        // 4. Serve.
        let (listener, addr) = bind(cfg.listen).await?;
        let admin = match cfg.admin_addr() {
            Ok(Some(a)) => Some(bind(a).await?),
            Ok(None) => None,
            Err(reason) => {
                return Err(crate::config::ConfigError::Invalid {
                    key: "admin_listen",
                    reason,
                }
                .into())
            }
        };
        let admin_addr = admin.as_ref().map(|(_, a)| *a);
        let tokens = if cfg.token_key.is_empty() {
            None
        } else {
            Some(TokenKeys::new(&cfg.token_key, &cfg.token_key_previous)?)
        };
        let limits = Limits::new(cfg.limit_config());
        if cfg.rate_limit_scope == crate::config::RateScope::Fleet {
            // Until the first fleet read (≤ 1 s, or longer with Redis
            // down): the fleet the operator named.
            let peers = cfg.peer_list().map_or(0, |p| p.len());
            limits.set_share(u32::try_from(peers + 1).unwrap_or(u32::MAX));
        }
        {
            let r = redis.clone();
            if let Ok(Ok((users, ips))) = blocking(move || r.blacklist()).await {
                limits.set_blacklist(users, ips);
            }
        }
        let app = Arc::new(App {
            cfg: cfg.clone(),
            clock,
            catalog,
            shared: shared.clone(),
            board,
            sink_stats,
            kafka,
            redis,
            known_wins,
            catalog_sync: Default::default(),
            accepting: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            last_ring_full_ms: std::sync::atomic::AtomicU64::new(0),
            tokens,
            limits,
            proxies: cfg.trusted_proxies.parse().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "trusted_proxies unreadable: no proxy trusted");
                TrustedProxies::None
            }),
            peers: Peers::new(
                cfg.peer_list().unwrap_or_default(),
                cfg.admin_token.clone(),
                std::time::Duration::from_millis(cfg.peer_timeout_ms.max(1)),
            ),
            order_stats: Default::default(),
            conn_stats: Default::default(),
            order_wake: Default::default(),
            order_index: Default::default(),
            request_misses: Default::default(),
            metrics: crate::metrics::registry(),
            forgotten_sales: Default::default(),
            order_misses: Default::default(),
            purchase_stats: Default::default(),
            feed: Default::default(),
        });
        let (stop, stop_rx) = shutdown::channel();
        let mut tasks = Vec::new();
        let public_door = if let Some((admin, _)) = admin {
            tasks.push(tokio::spawn(crate::http::serve(
                admin,
                Door::Admin,
                Arc::clone(&app),
                submitter.clone(),
                stop_rx.clone(),
                CONNECTION_GRACE,
            )));
            Door::Public
        } else {
            Door::Both
        };
        tasks.extend([
            tokio::spawn(crate::http::serve(
                listener,
                public_door,
                Arc::clone(&app),
                submitter,
                stop_rx.clone(),
                CONNECTION_GRACE,
            )),
            tokio::spawn(tasks::probe::run(Arc::clone(&app), stop_rx.clone())),
            tokio::spawn(tasks::drain::run(
                Arc::clone(&app),
                replayer,
                cfg.wal_dir.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(tasks::sweeper::run(Arc::clone(&app), stop_rx.clone())),
            tokio::spawn(tasks::bounds::run(Arc::clone(&app), stop_rx.clone())),
            tokio::spawn(tasks::outbox::run(Arc::clone(&app), stop_rx.clone())),
            tokio::spawn(crate::dashboard::task::run(
                Arc::clone(&app),
                addr,
                stop_rx.clone(),
            )),
        ]);
        if cfg.redis_script_per_item && !app.redis.is_cluster() {
            // Behind a cluster proxy, which may refuse SUBSCRIBE: sold-out
            // items re-open from the catalog refresh (every second).
            tracing::info!("redis_script_per_item: no re-open subscriber; released stock re-opens items within a second");
        } else {
            tasks::reopen::spawn(Arc::clone(&app), stop_rx);
        }
        tracing::info!(%addr, admin = ?admin_addr, "seckilld listening");
        Ok(Daemon {
            addr,
            admin_addr,
            app,
            stop,
            tasks,
            pipeline: Some(pipeline),
        })
    }

    /// Graceful stop: refuse new purchases, let in-flight ones finish,
    /// drain the ring (the journal commits, the producer flushes), then
    /// write the checkpoint.
    pub async fn shutdown(mut self) -> Result<(), DaemonError> {
        let drain = std::time::Duration::from_millis(self.app.cfg.shutdown_drain_ms);
        if !drain.is_zero() {
            // Readiness first: the balancer notices and stops sending,
            // while what it still sends is served.
            self.app.draining.store(true, Ordering::Relaxed);
            tracing::info!(
                drain_ms = self.app.cfg.shutdown_drain_ms,
                "shutting down: not ready, still serving for the drain time"
            );
            tokio::time::sleep(drain).await;
        }
        tracing::info!("shutting down: intake stopped, draining the ring");
        self.app.accepting.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if let Some(p) = self.pipeline.take() {
            blocking(move || p.shutdown()).await?;
        }
        let safe = self.app.shared.outstanding.safe_lsn();
        let dir = self.app.cfg.wal_dir.clone();
        blocking(move || -> Result<(), seckill_wal::WalError> {
            if seckill_wal::read_checkpoint(&dir)?.unwrap_or(0) < safe {
                seckill_wal::write_checkpoint(&dir, safe)?;
            }
            Ok(())
        })
        .await??;
        tracing::info!(checkpoint = safe, "shutdown complete");
        Ok(())
    }
}

/// Binds a listening socket and reads back its address (port 0 picks one).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), DaemonError> {
    let failed = |source| DaemonError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let local = listener.local_addr().map_err(failed)?;
    Ok((listener, local))
}
