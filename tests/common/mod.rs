//! Test harness: real `garage server` processes on free loopback ports, one
//! temporary directory each, and helpers to run the garage-init binary and to
//! talk to Garage independently of the code under test.
//!
//! The Garage binary comes from `GARAGE_BIN`, or from the cache that
//! `scripts/test` fills: `$GARAGE_INIT_CACHE_DIR/garage-$GARAGE_VERSION/bin/garage`
//! (defaults `/opt/garage-init-cache` and `2.1.0`).

#![allow(dead_code)]

pub mod fake_garage;
pub mod gate;
pub mod registry;
pub mod stack;

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use rusty_s3::actions::{DeleteObject, GetObject, PutObject};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde_json::Value;
use tempfile::TempDir;

pub const RPC_SECRET: &str = "4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
pub const REGION: &str = "garage";

pub fn garage_version() -> String {
    std::env::var("GARAGE_VERSION").unwrap_or_else(|_| "2.1.0".into())
}

pub fn garage_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("GARAGE_BIN") {
        return PathBuf::from(bin);
    }
    let cache = std::env::var("GARAGE_INIT_CACHE_DIR").unwrap_or_else(|_| "/opt/garage-init-cache".into());
    let bin = Path::new(&cache).join(format!("garage-{}", garage_version())).join("bin/garage");
    assert!(
        bin.exists(),
        "Garage {} is not installed at {}: run scripts/test (it installs it), or set GARAGE_BIN",
        garage_version(),
        bin.display()
    );
    bin
}

/// A port no other node of this test process was given, and free right now.
///
/// Ports come from a per-process counter below the kernel's ephemeral range
/// (32768+): a port handed to a node that starts later stays reserved to it,
/// where asking the kernel for port 0 could hand the same port to a
/// concurrently running test in the meantime. Test binaries run one at a
/// time; the process id spreads them apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ =
        NEXT.compare_exchange(0, 20_000 + (std::process::id() % 60) as u16 * 200, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_768, "test ports exhausted");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A pipe whose reading end is already closed: every write to it fails with EPIPE.
pub fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills both descriptors; each is owned exactly once below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    drop(unsafe { OwnedFd::from_raw_fd(fds[0]) });
    Stdio::from(unsafe { OwnedFd::from_raw_fd(fds[1]) })
}

/// A random token, so that a test can search every output for it.
pub fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", fastrand::u8(..))).collect()
}

/// One Garage node: its config, its ports, its process when running.
pub struct Garage {
    pub dir: TempDir,
    pub admin_port: u16,
    pub s3_port: u16,
    pub rpc_port: u16,
    pub token: String,
    pub replication_factor: u32,
    /// RLIMIT_NOFILE of the process, from its next start on; `None`: inherited.
    open_file_limit: Option<u64>,
    /// Extra top-level lines of `garage.toml` (see [`Garage::configure`]).
    extra_config: String,
    child: Option<std::process::Child>,
    http: reqwest::Client,
}

impl Garage {
    /// A configured, not yet started node with replication factor 1.
    pub fn new() -> Self {
        Self::with_replication(1)
    }

    pub fn with_replication(replication_factor: u32) -> Self {
        Self::with_replication_and_token(replication_factor, &format!("admin-{}", random_hex(16)))
    }

    /// A node of a cluster: same RPC secret as every test node, and the given admin token.
    pub fn with_replication_and_token(replication_factor: u32, token: &str) -> Self {
        let g = Self {
            dir: tempfile::Builder::new().prefix("garage-test-").tempdir().unwrap(),
            admin_port: free_port(),
            s3_port: free_port(),
            rpc_port: free_port(),
            token: token.to_string(),
            replication_factor,
            open_file_limit: None,
            extra_config: String::new(),
            child: None,
            http: reqwest::Client::new(),
        };
        g.write_config();
        g
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        let config = format!(
            r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "lmdb"
replication_factor = {rf}
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{RPC_SECRET}"
{extra}
[s3_api]
api_bind_addr = "127.0.0.1:{s3}"
s3_region = "{REGION}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{token}"
"#,
            rf = self.replication_factor,
            rpc = self.rpc_port,
            s3 = self.s3_port,
            admin = self.admin_port,
            token = self.token,
            extra = self.extra_config,
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    /// Adds top-level lines to `garage.toml` (`rpc_timeout_msec = 1000`), for the next start.
    pub fn configure(&mut self, lines: &str) {
        self.extra_config.push_str(lines);
        self.extra_config.push('\n');
        self.write_config();
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("garage.toml")
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    pub fn s3_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Starts `garage server` and returns at once (the admin API answers ~100 ms later).
    pub fn start(&mut self) {
        self.start_with(&[], &[]);
    }

    /// Starts `garage server --single-node --default-bucket`: Garage >= 2.3
    /// then creates a layout role, garage-init's default key and bucket and
    /// the grant itself, before it opens its APIs.
    pub fn start_bootstrapped(&mut self) {
        self.start_with(
            &["--single-node", "--default-bucket"],
            &[
                ("GARAGE_DEFAULT_ACCESS_KEY", stack::KEY_ID),
                ("GARAGE_DEFAULT_SECRET_KEY", stack::SECRET),
                ("GARAGE_DEFAULT_BUCKET", "buildkit-cache"),
            ],
        );
    }

    /// Starts `garage server ARGS...` with extra environment variables.
    pub fn start_with(&mut self, server_args: &[&str], env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "already running");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("garage.log")).unwrap();
        let mut command = std::process::Command::new(garage_bin());
        if let Some(n) = self.open_file_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit(2), which is async-signal-safe, runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
                    match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                });
            }
        }
        let child = command
            .arg("-c")
            .arg(self.config_path())
            .arg("server")
            .args(server_args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "garage=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start garage");
        self.child = Some(child);
    }

    /// Starts the process, from its next start on, with at most `n` open
    /// files (soft and hard RLIMIT_NOFILE), as `ulimit -n` in its service would.
    pub fn limit_open_files(&mut self, n: u64) {
        self.open_file_limit = Some(n);
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// The sockets the running process holds open right now (listeners
    /// included), from `/proc/<pid>/fd`.
    pub fn open_sockets(&self) -> usize {
        let Some(pid) = self.pid() else { return 0 };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
        fds.filter_map(Result::ok)
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
            .count()
    }

    /// CPU time the running process has used so far (user and system, from `/proc/<pid>/stat`).
    pub fn cpu_time(&self) -> Duration {
        let Some(pid) = self.pid() else { return Duration::ZERO };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime: fields 14 and 15 of stat(5), the 12th and 13th after the name.
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): its connections stay open and its
    /// peers keep calling it up for a while, but it answers nothing.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("the node is running");
        // SAFETY: kill(2) on the id of a child this harness started and has not reaped.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `metadata_dir`: node key, tables, and the applied layout (`cluster_layout`).
    pub fn metadata_dir(&self) -> PathBuf {
        self.dir.path().join("meta")
    }

    /// Removes the persisted cluster layout of a stopped node, as a crash
    /// right after `ApplyClusterLayout` can leave it unreadable: the node
    /// starts again with layout version 0 and no roles, its tables kept.
    pub fn delete_layout_file(&self) {
        assert!(!self.is_running(), "delete_layout_file: stop the node first");
        let file = self.metadata_dir().join("cluster_layout");
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("removing {}: {e}", file.display()));
    }

    /// Removes the whole metadata directory of a stopped node: it starts
    /// again with a new node id, no layout and empty tables (its data
    /// directory is kept).
    pub fn wipe_metadata(&self) {
        assert!(!self.is_running(), "wipe_metadata: stop the node first");
        let dir = self.metadata_dir();
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
    }

    /// Garage's log, every start of the node appended.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// Starts Garage and waits until its admin API answers.
    pub async fn started() -> Self {
        let mut g = Self::new();
        g.start();
        g.wait_for_admin().await;
        g
    }

    pub async fn wait_for_admin(&self) {
        if let Err(e) = self.admin_answers_within(Duration::from_secs(20)).await {
            panic!("{e}; log:\n{}", self.log());
        }
    }

    /// Waits until the admin API answers an authenticated request, or says
    /// what it last answered.
    pub async fn admin_answers_within(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            match self.get("GetClusterStatus").await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("Garage's admin API did not answer in {within:?}; last: {e:?}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// An admin call made by the test itself: `Ok(json)` on 200, `Err((status, body))` otherwise.
    pub async fn call(&self, method: &str, path_and_query: &str, body: Option<Value>) -> Result<Value, (u16, Value)> {
        let url = format!("{}/v2/{path_and_query}", self.admin_url());
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body.unwrap_or(Value::Object(Default::default()))),
        };
        let resp = req
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| (0, Value::String(e.to_string())))?;
        let status = resp.status().as_u16();
        let json: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 200 { Ok(json) } else { Err((status, json)) }
    }

    pub async fn get(&self, path_and_query: &str) -> Result<Value, (u16, Value)> {
        self.call("GET", path_and_query, None).await
    }

    pub async fn post(&self, path_and_query: &str, body: Value) -> Result<Value, (u16, Value)> {
        self.call("POST", path_and_query, Some(body)).await
    }

    pub async fn node_id(&self) -> String {
        let info = self.get("GetNodeInfo?node=self").await.unwrap();
        info["success"].as_object().unwrap().keys().next().unwrap().clone()
    }

    /// Counts of admin requests by endpoint, from Garage's own Prometheus metrics.
    pub async fn admin_request_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.request_counts("api_admin_request_counter").await
    }

    /// Token-checked admin requests so far (every one but `/health` and `/metrics`), from Garage's counters.
    pub async fn token_checked_requests(&self) -> u64 {
        let counts = self.admin_request_counts().await;
        counts.iter().filter(|(e, _)| !e.starts_with("/health") && !e.starts_with("/metrics")).map(|(_, n)| n).sum()
    }

    /// Counts of S3 requests by endpoint (`PutBucketLifecycleConfiguration`, ...), from Garage's metrics.
    pub async fn s3_request_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.request_counts("api_s3_request_counter").await
    }

    async fn request_counts(&self, counter: &str) -> std::collections::BTreeMap<String, u64> {
        let text = self.http.get(format!("{}/metrics", self.admin_url())).send().await.unwrap().text().await.unwrap();
        let mut counts = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with(counter)) {
            // Labelled by endpoint: api_endpoint="/v2/GetClusterStatus" (admin), "PutObject" (S3).
            let endpoint = line
                .split("api_endpoint=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(|p| p.trim_start_matches("/v2/"))
                .unwrap_or("");
            let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            *counts.entry(endpoint.to_string()).or_default() += n as u64;
        }
        counts
    }

    /// Environment that points garage-init at this node.
    pub fn init_env(&self) -> Vec<(String, String)> {
        vec![
            ("GARAGE_INIT_ADMIN_URL".into(), self.admin_url()),
            ("GARAGE_INIT_S3_URL".into(), self.s3_url()),
            ("GARAGE_INIT_ADMIN_TOKEN".into(), self.token.clone()),
            ("GARAGE_INIT_DEADLINE".into(), "60s".into()),
        ]
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The admin endpoints that change Garage's state (every POST of the v2 API).
pub const MUTATING_ENDPOINTS: &[&str] = &[
    "UpdateClusterLayout",
    "ApplyClusterLayout",
    "RevertClusterLayout",
    "ImportKey",
    "CreateKey",
    "UpdateKey",
    "DeleteKey",
    "CreateBucket",
    "UpdateBucket",
    "DeleteBucket",
    "AllowBucketKey",
    "DenyBucketKey",
    "AddBucketAlias",
    "RemoveBucketAlias",
    "ConnectClusterNodes",
];

/// A finished garage-init run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn all_output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The outcome word of a resource's report line (`created`, `unchanged`, ...).
    pub fn outcome(&self, resource: &str) -> Option<String> {
        self.stdout.lines().find_map(|l| {
            let rest = l.strip_prefix(resource)?;
            rest.starts_with(' ').then(|| rest.split_whitespace().next().unwrap_or("").to_string())
        })
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {} after {:?}\n--- stdout\n{}--- stderr\n{}", self.code, self.elapsed, self.stdout, self.stderr)
    }
}

/// Runs garage-init with exactly `env` (nothing inherited) and `args`.
pub async fn garage_init(env: &[(String, String)], args: &[&str]) -> Run {
    let started = Instant::now();
    // Set by cargo for integration tests (the benchmark, which shares this harness, runs its own binary).
    let Some(bin) = option_env!("CARGO_BIN_EXE_garage-init") else {
        panic!("garage_init() runs the binary cargo builds for integration tests");
    };
    let output: Output = tokio::process::Command::new(bin)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run garage-init");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// `env` with one variable added or replaced.
pub fn with(env: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut env: Vec<_> = env.iter().filter(|(k, _)| k != key).cloned().collect();
    env.push((key.into(), value.into()));
    env
}

/// Runs one of the boto3 scripts of `tests/support` (the tests' independent
/// S3 client, in the virtualenv `scripts/install-deps` makes): its exit code
/// and the JSON object it printed.
pub fn boto3_script(script: &str, args: &[&str]) -> (i32, Value) {
    let python = std::env::var("E2E_PYTHON").unwrap_or_else(|_| {
        let cache = std::env::var("GARAGE_INIT_CACHE_DIR").unwrap_or_else(|_| "/opt/garage-init-cache".into());
        format!("{cache}/venv/bin/python")
    });
    assert!(Path::new(&python).exists(), "{python} missing: run scripts/install-deps (it creates the boto3 venv)");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support").join(script);
    let out = std::process::Command::new(python).arg(path).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("{script} printed no JSON: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), json)
}

/// A bucket's lifecycle rules through boto3 (`tests/support/s3_lifecycle.py`):
/// `get` returns `{"rules": [...]}` in boto3's shape, `put` writes `rules`.
pub fn boto3_lifecycle(s3_url: &str, bucket: &str, key: (&str, &str), op: &str, rules: Option<&Value>) -> Value {
    let rules = rules.map(Value::to_string);
    let mut args = vec![s3_url, bucket, key.0, key.1, REGION, op];
    args.extend(rules.as_deref());
    let (code, json) = boto3_script("s3_lifecycle.py", &args);
    assert_eq!(code, 0, "boto3 {op} on {bucket}: {json}");
    json
}

/// The test's own S3 client: signs with rusty-s3 directly, not through garage-init.
pub struct S3 {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl S3 {
    pub fn new(endpoint: &str, bucket: &str, key_id: &str, secret: &str) -> Self {
        Self {
            bucket: Bucket::new(endpoint.parse().unwrap(), UrlStyle::Path, bucket.to_string(), REGION).unwrap(),
            credentials: Credentials::new(key_id, secret),
            http: reqwest::Client::new(),
        }
    }

    pub async fn put(&self, object: &str, body: &[u8]) -> Result<(), String> {
        let put = PutObject::new(&self.bucket, Some(&self.credentials), object).sign(Duration::from_secs(60));
        let r = self.http.put(put).body(body.to_vec()).send().await.map_err(|e| e.to_string())?;
        if r.status().is_success() { Ok(()) } else { Err(format!("PUT {}", r.status())) }
    }

    pub async fn get(&self, object: &str) -> Result<Vec<u8>, String> {
        let get = GetObject::new(&self.bucket, Some(&self.credentials), object).sign(Duration::from_secs(60));
        let r = self.http.get(get).send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("GET {}", r.status()));
        }
        Ok(r.bytes().await.map_err(|e| e.to_string())?.to_vec())
    }

    /// PUT, GET (compared) and DELETE of an object; `Err` with what failed.
    pub async fn round_trip(&self, object: &str, body: &[u8]) -> Result<(), String> {
        let ttl = Duration::from_secs(60);
        let put = PutObject::new(&self.bucket, Some(&self.credentials), object).sign(ttl);
        let r = self.http.put(put).body(body.to_vec()).send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("PUT {}: {}", r.status(), r.text().await.unwrap_or_default()));
        }
        let get = GetObject::new(&self.bucket, Some(&self.credentials), object).sign(ttl);
        let r = self.http.get(get).send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("GET {}", r.status()));
        }
        if r.bytes().await.map_err(|e| e.to_string())?.as_ref() != body {
            return Err("GET returned other bytes".into());
        }
        let del = DeleteObject::new(&self.bucket, Some(&self.credentials), object).sign(ttl);
        let r = self.http.delete(del).send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("DELETE {}", r.status()));
        }
        Ok(())
    }
}
