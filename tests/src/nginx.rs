//! nginx in front of daemons, as production runs it.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for_port, Proc};

/// The shipped site configuration (upstreams, keep-alive, timeouts,
/// `X-Forwarded-For` appended).
const SHIPPED_SITE: &str = include_str!("../../docs/deploy/nginx.conf");

/// An nginx reverse proxy, appending the peer to `X-Forwarded-For`
/// (`$proxy_add_x_forwarded_for`) as production configs do.
pub struct Nginx {
    pub port: u16,
    _child: Proc,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// In front of one upstream; `bind` is the address nginx connects
    /// from (`proxy_bind`).
    pub fn start(upstream: u16, bind: &str) -> Nginx {
        let port = free_port();
        let site = format!(
            "server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
               proxy_pass http://127.0.0.1:{upstream};\n      proxy_bind {bind};\n\
               proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
               proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n"
        );
        Nginx::run(port, &site)
    }

    /// The shipped configuration (`docs/deploy/nginx.conf`) in front of
    /// the daemons listening on `upstreams`: only its `server` lines of the
    /// upstream block and its `listen` line are replaced.
    pub fn shipped(upstreams: &[u16]) -> Nginx {
        Nginx::shipped_with(upstreams, "max_fails=1 fail_timeout=5s")
    }

    /// The same, each upstream `server` line with `params` instead of the
    /// shipped `max_fails=1 fail_timeout=5s`.
    pub fn shipped_with(upstreams: &[u16], params: &str) -> Nginx {
        let port = free_port();
        let mut site = String::new();
        let mut servers_written = false;
        for line in SHIPPED_SITE.lines() {
            let t = line.trim_start();
            if t.starts_with("server 127.0.0.1:") {
                if !servers_written {
                    for u in upstreams {
                        site.push_str(&format!("    server 127.0.0.1:{u} {params};\n"));
                    }
                    servers_written = true;
                }
                continue;
            }
            if t.starts_with("listen 80;") {
                site.push_str(&format!("    listen 127.0.0.1:{port};\n"));
                continue;
            }
            site.push_str(line);
            site.push('\n');
        }
        assert!(
            servers_written,
            "the shipped nginx.conf lists no upstream server"
        );
        Nginx::run(port, &site)
    }

    fn run(port: u16, site: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               include {d}/site.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("site.conf"), site).expect("site.conf");
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nginx");
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx on PATH (apt-get install nginx)");
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "nginx did not listen on {port}; see {}",
            dir.path().join("error.log").display()
        );
        Nginx {
            port,
            _child: Proc(Some(child)),
            _dir: dir,
        }
    }
}
