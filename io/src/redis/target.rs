//! Where Redis is and how to reach it: the URL (`redis://` or `rediss://`
//! for TLS), a password kept out of the URL (a secret file), and for TLS
//! the CA that signed the server's certificate and, for mutual TLS, a
//! client certificate; with Sentinel, the Sentinels to ask where the
//! master is; with a Redis Cluster, the nodes to ask for its slot map.
//! Every Redis connection of the system is made through one
//! ([`Connector`]).

use std::time::Duration;

use redis::{
    Client, ClientTlsConfig, Connection, ConnectionAddr, IntoConnectionInfo, RedisError,
    TlsCertificates,
};

/// How to reach Redis.
#[derive(Clone, Default)]
pub struct RedisTarget {
    /// `redis://[user:password@]host:port/[db]`, or `rediss://…` for TLS.
    pub url: String,
    /// Replaces the URL's password when set.
    pub password: Option<String>,
    /// PEM of the CA that signed the server's certificate (`rediss://`;
    /// `None`: the system's trust store).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of a client certificate and its key, for servers that ask for
    /// one (`tls-auth-clients yes`, Redis's default).
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Sentinels (`host:port`) to ask where the master is; empty: the
    /// URL's host is the server. With Sentinels the URL still gives the
    /// scheme, the database and the credentials.
    pub sentinels: Vec<String>,
    /// The master's name as the Sentinels know it.
    pub master_name: String,
    /// Nodes (`host:port`) of a Redis Cluster to read the slot map from;
    /// empty: not a cluster. The URL still gives the scheme and the
    /// credentials.
    pub cluster_nodes: Vec<String>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client_pem.is_some())
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("cluster_nodes", &self.cluster_nodes)
            .finish()
    }
}

/// A URL with the password of its userinfo replaced by `***`, for logs
/// and error messages (`redis://:secret@host/` → `redis://:***@host/`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    if userinfo.contains(':') {
        format!("{scheme}://{user}:***@{host}{path}")
    } else {
        // `redis://secret@host`: the only part is the password.
        format!("{scheme}://***@{host}{path}")
    }
}

impl RedisTarget {
    /// A plain URL, nothing else.
    pub fn url(url: &str) -> RedisTarget {
        RedisTarget {
            url: url.to_string(),
            ..RedisTarget::default()
        }
    }

    /// Whether the URL asks for TLS.
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    /// Whether the master is found through Sentinels.
    pub fn is_sentinel(&self) -> bool {
        !self.sentinels.is_empty()
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        !self.cluster_nodes.is_empty()
    }

    /// A client for the URL's server (no connection is made yet).
    pub fn client(&self) -> Result<Client, RedisError> {
        self.client_at(None)
    }

    /// A client for the URL, at `addr` instead of the URL's host if given.
    pub(super) fn client_at(&self, addr: Option<(&str, u16)>) -> Result<Client, RedisError> {
        let mut info = self.url.as_str().into_connection_info()?;
        if let Some((host, port)) = addr {
            let moved = match info.addr() {
                ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
                    host: host.to_string(),
                    port,
                    insecure: *insecure,
                    tls_params: None,
                },
                _ => ConnectionAddr::Tcp(host.to_string(), port),
            };
            info = info.set_addr(moved);
        }
        if let Some(p) = &self.password {
            let settings = info.redis_settings().clone().set_password(p);
            info = info.set_redis_settings(settings);
        }
        if self.ca_pem.is_none() && self.client_pem.is_none() {
            return Client::open(info);
        }
        if !self.is_tls() {
            return Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a CA or client certificate is set but the URL is not rediss://",
            )));
        }
        Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: self.client_pem.as_ref().map(|(cert, key)| ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
                root_cert: self.ca_pem.clone(),
            },
        )
    }
}

pub(super) fn open(client: &Client, timeout: Duration) -> Result<Connection, RedisError> {
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

impl From<&str> for RedisTarget {
    fn from(url: &str) -> RedisTarget {
        RedisTarget::url(url)
    }
}

impl From<&String> for RedisTarget {
    fn from(url: &String) -> RedisTarget {
        RedisTarget::url(url)
    }
}

impl From<String> for RedisTarget {
    fn from(url: String) -> RedisTarget {
        RedisTarget {
            url,
            ..RedisTarget::default()
        }
    }
}

impl From<&RedisTarget> for RedisTarget {
    fn from(t: &RedisTarget) -> RedisTarget {
        t.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_replaces_the_urls_and_is_never_shown() {
        let t = RedisTarget {
            password: Some("s3cret".into()),
            ..RedisTarget::url("redis://:old@127.0.0.1:6390/2")
        };
        let c = t.client().expect("client");
        assert_eq!(
            c.get_connection_info().redis_settings().password(),
            Some("s3cret")
        );
        assert_eq!(c.get_connection_info().redis_settings().db(), 2);
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(!format!("{t:?}").contains("old"));
    }

    #[test]
    fn certificates_need_a_tls_url() {
        let t = RedisTarget {
            ca_pem: Some(b"not used".to_vec()),
            ..RedisTarget::url("redis://127.0.0.1:6390/")
        };
        assert!(t.client().is_err());
    }
}
