//! # seckill-benches: everything that measures
//!
//! - the load generator ([`load`]): plays a flash sale against a daemon
//!   over HTTP, with latency histograms; binary `seckill-load`;
//! - the invariant checker ([`check`]): after a sale, reads Redis and
//!   Kafka and proves no oversell, every win on Kafka exactly once, nobody
//!   over the limit — the end-to-end and chaos tests use it too;
//! - `seckill-bare`: a bare hyper server, the reference every ingress
//!   figure is a ratio against; `seckill-naive`, the idiomatic baseline
//!   (its per-request deduction in [`naive`]);
//! - the criterion benches in `benches/` (ring, WAL, deduct, dedupe,
//!   pipeline). docs/benchmarks.md says how to run them and what they
//!   measured.

pub mod check;
pub mod load;
pub mod naive;
pub mod progress;
pub mod serve;
pub mod settle;
