//! The pieces the stock scripts' calls share: where a call's keys live
//! (an item's own tag, or a shard's), what a stored outcome says, a
//! request in the middle of a borrow, and the buffers a batch reuses.

use std::ops::Range;

use redis::Value;
use seckill_pipeline::port::{DeductOutcome, StoreError};
use seckill_pipeline::OrderId;

use super::keys;
use super::layout::Tags;
use super::resp;
use super::slots::slot_of_tag;

/// Where a call's keys live: an item's own tag `sale:item`, or a shard's.
#[derive(Debug, Clone, Copy)]
pub(super) enum Tag<'a> {
    Own(&'a str, &'a str),
    Shard(&'a str),
}

impl Tag<'_> {
    /// Writes the key `seckill:{tag}:<suffix>` as one bulk string.
    pub fn key(self, buf: &mut Vec<u8>, suffix: &str) {
        match self {
            Tag::Own(sale, item) => resp::bulk(buf, &keys::item_key_parts(sale, item, suffix)),
            Tag::Shard(t) => resp::bulk(buf, &keys::tag_key_parts(t, suffix)),
        }
    }

    pub fn slot(self) -> u16 {
        match self {
            Tag::Own(sale, item) => slot_of_tag(&[sale.as_bytes(), b":", item.as_bytes()]),
            Tag::Shard(t) => slot_of_tag(&[t.as_bytes()]),
        }
    }
}

/// What a stored outcome says.
pub(super) enum Parsed {
    Final(DeductOutcome),
    /// The home shard was dry: the unit is sought from shard `shard` on
    /// (the user's units are reserved on the home).
    Borrow {
        shard: usize,
    },
}

pub(super) fn parse(res: &str) -> Result<Parsed, StoreError> {
    Ok(Parsed::Final(match res {
        "sold_out" => DeductOutcome::SoldOut,
        "duplicate" => DeductOutcome::Duplicate,
        "limit_exceeded" => DeductOutcome::LimitExceeded,
        "unknown_item" => DeductOutcome::UnknownItem,
        other => {
            // `borrow:<shard>:<user>` (a user id may hold colons).
            if let Some(b) = other.strip_prefix("borrow:") {
                if let Some(shard) = b.split_once(':').and_then(|(s, _)| s.parse().ok()) {
                    return Ok(Parsed::Borrow { shard });
                }
            }
            let id = other
                .strip_prefix("ok:")
                .and_then(OrderId::parse)
                .ok_or_else(|| StoreError::Protocol(format!("unexpected outcome {other:?}")))?;
            DeductOutcome::Success(id)
        }
    }))
}

/// The outcomes of one script reply (one string, newline separated).
pub(super) fn reply_lines(v: &Value) -> Result<std::str::Split<'_, char>, StoreError> {
    let Value::BulkString(bytes) = v else {
        return Err(StoreError::Protocol(format!(
            "unexpected script answer {v:?}"
        )));
    };
    std::str::from_utf8(bytes)
        .map(|t| t.split('\n'))
        .map_err(|_| StoreError::Protocol("script answer is not UTF-8".into()))
}

/// A request in the middle of a borrow (see `borrow.rs`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Borrow {
    /// Index in the batch's flat request list.
    pub request: usize,
    pub home: usize,
    /// The shard to ask next.
    pub at: usize,
}

/// The buffers of one batch, kept for the next.
#[derive(Default)]
pub(super) struct Scratch {
    /// The batch's requests: (group, index in the group).
    pub flat: Vec<(usize, usize)>,
    /// Each group's shard tags (`None`: not sharded).
    pub tags: Vec<Option<Tags>>,
    /// The parts' requests, as indexes into `flat`.
    pub idx: Vec<usize>,
    pub parts: Vec<Part>,
    /// Each request's outcome, as it is decided.
    pub results: Vec<Option<DeductOutcome>>,
}

impl Scratch {
    pub fn clear(&mut self) {
        self.flat.clear();
        self.tags.clear();
        self.idx.clear();
        self.parts.clear();
        self.results.clear();
    }
}

/// The requests of one item sent under one tag: the item's own, or one
/// shard's (`shard`), as indexes into the batch's flat request list.
pub(super) struct Part {
    pub group: usize,
    pub shard: Option<usize>,
    pub reqs: Range<usize>,
}
