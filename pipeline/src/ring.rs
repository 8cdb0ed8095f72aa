//! The topology: a multi-producer disruptor ring and the stages on two
//! threads by default — the decision (dedupe, deduct) and the commit
//! (journal, reply, publish) — each thread polling its own `EventPoller`
//! so it sees whole batches and runs its stages one after the other on
//! each. The two overlap: the decision thread sends batch k+1 to Redis
//! while the commit thread writes batch k to the journal.
//!
//! ```text
//!                          ┌──── decide ─────┐    ┌──────── commit ────────┐
//! ingress ─try_submit─► RING ─► dedupe ─► deduct ─► journal ─► reply ─► publish
//! ```
//!
//! `stage_threads = 5` runs each stage on a thread of its own instead, in
//! the same order, at the price of three more thread hand-offs per batch.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use disruptor::{
    build_multi_producer, EventPoller, MultiProducer, MultiProducerBarrier, Polling, Producer,
    SingleConsumerBarrier, Sleep,
};

use smallvec::SmallVec;

use crate::backoff::{Backoff, Sleeper};
use crate::clock::SharedClock;
use crate::event::Event;
use crate::health::{Health, State};
use crate::port::{Journal, OrderSink, StockStore};
use crate::progress::{Backlog, Outstanding, Rescued};
use crate::stage::{Deduct, DeductShared, Dedupe, JournalStage, Publish, ReplyStage, Stage};
use crate::stats::Stats;
use crate::status::StatusBoard;

/// State the stages share with the rest of the daemon.
#[derive(Clone)]
pub struct Shared {
    pub board: Arc<StatusBoard>,
    pub stats: Arc<Stats>,
    /// Health of the stock store (Redis); the deduct stage breaks the circuit.
    pub redis: Arc<Health>,
    pub backlog: Arc<Backlog>,
    pub outstanding: Arc<Outstanding>,
    /// Health of the journal: down after a failed write (a full disk),
    /// up again once a write succeeds.
    pub journal: Arc<Health>,
    /// Wins whose batch the journal could not write.
    pub rescued: Arc<Rescued>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            board: Arc::default(),
            stats: Arc::default(),
            redis: Arc::new(Health::new("redis", State::Up)),
            backlog: Arc::default(),
            outstanding: Arc::default(),
            journal: Arc::new(Health::new("journal", State::Up)),
            rescued: Arc::default(),
        }
    }
}

/// Where the journal stands when the pipeline starts (after recovery).
#[derive(Debug, Clone, Copy, Default)]
pub struct Resume {
    pub last_lsn: u64,
    pub checkpoint: u64,
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Slots in the ring (a power of two). A full ring sheds load (503).
    pub ring_size: usize,
    /// Most events one stage takes per batch.
    pub batch_len_max: u64,
    /// How long an unpaid win holds its unit.
    pub pay_timeout_ms: u64,
    /// Orders the publish stage keeps aside while the sink's queue is full.
    pub publish_parked_max: usize,
    /// How long shutdown waits for the order sink to drain.
    pub publish_flush_timeout: Duration,
    /// Threads the stages run on: 2 (decide, commit) or 5 (one each).
    pub stage_threads: u8,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            ring_size: 4096,
            batch_len_max: 64,
            pay_timeout_ms: 15 * 60 * 1000,
            publish_parked_max: 100_000,
            publish_flush_timeout: Duration::from_secs(10),
            stage_threads: 2,
        }
    }
}

/// The adapters the pipeline talks through.
pub struct Ports {
    pub store: Box<dyn StockStore>,
    pub sink: Box<dyn OrderSink>,
    pub journal: Box<dyn Journal>,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("ring_size must be a power of two of at least 2, not {0}")]
    RingSize(usize),
    #[error("stage_threads must be 2 or 5, not {0}")]
    StageThreads(u8),
    #[error("could not start stage thread {stage}: {source}")]
    Spawn {
        stage: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The ring is full: shed the request (503 + Retry-After).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ring is full")]
pub struct RingFull;

type RingProducer = MultiProducer<Event, SingleConsumerBarrier>;

/// A handle the ingress publishes through. Clone one per connection; the
/// pipeline shuts down once every clone is dropped.
#[derive(Clone)]
pub struct Submitter {
    producer: RingProducer,
    first: Arc<Sleeper>,
    stats: Arc<Stats>,
}

impl Submitter {
    /// Claims a slot and fills it, never blocking: a full ring is `RingFull`.
    pub fn try_submit(&mut self, fill: impl FnOnce(&mut Event)) -> Result<(), RingFull> {
        match self.producer.try_publish(fill) {
            Ok(_) => {
                self.first.wake();
                Ok(())
            }
            Err(_) => {
                self.stats.record_shed();
                Err(RingFull)
            }
        }
    }
}

/// A poller of either barrier type, behind one interface.
trait Source: Send {
    fn batch(&mut self, limit: u64, f: &mut dyn FnMut(&[&Event])) -> Result<usize, Polling>;
    fn ready(&self) -> bool;
}

macro_rules! impl_source {
    ($barrier:ty) => {
        impl Source for EventPoller<Event, $barrier> {
            fn batch(
                &mut self,
                limit: u64,
                f: &mut dyn FnMut(&[&Event]),
            ) -> Result<usize, Polling> {
                let mut guard = self.take(limit)?;
                // On the stack for batches up to the default batch_len_max.
                let events: SmallVec<[&Event; 64]> = (&mut guard).collect();
                f(&events);
                Ok(events.len())
                // The guard drops here: the stage's cursor moves past the batch.
            }
            fn ready(&self) -> bool {
                self.has_available()
            }
        }
    };
}
impl_source!(MultiProducerBarrier);
impl_source!(SingleConsumerBarrier);

/// The running pipeline.
pub struct Pipeline {
    submitter: Option<Submitter>,
    threads: Vec<JoinHandle<()>>,
    pub shared: Shared,
}

/// What a stage thread runs with besides its stages.
struct Wiring {
    me: Arc<Sleeper>,
    next: Vec<Arc<Sleeper>>,
    limit: u64,
    stats: Arc<Stats>,
    /// The first thread counts the ring's batches.
    counts_batches: bool,
}

/// A stage and its index into [`crate::stats::STAGES`].
type Staged = (Box<dyn Stage>, usize);

fn run<S: Source + 'static>(mut source: S, mut stages: Vec<Staged>, w: Wiring) {
    let Wiring {
        me,
        next,
        limit,
        stats,
        counts_batches,
    } = w;
    me.register_current();
    let mut backoff = Backoff::default();
    loop {
        let result = source.batch(limit, &mut |events| {
            // Each stage over the whole batch, in order; its latency is
            // taken as it finishes.
            for (stage, index) in &mut stages {
                stage.on_batch(events);
                let latency = &stats.stage_latency[*index];
                let now = Instant::now();
                for e in events {
                    if let Some(t) = e.entered {
                        if stage.measures(e) {
                            latency.record_duration(now.saturating_duration_since(t));
                        }
                    }
                }
            }
        });
        match result {
            Ok(n) => {
                if counts_batches {
                    stats.record_batch(n);
                }
                for w in &next {
                    w.wake();
                }
                backoff.reset();
            }
            Err(Polling::NoEvents) => {
                for (stage, _) in &mut stages {
                    stage.on_idle();
                }
                backoff.idle(&me, || source.ready());
            }
            Err(Polling::Shutdown) => {
                for (stage, _) in &mut stages {
                    stage.on_shutdown();
                }
                for w in &next {
                    w.wake();
                }
                return;
            }
        }
    }
}

fn spawn<S: Source + 'static>(
    threads: &mut Vec<JoinHandle<()>>,
    name: &'static str,
    source: S,
    stages: Vec<Staged>,
    wiring: Wiring,
) -> Result<(), PipelineError> {
    let handle = std::thread::Builder::new()
        .name(format!("seckill-{name}"))
        .spawn(move || run(source, stages, wiring))
        .map_err(|source| PipelineError::Spawn {
            stage: name,
            source,
        })?;
    threads.push(handle);
    Ok(())
}

impl Pipeline {
    pub fn start(
        cfg: &PipelineConfig,
        ports: Ports,
        shared: &Shared,
        resume: Resume,
        clock: SharedClock,
    ) -> Result<Pipeline, PipelineError> {
        let board = &shared.board;
        let stats = &shared.stats;
        if cfg.ring_size < 2 || !cfg.ring_size.is_power_of_two() {
            return Err(PipelineError::RingSize(cfg.ring_size));
        }
        if cfg.stage_threads != 2 && cfg.stage_threads != 5 {
            return Err(PipelineError::StageThreads(cfg.stage_threads));
        }
        // The wait strategy only matters to a blocking `publish`, which the
        // ingress never calls; stages wait through their own backoff.
        let builder = build_multi_producer(
            cfg.ring_size,
            Event::default,
            Sleep::new(Duration::from_micros(100)),
        );
        let limit = cfg.batch_len_max.max(1);
        let Ports {
            store,
            sink,
            journal,
        } = ports;
        let dedupe: Staged = (Box::new(Dedupe::new(Arc::clone(board))), 0);
        let deduct: Staged = (
            Box::new(Deduct::new(
                store,
                DeductShared {
                    board: Arc::clone(board),
                    stats: Arc::clone(stats),
                    health: Arc::clone(&shared.redis),
                    backlog: Arc::clone(&shared.backlog),
                    journal: Arc::clone(&shared.journal),
                    rescued: Arc::clone(&shared.rescued),
                },
                cfg.pay_timeout_ms,
                Arc::clone(&clock),
            )),
            1,
        );
        let mut journal_stage = JournalStage::new(
            journal,
            Arc::clone(stats),
            Arc::clone(&shared.outstanding),
            clock,
        );
        journal_stage.resume_after(resume.last_lsn, resume.checkpoint);
        journal_stage.report_to(
            Arc::clone(&shared.journal),
            Arc::clone(&shared.rescued),
            Arc::clone(board),
        );
        let journal: Staged = (Box::new(journal_stage), 2);
        let publish: Staged = (
            Box::new(Publish::new(
                sink,
                Arc::clone(stats),
                cfg.publish_parked_max,
                cfg.publish_flush_timeout,
            )),
            3,
        );
        let reply: Staged = (Box::new(ReplyStage::new(Arc::clone(board))), 4);
        let wiring = |me: &Arc<Sleeper>, next: &[&Arc<Sleeper>], first: bool| Wiring {
            me: Arc::clone(me),
            next: next.iter().map(|s| Arc::clone(s)).collect(),
            limit,
            stats: Arc::clone(stats),
            counts_batches: first,
        };
        let mut threads = Vec::new();
        let first = Arc::new(Sleeper::default());
        let producer = if cfg.stage_threads == 2 {
            let (decide_poller, builder) = builder.new_event_poller();
            let (commit_poller, builder) = builder.and_then().new_event_poller();
            let producer = builder.build();
            let commit_s = Arc::new(Sleeper::default());
            spawn(
                &mut threads,
                "decide",
                decide_poller,
                vec![dedupe, deduct],
                wiring(&first, &[&commit_s], true),
            )?;
            // The reply before the publish: a win is answered as soon as
            // it is journaled, its order enqueued for Kafka just after.
            spawn(
                &mut threads,
                "commit",
                commit_poller,
                vec![journal, reply, publish],
                wiring(&commit_s, &[], false),
            )?;
            producer
        } else {
            let (dedupe_poller, builder) = builder.new_event_poller();
            let (deduct_poller, builder) = builder.and_then().new_event_poller();
            let (journal_poller, builder) = builder.and_then().new_event_poller();
            let (reply_poller, builder) = builder.and_then().new_event_poller();
            let (publish_poller, builder) = builder.and_then().new_event_poller();
            let producer = builder.build();
            let [deduct_s, journal_s, reply_s, publish_s] =
                [(); 4].map(|()| Arc::new(Sleeper::default()));
            let w = wiring(&first, &[&deduct_s], true);
            spawn(&mut threads, "dedupe", dedupe_poller, vec![dedupe], w)?;
            let w = wiring(&deduct_s, &[&journal_s], false);
            spawn(&mut threads, "deduct", deduct_poller, vec![deduct], w)?;
            let w = wiring(&journal_s, &[&reply_s], false);
            spawn(&mut threads, "journal", journal_poller, vec![journal], w)?;
            let w = wiring(&reply_s, &[&publish_s], false);
            spawn(&mut threads, "reply", reply_poller, vec![reply], w)?;
            let w = wiring(&publish_s, &[], false);
            spawn(&mut threads, "publish", publish_poller, vec![publish], w)?;
            producer
        };
        Ok(Pipeline {
            submitter: Some(Submitter {
                producer,
                first,
                stats: Arc::clone(stats),
            }),
            threads,
            shared: shared.clone(),
        })
    }

    /// A new handle for publishing into the ring.
    pub fn submitter(&self) -> Option<Submitter> {
        self.submitter.clone()
    }

    /// Drops the pipeline's own handle and waits for the stages to drain
    /// the ring and exit. Returns once every other [`Submitter`] is gone too.
    pub fn shutdown(mut self) {
        self.submitter = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
