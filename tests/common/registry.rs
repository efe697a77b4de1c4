//! A real container registry: Debian's `docker-registry` (the distribution
//! v2 code that `registry:2` ships) as a plain process on a free loopback
//! port, with filesystem storage in a temporary directory.
//!
//! The binary comes from `REGISTRY_BIN`, default `/usr/bin/docker-registry`
//! (`scripts/test` installs the Debian package).

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub fn registry_bin() -> PathBuf {
    let bin = PathBuf::from(std::env::var("REGISTRY_BIN").unwrap_or_else(|_| "/usr/bin/docker-registry".into()));
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test (it installs Debian's docker-registry), or set REGISTRY_BIN",
        bin.display()
    );
    bin
}

/// One registry: its config and port, its process when running.
pub struct Registry {
    pub dir: TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Registry {
    /// A configured, not yet started registry.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("registry-test-").tempdir().unwrap();
        let port = super::free_port();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            root = dir.path().join("data").display(),
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        Self { dir, port, child: None }
    }

    /// Starts a registry and waits until `GET /v2/` answers.
    pub async fn started() -> Self {
        let mut r = Self::new();
        r.start();
        r.wait_ready().await;
        r
    }

    /// `localhost:PORT`, the form garage-init's `--registry` takes.
    pub fn addr(&self) -> String {
        format!("localhost:{}", self.port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = std::process::Command::new(registry_bin())
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/v2/", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "the registry did not answer in 20 s; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
