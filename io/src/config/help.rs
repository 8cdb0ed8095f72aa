//! The `--help` text of a setting: its doc comment and its default. The
//! settings are optional in clap (a flag wins over the environment, which
//! wins over the file, which wins over the default), so clap cannot show
//! the default itself.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::ValueEnum;

use super::modes::{Durability, KafkaProperties, LogFormat, RateScope, WriteMode};

/// The doc comment's lines joined, then ` [default: …]` unless the default
/// is empty (a secret, or a file that is not read).
pub fn text(doc: &[&str], default: &dyn Shown) -> String {
    let mut s = doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    if let Some(d) = default.shown() {
        s.push_str(" [default: ");
        s.push_str(&d);
        s.push(']');
    }
    s
}

/// How a default reads in `--help`; `None` shows none.
pub trait Shown {
    fn shown(&self) -> Option<String>;
}

macro_rules! shown_by_display {
    ($($t:ty),*) => {$(
        impl Shown for $t {
            fn shown(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}

shown_by_display!(SocketAddr, bool, u8, u32, u64, i32, usize);

impl Shown for String {
    fn shown(&self) -> Option<String> {
        (!self.is_empty()).then(|| format!("{self:?}"))
    }
}

impl Shown for PathBuf {
    fn shown(&self) -> Option<String> {
        (!self.as_os_str().is_empty()).then(|| self.display().to_string())
    }
}

macro_rules! shown_by_value_enum {
    ($($t:ty),*) => {$(
        impl Shown for $t {
            fn shown(&self) -> Option<String> {
                self.to_possible_value().map(|v| v.get_name().to_string())
            }
        }
    )*};
}

shown_by_value_enum!(Durability, LogFormat, RateScope, WriteMode);

impl Shown for KafkaProperties {
    fn shown(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use crate::config::Cli;

    #[test]
    fn help_shows_the_defaults_and_no_empty_secret() {
        let help = Cli::command().render_long_help().to_string();
        for shown in [
            "[default: 127.0.0.1:8080]",
            "[default: \"redis://127.0.0.1:6379/\"]",
            "[default: fsync]",
            "[default: 4096]",
            "[default: 10000]",
        ] {
            assert!(help.contains(shown), "--help lacks {shown}:\n{help}");
        }
        let token_key = help
            .lines()
            .skip_while(|l| !l.contains("--token-key <"))
            .take_while(|l| !l.contains("--token-key-file"))
            .collect::<String>();
        assert!(!token_key.contains("[default"), "{token_key}");
    }
}
