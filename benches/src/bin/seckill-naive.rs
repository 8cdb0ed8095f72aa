//! seckill-naive: what a good Rust team would write without a ring or a
//! journal — the idiomatic baseline the benchmarks compare seckilld with.
//!
//! hyper; one `EVALSHA` of the same stock script per request on one shared
//! multiplexed async Redis connection (which pipelines concurrent requests
//! by itself); one `FutureProducer` send per win (idempotent, `acks=all`),
//! awaited before the answer; the same JSON as seckilld. No purchase token,
//! no rate limits, no WAL: a win Kafka refuses is answered 503 and stays
//! locked in Redis, published only if the client retries (the script's
//! stored outcome answers the retry, which sends it again) — the gap
//! seckilld's journal closes.
//!
//! Reads `SECKILL_LISTEN`, `SECKILL_REDIS_URL`, `SECKILL_KAFKA_BROKERS`,
//! `SECKILL_ADMIN_TOKEN`; serves `PUT /admin/v1/sales/{sale}` and
//! `POST /api/v1/sales/{sale}/items/{item}/purchase` (and `GET
//! /api/v1/time`, which seckill-load reads).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use seckill_benches::naive::{deduct_one, script, OneDeduct};
use seckill_io::http::codec::{self, json, Resp};
use seckill_io::http::handlers::admin::SaleBody;
use seckill_io::http::handlers::purchase::answer;
use seckill_io::http::{ApiError, ErrorCode};
use seckill_io::kafka::{encode_order, ORDERS_TOPIC};
use seckill_io::redis::{ItemLoad, RedisAdmin};
use seckill_pipeline::port::Order;
use seckill_pipeline::{OrderId, Status};

#[derive(Debug, Parser)]
#[command(name = "seckill-naive", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SECKILL_LISTEN", default_value = "127.0.0.1:18082")]
    listen: SocketAddr,
    /// Redis URL.
    #[arg(
        long,
        env = "SECKILL_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    redis_url: String,
    /// Kafka bootstrap brokers.
    #[arg(long, env = "SECKILL_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    /// Bearer token of the admin call.
    #[arg(long, env = "SECKILL_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// tokio worker threads (as seckilld's worker_threads).
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
}

/// What a purchase needs to know of its item.
#[derive(Debug, Clone, Copy)]
struct ItemTerms {
    price_cents: u64,
    per_user_limit: u32,
    start_ms: u64,
    end_ms: u64,
}

struct Naive {
    admin_token: String,
    redis: redis::aio::MultiplexedConnection,
    admin: RedisAdmin,
    script: redis::Script,
    producer: FutureProducer,
    items: RwLock<HashMap<(String, String), ItemTerms>>,
}

/// How long a win waits for payment (seckilld's default).
const PAY_TIMEOUT_MS: u64 = 15 * 60 * 1000;
const BODY_MAX: usize = 1 << 20;

fn now_ms() -> u64 {
    seckill_pipeline::now_ms()
}

async fn body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), BODY_MAX)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::new(ErrorCode::BodyRead, e.to_string()))
}

impl Naive {
    async fn put_sale(&self, sale: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
        let auth = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if auth != Some(self.admin_token.as_str()) {
            return Err(ApiError::new(ErrorCode::BadToken, "bad admin token"));
        }
        let bytes = body(req).await?;
        let s: SaleBody = serde_json::from_slice(&bytes).map_err(|e| codec::json_error(&e))?;
        let admin = self.admin.clone();
        let (sale_id, start, end) = (sale.to_string(), s.start_ms, s.end_ms);
        let loads: Vec<(String, String, u64, u64, u32)> = s
            .items
            .iter()
            .map(|i| {
                (
                    i.item_id.clone(),
                    i.title.clone(),
                    i.price_cents,
                    i.stock,
                    i.per_user_limit,
                )
            })
            .collect();
        let loaded = loads.clone();
        tokio::task::spawn_blocking(move || {
            let items: Vec<ItemLoad<'_>> = loaded
                .iter()
                .map(|(id, title, price, stock, limit)| ItemLoad {
                    item_id: id,
                    title,
                    price_cents: *price,
                    stock: *stock,
                    per_user_limit: *limit,
                    shards: 1,
                })
                .collect();
            admin.load_sale(&sale_id, start, end, &items)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::redis_down)?;
        let mut items = self.items.write().unwrap_or_else(|e| e.into_inner());
        for (id, _, price_cents, _, per_user_limit) in loads {
            items.insert(
                (sale.to_string(), id),
                ItemTerms {
                    price_cents,
                    per_user_limit,
                    start_ms: start,
                    end_ms: end,
                },
            );
        }
        Ok(json(StatusCode::OK, &serde_json::json!({"sale_id": sale})))
    }

    async fn purchase(
        &self,
        sale: &str,
        item: &str,
        req: Request<Incoming>,
    ) -> Result<Resp, ApiError> {
        let bytes = body(req).await?;
        let p = codec::parse_purchase(&bytes)?;
        let terms = self
            .items
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(sale.to_string(), item.to_string()))
            .copied()
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownItem, "no such item"))?;
        let now = now_ms();
        if now < terms.start_ms {
            return Ok(answer(&p.request_id, Status::NotStarted, None));
        }
        if now >= terms.end_ms {
            return Ok(answer(&p.request_id, Status::Ended, None));
        }
        let quantity = p.quantity.unwrap_or(1);
        let mut conn = self.redis.clone();
        let outcome = deduct_one(
            &mut conn,
            &self.script,
            OneDeduct {
                sale,
                item,
                per_user_limit: terms.per_user_limit,
                pay_deadline_ms: now + PAY_TIMEOUT_MS,
                request_id: &p.request_id,
                user_id: &p.user_id,
                quantity,
            },
        )
        .await
        .map_err(ApiError::redis_down)?;
        let status = match outcome.as_str() {
            "sold_out" => Status::SoldOut,
            "duplicate" => Status::Duplicate,
            "limit_exceeded" => Status::LimitExceeded,
            "unknown_item" => Status::Rejected,
            _ => Status::Success,
        };
        let Some(order_id) = outcome.strip_prefix("ok:").and_then(OrderId::parse) else {
            return Ok(answer(&p.request_id, status, None));
        };
        let mut buf = Vec::with_capacity(256);
        encode_order(
            &Order {
                order_id,
                request_id: &p.request_id,
                sale_id: sale,
                item_id: item,
                user_id: &p.user_id,
                price_cents: terms.price_cents,
                quantity,
                created_ms: now,
                lsn: 0,
            },
            &mut buf,
        );
        let key = format!("{sale}:{item}");
        let record = FutureRecord::to(ORDERS_TOPIC).key(&key).payload(&buf);
        match self.producer.send(record, Duration::from_secs(5)).await {
            Ok(_) => Ok(answer(&p.request_id, Status::Success, Some(order_id))),
            // The unit stays locked in Redis; only a retry (the stored
            // outcome) sends it again: there is no journal.
            Err((e, _)) => {
                tracing::warn!(error = %e, "order not acknowledged; answered unavailable");
                Ok(answer(&p.request_id, Status::Unavailable, None))
            }
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_string();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let result = match (req.method().clone(), parts.as_slice()) {
            (Method::GET, ["api", "v1", "time"]) => Ok(json(
                StatusCode::OK,
                &serde_json::json!({"now_ms": now_ms()}),
            )),
            (Method::PUT, ["admin", "v1", "sales", sale]) => self.put_sale(sale, req).await,
            (Method::POST, ["api", "v1", "sales", sale, "items", item, "purchase"]) => {
                self.purchase(sale, item, req).await
            }
            _ => Err(ApiError::new(ErrorCode::NotFound, "no such path")),
        };
        result.unwrap_or_else(ApiError::into_response)
    }
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads.max(1))
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        let client = redis::Client::open(args.redis_url.as_str()).context("redis url")?;
        let redis = client
            .get_multiplexed_async_connection()
            .await
            .context("connect to redis")?;
        let admin = RedisAdmin::new(&args.redis_url, Duration::from_secs(2)).context("redis")?;
        seckill_io::kafka::ensure_topics(
            &args.kafka_brokers,
            &[],
            &seckill_io::kafka::TopicSpec::new(3),
            &seckill_io::kafka::Topics::default(),
        )
        .await
        .context("create the Kafka topics")?;
        let producer: FutureProducer = seckill_io::kafka::base_config(&args.kafka_brokers, &[])
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .context("Kafka producer")?;
        let naive = Arc::new(Naive {
            admin_token: args.admin_token,
            redis,
            admin,
            script: script(),
            producer,
            items: RwLock::default(),
        });
        seckill_benches::serve::serve_http1(args.listen, move |req| {
            let naive = Arc::clone(&naive);
            async move { naive.route(req).await }
        })
        .await
    })
}
