//! Time to ready: how long after `garage server` starts the build cache is
//! usable, with garage-init (G) and with the fastest sequence any init tool
//! could run (the limit, L), in the same run, alternating, on a fresh Garage
//! per sample. Also: a second run on a converged node, garage-init's peak
//! memory and CPU time, binary and image size, the compose stack's up command
//! next to Garage's own healthy time, and multi-node convergence.
//!
//! Run with `scripts/bench` (it builds what this needs); `--write` replaces the
//! results section of BENCHMARKS.md. Options: `--samples N` (default 7),
//! `--skip-compose`, `--skip-cluster`, `--bootstrap-only` (Garage >= 2.3: only
//! Garage's built-in bootstrap against garage-init, see `bootstrap`; `--write`
//! then fills BENCHMARKS.md's bootstrap section), and `--baseline PATH`: another
//! garage-init binary (e.g. built from an earlier commit), measured in the
//! same samples as G, for a before/after comparison in one run.
//! `--compose-only` measures only the compose stack (`--write` then fills
//! BENCHMARKS.md's compose section), and `--compose-before FILE` adds an
//! earlier compose.yaml to its samples.
//!
//! `--scale` measures big specs instead (see `scale`): 10, 100 and 1,000
//! buckets (`--buckets 10,100,1000`), fresh and converged, against Garage
//! with an open-file limit of 1024; `--write` then fills BENCHMARKS.md's
//! section for the Garage version (`GARAGE_VERSION`). `--requests-per-node N`
//! passes that setting to garage-init.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Garage, random_hex};
use serde_json::{Value, json};

const BUCKET: &str = "buildkit-cache";
const KEY_ID: &str = "GK6275696c646b69742d6b6579";
const SECRET: &str = "8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let samples: usize = args
        .iter()
        .position(|a| a == "--samples")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(7);
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dist/garage-init");
    assert!(bin.exists(), "{} missing: run scripts/bench (or scripts/build-static)", bin.display());
    let baseline: Option<PathBuf> =
        args.iter().position(|a| a == "--baseline").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    if let Some(b) = &baseline {
        assert!(b.exists(), "--baseline {} does not exist", b.display());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let mut out = String::new();
    writeln!(out, "{}", machine()).unwrap();
    if flag("--scale") {
        let counts: Vec<usize> = args
            .iter()
            .position(|a| a == "--buckets")
            .and_then(|i| args.get(i + 1))
            .map(|list| list.split(',').map(|n| n.trim().parse().expect("--buckets: numbers")).collect())
            .unwrap_or_else(|| vec![10, 100, 1000]);
        let per_node: Option<String> =
            args.iter().position(|a| a == "--requests-per-node").and_then(|i| args.get(i + 1)).cloned();
        writeln!(out, "{}", scale(&bin, &counts, samples, per_node.as_deref(), &rt)).unwrap();
        println!("{out}");
        if flag("--write") {
            let version = common::garage_version();
            write_section(&format!("<!-- scale-{version}:begin -->"), &format!("<!-- scale-{version}:end -->"), &out);
        }
        return;
    }
    if flag("--bootstrap-only") {
        writeln!(out, "{}", bootstrap(&bin, samples, &rt)).unwrap();
        println!("{out}");
        if flag("--write") {
            write_section("<!-- bootstrap:begin -->", "<!-- bootstrap:end -->", &out);
        }
        return;
    }

    let compose_before: Option<PathBuf> =
        args.iter().position(|a| a == "--compose-before").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    if flag("--compose-only") {
        writeln!(out, "{}", compose(samples, compose_before.as_deref())).unwrap();
        println!("{out}");
        if flag("--write") {
            write_section("<!-- compose:begin -->", "<!-- compose:end -->", &out);
        }
        return;
    }

    eprintln!("bench: {samples} samples of L and G, alternating");
    let (mut limits, mut inits, mut bases, mut kept) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let base = |b: &Path| init_sample(b, &[]);
    for i in 0..samples {
        // Alternate which goes first, so drift of the machine hits both.
        if i % 2 == 0 {
            limits.push(rt.block_on(limit_sample()));
            inits.push(init_sample(&bin, &[]));
            kept.push(init_sample(&bin, STACK_LIFECYCLE));
            bases.extend(baseline.as_deref().map(base));
        } else {
            bases.extend(baseline.as_deref().map(base));
            kept.push(init_sample(&bin, STACK_LIFECYCLE));
            inits.push(init_sample(&bin, &[]));
            limits.push(rt.block_on(limit_sample()));
        }
        eprintln!(
            "  sample {}: L {:.0} ms, G {:.0} ms, second run {:.1} ms{}",
            i + 1,
            ms(limits[i].done),
            ms(inits[i].first.wall),
            ms(inits[i].second.wall),
            bases.get(i).map(|b| format!("; baseline G {:.0} ms", ms(b.first.wall))).unwrap_or_default()
        );
    }
    writeln!(out, "{}", fresh_table(&limits, &inits)).unwrap();
    writeln!(out, "{}", lifecycle_table(&limits, &inits, &kept)).unwrap();
    if !bases.is_empty() {
        writeln!(out, "{}", baseline_table(&limits, &inits, &bases)).unwrap();
    }
    let mut counted = vec![("garage-init", bin.clone())];
    counted.extend(baseline.iter().map(|b| ("baseline", b.clone())));
    writeln!(out, "{}", rt.block_on(request_counts(&counted))).unwrap();
    writeln!(out, "{}", rt.block_on(request_costs())).unwrap();
    writeln!(out, "{}", trace(&bin)).unwrap();
    writeln!(out, "{}", sizes(&bin)).unwrap();
    if !flag("--skip-compose") {
        writeln!(out, "{}", compose(samples.min(5), compose_before.as_deref())).unwrap();
    }
    if !flag("--skip-cluster") {
        writeln!(out, "{}", cluster(&bin, samples.min(5))).unwrap();
    }

    println!("{out}");
    if flag("--write") {
        write_section("<!-- results:begin -->", "<!-- results:end -->", &out);
    }
}

/// Replaces the text between two markers of BENCHMARKS.md.
fn write_section(begin: &str, end: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).expect("BENCHMARKS.md");
    let (a, b) = (doc.find(begin).expect("begin marker"), doc.find(end).expect("end marker"));
    let updated = format!("{}{begin}\n{text}{}", &doc[..a], &doc[b..]);
    std::fs::write(&path, updated).unwrap();
    eprintln!("bench: results written to {}", path.display());
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, min, max.
fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    (median, v[0], v[n - 1])
}

fn row(name: &str, values: &[f64], unit: &str) -> String {
    let (m, lo, hi) = stats(values);
    let digits = if m < 100.0 { 1 } else { 0 };
    format!("| {name} | {m:.digits$} {unit} | {lo:.digits$} – {hi:.digits$} |\n")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap().trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0)))
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let garage = Command::new(common::garage_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "Run {date} on {cpu}, {cores} cores, {:.0} GiB, Linux {}; {garage}.\n",
        mem as f64 / 1048576.0,
        kernel.trim()
    )
}

// ---- L: the limit ----

struct Limit {
    admin_up: Duration,
    layout_applied: Duration,
    healthy: Duration,
    done: Duration,
}

/// The minimal admin sequence on a fresh node, from process start, on one
/// persistent connection with 1 ms polling; no validation, no S3 check.
async fn limit_sample() -> Limit {
    let mut g = Garage::new();
    let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let admin = g.admin_url();
    let token = g.token.clone();
    let post = |path: &str, body: Value| http.post(format!("{admin}/v2/{path}")).bearer_auth(&token).json(&body).send();
    let t0 = Instant::now();
    g.start();
    let status: Value = loop {
        if let Ok(r) = http.get(format!("{admin}/v2/GetClusterStatus")).bearer_auth(&token).send().await
            && r.status() == 200
        {
            break r.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let admin_up = t0.elapsed();
    let id = status["nodes"][0]["id"].as_str().unwrap().to_string();
    let role = json!({"roles": [{"id": id, "zone": "dc1", "capacity": 1_000_000_000u64, "tags": []}]});
    assert_eq!(post("UpdateClusterLayout", role).await.unwrap().status(), 200);
    assert_eq!(post("ApplyClusterLayout", json!({"version": 1})).await.unwrap().status(), 200);
    let layout_applied = t0.elapsed();
    while http.get(format!("{admin}/health")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let healthy = t0.elapsed();
    let bucket: Value = post("CreateBucket", json!({"globalAlias": BUCKET})).await.unwrap().json().await.unwrap();
    let import = json!({"accessKeyId": KEY_ID, "secretAccessKey": SECRET, "name": "buildkit-key"});
    assert_eq!(post("ImportKey", import).await.unwrap().status(), 200);
    let allow = json!({"bucketId": bucket["id"], "accessKeyId": KEY_ID, "permissions": {"read": true, "write": true, "owner": true}});
    assert_eq!(post("AllowBucketKey", allow).await.unwrap().status(), 200);
    let done = t0.elapsed();
    g.kill();
    Limit { admin_up, layout_applied, healthy, done }
}

// ---- G: garage-init ----

struct Usage {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: i64,
}

struct Init {
    first: Usage,
    second: Usage,
}

/// Runs garage-init and waits for it with wait4, for its own peak RSS and CPU time.
#[allow(clippy::zombie_processes)] // reaped by wait4, which clippy does not see
fn run_init(bin: &Path, env: &[(String, String)], t0: Instant) -> Usage {
    let child = Command::new(bin)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid for the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = t0.elapsed();
    assert_eq!(pid, child.id() as libc::pid_t);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "garage-init failed: status {status}");
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Usage { wall, cpu: tv(usage.ru_utime) + tv(usage.ru_stime), max_rss_kib: usage.ru_maxrss }
}

/// Pause before a second run: right after its first layout Garage is busy
/// with background work for a moment, and a user's second run comes at the
/// next `docker compose up`, much later.
const SETTLE: Duration = Duration::from_secs(2);

/// G: garage-init started at the same moment as a fresh Garage, until exit 0;
/// then, after [`SETTLE`], a second run on the converged node.
fn init_sample(bin: &Path, extra: &[(&str, &str)]) -> Init {
    let mut g = Garage::new();
    let mut env = g.init_env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let t0 = Instant::now();
    g.start();
    let first = run_init(bin, &env, t0);
    std::thread::sleep(SETTLE);
    let second = run_init(bin, &env, Instant::now());
    g.kill();
    Init { first, second }
}

fn fresh_table(l: &[Limit], g: &[Init]) -> String {
    let f = |v: &dyn Fn(usize) -> f64| (0..l.len()).map(v).collect::<Vec<f64>>();
    let mut t = format!("### Fresh node, from `garage server` start ({} samples each, alternating)\n\n", l.len());
    t.push_str("| measure | median | min – max |\n|---|---|---|\n");
    t += &row("L: admin API answers", &f(&|i| ms(l[i].admin_up)), "ms");
    t += &row("L: layout applied", &f(&|i| ms(l[i].layout_applied)), "ms");
    t += &row("L: `/health` 200", &f(&|i| ms(l[i].healthy)), "ms");
    t += &row("**L: bucket, key, grant done**", &f(&|i| ms(l[i].done)), "ms");
    t += &row("**G: garage-init exit 0** (S3 check included)", &f(&|i| ms(g[i].first.wall)), "ms");
    t += &row("G − L (per sample pair)", &f(&|i| ms(g[i].first.wall) - ms(l[i].done)), "ms");
    let ratio: Vec<f64> = (0..l.len()).map(|i| ms(g[i].first.wall) / ms(l[i].done)).collect();
    let (m, lo, hi) = stats(&ratio);
    t += &format!("| G ÷ L | {m:.2} | {lo:.2} – {hi:.2} |\n");
    t += &row("garage-init CPU time, fresh", &f(&|i| ms(g[i].first.cpu)), "ms");
    t += &row("garage-init peak RSS, fresh", &f(&|i| g[i].first.max_rss_kib as f64 / 1024.0), "MiB");
    t += &row("**second run on a converged node** (2 s later): wall", &f(&|i| ms(g[i].second.wall)), "ms");
    t += &row("second run: CPU time", &f(&|i| ms(g[i].second.cpu)), "ms");
    t += &row("second run: peak RSS", &f(&|i| g[i].second.max_rss_kib as f64 / 1024.0), "MiB");
    t
}

/// The lifecycle settings compose.yaml gives garage-init.
const STACK_LIFECYCLE: &[(&str, &str)] =
    &[("GARAGE_INIT_EXPIRE_AFTER_DAYS", "30"), ("GARAGE_INIT_ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS", "1")];

/// What declaring the stack's lifecycle rules costs: one S3 write on a fresh
/// node, one S3 read on a converged one.
fn lifecycle_table(l: &[Limit], g: &[Init], k: &[Init]) -> String {
    let f = |v: &dyn Fn(usize) -> f64| (0..l.len()).map(v).collect::<Vec<f64>>();
    let mut t = format!(
        "### With the stack's lifecycle rules declared, in the same samples ({} each)

",
        l.len()
    );
    t.push_str("| measure | median | min – max |\n|---|---|---|\n");
    t += &row("G − L, no lifecycle declared", &f(&|i| ms(g[i].first.wall) - ms(l[i].done)), "ms");
    t += &row("G − L, lifecycle rules declared (30 days, 1 day)", &f(&|i| ms(k[i].first.wall) - ms(l[i].done)), "ms");
    t += &row("second run, no lifecycle declared", &f(&|i| ms(g[i].second.wall)), "ms");
    t += &row("second run, lifecycle rules declared (one S3 read)", &f(&|i| ms(k[i].second.wall)), "ms");
    t
}

/// The same samples for the baseline binary, next to garage-init's.
fn baseline_table(l: &[Limit], g: &[Init], b: &[Init]) -> String {
    let f = |v: &dyn Fn(usize) -> f64| (0..l.len()).map(v).collect::<Vec<f64>>();
    let mut t = format!("### Before and after: the baseline binary in the same samples ({} each)\n\n", l.len());
    t.push_str("| measure | median | min – max |\n|---|---|---|\n");
    t += &row("G − L, garage-init", &f(&|i| ms(g[i].first.wall) - ms(l[i].done)), "ms");
    t += &row("G − L, baseline", &f(&|i| ms(b[i].first.wall) - ms(l[i].done)), "ms");
    t += &row("second run, garage-init", &f(&|i| ms(g[i].second.wall)), "ms");
    t += &row("second run, baseline", &f(&|i| ms(b[i].second.wall)), "ms");
    t
}

/// Token-checked admin requests (all but `/health` and `/metrics`) of a
/// fresh run and of a second run, from Garage's own per-endpoint counters.
async fn request_counts(bins: &[(&str, PathBuf)]) -> String {
    async fn checked(g: &Garage) -> u64 {
        let counts = g.admin_request_counts().await;
        counts.iter().filter(|(e, _)| !e.starts_with("/health") && !e.starts_with("/metrics")).map(|(_, n)| n).sum()
    }
    let mut t = String::from("### Token-checked admin requests per run (Garage's own counters)\n\n");
    t.push_str("| binary | fresh node | converged node |\n|---|---|---|\n");
    for (name, bin) in bins {
        let g = Garage::started().await;
        let env = g.init_env();
        let start = checked(&g).await;
        let run = |bin: PathBuf, env: Vec<(String, String)>| {
            tokio::task::spawn_blocking(move || run_init(&bin, &env, Instant::now()))
        };
        run(bin.clone(), env.clone()).await.unwrap();
        let fresh = checked(&g).await;
        tokio::time::sleep(SETTLE).await;
        run(bin.clone(), env).await.unwrap();
        let second = checked(&g).await;
        t += &format!("| {name} | {} | {} |\n", fresh - start, second - fresh);
    }
    t
}

/// What one admin request costs Garage: with a token (argon2 check) and without (`/health`).
async fn request_costs() -> String {
    let g = Garage::started().await;
    g.post(
        "UpdateClusterLayout",
        json!({"roles": [{"id": g.node_id().await, "zone": "dc1", "capacity": 1_000_000_000u64, "tags": []}]}),
    )
    .await
    .unwrap();
    g.post("ApplyClusterLayout", json!({"version": 1})).await.unwrap();
    let http = reqwest::Client::new();
    let (mut auth, mut open) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        let t = Instant::now();
        http.get(format!("{}/v2/GetClusterStatus", g.admin_url())).bearer_auth(&g.token).send().await.unwrap();
        auth.push(ms(t.elapsed()));
        let t = Instant::now();
        http.get(format!("{}/health", g.admin_url())).send().await.unwrap();
        open.push(ms(t.elapsed()));
    }
    let mut t = String::from("### One admin request on a converged node (21 each, same connection pool)\n\n");
    t.push_str("| request | median | min – max |\n|---|---|---|\n");
    t += &row("`GetClusterStatus` (token checked with argon2)", &auth, "ms");
    t += &row("`/health` (no token)", &open, "ms");
    t
}

/// A fresh run of garage-init with debug logs, then a second one: when each
/// request started and what answered, from Garage's start (from the second
/// run's start).
fn trace(bin: &Path) -> String {
    let mut g = Garage::new();
    let mut env = g.init_env();
    env.push(("RUST_LOG".into(), "garage_init=debug".into()));
    env.push(("GARAGE_INIT_LOG_FORMAT".into(), "json".into()));
    let fresh = traced_run(bin, &env, || g.start(), "a fresh run, ms from `garage server` start");
    std::thread::sleep(SETTLE);
    let second = traced_run(bin, &env, || {}, "a second run on the converged node, ms from its start");
    g.kill();
    fresh + "\n" + &second
}

fn traced_run(bin: &Path, env: &[(String, String)], before: impl FnOnce(), title: &str) -> String {
    let t0_wall = std::time::SystemTime::now();
    let t0 = Instant::now();
    before();
    let out = Command::new(bin).env_clear().envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
    let total = t0.elapsed();
    let since = |ts: &str| -> Option<f64> {
        // 2026-11-27T23:09:35.327432Z: seconds within the day suffice for a trace of a second.
        let time = ts.split('T').nth(1)?.trim_end_matches('Z');
        let mut parts = time.split(':');
        let (h, m, s): (f64, f64, f64) =
            (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
        let start = t0_wall.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64() % 86400.0;
        Some((h * 3600.0 + m * 60.0 + s - start) * 1000.0)
    };
    let mut t = format!("### Where the time goes: {title}\n\n```\n");
    let mut retries = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else { continue };
        let at = e["timestamp"].as_str().and_then(since).unwrap_or(f64::NAN);
        let what = match (e["message"].as_str(), e["endpoint"].as_str(), e["resource"].as_str()) {
            (Some("retrying"), _, _) => {
                retries += 1;
                continue;
            }
            (Some("admin request"), Some(ep), _) => format!("  request {ep}"),
            (Some("admin error"), Some(ep), _) => format!("  answer  {ep}: {}", e["status"]),
            (Some("S3 request"), _, _) => format!("  S3 {} answered {}", e["op"].as_str().unwrap_or(""), e["status"]),
            (_, _, Some(r)) => format!("{r} {}", e["outcome"].as_str().unwrap_or("")),
            (Some(m), _, _) => m.to_string(),
            _ => continue,
        };
        writeln!(t, "{at:7.1}  {what}").unwrap();
    }
    writeln!(t, "{:7.1}  exit ({retries} retried polls)\n```", ms(total)).unwrap();
    t
}

fn sizes(bin: &Path) -> String {
    let binary = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let image = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Size}}", "garage-init:local"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u64>().ok());
    let image = image.map(|b| format!("{:.2} MB ({b} bytes)", b as f64 / 1e6)).unwrap_or_else(|| "not built".into());
    format!(
        "### Footprint\n\n| what | size |\n|---|---|\n| static binary `dist/garage-init` | {:.2} MB ({binary} bytes) |\n| image `garage-init:local` | {image} |\n",
        binary as f64 / 1e6
    )
}

// ---- compose ----

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Seconds since midnight UTC of an RFC 3339 timestamp (Docker's), or of now.
fn day_secs(ts: Option<&str>) -> f64 {
    match ts {
        Some(ts) => {
            let time = ts.split('T').nth(1).unwrap_or("0:0:0").trim_end_matches('Z');
            let p: Vec<f64> = time.split(':').map(|x| x.parse().unwrap_or(0.0)).collect();
            p[0] * 3600.0 + p[1] * 60.0 + p[2]
        }
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() % 86400.0,
    }
}

/// The compose files of a stack to measure: `main` (compose.yaml, or another
/// file such as an earlier revision of it, run from the repository so that
/// its relative paths resolve), the registry UI's stand-in (its image is not
/// available offline), and the override for engines before 25.
fn compose_files(main: &str) -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![main.to_string(), common::stack::registry_ui_stand_in().display().to_string()];
    if common::stack::engine_before_25() && std::fs::read_to_string(main).unwrap_or_default().contains("start_interval")
    {
        files.push(format!("{root}/compose.engine-pre25.yaml"));
    }
    files
}

fn compose_cmd(project: &str, files: &[String], args: &[&str]) -> (bool, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut all = vec!["compose", "-p", project, "--project-directory", root, "--env-file", "/dev/null"];
    for f in files {
        all.extend(["-f", f.as_str()]);
    }
    all.extend(args);
    docker(&all)
}

/// Garage alone: `up -d garage` until its admin API answers HTTP on the host.
fn garage_alone_sample(files: &[String]) -> f64 {
    let project = format!("bench-alone-{}", random_hex(3));
    let t0 = Instant::now();
    let (ok, out) = compose_cmd(&project, files, &["up", "-d", "--pull", "never", "--no-deps", "garage"]);
    assert!(ok, "compose up garage failed in {project}: {out}");
    let answered = loop {
        let answer = std::net::TcpStream::connect("127.0.0.1:3903").ok().and_then(|mut c| {
            use std::io::{Read, Write};
            c.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            c.write_all(b"GET /health HTTP/1.0\r\n\r\n").ok()?;
            let mut head = [0u8; 12];
            c.read_exact(&mut head).ok()?;
            head.starts_with(b"HTTP/").then_some(())
        });
        if answer.is_some() {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "Garage did not answer in {project}");
        std::thread::sleep(Duration::from_millis(5));
    };
    let (ok, out) = compose_cmd(&project, files, &["down", "-v", "--timeout", "5"]);
    assert!(ok, "down failed: {out}");
    ms(answered)
}

/// The documented `up -d --wait`, from nothing; also when garage-init exited,
/// from Garage's container start.
fn stack_sample(files: &[String]) -> (f64, f64) {
    let project = format!("bench-{}", random_hex(3));
    let t0 = Instant::now();
    let (ok, out) = compose_cmd(&project, files, &["up", "-d", "--wait", "--pull", "never"]);
    let up = t0.elapsed();
    assert!(ok, "compose up failed in {project}: {out}");
    let garage_started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &format!("{project}-garage-1")]).1;
    let init_finished = docker(&["inspect", "-f", "{{.State.FinishedAt}}", &format!("{project}-garage-init-1")]).1;
    let init = (day_secs(Some(&init_finished)) - day_secs(Some(&garage_started))) * 1000.0;
    let (ok, out) = compose_cmd(&project, files, &["down", "-v", "--timeout", "5"]);
    assert!(ok, "down failed: {out}");
    (ms(up), init)
}

/// `docker compose up -d --wait` from nothing to ready, next to Garage alone
/// answering HTTP (the limit: nothing can be ready before Garage answers), in
/// the same samples, alternating; with `before`, an earlier compose file too.
fn compose(samples: usize, before: Option<&Path>) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let now = compose_files(&format!("{root}/compose.yaml"));
    let then = before.map(|b| compose_files(&b.display().to_string()));
    let (mut alone, mut up, mut init, mut up_before) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..samples {
        let mut order: Vec<u8> = vec![0, 1, 2];
        if i % 2 == 1 {
            order.reverse();
        }
        for step in order {
            match (step, &then) {
                (0, _) => alone.push(garage_alone_sample(&now)),
                (1, _) => {
                    let (u, g) = stack_sample(&now);
                    up.push(u);
                    init.push(g);
                }
                (_, Some(files)) => up_before.push(stack_sample(files).0),
                _ => {}
            }
        }
        eprintln!(
            "  compose sample {}: Garage alone answers {:.0} ms, up --wait {:.0} ms{}",
            i + 1,
            alone[i],
            up[i],
            up_before.get(i).map(|b| format!(", before: {b:.0} ms")).unwrap_or_default()
        );
    }
    let mut t = format!(
        "### Compose stack on the Docker engine ({samples} samples, from nothing, alternating; registry UI as a stand-in{})\n\n",
        if common::stack::engine_before_25() { "; engine before 25: compose.engine-pre25.yaml added" } else { "" }
    );
    t.push_str("| measure | median | min – max |\n|---|---|---|\n");
    t += &row("Garage alone: `up -d garage` until its admin API answers HTTP", &alone, "ms");
    t += &row("garage-init exit, from Garage's container start", &init, "ms");
    t += &row("**`docker compose up -d --wait` returns**", &up, "ms");
    let diff: Vec<f64> = up.iter().zip(&alone).map(|(u, a)| u - a).collect();
    t += &row("up − Garage alone", &diff, "ms");
    if !up_before.is_empty() {
        let name = before.unwrap().display();
        t += &row(&format!("`up -d --wait` with the earlier file ({name})"), &up_before, "ms");
        let diff: Vec<f64> = up_before.iter().zip(&alone).map(|(u, a)| u - a).collect();
        t += &row("earlier file: up − Garage alone", &diff, "ms");
    }
    t
}

// ---- multi-node ----

/// `n` configured nodes (not started) and the environment that points garage-init at them with a spec.
fn cluster_nodes(n: usize) -> (Vec<Garage>, Vec<(String, String)>) {
    let rf = if n >= 3 { 3 } else { 1 };
    let first = Garage::with_replication(rf);
    let token = first.token.clone();
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(Garage::with_replication_and_token(rf, &token));
    }
    let mut spec = String::from("cluster:\n  capacity: 1GB\n  nodes:\n");
    for (i, g) in nodes.iter().enumerate() {
        writeln!(
            spec,
            "    - admin_url: {}\n      rpc_address: 127.0.0.1:{}\n      zone: dc{}",
            g.admin_url(),
            g.rpc_port,
            i + 1
        )
        .unwrap();
    }
    let path = nodes[0].dir.path().join("spec.yaml");
    std::fs::write(&path, spec).unwrap();
    let mut env = nodes[0].init_env();
    env.push(("GARAGE_INIT_SPEC".into(), path.display().to_string()));
    (nodes, env)
}

/// garage-init converging `n` fresh nodes started at the same moment.
fn cluster(bin: &Path, samples: usize) -> String {
    let mut t = format!("### Multi-node convergence from process start ({samples} samples each)\n\n");
    t.push_str("| nodes | replication factor | median | min – max |\n|---|---|---|---|\n");
    for n in [1usize, 3, 5] {
        let mut walls = Vec::new();
        for _ in 0..samples {
            let (mut nodes, env) = cluster_nodes(n);
            let t0 = Instant::now();
            for g in &mut nodes {
                g.start();
            }
            walls.push(ms(run_init(bin, &env, t0).wall));
        }
        let (m, lo, hi) = stats(&walls);
        writeln!(t, "| {n} | {} | {m:.0} ms | {lo:.0} – {hi:.0} |", if n >= 3 { 3 } else { 1 }).unwrap();
    }
    let (mut nodes, mut env) = cluster_nodes(3);
    env.push(("RUST_LOG".into(), "garage_init=debug".into()));
    env.push(("GARAGE_INIT_LOG_FORMAT".into(), "json".into()));
    let traced = traced_run(bin, &env, || nodes.iter_mut().for_each(Garage::start), "three nodes, ms from their start");
    t + "\n" + &traced
}

// ---- Garage's built-in single-node bootstrap (Garage >= 2.3) ----

/// The first PutObject with the key that succeeds, polled every 2 ms.
async fn first_put(g: &Garage, t0: Instant) -> Duration {
    let s3 = common::S3::new(&g.s3_url(), BUCKET, KEY_ID, SECRET);
    loop {
        if s3.put("bench/first-put", b"cache blob").await.is_ok() {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no PutObject succeeded in 60 s; Garage log:\n{}", g.log());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One fresh Garage per scenario and sample, from `garage server` start:
/// B, the built-in bootstrap alone, until a PutObject with the key succeeds;
/// G, garage-init on a plain node, until its exit 0 (its own S3 write proven);
/// B+G, the built-in bootstrap with garage-init on top, until garage-init's
/// exit 0 (the compose gate), then the first PutObject of the test itself.
fn bootstrap(bin: &Path, samples: usize, rt: &tokio::runtime::Runtime) -> String {
    let version = common::garage_version();
    eprintln!("bench: Garage {version} built-in bootstrap vs garage-init, {samples} samples, rotating order");
    let (mut builtin, mut init, mut both, mut both_put) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..samples {
        for scenario in (0..3).map(|k| (k + i) % 3) {
            let mut g = Garage::new();
            let env = g.init_env();
            let t0 = Instant::now();
            match scenario {
                0 => {
                    g.start_bootstrapped();
                    builtin.push(ms(rt.block_on(first_put(&g, t0))));
                }
                1 => {
                    g.start();
                    init.push(ms(run_init(bin, &env, t0).wall));
                }
                _ => {
                    g.start_bootstrapped();
                    both.push(ms(run_init(bin, &env, t0).wall));
                    both_put.push(ms(rt.block_on(first_put(&g, t0))));
                }
            }
            g.kill();
        }
        eprintln!("  sample {}: B {:.0} ms, G {:.0} ms, B+G {:.0} ms", i + 1, builtin[i], init[i], both[i]);
    }
    let mut t = format!(
        "### Garage {version}: its built-in bootstrap against garage-init ({samples} samples each, rotating order)\n\n"
    );
    t.push_str("| from `garage server` start until | median | min – max |\n|---|---|---|\n");
    t += &row(
        "**B**: `--single-node --default-bucket` alone: first PutObject with the key succeeds (2 ms polling)",
        &builtin,
        "ms",
    );
    t += &row("**G**: garage-init on a plain node: exit 0 (its S3 write proven)", &init, "ms");
    t += &row("**B+G**: both, garage-init on top: garage-init exit 0 (the compose gate)", &both, "ms");
    t += &row("B+G: the bench's own first PutObject, right after", &both_put, "ms");
    t
}

// ---- big specs ----

/// The open-file limit Garage runs with in the scale benchmark: the usual
/// default of a Linux service.
const SCALE_OPEN_FILES: u64 = 1024;

/// A spec of `n` buckets and one key with read, write and owner on each.
fn scale_spec(n: usize) -> String {
    let mut spec = String::from("buckets:\n");
    for i in 0..n {
        writeln!(spec, "  - name: bench-{i:05}").unwrap();
    }
    writeln!(spec, "keys:\n  - id: {KEY_ID}\n    name: bench-key\n    secret: {SECRET}\ngrants:").unwrap();
    for i in 0..n {
        writeln!(spec, "  - key: {KEY_ID}\n    bucket: bench-{i:05}\n    permissions: [read, write, owner]").unwrap();
    }
    spec
}

/// One garage-init run against a big spec, and what it cost Garage.
struct ScaleRun {
    code: i32,
    wall: Duration,
    /// garage-init's own CPU time.
    init_cpu: Duration,
    /// Garage's CPU time over the run (user and system, from /proc).
    garage_cpu: Duration,
    token_checked: u64,
    s3_requests: u64,
    /// The most sockets Garage held open at once during the run (listeners included).
    peak_sockets: usize,
}

/// One run of `bin` with `env`, measured from Garage's side too.
#[allow(clippy::zombie_processes)] // reaped by wait4, which clippy does not see
fn scale_run(bin: &Path, env: &[(String, String)], g: &Garage, rt: &tokio::runtime::Runtime) -> ScaleRun {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let counts = || {
        rt.block_on(async {
            let admin = g.token_checked_requests().await;
            let s3: u64 = g.s3_request_counts().await.values().sum();
            (admin, s3)
        })
    };
    let (admin0, s30) = counts();
    let cpu0 = g.cpu_time();
    let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let pid = g.pid().unwrap();
    let watcher = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .map(|d| {
                        d.filter_map(Result::ok)
                            .filter(|f| {
                                std::fs::read_link(f.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                            })
                            .count()
                    })
                    .unwrap_or(0);
                peak.fetch_max(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let t0 = Instant::now();
    let child = Command::new(bin)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid for the call.
    let pid_waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = t0.elapsed();
    assert_eq!(pid_waited, child.id() as libc::pid_t);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let garage_cpu = g.cpu_time().saturating_sub(cpu0);
    let (admin1, s31) = counts();
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    ScaleRun {
        code: if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 },
        wall,
        init_cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        garage_cpu,
        token_checked: admin1 - admin0,
        s3_requests: s31 - s30,
        peak_sockets: peak.load(Ordering::Relaxed),
    }
}

/// Garage after a sample: does its admin API answer, and how often did it
/// run out of open files.
struct Health {
    answers: bool,
    fd_errors: usize,
}

/// Big specs: per bucket count, `samples` fresh Garages (open-file limit
/// 1024), each given a spec of that many buckets from scratch, then, after
/// [`SETTLE`], the same spec again on the converged node.
fn scale(bin: &Path, counts: &[usize], samples: usize, per_node: Option<&str>, rt: &tokio::runtime::Runtime) -> String {
    let mut t = format!(
        "### Big specs: one key with read, write and owner on each of N buckets ({samples} samples each, \
         Garage's open-file limit {SCALE_OPEN_FILES}, `--requests-per-node` {})\n\n",
        per_node.unwrap_or("default")
    );
    t.push_str(
        "| buckets | run | wall | Garage CPU | garage-init CPU | token-checked admin requests | S3 requests | \
         Garage sockets, peak | exit 0 | Garage answers after, fd errors |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for &n in counts {
        let (mut fresh, mut again, mut health) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..samples {
            let mut g = Garage::new();
            g.limit_open_files(SCALE_OPEN_FILES);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("spec.yaml");
            std::fs::write(&path, scale_spec(n)).unwrap();
            let mut env = g.init_env();
            env.retain(|(k, _)| k != "GARAGE_INIT_DEADLINE");
            env.push(("GARAGE_INIT_DEADLINE".into(), "600s".into()));
            env.push(("GARAGE_INIT_SPEC".into(), path.display().to_string()));
            env.extend(per_node.map(|n| ("GARAGE_INIT_REQUESTS_PER_NODE".to_string(), n.to_string())));
            g.start();
            rt.block_on(g.wait_for_admin());
            let f = scale_run(bin, &env, &g, rt);
            std::thread::sleep(SETTLE);
            let a = scale_run(bin, &env, &g, rt);
            let answers = rt.block_on(g.admin_answers_within(Duration::from_secs(5))).is_ok();
            health.push(Health { answers, fd_errors: g.log().matches("Too many open files").count() });
            eprintln!(
                "  {n} buckets, sample {}: fresh {:.1} s (exit {}, {} requests), converged {:.2} s (exit {}, {} requests)",
                i + 1,
                f.wall.as_secs_f64(),
                f.code,
                f.token_checked,
                a.wall.as_secs_f64(),
                a.code,
                a.token_checked
            );
            g.kill();
            fresh.push(f);
            again.push(a);
        }
        let answered = health.iter().filter(|h| h.answers).count();
        let fd_errors: usize = health.iter().map(|h| h.fd_errors).sum();
        for (name, runs) in [("fresh", &fresh), ("converged", &again)] {
            let med = |v: &dyn Fn(&ScaleRun) -> f64| stats(&runs.iter().map(v).collect::<Vec<_>>()).0;
            let spread = |v: &dyn Fn(&ScaleRun) -> f64| {
                let (m, lo, hi) = stats(&runs.iter().map(v).collect::<Vec<_>>());
                format!("{m:.2} s ({lo:.2} – {hi:.2})")
            };
            writeln!(
                t,
                "| {n} | {name} | {} | {:.2} s | {:.2} s | {:.0} | {:.0} | {:.0} | {}/{samples} | {answered}/{samples}, {fd_errors} |",
                spread(&|r| r.wall.as_secs_f64()),
                med(&|r| r.garage_cpu.as_secs_f64()),
                med(&|r| r.init_cpu.as_secs_f64()),
                med(&|r| r.token_checked as f64),
                med(&|r| r.s3_requests as f64),
                med(&|r| r.peak_sockets as f64),
                runs.iter().filter(|r| r.code == 0).count(),
            )
            .unwrap();
        }
    }
    t
}
