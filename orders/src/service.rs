//! `seckill-orders run`: the HTTP side first (so `/readyz` can say "not
//! yet" while the database is down), then the schema (migrated as soon as
//! the database answers), the topics, the consumer's thread and the
//! background tasks:
//!
//! | task            | every                        | does                                             |
//! |-----------------|------------------------------|--------------------------------------------------|
//! | waiting events  | 1 s                          | applies events whose order has arrived since     |
//! | gauges          | 5 s                          | DLQ size, waiting events, rows by state          |
//! | DLQ redrive     | `dlq_redrive_interval_ms`    | parked entries back to the retry topic           |
//!
//! Stop (SIGTERM): the consumer finishes the batch in hand, commits, and
//! leaves the group, so its partitions move at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use seckill_io::redis::RedisAdmin;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::consume::Loop;
use crate::health::Health;
use crate::http::{self, Http};
use crate::kafka::{self, Ctx, Producer};
use crate::metrics::Metrics;
use crate::process::{now_ms, Processor};
use crate::state::STATES;
use crate::store::{Store, StoreError};

const WAITING_PASS: Duration = Duration::from_secs(1);
const WAITING_PER_PASS: i64 = 1000;
const GAUGES_EVERY: Duration = Duration::from_secs(5);
const MIGRATE_RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid Redis URL: {0}")]
    Redis(#[source] redis::RedisError),
    #[error(transparent)]
    Config(#[from] seckill_io::config::ConfigError),
    #[error("cannot create the Kafka clients: {0}")]
    Kafka(#[source] rdkafka::error::KafkaError),
}

/// A running service.
pub struct Service {
    pub addr: SocketAddr,
    pub health: Arc<Health>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Service {
    pub async fn start(cfg: Config) -> Result<Service, ServiceError> {
        let cfg = Arc::new(cfg);
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new());
        let timeout = Duration::from_millis(cfg.db_timeout_ms.max(1));
        let store = Arc::new(Store::connect_lazy(
            &cfg.database_url,
            cfg.db_pool_max,
            timeout,
        )?);
        let redis = RedisAdmin::new(cfg.redis_target()?, cfg.redis_timeout())
            .map_err(ServiceError::Redis)?;
        let producer = Producer::new(&cfg).map_err(ServiceError::Kafka)?;
        let rebalances = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let consumer = kafka::consumer(
            &cfg,
            Ctx {
                metrics: Arc::clone(&metrics),
                health: Arc::clone(&health),
                rebalances: Arc::clone(&rebalances),
                topics: cfg.topics(),
            },
        )
        .map_err(ServiceError::Kafka)?;
        let listener = TcpListener::bind(cfg.orders_listen)
            .await
            .map_err(|source| ServiceError::Listen {
                addr: cfg.orders_listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServiceError::Listen {
                addr: cfg.orders_listen,
                source,
            })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let web = Arc::new(Http {
            store: Arc::clone(&store),
            health: Arc::clone(&health),
            metrics: Arc::clone(&metrics),
        });
        tokio::spawn(http::serve(listener, web, stop_rx.clone()));
        let processor = Processor {
            store,
            redis,
            producer,
            topics: Arc::new(cfg.topics()),
            cfg,
            metrics,
            health: Arc::clone(&health),
        };
        let task = tokio::spawn(run(processor, consumer, rebalances, stop_rx));
        tracing::info!(%addr, "seckill-orders serving");
        Ok(Service {
            addr,
            health,
            stop: stop_tx,
            task,
        })
    }

    /// Finishes the batch in hand, commits, leaves the group.
    pub async fn shutdown(self) {
        self.health.stopping.store(true, Relaxed);
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    p: Processor,
    consumer: kafka::OrderConsumer,
    rebalances: Arc<std::sync::atomic::AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    // The schema first: nothing is consumed before it exists.
    let mut wait = Duration::from_millis(200);
    loop {
        match p.store.migrate().await {
            Ok(()) => break,
            Err(e) => {
                p.health.set_error(&e.to_string());
                tracing::warn!(error = %e, "database not ready; trying again");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        wait = (wait * 2).min(MIGRATE_RETRY_MAX);
    }
    p.health.migrated.store(true, Relaxed);
    p.health.db_up.store(true, Relaxed);
    tracing::info!(engine = p.store.engine(), "schema migrated");
    match tokio::time::timeout(
        Duration::from_secs(15),
        kafka::ensure_topics(&p.cfg, &p.producer),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot create the topics (the consumer waits for them)")
        }
        Err(_) => tracing::warn!("no answer to topic creation (the consumer waits for them)"),
    }

    let tasks = vec![
        tokio::spawn(waiting_pass(
            Arc::clone(&p.store),
            Arc::clone(&p.metrics),
            stop.clone(),
        )),
        tokio::spawn(gauges(
            Arc::clone(&p.store),
            Arc::clone(&p.metrics),
            Arc::clone(&p.health),
            stop.clone(),
        )),
        tokio::spawn(redrive_every(
            Arc::clone(&p.store),
            p.producer.clone(),
            p.topics.retry.clone(),
            Duration::from_millis(p.cfg.dlq_redrive_interval_ms),
            stop.clone(),
        )),
    ];
    let halt = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Handle::current();
    let looper = Loop::new(consumer, p, rt, Arc::clone(&halt), rebalances);
    let thread = std::thread::Builder::new()
        .name("orders-consumer".into())
        .spawn(move || looper.run());
    let _ = stop.wait_for(|s| *s).await;
    halt.store(true, Relaxed);
    match thread {
        Ok(t) => {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        Err(e) => tracing::error!(error = %e, "cannot start the consumer thread"),
    }
    for t in tasks {
        t.abort();
    }
}

/// Applies events whose order has arrived (the per-batch pass misses an
/// order and its event written by two consumers at the same moment).
async fn waiting_pass(store: Arc<Store>, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WAITING_PASS) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match store.apply_waiting(now_ms() as i64, WAITING_PER_PASS).await {
            Ok(a) => {
                metrics.count("event_applied", a.applied);
                for (order, state, event) in &a.conflicts {
                    tracing::warn!(
                        order,
                        state,
                        event,
                        "an event found its order closed in another state"
                    );
                    metrics.event_conflicts.inc();
                }
            }
            Err(e) => tracing::debug!(error = %e, "waiting events: database unavailable"),
        }
    }
}

async fn gauges(
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for (dep, up) in [
            ("database", &health.db_up),
            ("redis", &health.redis_up),
            ("kafka", &health.kafka_up),
        ] {
            metrics
                .dependency_up
                .with_label_values(&[dep])
                .set(i64::from(up.load(Relaxed)));
        }
        if let Ok(n) = store.dlq_parked().await {
            metrics.dlq_parked.set(n);
        }
        if let Ok(n) = store.waiting_len().await {
            metrics.waiting_events.set(n);
        }
        if let Ok(counts) = store.state_counts(None).await {
            for s in STATES {
                let n = counts
                    .iter()
                    .find(|(k, _)| k == s.as_str())
                    .map_or(0, |(_, n)| *n);
                metrics.rows.with_label_values(&[s.as_str()]).set(n);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(GAUGES_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn redrive_every(
    store: Arc<Store>,
    producer: Producer,
    retry: String,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    if every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = crate::dlq::redrive(&store, &producer, &retry, None).await {
            tracing::warn!(error = %e, "background redrive failed; next time");
        }
    }
}
