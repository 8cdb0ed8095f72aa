//! Real database servers of our own — PostgreSQL (`initdb` + `postgres`)
//! and MariaDB (`mariadb-install-db` + `mariadbd`) — on free loopback
//! ports, in a temporary directory, killed when dropped, so a test can
//! SIGKILL one mid-stream and start it again on the same data.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, wait_for_port, Proc};

/// Which engine a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    MariaDb,
}

/// A database server: the engine, its port, its data.
pub struct SqlServer {
    pub engine: Engine,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Proc,
    /// The server's pid, which is also its process group.
    pid: u32,
    bin: PathBuf,
}

impl Drop for SqlServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The directory of PostgreSQL's server programs: Debian keeps them in
/// `/usr/lib/postgresql/<version>/bin` (the newest wins), off the PATH.
fn pg_bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .expect("PostgreSQL's server (apt-get install postgresql; scripts/setup.sh does)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The uid and gid of the `postgres` user.
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a postgres user (apt-get install postgresql creates it)")
    };
    (id("-u"), id("-g"))
}

/// A command run as `postgres` when we are root (PostgreSQL refuses to
/// run as root): the uid is set before `exec`, no wrapper process between
/// the test and the server, so a signal reaches the server itself.
fn as_postgres(program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    if is_root() {
        let (uid, gid) = postgres_ids();
        c.uid(uid).gid(gid);
    }
    c
}

/// Sends `sig` to the server's whole process group (PostgreSQL's backends
/// with it).
fn signal_group(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .status();
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SqlServer {
    pub fn start(engine: Engine) -> SqlServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = SqlServer {
            engine,
            port: free_port(),
            dir,
            child: Proc::default(),
            pid: 0,
            bin: PathBuf::new(),
        };
        match engine {
            Engine::Postgres => {
                let bin = pg_bindir();
                if is_root() {
                    run(
                        {
                            let mut c = Command::new("chown");
                            c.arg("postgres:postgres").arg(s.dir.path());
                            c
                        },
                        "chown the data directory to postgres",
                    );
                }
                let mut init = as_postgres(&bin.join("initdb"));
                init.arg("-D").arg(s.data()).args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]);
                run(init, "initdb");
                s.bin = bin.join("postgres");
            }
            Engine::MariaDb => {
                let mut init = Command::new("mariadb-install-db");
                init.arg("--no-defaults")
                    .arg(format!("--datadir={}", s.data().display()))
                    .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
                if is_root() {
                    init.arg("--user=root");
                }
                run(
                    init,
                    "mariadb-install-db (apt-get install mariadb-server; scripts/setup.sh does)",
                );
                s.bin = PathBuf::from(
                    ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"]
                        .into_iter()
                        .find(|p| Path::new(p).is_file())
                        .unwrap_or("mariadbd"),
                );
            }
        }
        s.restart();
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server again on the same port and data (after `kill`).
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let mut c = match self.engine {
            Engine::Postgres => {
                let mut c = as_postgres(&self.bin);
                c.arg("-D")
                    .arg(self.data())
                    .args(["-p", &self.port.to_string()])
                    .arg("-k")
                    .arg(self.dir.path())
                    .args(["-c", "listen_addresses=127.0.0.1"])
                    // A process kill loses nothing committed without it
                    // (the page cache survives); only a power cut would.
                    .args(["-c", "fsync=off", "-c", "max_connections=200"]);
                c
            }
            Engine::MariaDb => {
                let mut c = Command::new(&self.bin);
                c.arg("--no-defaults")
                    .arg(format!("--datadir={}", self.data().display()))
                    .arg(format!("--port={}", self.port))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!(
                        "--socket={}",
                        self.dir.path().join("sock").display()
                    ))
                    .arg("--skip-name-resolve")
                    .arg("--skip-log-bin")
                    .arg("--innodb-flush-log-at-trx-commit=2")
                    .arg("--innodb-buffer-pool-size=64M");
                if is_root() {
                    c.arg("--user=root");
                }
                c
            }
        };
        use std::os::unix::process::CommandExt;
        // A group of its own: a kill or a freeze reaches every process
        // of the server.
        c.process_group(0);
        let child = c
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.pid = child.id();
        self.child.set(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(30)),
            "{:?} did not listen on {}; see {}",
            self.engine,
            self.port,
            self.dir.path().join("server.log").display()
        );
        // Listening is not yet accepting logins (recovery after a kill).
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.exec_in("", "SELECT 1").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{:?} accepts no login on {}", self.engine, self.port);
    }

    /// SIGKILL to every process of the server: no shutdown, no checkpoint.
    pub fn kill(&mut self) {
        if self.pid != 0 {
            signal_group(self.pid, "KILL");
            self.pid = 0;
        }
        self.child.kill();
    }

    /// SIGSTOP to every process: connections stay open, nothing answers.
    pub fn freeze(&self) {
        signal_group(self.pid, "STOP");
    }

    pub fn thaw(&self) {
        signal_group(self.pid, "CONT");
    }

    /// The URL of database `db` (empty: the server's default).
    pub fn url(&self, db: &str) -> String {
        match self.engine {
            Engine::Postgres => format!("postgres://postgres@127.0.0.1:{}/{db}", self.port),
            Engine::MariaDb => format!("mysql://root@127.0.0.1:{}/{db}", self.port),
        }
    }

    /// A database of the test's own.
    pub fn create_database(&self, db: &str) -> String {
        self.exec_in("", &format!("CREATE DATABASE {db}"))
            .unwrap_or_else(|e| panic!("create database {db}: {e}"));
        self.url(db)
    }

    /// Runs SQL with the engine's own client; its output (tab separated,
    /// no header).
    pub fn exec_in(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut c = match self.engine {
            Engine::Postgres => {
                let mut c = Command::new("psql");
                c.args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"])
                .args(["-d", if db.is_empty() { "postgres" } else { db }])
                .args(["-c", sql]);
                c
            }
            Engine::MariaDb => {
                let mut c = Command::new("mariadb");
                c.args([
                    "-h",
                    "127.0.0.1",
                    "-P",
                    &self.port.to_string(),
                    "-u",
                    "root",
                ])
                .args(["--batch", "--skip-column-names"]);
                if !db.is_empty() {
                    c.arg(db);
                }
                c.args(["-e", sql]);
                c
            }
        };
        let out = c.output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// One number from a query (`SELECT COUNT(*) …`).
    pub fn count(&self, db: &str, sql: &str) -> i64 {
        let out = self
            .exec_in(db, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: not a number: {out:?}"))
    }
}
