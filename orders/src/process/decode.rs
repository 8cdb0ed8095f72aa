//! A polled message, owned, and what it decodes to by its topic; the
//! small helpers that turn the batch's wins into rows.

use seckill_io::redis::OrderState;

use super::ERROR_LEN_MAX;
use crate::kafka::Topics;
use crate::message::{decode_event, decode_order, Poison};
use crate::meta::{Meta, Source};
use crate::plan::Kind;
use crate::store::{DlqIn, NewOrder};

/// A message as polled, owned (the consumer's borrow ends at the poll).
#[derive(Debug, Clone)]
pub struct Polled {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub meta: Meta,
}

impl Polled {
    /// Where the message was first read (through retries and redrives).
    pub fn source(&self) -> Source {
        self.meta.source.clone().unwrap_or_else(|| Source {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        })
    }

    /// The topic whose schema the payload has.
    fn schema_topic<'a>(&'a self, topics: &Topics) -> &'a str {
        match &self.meta.source {
            Some(s) if self.topic == topics.retry => &s.topic,
            _ => &self.topic,
        }
    }
}

/// Decodes one message by its topic.
pub fn decode(p: &Polled, topics: &Topics, now_ms: u64) -> Kind {
    if p.topic == topics.dlq {
        // Headers are anyone's to write: cut to the columns and cleaned of
        // what a database refuses (NUL), so an entry always fits.
        let mut source = p.source();
        source.topic = fit(&source.topic, 255);
        return Kind::Dlq(DlqIn {
            source,
            key: p.key.clone(),
            payload: p.payload.clone(),
            error_kind: fit(&p.meta.error_kind, 32),
            error: fit(&p.meta.error, ERROR_LEN_MAX),
            attempts: p.meta.attempt,
            first_failed_ms: p.meta.first_failed_ms,
            last_failed_ms: now_ms,
        });
    }
    let Some(payload) = p.payload.as_deref() else {
        return Kind::Poison(Poison::BadJson("the message has no payload".into()));
    };
    let schema = p.schema_topic(topics);
    let decoded = if schema == topics.orders {
        decode_order(payload).map(Kind::Order)
    } else if schema == topics.events {
        decode_event(payload).map(Kind::Event)
    } else {
        Err(Poison::Invalid(format!(
            "a message of unknown topic {schema}"
        )))
    };
    decoded.unwrap_or_else(Kind::Poison)
}

/// `s` without NUL and control characters but newlines, at most `max`
/// bytes (on a character boundary).
pub(super) fn fit(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// The order ids and request ids of the wins at `at`.
pub(super) fn ids_of<'a>(kinds: &'a [Kind], at: &[usize]) -> (Vec<&'a str>, Vec<&'a str>) {
    at.iter()
        .filter_map(|&i| match kinds.get(i) {
            Some(Kind::Order(o)) => Some((o.order_id.as_str(), o.request_id.as_str())),
            _ => None,
        })
        .unzip()
}

/// The row a win at `i` becomes.
pub(super) fn new_order<'a>(
    batch: &[Polled],
    kinds: &'a [Kind],
    i: usize,
    state: OrderState,
    reason: Option<&'a str>,
) -> Option<NewOrder<'a>> {
    let Some(Kind::Order(o)) = kinds.get(i) else {
        return None;
    };
    let src = batch.get(i)?.source();
    Some(NewOrder {
        order: o,
        state,
        reason,
        partition: src.partition,
        offset: src.offset,
    })
}
