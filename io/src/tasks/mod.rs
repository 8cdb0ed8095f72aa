//! The daemon's background tasks, one file each. Every task takes the
//! shared [`crate::app::App`] and a stop flag, and ends when the flag
//! turns true.
//!
//! | task | every | does |
//! |---|---|---|
//! | `probe` | 1 s | Redis (catalog sync), blacklist, Kafka metadata, topic re-creation, limiter housekeeping |
//! | `catalog` | (by the probe) | sale metadata, `available`, wins into the status board |
//! | `drain` | 200 ms | re-drives the WAL's pending intents while Redis is `draining`; publishes wins written late (a full disk) and orders dropped from the Kafka retry queue |
//! | `salvage` | once, after a salvage | republishes every win Redis holds |
//! | `sweeper` | `sweep_interval_ms` | expires unpaid orders, stock back to `available` |
//! | `outbox` | `sweep_interval_ms` or woken | order events → `seckill.order-events` |
//! | `reopen` | on message (a thread) | clears the sold-out flag of re-opened items |
//! | `bounds` | 2 s | forgets sales past their retention, bounds the status board and the order index |

pub mod bounds;
pub mod catalog;
pub mod drain;
pub mod outbox;
pub mod probe;
pub mod reopen;
pub mod salvage;
pub mod sweeper;
