//! The dead-letter queue's redrive: a parked entry goes back on the retry
//! topic as the original message (same key, same payload, its source
//! kept), attempt count reset, so it runs the retry ladder once more — by
//! `seckill-orders dlq redrive`, and by the background redrive every
//! `dlq_redrive_interval_ms` (seed 003 §11: hourly). An entry is marked
//! redriven only after Kafka acknowledged its message, and only if it was
//! not parked again meanwhile; a crash in between sends it twice, which
//! the rows' idempotency absorbs.

use crate::kafka::{Outgoing, Producer};
use crate::meta::{Meta, Source};
use crate::process::now_ms;
use crate::store::{DlqRow, Store, StoreError};

/// Most entries one redrive takes (the rest wait for the next).
pub const REDRIVE_MAX: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Kafka did not take the redriven messages: {0}")]
    Kafka(String),
}

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Redriven {
    /// Sent back to the retry topic and marked.
    pub redriven: Vec<i64>,
    /// Asked for but not parked (unknown, or already redriven).
    pub skipped: Vec<i64>,
}

fn message(row: &DlqRow, retry_topic: &str) -> Outgoing {
    let meta = Meta {
        attempt: 0,
        due_ms: 0,
        source: Some(Source {
            topic: row.source_topic.clone(),
            partition: row.source_partition,
            offset: row.source_offset,
        }),
        error_kind: row.error_kind.clone(),
        error: row.error.clone(),
        first_failed_ms: u64::try_from(row.first_failed_ms).unwrap_or(0),
    };
    Outgoing {
        topic: retry_topic.to_string(),
        key: row.key.clone(),
        payload: row.payload.clone(),
        headers: Some(meta.headers()),
    }
}

/// Redrives the parked entries `ids`, or every parked one (`None`).
pub async fn redrive(
    store: &Store,
    producer: &Producer,
    retry_topic: &str,
    ids: Option<&[i64]>,
) -> Result<Redriven, DlqError> {
    let rows = match ids {
        Some(ids) => store.dlq_get(ids).await?,
        None => store.dlq_list(false, REDRIVE_MAX).await?,
    };
    let mut out = Redriven::default();
    let (parked, other): (Vec<DlqRow>, Vec<DlqRow>) =
        rows.into_iter().partition(|r| r.state == "parked");
    out.skipped.extend(other.iter().map(|r| r.id));
    if let Some(ids) = ids {
        out.skipped.extend(
            ids.iter()
                .filter(|id| !parked.iter().chain(&other).any(|r| r.id == **id)),
        );
    }
    if parked.is_empty() {
        return Ok(out);
    }
    producer
        .send_all(parked.iter().map(|r| message(r, retry_topic)).collect())
        .await
        .map_err(|(e, _)| DlqError::Kafka(e))?;
    let now = now_ms() as i64;
    for r in &parked {
        if store.dlq_mark_redriven(r.id, r.parks, now).await? {
            out.redriven.push(r.id);
        } else {
            // Parked again while its message was on the way: the new
            // failure stands, and the next redrive takes it.
            out.skipped.push(r.id);
        }
    }
    tracing::info!(
        redriven = out.redriven.len(),
        skipped = out.skipped.len(),
        "dead-letter queue redriven"
    );
    Ok(out)
}
