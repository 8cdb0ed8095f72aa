//! # seckill-orders: the wins on Kafka into SQL
//!
//! The order service a team would otherwise write by hand (seed 000 ends
//! in MySQL; seed 003 §5 is its design): it consumes the wins the daemons
//! publish and the events of their orders into PostgreSQL or
//! MySQL/MariaDB, with zero loss and no duplicates.
//!
//! ```text
//!  seckill.orders ───────┐
//!  seckill.order-events ─┤                  ┌─ Redis: stock check, backlog release (cancel rules)
//!  seckill.orders.retry ─┼─► consumer ─► batch ─┼─ SQL: ONE transaction (orders, events, DLQ entries)
//!  seckill.orders.dlq ───┘  (group             └─ Kafka: retries, dead letters, `failed` events
//!                            seckill-orders)         │
//!                                                     └─► commit offsets (only now)
//! ```
//!
//! | module      | what lives there                                                      |
//! |-------------|-----------------------------------------------------------------------|
//! | `message`   | the topics' messages decoded from bytes; poison and its reasons       |
//! | `meta`      | what a retried or dead-lettered message carries in its headers       |
//! | `state`     | the order's state machine, one pure table                            |
//! | `plan`      | a batch's wins sorted without I/O: duplicate, poison, create, release |
//! | `store/`    | the database (both engines, one set of statements), migrations       |
//! | `process`   | one batch: decode, check, release, write, what is left to publish    |
//! | `consume`   | the consumer loop: poll, write, publish, commit; pause and back off  |
//! | `kafka`     | topics, the consumer's settings and callbacks, the producer          |
//! | `dlq`       | redrive of the dead-letter queue                                      |
//! | `reconcile` | Redis, the topic and the database side by side                        |
//! | `http`      | /healthz, /readyz, /metrics and the order queries                     |
//! | `service`   | start (HTTP, schema, topics, consumer, tasks) and stop                |
//!
//! docs/orders.md tells the whole story: the flow, the schema, the state
//! machine, failure handling, the backlog release and reconcile.

pub mod config;
pub mod consume;
pub mod dlq;
pub mod health;
pub mod http;
pub mod kafka;
pub mod message;
pub mod meta;
pub mod metrics;
pub mod plan;
pub mod process;
pub mod reconcile;
pub mod service;
pub mod state;
pub mod store;
pub mod topics;

pub use config::Config;
pub use service::Service;
