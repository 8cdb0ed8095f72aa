//! Wiring: config → recover the WAL → connect Redis and Kafka → start the
//! ring → serve; and the reverse on shutdown (stop intake, drain the ring,
//! commit the WAL, flush the producer).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seckill_pipeline::{Catalog, Pipeline, PipelineConfig, Ports, Stats, Status, StatusBoard};
use seckill_wal::{Durability, Kind, Options, Wal};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::journal::WalJournal;
use crate::kafka::{self, KafkaOrderSink, SinkStats};
use crate::redis::{RedisAdmin, RedisStockStore};

/// What the handlers share.
pub struct App {
    pub cfg: Config,
    pub catalog: Arc<Catalog>,
    pub board: Arc<StatusBoard>,
    pub stats: Arc<Stats>,
    pub sink_stats: Arc<SinkStats>,
    pub redis: RedisAdmin,
    /// False once shutdown began: new purchases get 503.
    pub accepting: AtomicBool,
    pub redis_up: AtomicBool,
    pub kafka_up: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Wal(#[from] seckill_wal::WalError),
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
}

/// A running daemon.
pub struct Daemon {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    probe: JoinHandle<()>,
    pipeline: Option<Pipeline>,
}

/// Rebuilds the status board from the journal, so a client retrying a
/// request id after a restart gets its original answer.
fn rebuild_board(wal: &Wal, board: &StatusBoard) -> Result<u64, seckill_wal::WalError> {
    let mut n = 0;
    for rec in wal.read_from(1)? {
        let rec = rec?;
        if rec.kind != Kind::Decision {
            continue;
        }
        let Ok(d) = seckill_pipeline::Decision::decode(&rec.payload) else {
            tracing::warn!(lsn = rec.lsn, "undecodable decision record skipped");
            continue;
        };
        if d.status.is_win() {
            let mut key = String::new();
            seckill_pipeline::status::winner_key(&mut key, d.sale_id, d.item_id, d.user_id);
            board.add_win(&key);
        }
        board.advance(
            d.request_id,
            seckill_pipeline::RequestState {
                status: d.status,
                order_id: d.order_id,
                sale_id: d.sale_id.to_string(),
                item_id: d.item_id.to_string(),
                user_id: d.user_id.to_string(),
            },
        );
        n += 1;
    }
    Ok(n)
}

impl Daemon {
    pub async fn start(cfg: Config) -> Result<Daemon, DaemonError> {
        let durability: Durability = cfg.durability.parse()?;
        let wal_dir = cfg.wal_dir.clone();
        let seg = cfg.wal_segment_bytes;
        let board = Arc::new(StatusBoard::default());
        let (wal, recovered) = {
            let board = Arc::clone(&board);
            tokio::task::spawn_blocking(move || -> Result<_, DaemonError> {
                let (wal, report) = Wal::open(
                    &wal_dir,
                    Options {
                        segment_bytes: seg,
                        durability,
                    },
                )?;
                if let Some(t) = &report.torn_tail {
                    tracing::warn!(segment = %t.segment.display(), offset = t.offset,
                        bytes = t.bytes_cut, reason = %t.reason, "cut a torn WAL tail");
                }
                let n = rebuild_board(&wal, &board)?;
                Ok((wal, (report, n)))
            })
            .await
            .map_err(|e| DaemonError::Join(e.to_string()))??
        };
        tracing::info!(
            segments = recovered.0.segments,
            records = recovered.0.records,
            last_lsn = recovered.0.last_lsn,
            decisions = recovered.1,
            "WAL recovered"
        );

        let redis = RedisAdmin::new(&cfg.redis_url, cfg.redis_timeout())
            .map_err(|e| DaemonError::Redis(e.to_string()))?;
        let store = RedisStockStore::new(&cfg.redis_url, cfg.redis_timeout())
            .map_err(|e| DaemonError::Redis(e.to_string()))?;
        let redis_up = {
            let r = redis.clone();
            tokio::task::spawn_blocking(move || r.ping().is_ok())
                .await
                .unwrap_or(false)
        };
        if !redis_up {
            tracing::warn!(url = %cfg.redis_url, "redis is not reachable; purchases will be decided pending");
        }

        let kafka_up = match tokio::time::timeout(
            Duration::from_secs(15),
            kafka::ensure_topics(&cfg.kafka_brokers, cfg.kafka_partitions),
        )
        .await
        {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not ensure Kafka topics");
                false
            }
            Err(_) => {
                tracing::warn!("Kafka did not answer topic creation in time");
                false
            }
        };
        let sink = KafkaOrderSink::new(
            &cfg.kafka_brokers,
            Arc::clone(&board),
            Duration::from_millis(cfg.kafka_message_timeout_ms),
        )?;
        let sink_stats = Arc::clone(&sink.stats);
        let sink = tokio::task::spawn_blocking(move || {
            if let Err(e) = sink.warm_up(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "Kafka warm-up failed; orders wait in the producer queue");
            }
            sink
        })
        .await
        .map_err(|e| DaemonError::Join(e.to_string()))?;

        let stats = Arc::new(Stats::default());
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
            Arc::clone(&board),
            Arc::clone(&stats),
            seckill_pipeline::now_ms,
        )?;
        let submitter = pipeline
            .submitter()
            .ok_or_else(|| DaemonError::Join("pipeline has no submitter".into()))?;

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
        let app = Arc::new(App {
            cfg: cfg.clone(),
            catalog: Arc::new(Catalog::default()),
            board,
            stats,
            sink_stats,
            redis,
            accepting: AtomicBool::new(true),
            redis_up: AtomicBool::new(redis_up),
            kafka_up: AtomicBool::new(kafka_up),
        });
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(crate::http::serve(
            listener,
            Arc::clone(&app),
            submitter,
            stop_rx.clone(),
            Duration::from_secs(5),
        ));
        let probe = tokio::spawn(probe(Arc::clone(&app), stop_rx));
        tracing::info!(%addr, "seckilld listening");
        Ok(Daemon {
            addr,
            app,
            stop,
            server,
            probe,
            pipeline: Some(pipeline),
        })
    }

    /// Graceful stop: refuse new purchases, let in-flight ones finish,
    /// drain the ring (the journal commits, the producer flushes).
    pub async fn shutdown(mut self) -> Result<(), DaemonError> {
        tracing::info!("shutting down: intake stopped, draining the ring");
        self.app.accepting.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let _ = (&mut self.server).await;
        let _ = (&mut self.probe).await;
        if let Some(p) = self.pipeline.take() {
            tokio::task::spawn_blocking(move || p.shutdown())
                .await
                .map_err(|e| DaemonError::Join(e.to_string()))?;
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Background health probe: Redis PING and Kafka metadata, once a second.
async fn probe(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let kafka_client: Option<rdkafka::producer::BaseProducer> =
        kafka::base_config(&app.cfg.kafka_brokers).create().ok();
    let kafka_client = kafka_client.map(Arc::new);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = crate::http::until_true(&mut stop) => return,
        }
        let redis = app.redis.clone();
        let up = tokio::task::spawn_blocking(move || redis.ping().is_ok())
            .await
            .unwrap_or(false);
        let was = app.redis_up.swap(up, Ordering::Relaxed);
        if was != up {
            tracing::warn!(
                redis = if up { "up" } else { "down" },
                "redis health changed"
            );
        }
        if let Some(client) = &kafka_client {
            let client = Arc::clone(client);
            let up = tokio::task::spawn_blocking(move || {
                use rdkafka::producer::Producer;
                client
                    .client()
                    .fetch_metadata(Some(kafka::ORDERS_TOPIC), Duration::from_millis(800))
                    .is_ok()
            })
            .await
            .unwrap_or(false);
            let was = app.kafka_up.swap(up, Ordering::Relaxed);
            if was != up {
                tracing::warn!(
                    kafka = if up { "up" } else { "down" },
                    "kafka health changed"
                );
            }
        }
    }
}

impl App {
    /// Prometheus text exposition of the counters.
    pub fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(2048);
        let s = &self.stats;
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
            ("seckill_wal_commit_seconds_total", 0),
            ("seckill_wal_errors_total", r(&s.journal_errors)),
            ("seckill_kafka_enqueued_total", r(&s.published)),
            ("seckill_kafka_acked_total", r(&self.sink_stats.acked)),
            ("seckill_kafka_failed_total", r(&self.sink_stats.failed)),
            ("seckill_ring_shed_total", r(&s.shed)),
        ] {
            if name == "seckill_wal_commit_seconds_total" {
                let secs = r(&s.journal_commit_ns) as f64 / 1e9;
                let _ = writeln!(out, "{name} {secs}");
            } else {
                let _ = writeln!(out, "{name} {v}");
            }
        }
        for (name, up) in [
            ("redis", self.redis_up.load(Ordering::Relaxed)),
            ("kafka", self.kafka_up.load(Ordering::Relaxed)),
        ] {
            let _ = writeln!(
                out,
                "seckill_dependency_up{{dependency=\"{name}\"}} {}",
                u8::from(up)
            );
        }
        out
    }
}
