//! The health probe, once a second: Redis (the catalog refresh is its
//! PING), the blacklist, Kafka metadata — and re-creating the topics when
//! a broker came back empty. Every tenth tick it also prunes the rate
//! limiters' idle keys.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer};
use seckill_pipeline::health::State;
use tokio::sync::watch;

use crate::app::{blocking, App};
use crate::kafka;
use crate::shutdown::until_true;
use crate::tasks::catalog::{refresh_catalog, CatalogBounds};

/// Between two probes.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Every this many probes, the rate limiters drop keys that went idle.
const HOUSEKEEPING_TICKS: u64 = 10;
/// How long the Kafka metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_millis(800);
/// How long re-creating the topics may take after the broker came back.
const TOPICS_RECREATE_MAX: Duration = Duration::from_secs(10);

/// Background health probe, once a second: Redis PING (and the catalog
/// other daemons wrote), Kafka metadata.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let kafka_client: Option<Arc<BaseProducer>> =
        kafka::base_config(&app.cfg.kafka_brokers, &app.cfg.kafka_properties.0)
            .create()
            .ok()
            .map(Arc::new);
    let mut tick: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = until_true(&mut stop) => return,
        }
        tick += 1;
        if tick.is_multiple_of(HOUSEKEEPING_TICKS) {
            app.limits.housekeeping();
        }
        let r = app.redis.clone();
        if let Ok(Ok((users, ips))) = blocking(move || r.blacklist()).await {
            app.limits.set_blacklist(users, ips);
        }
        let bounds = CatalogBounds::of(&app.cfg, app.clock.now_ms());
        let sync = app.catalog_sync.lock().await;
        let refreshed = refresh_catalog(
            &app.redis,
            &app.catalog,
            &app.board,
            &app.known_wins,
            bounds,
        )
        .await;
        drop(sync);
        if refreshed {
            app.shared
                .redis
                .transition(&[State::Down], State::Draining, "probe: PING answered");
        } else {
            app.shared.redis.fail("probe: no answer");
        }
        if let Some(client) = &kafka_client {
            let client = Arc::clone(client);
            let topic = app.cfg.kafka_orders_topic.clone();
            let up = blocking(move || {
                client
                    .client()
                    .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
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
                    let cfg = &app.cfg;
                    let created = tokio::time::timeout(
                        TOPICS_RECREATE_MAX,
                        kafka::ensure_topics(
                            &cfg.kafka_brokers,
                            &cfg.kafka_properties.0,
                            &cfg.topic_spec(),
                            &cfg.topics(),
                        ),
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
