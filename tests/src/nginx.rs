//! nginx in front of a daemon, as production runs it.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for_port, Proc};

/// An nginx reverse proxy in front of one upstream, appending the peer to
/// `X-Forwarded-For` (`$proxy_add_x_forwarded_for`) as production configs
/// do. `bind` is the address nginx connects from (`proxy_bind`).
pub struct Nginx {
    pub port: u16,
    _child: Proc,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(upstream: u16, bind: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
                 proxy_pass http://127.0.0.1:{upstream};\n      proxy_bind {bind};\n\
                 proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n"
        );
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
