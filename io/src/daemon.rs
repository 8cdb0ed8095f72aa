//! Wiring: config → recover the WAL → replay what is unfinished → serve;
//! and the reverse on shutdown (stop intake, drain the ring, commit the
//! WAL, flush the producer, write the checkpoint).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seckill_pipeline::health::{Health, State};
use seckill_pipeline::{
    Catalog, Pipeline, PipelineConfig, Ports, RequestState, Resume, Shared, Status, StatusBoard,
    Submitter,
};
use seckill_replay::{Replayer, Work};
use seckill_wal::{Kind, Wal};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::journal::WalJournal;
use crate::kafka::{self, KafkaOrderSink, SinkShared, SinkStats};
use crate::redis::{RedisAdmin, RedisStockStore};

/// How long start-up replay may take before the daemon serves anyway
/// (what is left is re-driven in the background).
const STARTUP_REPLAY_MAX: Duration = Duration::from_secs(60);
/// How long one background re-drive round may take.
const ROUND_MAX: Duration = Duration::from_secs(30);

/// What the handlers share.
pub struct App {
    pub cfg: Config,
    pub catalog: Arc<Catalog>,
    pub shared: Shared,
    pub board: Arc<StatusBoard>,
    pub sink_stats: Arc<SinkStats>,
    pub kafka: Arc<Health>,
    pub redis: RedisAdmin,
    known_wins: Arc<KnownWins>,
    /// False once shutdown began: new purchases get 503.
    pub accepting: AtomicBool,
    /// Purchase token keys (None: tokens are neither handed out nor checked).
    pub tokens: Option<crate::token::TokenKeys>,
    pub limits: crate::limits::Limits,
    pub order_stats: crate::orders::OrderStats,
    pub order_wake: crate::orders::Wake,
    /// Order id → (sale, item), learnt from lookups (orders are keyed by
    /// item in Redis; the id alone does not say which).
    pub order_index: dashmap::DashMap<String, (String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Wal(#[from] seckill_wal::WalError),
    #[error(transparent)]
    Replay(#[from] seckill_replay::ReplayError),
    #[error("redis: {0}")]
    Redis(String),
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSetupError),
    #[error(transparent)]
    Pipeline(#[from] seckill_pipeline::PipelineError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Join(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// A running daemon.
pub struct Daemon {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    probe: JoinHandle<()>,
    drain: JoinHandle<()>,
    orders: JoinHandle<()>,
    pipeline: Option<Pipeline>,
}

/// Rebuilds the status board from the journal, so a client retrying a
/// request id after a restart gets its original answer.
fn rebuild_board(wal: &Wal, board: &StatusBoard) -> Result<u64, seckill_wal::WalError> {
    let mut n = 0;
    let mut key = String::new();
    for rec in wal.read_from(1)? {
        let rec = rec?;
        if !matches!(rec.kind, Kind::Decision | Kind::Resolved) {
            continue;
        }
        let Ok(d) = seckill_pipeline::Decision::decode(&rec.payload) else {
            tracing::warn!(lsn = rec.lsn, "undecodable decision record skipped");
            continue;
        };
        if d.status.is_win() {
            seckill_pipeline::status::winner_key(&mut key, d.sale_id, d.item_id, d.user_id);
            board.add_win(&key);
        }
        board.advance(
            d.request_id,
            RequestState::new(d.status, d.order_id, d.sale_id, d.item_id, d.user_id),
        );
        n += 1;
    }
    Ok(n)
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DaemonError::Join(e.to_string()))
}

/// The adapters, connected (a dependency that is down is not fatal: its
/// health says so and the daemon degrades).
pub(crate) struct Connected {
    pub redis: RedisAdmin,
    pub store: RedisStockStore,
    pub sink: KafkaOrderSink,
    pub sink_stats: Arc<SinkStats>,
    pub kafka: Arc<Health>,
}

pub(crate) async fn connect(
    cfg: &Config,
    shared: &Shared,
    catalog: &Arc<Catalog>,
    known_wins: &Arc<KnownWins>,
) -> Result<Connected, DaemonError> {
    let redis = RedisAdmin::new(&cfg.redis_url, cfg.redis_timeout())
        .map_err(|e| DaemonError::Redis(e.to_string()))?;
    let store = RedisStockStore::new(&cfg.redis_url, cfg.redis_timeout())
        .map_err(|e| DaemonError::Redis(e.to_string()))?
        .per_item(cfg.redis_script_per_item);
    if !refresh_catalog(&redis, catalog, &shared.board, known_wins).await {
        shared.redis.fail("unreachable at start");
        tracing::warn!(url = %cfg.redis_url, "redis is not reachable; purchases will be decided pending");
    }
    let kafka = Arc::new(Health::new("kafka", State::Up));
    match tokio::time::timeout(
        Duration::from_secs(15),
        kafka::ensure_topics(&cfg.kafka_brokers, cfg.kafka_partitions),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            kafka.fail(&e.to_string());
        }
        Err(_) => {
            kafka.fail("no answer to topic creation in 15 s");
        }
    }
    let sink = KafkaOrderSink::new(
        &cfg.kafka_brokers,
        SinkShared {
            board: Arc::clone(&shared.board),
            outstanding: Arc::clone(&shared.outstanding),
            health: Arc::clone(&kafka),
        },
        Duration::from_millis(cfg.kafka_message_timeout_ms),
        Duration::from_millis(cfg.kafka_linger_ms),
    )?;
    let sink_stats = Arc::clone(&sink.stats);
    let sink = blocking(move || {
        if let Err(e) = sink.warm_up(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "Kafka warm-up failed; orders wait in the producer queue");
        }
        sink
    })
    .await?;
    Ok(Connected {
        redis,
        store,
        sink,
        sink_stats,
        kafka,
    })
}

/// Starts the ring on the real ports, the journal resuming after recovery.
pub(crate) fn start_ring(
    cfg: &Config,
    store: RedisStockStore,
    sink: KafkaOrderSink,
    wal: Wal,
    shared: &Shared,
    recovered: &seckill_wal::RecoveryReport,
) -> Result<(Pipeline, Submitter), DaemonError> {
    let pipeline = Pipeline::start(
        &PipelineConfig {
            ring_size: cfg.ring_size,
            batch_len_max: cfg.batch_len_max,
            pay_timeout_ms: cfg.pay_timeout_ms,
            ..PipelineConfig::default()
        },
        Ports {
            store: Box::new(store),
            sink: Box::new(sink),
            journal: Box::new(WalJournal::new(wal)),
        },
        shared,
        Resume {
            last_lsn: recovered.last_lsn,
            checkpoint: recovered.checkpoint.unwrap_or(0),
        },
        seckill_pipeline::now_ms,
    )?;
    let submitter = pipeline
        .submitter()
        .ok_or_else(|| DaemonError::Join("pipeline has no submitter".into()))?;
    Ok((pipeline, submitter))
}

/// Wins the status board has learned from Redis, per item, so each
/// refresh only reads the items that gained wins.
/// What the catalog refresh remembers between ticks.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// Per item: the wins already loaded into the status board, and when.
    pub wins: std::collections::HashMap<(String, String), (u64, std::time::Instant)>,
    /// The catalog version the metadata was last read at.
    pub catalog_version: Option<u64>,
    pub ticks: u64,
}

pub(crate) type KnownWins = Mutex<Known>;

/// How often the wins of an item still on sale are loaded into the board.
const WINS_RELOAD_ON_SALE: Duration = Duration::from_secs(10);

/// Keeps the local catalog in step with Redis, once a second: the sale
/// metadata every daemon wrote (re-read only when the catalog version moves,
/// and every 30 s regardless), then one pipelined round trip for every
/// item's `available` count (the sold-out flag and the sale page follow it)
/// and its number of wins. Wins another daemon made are loaded into the
/// status board: a client retrying a winning request id gets its win back
/// even when this daemon never journaled it (decided by another daemon, or
/// lost with a salvaged WAL segment) and the item is sold out.
///
/// Loading an item's wins reads all its orders, so during a burst it is
/// done at once only for items that sold out here (where the ingress
/// answers from the flag and only the board knows the win); an item still
/// on sale is re-read at most every [`WINS_RELOAD_ON_SALE`] — a retry of
/// its wins reaches the stock script, which returns the stored outcome.
pub(crate) async fn refresh_catalog(
    redis: &RedisAdmin,
    catalog: &Arc<Catalog>,
    board: &Arc<StatusBoard>,
    known: &Arc<KnownWins>,
) -> bool {
    let r = redis.clone();
    let board = Arc::clone(board);
    let known = Arc::clone(known);
    let catalog = Arc::clone(catalog);
    let done = blocking(move || -> Result<(), redis::RedisError> {
        let version = r.catalog_version()?;
        let full = {
            let mut k = known.lock().unwrap_or_else(|e| e.into_inner());
            k.ticks += 1;
            let full = k.catalog_version != Some(version) || k.ticks.is_multiple_of(30);
            k.catalog_version = Some(version);
            full
        };
        if full {
            for s in r.load_sales()? {
                catalog.refresh_sale(&s.sale_id, s.items);
            }
        }
        let items: Vec<Arc<seckill_pipeline::Item>> = catalog
            .sales()
            .into_iter()
            .flat_map(|(_, items)| items)
            .collect();
        let keys: Vec<(&str, &str)> = items
            .iter()
            .map(|i| (i.sale_id.as_str(), i.item_id.as_str()))
            .collect();
        let counters = r.item_counters(&keys)?;
        let mut key = String::new();
        for (item, (available, wins)) in items.iter().zip(counters) {
            item.set_remaining(available);
            let (sale, item_id) = (item.sale_id.clone(), item.item_id.clone());
            let (seen, read_at) = {
                let k = known.lock().unwrap_or_else(|e| e.into_inner());
                match k.wins.get(&(sale.clone(), item_id.clone())) {
                    Some(&(n, at)) => (n, Some(at)),
                    None => (0, None),
                }
            };
            if wins <= seen {
                continue;
            }
            let due = read_at.is_none_or(|at| at.elapsed() >= WINS_RELOAD_ON_SALE);
            if !item.is_sold_out() && !due {
                continue;
            }
            let mut per_user: std::collections::HashMap<String, u32> = Default::default();
            for w in r.wins(&sale, &item_id)? {
                *per_user.entry(w.user_id.clone()).or_insert(0) += 1;
                board.advance(
                    &w.request_id,
                    RequestState::new(
                        Status::Success,
                        seckill_pipeline::OrderId::parse(&w.order_id),
                        &sale,
                        &item_id,
                        &w.user_id,
                    ),
                );
            }
            for (user, n) in per_user {
                seckill_pipeline::status::winner_key(&mut key, &sale, &item_id, &user);
                board.wins_at_least(&key, n);
            }
            let mut k = known.lock().unwrap_or_else(|e| e.into_inner());
            k.wins
                .insert((sale, item_id), (wins, std::time::Instant::now()));
        }
        Ok(())
    })
    .await;
    matches!(done, Ok(Ok(())))
}

impl Daemon {
    pub async fn start(cfg: Config) -> Result<Daemon, DaemonError> {
        let opts = cfg.wal_options()?;
        let shared = Shared::default();
        let board = Arc::clone(&shared.board);

        // 1. Recover the journal and read what is unfinished.
        let wal_dir = cfg.wal_dir.clone();
        let (wal, report, work, decisions) = {
            let board = Arc::clone(&board);
            blocking(move || -> Result<_, DaemonError> {
                let (wal, report) = Wal::open(&wal_dir, opts)?;
                if let Some(t) = &report.torn_tail {
                    tracing::warn!(segment = %t.segment.display(), offset = t.offset,
                        bytes = t.bytes_cut, reason = %t.reason, "cut a torn WAL tail");
                }
                let decisions = rebuild_board(&wal, &board)?;
                let from = report.checkpoint.unwrap_or(1);
                let work = seckill_replay::scan(&wal_dir, from)?;
                Ok((wal, report, work, decisions))
            })
            .await??
        };
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
        } = connect(&cfg, &shared, &catalog, &known_wins).await?;

        // 3. The ring, then replay before any client is let in.
        let (pipeline, submitter) = start_ring(&cfg, store, sink, wal, &shared, &report)?;
        let replayer = Arc::new(Mutex::new(Replayer::new(
            submitter.clone(),
            Arc::clone(&catalog),
            shared.clone(),
        )));
        {
            let replayer = Arc::clone(&replayer);
            let redis_health = Arc::clone(&shared.redis);
            let backlog = Arc::clone(&shared.backlog);
            blocking(move || startup_replay(&replayer, &work, &redis_health, &backlog)).await?;
        }

        // After a salvage, the journal lost records: publish every win the
        // stock authority holds (duplicates are dropped by consumers), in
        // the background so a Kafka outage does not hold up start-up.
        if cfg.wal_dir.join(seckill_wal::SALVAGED_MARKER).exists() {
            tokio::spawn(reconcile_after_salvage(
                Arc::clone(&replayer),
                redis.clone(),
                Arc::clone(&catalog),
                Arc::clone(&sink_stats),
                cfg.wal_dir.clone(),
            ));
        }

        // 4. Serve.
        let listener =
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| DaemonError::Listen {
                    addr: cfg.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| DaemonError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let tokens = if cfg.token_key.is_empty() {
            None
        } else {
            Some(
                crate::token::TokenKeys::new(&cfg.token_key, &cfg.token_key_previous)
                    .map_err(|e| DaemonError::Config(e.to_string()))?,
            )
        };
        let limits = crate::limits::Limits::new(cfg.limit_config());
        {
            let r = redis.clone();
            if let Ok(Ok((users, ips))) = blocking(move || r.blacklist()).await {
                limits.set_blacklist(users, ips);
            }
        }
        let app = Arc::new(App {
            cfg: cfg.clone(),
            catalog,
            shared: shared.clone(),
            board,
            sink_stats,
            kafka,
            redis,
            known_wins,
            accepting: AtomicBool::new(true),
            tokens,
            limits,
            order_stats: Default::default(),
            order_wake: Default::default(),
            order_index: Default::default(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(crate::http::serve(
            listener,
            Arc::clone(&app),
            submitter,
            stop_rx.clone(),
            Duration::from_secs(5),
        ));
        let probe = tokio::spawn(probe(Arc::clone(&app), stop_rx.clone()));
        let orders = tokio::spawn(crate::orders::run(Arc::clone(&app), stop_rx.clone()));
        crate::orders::spawn_reopen_listener(Arc::clone(&app), stop_rx.clone());
        let drain = tokio::spawn(drain_loop(
            Arc::clone(&app),
            replayer,
            cfg.wal_dir.clone(),
            stop_rx,
        ));
        tracing::info!(%addr, "seckilld listening");
        Ok(Daemon {
            addr,
            app,
            stop,
            server,
            probe,
            drain,
            orders,
            pipeline: Some(pipeline),
        })
    }

    /// Graceful stop: refuse new purchases, let in-flight ones finish,
    /// drain the ring (the journal commits, the producer flushes), then
    /// write the checkpoint.
    pub async fn shutdown(mut self) -> Result<(), DaemonError> {
        tracing::info!("shutting down: intake stopped, draining the ring");
        self.app.accepting.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let _ = (&mut self.server).await;
        let _ = (&mut self.probe).await;
        let _ = (&mut self.drain).await;
        let _ = (&mut self.orders).await;
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

/// Before serving: publish again every win since the checkpoint (Kafka may
/// not have it) and, if Redis answers, re-drive every pending intent.
fn startup_replay(
    replayer: &Mutex<Replayer>,
    work: &Work,
    redis: &Health,
    backlog: &seckill_pipeline::progress::Backlog,
) {
    let mut r = replayer.lock().unwrap_or_else(|e| e.into_inner());
    r.seed(work);
    let republished = r.republish(work, STARTUP_REPLAY_MAX);
    if work.redrive.is_empty() {
        if republished > 0 {
            tracing::info!(republished, "start-up replay: wins handed to Kafka again");
        }
        return;
    }
    if redis.state() == State::Down {
        tracing::warn!(
            pending = work.redrive.len(),
            "start-up replay: redis is down; pending intents wait for it"
        );
        return;
    }
    redis.transition(
        &[State::Up],
        State::Draining,
        "pending intents in the journal",
    );
    let round = r.redrive(work, STARTUP_REPLAY_MAX);
    if round.complete && backlog.total() == 0 {
        redis.transition(&[State::Draining], State::Up, "start-up replay done");
    }
    tracing::info!(
        republished,
        redriven = round.submitted,
        complete = round.complete,
        "start-up replay"
    );
}

/// Publishes every win Redis holds for the known sales, waits for Kafka to
/// acknowledge them, then clears the salvage marker (kept on failure, so
/// the next start tries again).
async fn reconcile_after_salvage(
    replayer: Arc<Mutex<Replayer>>,
    redis: RedisAdmin,
    catalog: Arc<Catalog>,
    sink_stats: Arc<SinkStats>,
    wal_dir: PathBuf,
) {
    let before = sink_stats.acked.load(Ordering::Relaxed);
    let submitted = blocking(move || -> Result<u64, redis::RedisError> {
        let mut wins = Vec::new();
        for sale in catalog.sale_ids() {
            for item in catalog.sale_items(&sale).unwrap_or_default() {
                for w in redis.wins(&sale, &item.item_id)? {
                    wins.push(seckill_pipeline::OwnedDecision {
                        status: Status::Success,
                        order_id: seckill_pipeline::OrderId::parse(&w.order_id),
                        price_cents: item.price_cents,
                        quantity: w.quantity,
                        per_user_limit: item.per_user_limit,
                        received_ms: seckill_pipeline::now_ms(),
                        sale_id: sale.clone(),
                        item_id: item.item_id.clone(),
                        user_id: w.user_id,
                        request_id: w.request_id,
                    });
                }
            }
        }
        let mut r = replayer.lock().unwrap_or_else(|e| e.into_inner());
        Ok(r.republish_unjournaled(&wins, STARTUP_REPLAY_MAX))
    })
    .await;
    let n = match submitted {
        Ok(Ok(n)) => n,
        _ => {
            tracing::error!("reconciliation after salvage failed; it runs again at the next start");
            return;
        }
    };
    tracing::warn!(
        wins = n,
        "after salvage: every win in Redis handed to Kafka again"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while sink_stats.acked.load(Ordering::Relaxed) < before + n {
        if tokio::time::Instant::now() >= deadline {
            tracing::error!("reconciliation after salvage not acknowledged in time; it runs again at the next start");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match blocking(move || seckill_wal::Wal::clear_salvaged(&wal_dir)).await {
        Ok(Ok(())) => tracing::info!("reconciliation after salvage complete"),
        _ => tracing::error!("could not clear the salvage marker"),
    }
}

/// In the background: when Redis is draining, re-drive the journal's pending
/// intents (in LSN order, through the ring) until none is left, then mark
/// Redis up again.
async fn drain_loop(
    app: Arc<App>,
    replayer: Arc<Mutex<Replayer>>,
    wal_dir: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = crate::http::until_true(&mut stop) => return,
        }
        let redis = &app.shared.redis;
        if redis.state() != State::Draining {
            continue;
        }
        let dir = wal_dir.clone();
        let r = Arc::clone(&replayer);
        let backlog = Arc::clone(&app.shared.backlog);
        let health = Arc::clone(redis);
        let done = blocking(move || -> Result<bool, seckill_replay::ReplayError> {
            let from = seckill_wal::read_checkpoint(&dir)?.unwrap_or(1);
            let work = seckill_replay::scan(&dir, from)?;
            let mut r = r.lock().unwrap_or_else(|e| e.into_inner());
            let round = r.redrive(&work, ROUND_MAX);
            tracing::info!(
                redriven = round.submitted,
                complete = round.complete,
                backlog = backlog.total(),
                "re-drive round"
            );
            Ok(round.complete && backlog.total() == 0 && health.state() == State::Draining)
        })
        .await;
        match done {
            Ok(Ok(true)) => {
                redis.transition(&[State::Draining], State::Up, "backlog drained");
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "re-drive round failed"),
            Err(e) => tracing::error!(error = %e, "re-drive round panicked"),
        }
    }
}

/// Background health probe, once a second: Redis PING (and the catalog
/// other daemons wrote), Kafka metadata.
async fn probe(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let kafka_client: Option<Arc<rdkafka::producer::BaseProducer>> =
        kafka::base_config(&app.cfg.kafka_brokers)
            .create()
            .ok()
            .map(Arc::new);
    let mut tick: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = crate::http::until_true(&mut stop) => return,
        }
        tick += 1;
        if tick.is_multiple_of(10) {
            app.limits.housekeeping();
        }
        let r = app.redis.clone();
        if let Ok(Ok((users, ips))) = blocking(move || r.blacklist()).await {
            app.limits.set_blacklist(users, ips);
        }
        if refresh_catalog(&app.redis, &app.catalog, &app.board, &app.known_wins).await {
            app.shared
                .redis
                .transition(&[State::Down], State::Draining, "probe: PING answered");
        } else {
            app.shared.redis.fail("probe: no answer");
        }
        if let Some(client) = &kafka_client {
            let client = Arc::clone(client);
            let up = blocking(move || {
                use rdkafka::producer::Producer;
                client
                    .client()
                    .fetch_metadata(Some(kafka::ORDERS_TOPIC), Duration::from_millis(800))
                    .is_ok()
            })
            .await
            .unwrap_or(false);
            if up {
                app.kafka
                    .transition(&[State::Down], State::Draining, "probe: metadata answered");
                if app.kafka.state() != State::Up {
                    // A broker that restarted empty has no topics: create
                    // them (again on every tick until Kafka is up: the
                    // broker may still be starting) before the failed
                    // orders go out.
                    let brokers = app.cfg.kafka_brokers.clone();
                    let partitions = app.cfg.kafka_partitions;
                    let created = tokio::time::timeout(
                        Duration::from_secs(10),
                        kafka::ensure_topics(&brokers, partitions),
                    )
                    .await;
                    if !matches!(created, Ok(Ok(()))) {
                        tracing::warn!("could not ensure Kafka topics after the broker came back");
                    }
                }
            } else {
                app.kafka.fail("probe: no metadata");
            }
        }
    }
}

impl App {
    /// Prometheus text exposition of the counters.
    pub fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(2048);
        let s = &self.shared.stats;
        let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# TYPE seckill_requests gauge");
        for st in Status::ALL {
            if st == Status::Undecided {
                continue;
            }
            let _ = writeln!(
                out,
                "seckill_requests{{status=\"{}\"}} {}",
                st.as_str(),
                self.board.count(st)
            );
        }
        for (name, v) in [
            ("seckill_ring_batches_total", r(&s.batches)),
            ("seckill_ring_batch_events_total", r(&s.batch_events)),
            ("seckill_ring_batch_len_max", r(&s.batch_len_max)),
            ("seckill_redis_calls_total", r(&s.store_calls)),
            ("seckill_redis_requests_total", r(&s.store_requests)),
            ("seckill_redis_errors_total", r(&s.store_errors)),
            ("seckill_wal_commits_total", r(&s.journal_commits)),
            ("seckill_wal_errors_total", r(&s.journal_errors)),
            ("seckill_kafka_enqueued_total", r(&s.published)),
            ("seckill_kafka_acked_total", r(&self.sink_stats.acked)),
            ("seckill_kafka_failed_total", r(&self.sink_stats.failed)),
            ("seckill_ring_shed_total", r(&s.shed)),
            ("seckill_backlog_pending", self.shared.backlog.total()),
            (
                "seckill_outstanding_lsns",
                self.shared.outstanding.len() as u64,
            ),
            (
                "seckill_checkpoint_safe_lsn",
                self.shared.outstanding.safe_lsn(),
            ),
        ] {
            let _ = writeln!(out, "{name} {v}");
        }
        for (name, h) in [
            ("seckill_ring_batch_events", &s.ring_batch),
            ("seckill_redis_batch_requests", &s.store_batch),
        ] {
            let (buckets, sum, count) = h.snapshot();
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (le, n) in buckets {
                let le = le.map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
            }
            let _ = writeln!(out, "{name}_sum {sum}");
            let _ = writeln!(out, "{name}_count {count}");
        }
        let name = "seckill_stage_latency_seconds";
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (stage, h) in seckill_pipeline::stats::STAGES.iter().zip(&s.stage_latency) {
            let (buckets, sum, count) = h.snapshot();
            for (le, n) in buckets {
                let le = le.map_or_else(|| "+Inf".to_string(), |us| (us as f64 / 1e6).to_string());
                let _ = writeln!(out, "{name}_bucket{{stage=\"{stage}\",le=\"{le}\"}} {n}");
            }
            let _ = writeln!(out, "{name}_sum{{stage=\"{stage}\"}} {}", sum as f64 / 1e6);
            let _ = writeln!(out, "{name}_count{{stage=\"{stage}\"}} {count}");
        }
        let secs = r(&s.journal_commit_ns) as f64 / 1e9;
        let _ = writeln!(out, "seckill_wal_commit_seconds_total {secs}");
        let secs = r(&s.store_call_ns) as f64 / 1e9;
        let _ = writeln!(out, "seckill_redis_call_seconds_total {secs}");
        for h in [&self.shared.redis, &self.kafka] {
            let state = h.state();
            for st in [State::Up, State::Down, State::Draining] {
                let _ = writeln!(
                    out,
                    "seckill_dependency_state{{dependency=\"{}\",state=\"{}\"}} {}",
                    h.name(),
                    st.as_str(),
                    u8::from(state == st)
                );
            }
            let _ = writeln!(
                out,
                "seckill_dependency_transitions_total{{dependency=\"{}\"}} {}",
                h.name(),
                h.transitions()
            );
        }
        let o = &self.order_stats;
        for (name, v) in [
            ("seckill_orders_paid_total", &o.paid),
            ("seckill_orders_cancelled_total", &o.cancelled),
            ("seckill_orders_expired_units_total", &o.expired_units),
            ("seckill_order_events_published_total", &o.events_published),
            ("seckill_order_events_failed_total", &o.events_failed),
            ("seckill_items_reopened_total", &o.reopened),
        ] {
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", r(v));
        }
        let (ips, users) = self.limits.tracked();
        let _ = writeln!(out, "seckill_rate_limit_keys{{limit=\"ip\"}} {ips}");
        let _ = writeln!(out, "seckill_rate_limit_keys{{limit=\"user\"}} {users}");
        for (limit, v) in self.limits.refusals() {
            let _ = writeln!(out, "seckill_rate_limited_total{{limit=\"{limit}\"}} {v}");
        }
        out
    }
}
