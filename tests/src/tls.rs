//! TLS for the tests: a CA, a server certificate for 127.0.0.1 and a
//! client certificate made with the `openssl` command; a `redis-server`
//! speaking only TLS (with a password and client certificates required);
//! and a TLS-terminating proxy, so that a plain broker is reached over TLS
//! (the broker advertises the proxy's port).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, Proc};

/// PEM files in a directory of their own.
pub struct Certs {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl on PATH");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// A CA, and signed by it a server certificate (127.0.0.1, localhost)
    /// and a client certificate.
    pub fn generate() -> Certs {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=seckill test CA",
            ],
        );
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("ext");
        std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
        for (name, cn) in [("server", "localhost"), ("client", "seckilld")] {
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={cn}"),
                ],
            );
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &format!("{name}.pem"),
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{name}.ext"),
                ],
            );
        }
        Certs { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }
}

/// A `redis-server` listening only on a TLS port, with `requirepass` and
/// client certificates required.
pub struct TlsRedis {
    pub port: u16,
    pub password: String,
    _child: Proc,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    pub fn start(certs: &Certs, password: &str) -> TlsRedis {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tmp");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(certs.path("server.pem"))
            .arg("--tls-key-file")
            .arg(certs.path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(certs.ca())
            .args(["--tls-auth-clients", "yes", "--requirepass", password])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let mut proc = Proc::default();
        proc.set(child);
        let r = TlsRedis {
            port,
            password: password.to_string(),
            _child: proc,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = r
                .target(certs)
                .client()
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if up.is_ok() {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server (TLS) did not come up on {port}: {up:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }

    /// How a client with the CA, the client certificate and the password
    /// reaches it.
    pub fn target(&self, certs: &Certs) -> seckill_io::redis::RedisTarget {
        let read = |f: &str| std::fs::read(certs.path(f)).expect("pem");
        seckill_io::redis::RedisTarget {
            url: self.url(),
            password: Some(self.password.clone()),
            ca_pem: Some(read("ca.pem")),
            client_pem: Some((read("client.pem"), read("client.key"))),
            ..seckill_io::redis::RedisTarget::default()
        }
    }
}

/// Accepts TLS on its port and forwards the plain bytes to `upstream`,
/// on a thread and runtime of its own; stops when dropped.
pub struct TlsProxy {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TlsProxy {
    /// On `port` (a free one: `free_port`), forwarding to `upstream`.
    pub fn start(certs: &Certs, port: u16, upstream: u16) -> TlsProxy {
        let cert = std::fs::read(certs.path("server.pem")).expect("pem");
        let key = std::fs::read(certs.path("server.key")).expect("pem");
        let identity = native_tls::Identity::from_pkcs8(&cert, &key).expect("identity");
        let acceptor = tokio_native_tls::TlsAcceptor::from(
            native_tls::TlsAcceptor::new(identity).expect("acceptor"),
        );
        let std_listener =
            std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                .expect("bind the proxy");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = &mut stopped => return,
                    };
                    let Ok((tcp, _)) = accepted else { continue };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let Ok(mut plain) =
                            tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            });
        });
        TlsProxy {
            port,
            stop: Some(stop),
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
