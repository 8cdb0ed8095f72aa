//! Where Redis is and how to reach it: the URL (`redis://` or `rediss://`
//! for TLS), a password kept out of the URL (a secret file), and for TLS
//! the CA that signed the server's certificate and, for mutual TLS, a
//! client certificate; or, with Sentinel, the Sentinels to ask where the
//! master is. Every Redis connection of the system is made through one
//! ([`Connector`]).

use std::sync::Arc;
use std::time::Duration;

use redis::{
    Client, ClientTlsConfig, Connection, ConnectionAddr, ConnectionLike, ErrorKind,
    IntoConnectionInfo, RedisError, TlsCertificates, Value,
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

    /// A client for the URL's server (no connection is made yet).
    pub fn client(&self) -> Result<Client, RedisError> {
        self.client_at(None)
    }

    /// What makes this target's connections (a Sentinel target asks
    /// where the master is for every new connection).
    pub fn connector(&self) -> Result<Connector, RedisError> {
        // Checks the URL and the certificates now, not at the first call.
        let direct = self.client()?;
        if self.is_sentinel() && self.master_name.is_empty() {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "Sentinels are set without the master's name",
            )));
        }
        Ok(Connector {
            direct: (!self.is_sentinel()).then_some(direct),
            target: Arc::new(self.clone()),
        })
    }

    /// A client for the URL, at `addr` instead of the URL's host if given.
    fn client_at(&self, addr: Option<(&str, u16)>) -> Result<Client, RedisError> {
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

/// Makes the connections of one target. Cheap to clone.
///
/// With Sentinels, every new connection asks them in turn
/// (`SENTINEL get-master-addr-by-name`) and then checks with `ROLE` that
/// the server it was sent to is a master: a connection is only ever made
/// to the master the Sentinels elected last, so a daemon follows a
/// failover by reconnecting (each user of a connection drops it on an
/// error, and Sentinel disconnects the clients of a master it demotes).
/// Written here rather than taken from the `redis` crate's `sentinel`
/// module, which connects without a timeout and, with native TLS, without
/// the target's certificates.
#[derive(Clone)]
pub struct Connector {
    /// The client when there are no Sentinels.
    direct: Option<Client>,
    target: Arc<RedisTarget>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.target.fmt(f)
    }
}

impl Connector {
    /// A new connection; connect, read and write bounded by `timeout`
    /// (with Sentinels, each step: a Sentinel that does not answer costs
    /// one timeout before the next is asked).
    pub fn connect(&self, timeout: Duration) -> Result<Connection, RedisError> {
        match &self.direct {
            Some(client) => open(client, timeout),
            None => self.via_sentinels(timeout),
        }
    }

    /// Whether a kept connection may still be used: it answers, and with
    /// Sentinels it still leads to a master (a failover may have turned
    /// it into a replica that answers every write `READONLY`).
    pub fn still_good(&self, conn: &mut Connection) -> bool {
        if self.direct.is_some() {
            return conn.check_connection();
        }
        role(conn).is_ok_and(|r| r == "master")
    }

    fn via_sentinels(&self, timeout: Duration) -> Result<Connection, RedisError> {
        let t = &self.target;
        let mut last = RedisError::from((ErrorKind::Io, "no Sentinel answered"));
        for sentinel in &t.sentinels {
            let addr = match master_addr(sentinel, &t.master_name, timeout) {
                Ok(Some(addr)) => addr,
                Ok(None) => {
                    last = RedisError::from((
                        ErrorKind::Io,
                        "a Sentinel knows no master of this name",
                        format!("{sentinel}: {}", t.master_name),
                    ));
                    continue;
                }
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let client = match t.client_at(Some((&addr.0, addr.1))) {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let mut conn = match open(&client, timeout) {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            // During a failover a Sentinel may still name the old master
            // (down, or back as a replica): never write to a replica.
            match role(&mut conn) {
                Ok(r) if r == "master" => return Ok(conn),
                Ok(r) => {
                    last = RedisError::from((
                        ErrorKind::Io,
                        "the server a Sentinel named is not a master",
                        format!("{}:{} is a {r}", addr.0, addr.1),
                    ));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn open(client: &Client, timeout: Duration) -> Result<Connection, RedisError> {
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

/// Where one Sentinel says the master `name` is (`None`: it knows none).
fn master_addr(
    sentinel: &str,
    name: &str,
    timeout: Duration,
) -> Result<Option<(String, u16)>, RedisError> {
    let client = Client::open(format!("redis://{sentinel}/"))?;
    let mut conn = open(&client, timeout)?;
    redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(name)
        .query(&mut conn)
}

/// The first field of `ROLE`: `master`, `slave` or `sentinel`.
fn role(conn: &mut Connection) -> Result<String, RedisError> {
    let v = conn.req_command(&redis::cmd("ROLE"))?;
    match v {
        Value::Array(fields) => match fields.first() {
            Some(first) => Ok(redis::from_redis_value_ref(first)?),
            None => Err(RedisError::from((ErrorKind::Parse, "empty ROLE answer"))),
        },
        other => Ok(redis::from_redis_value(other)?),
    }
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
    fn a_sentinel_target_needs_the_masters_name_and_says_so_when_none_answers() {
        let mut t = RedisTarget::url("redis://127.0.0.1:1/");
        t.sentinels = vec!["127.0.0.1:1".into()];
        assert!(t.connector().is_err());
        t.master_name = "seckill".into();
        let c = t.connector().expect("connector");
        // Nothing listens on port 1.
        assert!(c.connect(Duration::from_millis(200)).is_err());
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
