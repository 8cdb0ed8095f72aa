//! The requests of a sharded item whose home shard was dry: the unit is
//! sought on the other shards in ring order (home + 1, home + 2, …), one
//! round trip per step for every such request of the batch at once
//! (`take.lua`), then the borrow is ended on the home shard
//! (`finish.lua`): the order id found, or — every shard dry — `sold_out`
//! and the reserved units given back.
//!
//! Every step stores its outcome under the request id on the shard it
//! touched (`dry` too), so the walk is the same however often it is
//! re-driven — after a timeout, a crash between two steps, a failover —
//! and never takes a second unit: a request whose home holds `borrow:` is
//! continued, one whose home holds the final outcome gets that.

use redis::Value;
use seckill_pipeline::port::{DeductGroup, DeductOutcome, StoreError};

use super::calls::{parse, reply_lines, Borrow, Parsed, Tag};
use super::layout::{Tags, SHARDS_MAX};
use super::resp;
use super::stock::RedisStockStore;

impl RedisStockStore {
    /// Walks `borrows` to their end and writes each one's outcome into
    /// `results`.
    pub(super) fn walk(
        &mut self,
        groups: &[DeductGroup<'_>],
        tags: &[Option<Tags>],
        flat: &[(usize, usize)],
        mut borrows: Vec<Borrow>,
        results: &mut [Option<DeductOutcome>],
    ) -> Result<(), StoreError> {
        let shards = |b: &Borrow| tags[flat[b.request].0].as_ref().map_or(1, |t| t.len());
        // Found a unit ("ok:<id>") or none anywhere ("sold_out").
        let mut ended: Vec<(Borrow, String)> = Vec::new();
        let mut steps = 0;
        while !borrows.is_empty() {
            steps += 1;
            if steps > SHARDS_MAX {
                return Err(StoreError::Protocol(
                    "a borrow walked past every shard".into(),
                ));
            }
            borrows.sort_by_key(|b| (flat[b.request].0, b.at));
            let runs = runs(&borrows, |b| (flat[b.request].0, b.at));
            self.buf.clear();
            self.calls.clear();
            for run in &runs {
                let first = &borrows[run.start];
                let g = &groups[flat[first.request].0];
                let tag = shard_tag(tags, flat, first, first.at)?;
                let buf = &mut self.buf;
                let start = buf.len();
                resp::array(buf, 3 + 4 + 4 + 3 * run.len());
                resp::bulk(buf, &[b"EVALSHA"]);
                resp::bulk(buf, &[self.shas.take.as_bytes()]);
                resp::bulk_u64(buf, 4);
                for suffix in ["stock", "req", "unpaid", "orders"] {
                    tag.key(buf, suffix);
                }
                resp::bulk(buf, &[g.sale_id.as_bytes()]);
                resp::bulk(buf, &[g.item_id.as_bytes()]);
                resp::bulk_u64(buf, g.pay_deadline_ms);
                resp::bulk_u64(buf, run.len() as u64);
                for b in &borrows[run.clone()] {
                    let (gr, i) = flat[b.request];
                    let r = &groups[gr].requests[i];
                    resp::bulk(buf, &[r.request_id.as_bytes()]);
                    resp::bulk(buf, &[r.user_id.as_bytes()]);
                    resp::bulk_u64(buf, u64::from(r.quantity));
                }
                self.calls.push((start..buf.len(), tag.slot()));
            }
            let replies = self.send()?;
            let mut walking = Vec::new();
            for (run, reply) in runs.iter().zip(expect(&replies, runs.len())?) {
                let mut lines = reply_lines(reply)?;
                for b in &borrows[run.clone()] {
                    let line = lines.next().ok_or_else(|| {
                        StoreError::Protocol("fewer outcomes than requests".into())
                    })?;
                    match line {
                        "dry" => {
                            let mut next = *b;
                            next.at = (b.at + 1) % shards(b);
                            if next.at == b.home {
                                ended.push((next, "sold_out".into()));
                            } else {
                                walking.push(next);
                            }
                        }
                        "unknown_item" => results[b.request] = Some(DeductOutcome::UnknownItem),
                        l if l.starts_with("ok:") => ended.push((*b, l.to_string())),
                        other => {
                            return Err(StoreError::Protocol(format!(
                                "unexpected take outcome {other:?}"
                            )))
                        }
                    }
                }
            }
            borrows = walking;
        }
        if ended.is_empty() {
            return Ok(());
        }
        self.finish(groups, tags, flat, ended, results)
    }

    /// Ends the borrows on their home shards: one call per home shard.
    fn finish(
        &mut self,
        groups: &[DeductGroup<'_>],
        tags: &[Option<Tags>],
        flat: &[(usize, usize)],
        mut ended: Vec<(Borrow, String)>,
        results: &mut [Option<DeductOutcome>],
    ) -> Result<(), StoreError> {
        // Between the unit taken and the borrow ended: what a crash, a
        // timeout or a failover there leaves for the re-drive.
        fail::fail_point!("redis::stock::finish", |_| Err(StoreError::Unavailable(
            "fail point redis::stock::finish".into()
        )));
        ended.sort_by_key(|(b, _)| (flat[b.request].0, b.home));
        let runs = runs(&ended, |(b, _)| (flat[b.request].0, b.home));
        self.buf.clear();
        self.calls.clear();
        for run in &runs {
            let (first, _) = &ended[run.start];
            let tag = shard_tag(tags, flat, first, first.home)?;
            let buf = &mut self.buf;
            let start = buf.len();
            resp::array(buf, 3 + 2 + 1 + 4 * run.len());
            resp::bulk(buf, &[b"EVALSHA"]);
            resp::bulk(buf, &[self.shas.finish.as_bytes()]);
            resp::bulk_u64(buf, 2);
            tag.key(buf, "buyers");
            tag.key(buf, "req");
            resp::bulk_u64(buf, run.len() as u64);
            for (b, outcome) in &ended[run.clone()] {
                let (gr, i) = flat[b.request];
                let r = &groups[gr].requests[i];
                resp::bulk(buf, &[r.request_id.as_bytes()]);
                resp::bulk(buf, &[r.user_id.as_bytes()]);
                resp::bulk_u64(buf, u64::from(r.quantity));
                resp::bulk(buf, &[outcome.as_bytes()]);
            }
            self.calls.push((start..buf.len(), tag.slot()));
        }
        let replies = self.send()?;
        for (run, reply) in runs.iter().zip(expect(&replies, runs.len())?) {
            let mut lines = reply_lines(reply)?;
            for (b, _) in &ended[run.clone()] {
                let line = lines
                    .next()
                    .ok_or_else(|| StoreError::Protocol("fewer outcomes than requests".into()))?;
                match parse(line)? {
                    Parsed::Final(o) => results[b.request] = Some(o),
                    Parsed::Borrow { .. } => {
                        return Err(StoreError::Protocol(format!(
                            "a borrow not ended by finish: {line:?}"
                        )))
                    }
                }
            }
        }
        Ok(())
    }
}

/// The tag of shard `j` of a borrowing request's item.
fn shard_tag<'a>(
    tags: &'a [Option<Tags>],
    flat: &[(usize, usize)],
    b: &Borrow,
    j: usize,
) -> Result<Tag<'a>, StoreError> {
    tags[flat[b.request].0]
        .as_deref()
        .and_then(|t| t.get(j))
        .map(|t| Tag::Shard(t))
        .ok_or_else(|| StoreError::Protocol("a borrow for an unsharded item".into()))
}

/// The ranges of equal keys in a sorted slice.
fn runs<T, K: PartialEq>(v: &[T], key: impl Fn(&T) -> K) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=v.len() {
        if i == v.len() || key(&v[i]) != key(&v[start]) {
            out.push(start..i);
            start = i;
        }
    }
    out
}

fn expect(replies: &[Value], n: usize) -> Result<&[Value], StoreError> {
    if replies.len() == n {
        Ok(replies)
    } else {
        Err(StoreError::Protocol(format!(
            "{} replies for {n} calls",
            replies.len()
        )))
    }
}
