//! Secrets among the settings: read from files (systemd credentials,
//! Kubernetes secrets), refused when short or left as the example's
//! placeholder, and kept out of logs (`redact_url`).

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, Settings};
pub use crate::redis::redact_url;
use crate::redis::RedisTarget;

/// Shortest admin token accepted.
pub const ADMIN_TOKEN_LEN_MIN: usize = 16;
/// Shortest purchase-token key accepted (256 bits of HMAC key).
pub const TOKEN_KEY_LEN_MIN: usize = 32;
/// What marks a secret copied from the example unchanged.
const PLACEHOLDER: &str = "change-me";

/// Reads the secret `key` from its `*_file` setting into `value` (one
/// trailing newline dropped). A secret set both directly and by file is
/// refused: which one was meant is not ours to guess.
pub fn read_secret_file(
    key: &'static str,
    value: &mut Option<String>,
    file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    let Some(path) = file.as_ref().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if value.is_some() {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("set {key} or {key}_file, not both"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key,
        path: path.clone(),
        source,
    })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    *value = Some(text.to_string());
    Ok(())
}

/// How to reach Redis from its settings: the URL, a password that
/// replaces the URL's (empty: the URL's), and for `rediss://` the PEM files
/// of the CA and of a client certificate and key (empty paths: none).
pub fn redis_target(
    url: &str,
    password: &str,
    ca_file: &Path,
    cert_file: &Path,
    key_file: &Path,
) -> Result<RedisTarget, ConfigError> {
    let pem = |key: &'static str, path: &Path| -> Result<Option<Vec<u8>>, ConfigError> {
        if path.as_os_str().is_empty() {
            return Ok(None);
        }
        std::fs::read(path)
            .map(Some)
            .map_err(|source| ConfigError::SecretFile {
                key,
                path: path.to_path_buf(),
                source,
            })
    };
    let ca_pem = pem("redis_tls_ca_file", ca_file)?;
    let client_pem = match (
        pem("redis_tls_cert_file", cert_file)?,
        pem("redis_tls_key_file", key_file)?,
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(ConfigError::Invalid {
                key: "redis_tls_cert_file",
                reason: "a client certificate needs its key (redis_tls_key_file) and the key its certificate".into(),
            })
        }
    };
    let target = RedisTarget {
        url: url.to_string(),
        password: (!password.is_empty()).then(|| password.to_string()),
        ca_pem,
        client_pem,
        ..RedisTarget::default()
    };
    if (target.ca_pem.is_some() || target.client_pem.is_some()) && !target.is_tls() {
        return Err(ConfigError::Invalid {
            key: "redis_url",
            reason: "TLS files are set: the URL must be rediss://".into(),
        });
    }
    if let Err(e) = target.client() {
        return Err(ConfigError::Invalid {
            key: "redis_url",
            reason: format!("{}: {e}", redact_url(url)),
        });
    }
    Ok(target)
}

impl Settings {
    /// Reads every `*_file` setting into the secret it holds.
    pub fn read_secret_files(mut self) -> Result<Settings, ConfigError> {
        let read = read_secret_file;
        read("admin_token", &mut self.admin_token, &self.admin_token_file)?;
        read(
            "dashboard_token",
            &mut self.dashboard_token,
            &self.dashboard_token_file,
        )?;
        read("redis_url", &mut self.redis_url, &self.redis_url_file)?;
        read(
            "redis_password",
            &mut self.redis_password,
            &self.redis_password_file,
        )?;
        read("token_key", &mut self.token_key, &self.token_key_file)?;
        read(
            "token_key_previous",
            &mut self.token_key_previous,
            &self.token_key_previous_file,
        )?;
        Ok(self)
    }
}

impl Config {
    /// How to reach Redis (the TLS files read).
    pub fn redis_target(&self) -> Result<RedisTarget, ConfigError> {
        let mut target = redis_target(
            &self.redis_url,
            &self.redis_password,
            &self.redis_tls_ca_file,
            &self.redis_tls_cert_file,
            &self.redis_tls_key_file,
        )?;
        target.sentinels = self
            .sentinel_list()
            .map_err(|reason| ConfigError::Invalid {
                key: "redis_sentinels",
                reason,
            })?;
        target.master_name = self.redis_master_name.clone();
        target.cluster_nodes =
            super::host_port_list(&self.redis_cluster_nodes).map_err(|reason| {
                ConfigError::Invalid {
                    key: "redis_cluster_nodes",
                    reason,
                }
            })?;
        Ok(target)
    }

    /// The secrets are long enough and none is the example's placeholder.
    pub(super) fn check_secrets(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        for (key, value) in [
            ("admin_token", &self.admin_token),
            ("dashboard_token", &self.dashboard_token),
            ("token_key", &self.token_key),
            ("token_key_previous", &self.token_key_previous),
            ("redis_url", &self.redis_url),
            ("redis_password", &self.redis_password),
        ] {
            if value.contains(PLACEHOLDER) {
                return bad(
                    key,
                    "still holds the example's placeholder; set a secret of your own".into(),
                );
            }
        }
        if !self.admin_token.is_empty() && self.admin_token.len() < ADMIN_TOKEN_LEN_MIN {
            return bad(
                "admin_token",
                format!("must be at least {ADMIN_TOKEN_LEN_MIN} bytes (or empty: no admin API)"),
            );
        }
        if !self.dashboard_token.is_empty() && self.dashboard_token.len() < ADMIN_TOKEN_LEN_MIN {
            return bad(
                "dashboard_token",
                format!("must be at least {ADMIN_TOKEN_LEN_MIN} bytes (or empty: none)"),
            );
        }
        for (key, value) in [
            ("token_key", &self.token_key),
            ("token_key_previous", &self.token_key_previous),
        ] {
            if !value.is_empty() && value.len() < TOKEN_KEY_LEN_MIN {
                return bad(
                    key,
                    format!("must be at least {TOKEN_KEY_LEN_MIN} bytes (openssl rand -hex 32)"),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused() {
        let with = |admin: &str, key: &str| {
            Settings {
                admin_token: Some(admin.into()),
                token_key: Some(key.into()),
                ..Settings::default()
            }
            .resolve()
            .validate()
        };
        let key32 = "0123456789abcdef0123456789abcdef";
        assert!(with("sixteen-bytes-ok", key32).is_ok());
        assert!(with("", key32).is_ok(), "no admin API is allowed");
        assert!(with("fifteen-bytes!!", key32).is_err());
        assert!(with("sixteen-bytes-ok", &key32[1..]).is_err());
    }

    #[test]
    fn secrets_come_from_files_and_never_from_two_places() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = dir.path().join("key");
        std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").expect("write");
        let s = Settings {
            token_key_file: Some(key.clone()),
            ..Settings::default()
        }
        .read_secret_files()
        .expect("read");
        assert_eq!(
            s.token_key.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        let both = Settings {
            token_key: Some("x".into()),
            token_key_file: Some(key),
            ..Settings::default()
        };
        assert!(both.read_secret_files().is_err());
        let missing = Settings {
            admin_token_file: Some(dir.path().join("nope")),
            ..Settings::default()
        };
        assert!(matches!(
            missing.read_secret_files(),
            Err(ConfigError::SecretFile { .. })
        ));
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("redis://:s3cret@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(redact_url("redis://u:s3cret@h/"), "redis://u:***@h/");
        assert_eq!(redact_url("redis://s3cret@h/"), "redis://***@h/");
        assert_eq!(redact_url("redis://h:6379/"), "redis://h:6379/");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
