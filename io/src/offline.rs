//! `seckill-replay run`: the daemon's replay, offline, for the operator —
//! with the daemon stopped, re-drive every pending intent through the same
//! batched script and publish every win since the checkpoint, then move
//! the checkpoint. It builds the same ring as the daemon (no HTTP), so the
//! work takes exactly the path of a live request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use seckill_pipeline::health::State;
use seckill_pipeline::{Catalog, Shared, SystemClock};
use seckill_replay::{Replayer, Work};
use seckill_wal::{Lsn, Wal};
use serde::Serialize;

use crate::app::{blocking, KnownWins};
use crate::config::Config;
use crate::error::DaemonError;
use crate::wiring::{connect, start_ring, Connected};

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub from_lsn: Lsn,
    pub pending_found: u64,
    pub wins_found: u64,
    /// Final outcomes of the re-driven intents.
    pub resolved: BTreeMap<String, u64>,
    pub still_pending: u64,
    pub published: u64,
    pub unacknowledged: u64,
    pub checkpoint: Lsn,
    pub redis: String,
    pub kafka: String,
}

impl RunSummary {
    /// Nothing is left for a later run.
    pub fn complete(&self) -> bool {
        self.still_pending == 0 && self.unacknowledged == 0
    }
}

/// What a run would do: the pending intents and wins from `from`, per item.
pub fn plan(cfg: &Config, from: Option<Lsn>) -> Result<(Lsn, Work), DaemonError> {
    let from = match from {
        Some(l) => l,
        None => seckill_wal::read_checkpoint(&cfg.wal_dir)?.unwrap_or(1),
    };
    Ok((from, seckill_replay::scan(&cfg.wal_dir, from)?))
}

/// Progress callback: (done, total).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

pub async fn run(
    cfg: &Config,
    from: Option<Lsn>,
    timeout: Duration,
    progress: Progress,
) -> Result<RunSummary, DaemonError> {
    let opts = cfg.wal_options();
    let dir = cfg.wal_dir.clone();
    // Opening takes the directory lock: a running daemon makes this fail.
    let (wal, report) = blocking(move || Wal::open(&dir, opts)).await??;
    let (from, work) = {
        let cfg = cfg.clone();
        blocking(move || plan(&cfg, from)).await??
    };
    let shared = Shared::default();
    let catalog = Arc::new(Catalog::default());
    let known: Arc<KnownWins> = Arc::default();
    let Connected {
        store,
        sink,
        sink_stats,
        kafka,
        ..
    } = connect(cfg, &shared, &catalog, &known, seckill_pipeline::now_ms()).await?;
    let (pipeline, sub) = start_ring(
        cfg,
        store,
        sink,
        wal,
        &shared,
        &report,
        SystemClock::shared(),
    )?;
    let total = (work.redrive.len() + work.republish.len()) as u64;
    let deadline = Instant::now() + timeout;
    let summary_work = work.clone();
    let shared2 = shared.clone();
    let progress2 = Arc::clone(&progress);
    blocking(move || {
        let mut r = Replayer::new(sub, catalog, shared2.clone());
        r.seed(&work);
        r.republish(&work, timeout);
        if shared2.redis.state() != State::Down && !work.redrive.is_empty() {
            shared2
                .redis
                .transition(&[State::Up], State::Draining, "offline replay");
            let round = r.redrive(&work, timeout);
            if round.complete && shared2.backlog.total() == 0 {
                shared2
                    .redis
                    .transition(&[State::Draining], State::Up, "offline replay done");
            }
        }
        // Wait for Kafka to acknowledge and the intents to resolve.
        loop {
            let left = shared2.outstanding.len() as u64;
            progress2(total.saturating_sub(left), total);
            if left == 0 || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await?;
    blocking(move || pipeline.shutdown()).await?;

    let mut summary = RunSummary {
        from_lsn: from,
        pending_found: summary_work.redrive.len() as u64,
        wins_found: summary_work.republish.len() as u64,
        published: sink_stats.acked.load(std::sync::atomic::Ordering::Relaxed),
        redis: shared.redis.state().as_str().into(),
        kafka: kafka.state().as_str().into(),
        ..RunSummary::default()
    };
    for (_, d) in &summary_work.redrive {
        match shared.board.get(&d.request_id) {
            Some(s) => {
                *summary
                    .resolved
                    .entry(s.status.as_str().into())
                    .or_insert(0) += 1
            }
            None => summary.still_pending += 1,
        }
    }
    // Outstanding LSNs are unresolved intents plus unacknowledged wins.
    let outstanding = shared.outstanding.len() as u64;
    summary.unacknowledged = outstanding.saturating_sub(summary.still_pending);
    let safe = shared.outstanding.safe_lsn();
    let dir = cfg.wal_dir.clone();
    blocking(move || -> Result<(), seckill_wal::WalError> {
        if seckill_wal::read_checkpoint(&dir)?.unwrap_or(0) < safe {
            seckill_wal::write_checkpoint(&dir, safe)?;
        }
        Ok(())
    })
    .await??;
    summary.checkpoint = safe;
    progress(total.saturating_sub(outstanding), total);
    Ok(summary)
}
