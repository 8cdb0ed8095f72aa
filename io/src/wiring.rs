//! Wiring shared by the daemon and the offline replay: recover the WAL
//! (and the status board from it), connect the adapters, start the ring on
//! them.

use std::sync::Arc;
use std::time::Duration;

use seckill_pipeline::health::{Health, State};
use seckill_pipeline::{
    Catalog, Pipeline, PipelineConfig, Ports, RequestState, Resume, Shared, SharedClock,
    StatusBoard, Submitter,
};
use seckill_replay::Work;
use seckill_wal::{Kind, RecoveryReport, Wal};

use crate::app::{blocking, KnownWins};
use crate::config::Config;
use crate::error::DaemonError;
use crate::journal::WalJournal;
use crate::kafka::{self, KafkaOrderSink, SinkShared, SinkStats};
use crate::redis::{RedisAdmin, RedisStockStore};
use crate::tasks::catalog::{refresh_catalog, CatalogBounds};

/// How long creating the topics at start may take before the daemon
/// starts anyway (Kafka marked down; the probe creates them later).
const TOPICS_AT_START_MAX: Duration = Duration::from_secs(15);
/// How long the producer's first metadata fetch may take at start.
const KAFKA_WARM_UP_MAX: Duration = Duration::from_secs(5);

/// The journal, recovered: the log ready for appends, what recovery saw,
/// the unfinished work since the checkpoint, and how many decisions went
/// into the status board.
pub struct Recovered {
    pub wal: Wal,
    pub report: RecoveryReport,
    pub work: Work,
    pub decisions: u64,
}

/// Opens the WAL (cutting a torn tail), rebuilds the status board from it
/// and reads what is unfinished since the checkpoint.
pub async fn recover(cfg: &Config, board: &Arc<StatusBoard>) -> Result<Recovered, DaemonError> {
    let opts = cfg.wal_options();
    let wal_dir = cfg.wal_dir.clone();
    let board = Arc::clone(board);
    blocking(move || -> Result<Recovered, DaemonError> {
        let (wal, report) = Wal::open(&wal_dir, opts)?;
        if let Some(t) = &report.torn_tail {
            tracing::warn!(segment = %t.segment.display(), offset = t.offset,
                bytes = t.bytes_cut, reason = %t.reason, "cut a torn WAL tail");
        }
        let decisions = rebuild_board(&wal, &board)?;
        let from = report.checkpoint.unwrap_or(1);
        let work = seckill_replay::scan(&wal_dir, from)?;
        Ok(Recovered {
            wal,
            report,
            work,
            decisions,
        })
    })
    .await?
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

/// The adapters, connected (a dependency that is down is not fatal: its
/// health says so and the daemon degrades).
pub struct Connected {
    pub redis: RedisAdmin,
    pub store: RedisStockStore,
    pub sink: KafkaOrderSink,
    pub sink_stats: Arc<SinkStats>,
    pub kafka: Arc<Health>,
}

pub async fn connect(
    cfg: &Config,
    shared: &Shared,
    catalog: &Arc<Catalog>,
    known_wins: &Arc<KnownWins>,
    now_ms: u64,
) -> Result<Connected, DaemonError> {
    let target = cfg.redis_target()?;
    let redis = RedisAdmin::new(&target, cfg.redis_timeout())?;
    let store = RedisStockStore::new(&target, cfg.redis_timeout())?
        .per_item(cfg.redis_script_per_item)
        .wait_replicas(cfg.redis_wait_replicas, cfg.redis_wait_timeout_ms)
        .layouts(redis.layouts());
    let bounds = CatalogBounds::of(cfg, now_ms);
    if !refresh_catalog(&redis, catalog, &shared.board, known_wins, bounds).await {
        // Why (a refused password, an unknown CA, a refused connection):
        // in the log and in /healthz.
        let r = redis.clone();
        let why = match blocking(move || r.ping()).await {
            Ok(Err(e)) => e.to_string(),
            _ => "the catalog could not be read".to_string(),
        };
        shared.redis.fail(&format!("unreachable at start: {why}"));
        tracing::warn!(url = %crate::config::redact_url(&cfg.redis_url), sentinels = %cfg.redis_sentinels, cluster = %cfg.redis_cluster_nodes, error = %why, "redis is not reachable; purchases will be decided pending");
    }
    let kafka = Arc::new(Health::new("kafka", State::Up));
    match tokio::time::timeout(
        TOPICS_AT_START_MAX,
        kafka::ensure_topics(
            &cfg.kafka_brokers,
            &cfg.kafka_properties.0,
            &cfg.topic_spec(),
            &cfg.topics(),
        ),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            kafka.fail(&e.to_string());
        }
        Err(_) => {
            kafka.fail("no answer to topic creation at start");
        }
    }
    let sink = KafkaOrderSink::new(
        &cfg.kafka_brokers,
        &cfg.kafka_properties.0,
        &cfg.kafka_orders_topic,
        SinkShared {
            board: Arc::clone(&shared.board),
            outstanding: Arc::clone(&shared.outstanding),
            health: Arc::clone(&kafka),
        },
        Duration::from_millis(cfg.kafka_message_timeout_ms),
        Duration::from_millis(cfg.kafka_linger_ms),
        cfg.kafka_retry_queue_max,
    )?;
    let sink_stats = Arc::clone(&sink.stats);
    let sink = blocking(move || {
        if let Err(e) = sink.warm_up(KAFKA_WARM_UP_MAX) {
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
pub fn start_ring(
    cfg: &Config,
    store: RedisStockStore,
    sink: KafkaOrderSink,
    wal: Wal,
    shared: &Shared,
    recovered: &RecoveryReport,
    clock: SharedClock,
) -> Result<(Pipeline, Submitter), DaemonError> {
    let pipeline = Pipeline::start(
        &PipelineConfig {
            ring_size: cfg.ring_size,
            batch_len_max: cfg.batch_len_max,
            pay_timeout_ms: cfg.pay_timeout_ms,
            stage_threads: cfg.stage_threads,
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
        clock,
    )?;
    let submitter = pipeline.submitter().ok_or(DaemonError::NoSubmitter)?;
    Ok((pipeline, submitter))
}
