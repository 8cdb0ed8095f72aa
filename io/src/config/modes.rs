//! The typed modes among the settings: how logs are written, when a batch
//! counts as written, how the WAL writes; and the librdkafka properties
//! passed through as they are.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// How the daemon writes its log lines (`log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: coloured when the output is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// When a batch's decisions count as written (`durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// On disk before anyone is answered.
    Fsync,
    /// In the page cache: survives a process crash, not a power cut.
    Os,
}

impl From<Durability> for seckill_wal::Durability {
    fn from(d: Durability) -> Self {
        match d {
            Durability::Fsync => seckill_wal::Durability::Fsync,
            Durability::Os => seckill_wal::Durability::Os,
        }
    }
}

/// How the WAL writes a batch (`wal_write_mode`); see docs/wal.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// A buffer, one `pwrite` and one `fdatasync` per batch.
    Pwrite,
    /// Stores into the mapping and one `msync` per batch.
    Mmap,
}

impl From<WriteMode> for seckill_wal::WriteMode {
    fn from(m: WriteMode) -> Self {
        match m {
            WriteMode::Pwrite => seckill_wal::WriteMode::Pwrite,
            WriteMode::Mmap => seckill_wal::WriteMode::Mmap,
        }
    }
}

/// Whose rates the `rate_*` limits are (`rate_limit_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateScope {
    /// The whole fleet's: each of the `n` live daemons admits `1/n`.
    Fleet,
    /// Each daemon's own (a sticky balancer that keeps a user on one
    /// daemon).
    Daemon,
}

/// librdkafka properties set on every Kafka client (`kafka_properties`):
/// `security.protocol`, `sasl.*`, `ssl.*`, `client.id`, batching … In TOML
/// a table (`[kafka_properties]`, `"security.protocol" = "SSL"`); in the
/// environment or a flag `key=value` pairs separated by commas. What the
/// program sets itself for its guarantees (idempotence, acks, its own
/// timeouts and linger) is applied after these and wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(pub Vec<(String, String)>);

#[derive(Debug, thiserror::Error)]
#[error("kafka_properties: `{0}` is not key=value")]
pub struct KafkaPropertiesError(String);

impl FromStr for KafkaProperties {
    type Err = KafkaPropertiesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Vec::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    out.push((k.trim().to_string(), v.trim().to_string()))
                }
                _ => return Err(KafkaPropertiesError(pair.to_string())),
            }
        }
        Ok(KafkaProperties(out))
    }
}

impl fmt::Display for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            // Values of secret keys (sasl.password, ssl.key.password …)
            // are never shown.
            let secret = k.contains("password") || k.contains("secret");
            write!(f, "{k}={}", if secret { "***" } else { v })?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for KafkaProperties {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Value {
            Text(String),
            Int(i64),
            Bool(bool),
            Float(f64),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Table(BTreeMap<String, Value>),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Table(t) => Ok(KafkaProperties(
                t.into_iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::Text(s) => s,
                            Value::Int(i) => i.to_string(),
                            Value::Bool(b) => b.to_string(),
                            Value::Float(x) => x.to_string(),
                        };
                        (k, v)
                    })
                    .collect(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Settings};
    use clap::Parser;

    #[test]
    fn kafka_properties_come_as_a_table_or_as_pairs() {
        let s: Settings = toml::from_str(
            "[kafka_properties]\n\"security.protocol\" = \"SSL\"\n\"batch.num.messages\" = 1\n",
        )
        .expect("table");
        let p = s.kafka_properties.expect("set");
        assert_eq!(
            p.0,
            vec![
                ("batch.num.messages".to_string(), "1".to_string()),
                ("security.protocol".to_string(), "SSL".to_string())
            ]
        );
        let p: KafkaProperties = "client.id=a, sasl.password=pw".parse().expect("pairs");
        assert_eq!(p.0.len(), 2);
        assert_eq!(p.to_string(), "client.id=a,sasl.password=***");
        assert!("novalue".parse::<KafkaProperties>().is_err());
    }

    #[test]
    fn modes_are_typed_in_the_file_and_on_the_command_line() {
        let s: Settings =
            toml::from_str("durability = \"os\"\nwal_write_mode = \"mmap\"\n").expect("toml");
        let cfg = s.resolve();
        assert_eq!(cfg.durability, Durability::Os);
        assert_eq!(cfg.wal_write_mode, WriteMode::Mmap);
        assert!(toml::from_str::<Settings>("durability = \"sometimes\"").is_err());
        let cli = Cli::try_parse_from(["seckilld", "--durability", "os"]).expect("flag");
        assert_eq!(cli.settings.durability, Some(Durability::Os));
        assert!(Cli::try_parse_from(["seckilld", "--wal-write-mode", "tape"]).is_err());
    }
}
