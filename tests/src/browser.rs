//! A real headless Chromium (Debian `chromium`), driven over WebDriver
//! through `chromedriver` (Debian `chromium-driver`) with fantoccini.
//! Chromium's background traffic is switched off: the tests reach only
//! 127.0.0.1.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::{free_port, wait_for_port, Proc};

/// A `chromedriver` of our own on a free port, killed when dropped.
pub struct Driver {
    _proc: Proc,
    port: u16,
    profiles: tempfile::TempDir,
}

impl Driver {
    pub fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver on PATH (apt-get install chromium chromium-driver)");
        let mut proc = Proc::default();
        proc.set(child);
        assert!(
            wait_for_port(port, Duration::from_secs(20)),
            "chromedriver did not listen on {port}"
        );
        Driver {
            _proc: proc,
            port,
            profiles: tempfile::tempdir().expect("tmp"),
        }
    }

    /// A new headless browser with an empty profile of its own.
    pub async fn browser(&self) -> Client {
        let profile = tempfile::tempdir_in(self.profiles.path()).expect("profile dir");
        let dir = profile.keep();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--window-size=1400,1300", format!("--user-data-dir={}", dir.display()),
                ],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session")
    }
}

/// `textContent` of the element with this id (`None`: no such element).
pub async fn text(c: &Client, id: &str) -> Option<String> {
    let v = c
        .execute(
            "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;",
            vec![serde_json::json!(id)],
        )
        .await
        .expect("script runs");
    v.as_str().map(str::to_string)
}

/// Whether the element with this id is hidden (or absent).
pub async fn hidden(c: &Client, id: &str) -> bool {
    let v = c
        .execute(
            "const e = document.getElementById(arguments[0]); \
             return !e || e.hidden || e.offsetParent === null;",
            vec![serde_json::json!(id)],
        )
        .await
        .expect("script runs");
    v.as_bool().unwrap_or(true)
}

/// Waits until the text of element `id` satisfies `ok`; panics with the
/// last text seen after `timeout`.
pub async fn wait_text(
    c: &Client,
    id: &str,
    timeout: Duration,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let t = text(c, id).await.unwrap_or_default();
        if ok(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "#{id} never matched within {timeout:?}; last text: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
