//! Replay, live: before the daemon serves, publish again every win since
//! the checkpoint and re-drive every pending intent; afterwards, whenever
//! Redis is `draining`, re-drive rounds in the background until the
//! backlog is empty, then mark Redis up. It also publishes the wins the
//! journal wrote late (their batch's write failed, a full disk): they were
//! never in the ring's publish stage.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seckill_pipeline::health::{Health, State};
use seckill_pipeline::progress::Backlog;
use seckill_replay::{Replayer, Work};
use tokio::sync::watch;

use crate::app::{blocking, App};
use crate::shutdown::until_true;

/// How long start-up replay may take before the daemon serves anyway
/// (what is left is re-driven in the background).
pub const STARTUP_REPLAY_MAX: Duration = Duration::from_secs(60);
/// How long one background re-drive round may take.
const ROUND_MAX: Duration = Duration::from_secs(30);
/// How often the drain task looks at Redis's state.
const DRAIN_TICK: Duration = Duration::from_millis(200);
/// Longest pause between two re-drive rounds that moved nothing (every
/// intent still pending: an item whose sale Redis lost waits for its
/// rebuild), so a stuck backlog is not re-read from the journal five
/// times a second.
const STUCK_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Before serving: publish again every win since the checkpoint (Kafka may
/// not have it) and, if Redis answers, re-drive every pending intent.
pub fn startup_replay(replayer: &Mutex<Replayer>, work: &Work, redis: &Health, backlog: &Backlog) {
    let mut r = replayer.lock().unwrap_or_else(|e| e.into_inner());
    r.seed(work);
    let republished = r.republish(work, STARTUP_REPLAY_MAX);
    if work.redrive.is_empty() {
        if republished > 0 {
            tracing::info!(republished, "start-up replay: wins handed to Kafka again");
        }
        return;
    }
    if redis.state() == State::Down {
        tracing::warn!(
            pending = work.redrive.len(),
            "start-up replay: redis is down; pending intents wait for it"
        );
        return;
    }
    redis.transition(
        &[State::Up],
        State::Draining,
        "pending intents in the journal",
    );
    let round = r.redrive(work, STARTUP_REPLAY_MAX);
    if round.complete && backlog.total() == 0 {
        redis.transition(&[State::Draining], State::Up, "start-up replay done");
    }
    tracing::info!(
        republished,
        redriven = round.submitted,
        complete = round.complete,
        "start-up replay"
    );
}

/// In the background: when Redis is draining, re-drive the journal's pending
/// intents (in LSN order, through the ring) until none is left, then mark
/// Redis up again.
pub async fn run(
    app: Arc<App>,
    replayer: Arc<Mutex<Replayer>>,
    wal_dir: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    // The backlog after the last round, and the pause before the next.
    let mut last: Option<u64> = None;
    let mut pause = DRAIN_TICK;
    let mut waited = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DRAIN_TICK) => {}
            _ = until_true(&mut stop) => return,
        }
        publish_rescued(&app, &replayer).await;
        reread_dropped(&app, &replayer, &wal_dir).await;
        let redis = &app.shared.redis;
        if redis.state() != State::Draining {
            (last, pause, waited) = (None, DRAIN_TICK, Duration::ZERO);
            continue;
        }
        waited += DRAIN_TICK;
        if waited < pause {
            continue;
        }
        waited = Duration::ZERO;
        let dir = wal_dir.clone();
        let r = Arc::clone(&replayer);
        let backlog = Arc::clone(&app.shared.backlog);
        let health = Arc::clone(redis);
        let done = blocking(move || -> Result<bool, seckill_replay::ReplayError> {
            let from = seckill_wal::read_checkpoint(&dir)?.unwrap_or(1);
            let work = seckill_replay::scan(&dir, from)?;
            let mut r = r.lock().unwrap_or_else(|e| e.into_inner());
            let round = r.redrive(&work, ROUND_MAX);
            tracing::info!(
                redriven = round.submitted,
                complete = round.complete,
                backlog = backlog.total(),
                "re-drive round"
            );
            Ok(round.complete && backlog.total() == 0 && health.state() == State::Draining)
        })
        .await;
        // A round that left the backlog as it found it: wait longer
        // before the next (up to STUCK_PAUSE_MAX); any progress resets it.
        let now = app.shared.backlog.total();
        pause = if last.is_some_and(|l| now >= l) {
            (pause * 2).min(STUCK_PAUSE_MAX)
        } else {
            DRAIN_TICK
        };
        last = Some(now);
        match done {
            Ok(Ok(true)) => {
                redis.transition(&[State::Draining], State::Up, "backlog drained");
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "re-drive round failed"),
            Err(e) => tracing::error!(error = %e, "re-drive round panicked"),
        }
    }
}

/// Hands the wins the journal wrote late to the publish stage (what does
/// not fit in the ring now waits for the next tick).
async fn publish_rescued(app: &Arc<App>, replayer: &Arc<Mutex<Replayer>>) {
    let republish = app.shared.rescued.take();
    if republish.is_empty() {
        return;
    }
    let r = Arc::clone(replayer);
    let rescued = Arc::clone(&app.shared.rescued);
    let done = blocking(move || {
        let work = Work {
            republish,
            ..Work::default()
        };
        let mut r = r.lock().unwrap_or_else(|e| e.into_inner());
        let n = r.republish(&work, ROUND_MAX) as usize;
        let Work { mut republish, .. } = work;
        let rest = republish.split_off(n.min(republish.len()));
        let left = rest.len();
        rescued.put_back(rest);
        (n, left)
    })
    .await;
    match done {
        Ok((n, left)) => tracing::info!(
            published = n,
            left,
            "wins the journal wrote late handed to Kafka"
        ),
        Err(e) => tracing::error!(error = %e, "handing late-written wins to Kafka failed"),
    }
}

/// Orders the Kafka retry queue had no room for are in the WAL only: once
/// the queue is empty again, re-read the WAL from the lowest dropped LSN
/// and hand every win still unacknowledged to the publish stage.
async fn reread_dropped(
    app: &Arc<App>,
    replayer: &Arc<Mutex<Replayer>>,
    wal_dir: &std::path::Path,
) {
    use std::sync::atomic::Ordering;
    // Only once Kafka takes orders again: re-reading during the outage
    // would fill the ring with orders that fail and drop again.
    if app.sink_stats.queued.load(Ordering::Relaxed) > 0
        || app.kafka.state() != seckill_pipeline::health::State::Up
    {
        return;
    }
    let Some(from) = app.sink_stats.take_dropped_from() else {
        return;
    };
    let dir = wal_dir.to_path_buf();
    let r = Arc::clone(replayer);
    let outstanding = Arc::clone(&app.shared.outstanding);
    let done = blocking(
        move || -> Result<(usize, Option<u64>), seckill_replay::ReplayError> {
            let mut work = seckill_replay::scan(&dir, from)?;
            work.republish.retain(|(lsn, _)| outstanding.contains(*lsn));
            work.redrive.clear();
            let mut r = r.lock().unwrap_or_else(|e| e.into_inner());
            let n = r.republish(&work, ROUND_MAX) as usize;
            Ok((n, work.republish.get(n).map(|(lsn, _)| *lsn)))
        },
    )
    .await;
    match done {
        Ok(Ok((n, left_from))) => {
            tracing::warn!(
                republished = n,
                from,
                "orders dropped from the Kafka retry queue re-read from the WAL"
            );
            if let Some(lsn) = left_from {
                app.sink_stats.redo_dropped_from(lsn);
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "re-reading dropped orders from the WAL failed; next tick");
            app.sink_stats.redo_dropped_from(from);
        }
        Err(e) => {
            tracing::error!(error = %e, "re-reading dropped orders from the WAL failed; next tick");
            app.sink_stats.redo_dropped_from(from);
        }
    }
}
