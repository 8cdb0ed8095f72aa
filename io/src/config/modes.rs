//! The typed modes among the settings: how logs are written, when a batch
//! counts as written, how the WAL writes.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Settings};
    use clap::Parser;

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
