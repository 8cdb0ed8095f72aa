//! What a retried or dead-lettered message carries along, in Kafka headers:
//! where it first came from (topic, partition, offset), how many attempts
//! it has had, when the next one is due, and why the last one failed. The
//! payload and key travel unchanged, so a redriven message is the original.

use rdkafka::message::{Header, Headers, OwnedHeaders};

const ATTEMPT: &str = "seckill-attempt";
const DUE_MS: &str = "seckill-due-ms";
const SOURCE_TOPIC: &str = "seckill-source-topic";
const SOURCE_PARTITION: &str = "seckill-source-partition";
const SOURCE_OFFSET: &str = "seckill-source-offset";
const ERROR_KIND: &str = "seckill-error-kind";
const ERROR: &str = "seckill-error";
const FIRST_FAILED_MS: &str = "seckill-first-failed-ms";

/// Where a message was first consumed from: what the dead-letter queue
/// reports and keys its entries by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The headers of a retried or dead-lettered message (all empty on an
/// original message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Attempts so far (0 on an original message).
    pub attempt: u32,
    /// Not to be tried before this time (epoch ms); 0: at once.
    pub due_ms: u64,
    pub source: Option<Source>,
    pub error_kind: String,
    pub error: String,
    pub first_failed_ms: u64,
}

fn text(v: Option<&[u8]>) -> String {
    v.map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn number<T: std::str::FromStr + Default>(v: Option<&[u8]>) -> T {
    text(v).parse().unwrap_or_default()
}

impl Meta {
    /// Reads the headers; unknown ones are ignored, a malformed value reads
    /// as absent (a message is never refused for its headers).
    pub fn read(headers: Option<&impl Headers>) -> Meta {
        let mut m = Meta::default();
        let Some(h) = headers else {
            return m;
        };
        let (mut topic, mut partition, mut offset) = (None, None, None);
        for i in 0..h.count() {
            let Some(Header { key, value }) = h.try_get(i) else {
                continue;
            };
            match key {
                ATTEMPT => m.attempt = number(value),
                DUE_MS => m.due_ms = number(value),
                SOURCE_TOPIC => topic = Some(text(value)),
                SOURCE_PARTITION => partition = text(value).parse().ok(),
                SOURCE_OFFSET => offset = text(value).parse().ok(),
                ERROR_KIND => m.error_kind = text(value),
                ERROR => m.error = text(value),
                FIRST_FAILED_MS => m.first_failed_ms = number(value),
                _ => {}
            }
        }
        if let (Some(topic), Some(partition), Some(offset)) = (topic, partition, offset) {
            m.source = Some(Source {
                topic,
                partition,
                offset,
            });
        }
        m
    }

    pub fn headers(&self) -> OwnedHeaders {
        let mut pairs: Vec<(&str, String)> = vec![
            (ATTEMPT, self.attempt.to_string()),
            (DUE_MS, self.due_ms.to_string()),
        ];
        if let Some(s) = &self.source {
            pairs.push((SOURCE_TOPIC, s.topic.clone()));
            pairs.push((SOURCE_PARTITION, s.partition.to_string()));
            pairs.push((SOURCE_OFFSET, s.offset.to_string()));
        }
        pairs.push((ERROR_KIND, self.error_kind.clone()));
        pairs.push((ERROR, self.error.clone()));
        pairs.push((FIRST_FAILED_MS, self.first_failed_ms.to_string()));
        pairs.iter().fold(
            OwnedHeaders::new_with_capacity(pairs.len()),
            |h, (key, value)| {
                h.insert(Header {
                    key,
                    value: Some(value.as_str()),
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let m = Meta {
            attempt: 2,
            due_ms: 1_700_000_000_000,
            source: Some(Source {
                topic: "seckill.orders".into(),
                partition: 3,
                offset: 41,
            }),
            error_kind: "bad_json".into(),
            error: "expected value at line 1".into(),
            first_failed_ms: 1_699_999_999_000,
        };
        assert_eq!(Meta::read(Some(&m.headers())), m);
        assert_eq!(Meta::read(None::<&OwnedHeaders>), Meta::default());
    }
}
