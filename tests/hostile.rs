//! Hostile and broken peers: a wrong port, a server that never stops
//! sending, a pipe instead of a file (or swapped in for one), a closed
//! stdout, a full disk under Garage, a Garage that stops answering. Each
//! gets a clear error, bounded memory and the documented exit code.
//!
//! Real components where they can show it (Garage's S3 port given as the
//! admin URL, a real registry as a foreign HTTP server, a real Garage on a
//! full tmpfs, a real Garage stopped with SIGSTOP); small scripted servers,
//! named as such, for answers no real server gives: an endless body, a body
//! that announces gigabytes, a redirect.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A scripted server (not a real one): answers every request on its port
/// with `head`, then with `chunk` over and over until the client goes away.
/// Returns its URL.
fn endless_server(head: &'static str, chunk: &'static [u8]) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                while stream.write_all(chunk).is_ok() {}
            });
        }
    });
    url
}

/// 64 KiB of JSON whitespace as one HTTP chunk: an endless, valid-looking JSON body.
fn chunk() -> &'static [u8] {
    let mut c = b"10000\r\n".to_vec();
    c.extend(std::iter::repeat_n(b' ', 0x10000));
    c.extend_from_slice(b"\r\n");
    Box::leak(c.into_boxed_slice())
}

/// Runs garage-init to its end and returns (exit code, stderr, elapsed, peak RSS in KiB) from wait4.
#[allow(clippy::zombie_processes)] // reaped by wait4, which clippy does not see
fn run_measured(env: &[(String, String)], args: &[&str]) -> (i32, String, Duration, i64) {
    let bin = env!("CARGO_BIN_EXE_garage-init");
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut stderr = String::new();
        pipe.read_to_string(&mut stderr).unwrap();
        stderr
    });
    // The process's own high-water mark (VmHWM), read while it runs. Not
    // wait4's ru_maxrss: that also carries the RSS of the test process the
    // child was spawned from (Linux keeps the larger across exec), which
    // grows with whatever other tests run beside it.
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let code = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    (code, reader.join().unwrap(), started.elapsed(), peak_kib)
}

fn admin_env(admin_url: &str, s3_url: &str) -> Vec<(String, String)> {
    vec![
        ("GARAGE_INIT_ADMIN_URL".into(), admin_url.into()),
        ("GARAGE_INIT_S3_URL".into(), s3_url.into()),
        ("GARAGE_INIT_ADMIN_TOKEN".into(), "a-token".into()),
        ("GARAGE_INIT_DEADLINE".into(), "20s".into()),
    ]
}

/// Peak RSS a hostile body may add to that of a run that reads no body at
/// all: the 4 MiB cap, and room for the HTTP stack's buffers.
const MAX_EXTRA_RSS_KIB: i64 = 16 * 1024;

/// The peak RSS of a run whose admin and S3 URLs refuse every connection:
/// what the binary needs before any answer (a debug build maps much more
/// than the release build's ~5 MiB).
fn baseline_rss_kib() -> i64 {
    static BASELINE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASELINE.get_or_init(|| {
        let closed = format!("http://127.0.0.1:{}", free_port());
        let env = with(&admin_env(&closed, &closed), "GARAGE_INIT_DEADLINE", "300ms");
        let (code, stderr, _, rss) = run_measured(&env, &[]);
        assert_eq!(code, 3, "{stderr}");
        rss
    })
}

/// Asserts that a run's peak RSS stayed within [`MAX_EXTRA_RSS_KIB`] of the baseline.
fn assert_bounded_rss(rss: i64) {
    let base = baseline_rss_kib();
    assert!(rss - base < MAX_EXTRA_RSS_KIB, "peak RSS {rss} KiB, {} KiB over a run that read nothing", rss - base);
}

#[test]
fn an_admin_answer_that_never_ends_is_cut_at_the_cap() {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let url = endless_server(head, chunk());
    let (code, stderr, elapsed, rss) = run_measured(&admin_env(&url, &url), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("GetClusterStatus at {url}: the answer is larger than 4 MiB")), "{stderr}");
    assert!(stderr.contains("--admin-url"), "the hint names the setting: {stderr}");
    assert_bounded_rss(rss);
    eprintln!("endless admin answer: exit {code} after {elapsed:?}, peak RSS {} KiB", rss);
}

#[test]
fn an_admin_answer_announcing_gigabytes_is_refused_before_reading() {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2147483648\r\n\r\n";
    let url = endless_server(head, b"                                ");
    let (code, stderr, _, rss) = run_measured(&admin_env(&url, &url), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("larger than 4 MiB"), "{stderr}");
    assert_bounded_rss(rss);
}

#[tokio::test]
async fn an_s3_answer_that_never_ends_fails_the_check_at_its_cap() {
    let g = Garage::started().await;
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    let s3 = endless_server(head, chunk());
    let env = with(&g.init_env(), "GARAGE_INIT_S3_URL", &s3);
    let (code, stderr, _, rss) = tokio::task::spawn_blocking(move || run_measured(&env, &[])).await.unwrap();
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains(&format!("S3 check against {s3} failed")) && stderr.contains("more than 64 KiB"),
        "{stderr}"
    );
    assert_bounded_rss(rss);
}

#[tokio::test]
async fn a_health_answer_that_never_ends_is_a_failed_admin_probe_in_check() {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
    let admin = endless_server(head, chunk());
    let env = vec![
        ("GARAGE_INIT_REGISTRY".into(), "127.0.0.1:1".into()),
        ("GARAGE_INIT_S3_ENDPOINT".into(), "http://127.0.0.1:1".into()),
        ("GARAGE_INIT_ADMIN_ENDPOINT".into(), admin),
    ];
    let run = garage_init(&env, &["check", "--format", "json"]).await;
    assert_eq!(run.code, 3, "registry and S3 are unreachable: {run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    let probe = &report["services"]["admin"];
    assert_eq!(probe["state"], "failed", "never ready on an answer past the cap: {report}");
    assert!(probe["detail"].as_str().unwrap().contains("with more than 64 KiB"), "{report}");
}

#[tokio::test]
async fn the_admin_url_at_garages_s3_port_says_where_the_admin_api_is() {
    let g = Garage::started().await;
    let run = garage_init(&with(&g.init_env(), "GARAGE_INIT_ADMIN_URL", &g.s3_url()), &[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&format!("GetClusterStatus at {}: this is an S3 API", g.s3_url())), "{run:?}");
    assert!(run.stderr.contains("port 3903 by default"), "{run:?}");
    assert!(run.stderr.contains("--admin-url (GARAGE_INIT_ADMIN_URL)"), "{run:?}");
    assert!(!run.all_output().contains(&g.token));
}

#[tokio::test]
async fn the_admin_url_at_another_http_server_says_it_is_not_garage() {
    let registry = registry::Registry::started().await;
    let url = format!("http://{}", registry.addr());
    let run = garage_init(&admin_env(&url, &url), &[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&format!("GetClusterStatus at {url}: answered 404")), "{run:?}");
    assert!(run.stderr.contains("this is not Garage's admin API"), "{run:?}");
}

fn run_with_closed_pipes(env: &[(String, String)], stdout: bool, stderr: bool) -> i32 {
    let status = Command::new(env!("CARGO_BIN_EXE_garage-init"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(if stdout { closed_pipe() } else { Stdio::null() })
        .stderr(if stderr { closed_pipe() } else { Stdio::null() })
        .status()
        .unwrap();
    status.code().unwrap_or(-1)
}

#[tokio::test]
async fn a_closed_stdout_or_stderr_keeps_the_exit_code() {
    let g = Garage::started().await;
    let env = with(&g.init_env(), "RUST_LOG", "debug");
    for (stdout, stderr) in [(true, false), (false, true), (true, true)] {
        let env = env.clone();
        let code = tokio::task::spawn_blocking(move || run_with_closed_pipes(&env, stdout, stderr)).await.unwrap();
        assert_eq!(code, 0, "apply with stdout closed: {stdout}, stderr closed: {stderr}");
    }
    // A failing run writes its error to a closed stderr: still its own code, not an abort.
    let nowhere = Garage::new();
    let env = with(&nowhere.init_env(), "GARAGE_INIT_DEADLINE", "1s");
    let code = tokio::task::spawn_blocking(move || run_with_closed_pipes(&env, true, true)).await.unwrap();
    assert_eq!(code, 3);
    // `env` writes only to stdout.
    let code = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_garage-init"))
            .args(["env", "--format", "json"])
            .env_clear()
            .stdout(closed_pipe())
            .status()
            .unwrap()
            .code()
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0));
}

#[test]
fn a_spec_that_is_not_a_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("spec.fifo");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let env = admin_env("http://127.0.0.1:9", "http://127.0.0.1:9");
    for (spec, what) in
        [(fifo.to_str().unwrap(), "a named pipe (FIFO)"), ("/dev/zero", "a device"), ("/", "a directory")]
    {
        let env = with(&env, "GARAGE_INIT_SPEC", spec);
        let (code, stderr, elapsed, _) = run_measured(&env, &["plan"]);
        assert_eq!(code, 2, "{spec}: {stderr}");
        assert!(stderr.contains(&format!("invalid spec {spec}: it is {what}, not a regular file")), "{stderr}");
        assert!(elapsed < Duration::from_secs(5), "{spec}: {elapsed:?}");
    }
}

#[test]
fn absurd_deadlines_are_refused() {
    let env = admin_env("http://127.0.0.1:9", "http://127.0.0.1:9");
    for deadline in ["18446744073709551615h", "25h", "99999999999999999999999s"] {
        let (code, stderr, _, _) = run_measured(&with(&env, "GARAGE_INIT_DEADLINE", deadline), &[]);
        assert_eq!(code, 2, "{deadline}: {stderr}");
        assert!(stderr.contains("--deadline"), "{deadline}: {stderr}");
    }
}

#[test]
fn exit_follows_the_deadline_and_sigterm_at_once() {
    // A name that does not resolve: the run waits out its deadline, then exits.
    let env = with(
        &admin_env("http://nonexistent.invalid:3903", "http://nonexistent.invalid:3900"),
        "GARAGE_INIT_DEADLINE",
        "2s",
    );
    let (code, stderr, elapsed, _) = run_measured(&env, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("gave up after 2s"), "{stderr}");
    assert!(elapsed < Duration::from_millis(3500), "exit {elapsed:?} after start, for a 2 s deadline");

    // SIGTERM in the middle of a wait: exit 130, promptly.
    let mut child = Command::new(env!("CARGO_BIN_EXE_garage-init"))
        .env_clear()
        .envs(with(&env, "GARAGE_INIT_DEADLINE", "60s").iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(signalled.elapsed() < Duration::from_millis(1500), "exit {:?} after SIGTERM", signalled.elapsed());
}

#[test]
fn check_waiting_for_services_ends_on_sigterm_with_the_interrupted_code() {
    let env = [
        ("GARAGE_INIT_REGISTRY", "127.0.0.1:1"),
        ("GARAGE_INIT_S3_ENDPOINT", "http://127.0.0.1:1"),
        ("GARAGE_INIT_ADMIN_ENDPOINT", "http://127.0.0.1:1"),
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_garage-init"))
        .args(["check", "--wait", "60s"])
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
}

/// A FIFO at `path`, which no one ever writes to: a blocking open of it waits forever.
fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// How a run started by [`run_bounded`] ended.
#[derive(Debug)]
struct Ended {
    /// `None`: killed by a signal (not ended by garage-init itself).
    code: Option<i32>,
    stderr: String,
    /// From the start, or from the SIGTERM when one was sent.
    took: Duration,
}

/// Runs garage-init; with `sigterm_after`, sends it SIGTERM then. A run that
/// has not ended `bound` after its start (or after the signal) is killed and
/// fails the test: that is a hang.
fn run_bounded(env: &[(String, String)], args: &[&str], sigterm_after: Option<Duration>, bound: Duration) -> Ended {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_garage-init"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let mut from = Instant::now();
    let mut signal_at = sigterm_after.map(|d| from + d);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signal_at.is_some_and(|at| Instant::now() >= at) {
            signal_at = None;
            from = Instant::now();
            // SAFETY: signals our own child, which has not been reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        if from.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("garage-init {args:?} did not end within {bound:?}: {}", reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = from.elapsed();
    assert_eq!(status.signal(), None, "garage-init {args:?} was killed by a signal: {status:?}");
    Ended { code: status.code(), stderr: reader.join().unwrap(), took }
}

/// Swaps each path between a regular file and a FIFO (hard links to its
/// `.regular` and `.fifo` twins, renamed over it), as fast as it can, until
/// dropped: a reader that looks at the path, then opens it, finds the other
/// kind of file now and then.
struct Swapper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Swapper {
    fn start(paths: Vec<std::path::PathBuf>) -> Self {
        use std::sync::atomic::Ordering;
        for path in &paths {
            mkfifo(&path.with_extension("fifo"));
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut swaps = 0;
            while !stopping.load(Ordering::Relaxed) {
                let twin = if swaps % 2 == 0 { "fifo" } else { "regular" };
                for path in &paths {
                    let next = path.with_extension("next");
                    let _ = std::fs::remove_file(&next);
                    std::fs::hard_link(path.with_extension(twin), &next).unwrap();
                    // Atomic: a reader finds the old node or the new one at the path, never none.
                    std::fs::rename(&next, path).unwrap();
                }
                swaps += 1;
            }
            swaps
        });
        Self { stop, thread: Some(thread) }
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let swaps = self.thread.take().unwrap().join().unwrap();
        eprintln!("swapped {swaps} times");
    }
}

#[tokio::test]
async fn settings_files_swapped_for_a_fifo_never_hold_up_a_run_and_sigterm_ends_it_with_130() {
    let g = Garage::started().await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    const KEY: &str = "GK0123456789abcdef01234567";
    let spec_naming = |secret_file: &str| {
        format!(
            "keys:\n  - id: {KEY}\n    secret_file: {secret_file}\nbuckets:\n  - name: swapped\n\
             grants:\n  - key: {KEY}\n    bucket: swapped\n    permissions: [read, write]\n"
        )
    };
    let key_secret = format!("{}1\n", "0".repeat(63));
    // Each file twice: a stable copy, and a twin of the path that the swapper flips.
    for (name, text) in [
        ("token", format!("{}\n", g.token)),
        ("secret", key_secret),
        // The swapped spec names the swapped secret file: two swapped reads in one run.
        ("spec", spec_naming("secret")),
    ] {
        std::fs::write(file(&format!("{name}.regular")), &text).unwrap();
        std::fs::write(file(&format!("{name}.stable")), &text).unwrap();
        std::fs::copy(file(&format!("{name}.regular")), file(name)).unwrap();
    }
    std::fs::write(file("spec.stable"), spec_naming("secret.stable")).unwrap();
    let settings = [
        ("GARAGE_INIT_ADMIN_TOKEN_FILE", "token", "--admin-token-file (GARAGE_INIT_ADMIN_TOKEN_FILE)"),
        (
            "GARAGE_INIT_SECRET_ACCESS_KEY_FILE",
            "secret",
            "--secret-access-key-file (GARAGE_INIT_SECRET_ACCESS_KEY_FILE)",
        ),
        ("GARAGE_INIT_SPEC", "spec", "spec "),
    ];
    // One setting's file swapped, the others stable.
    let env_swapping = |swapped: usize| {
        let mut env: Vec<(String, String)> =
            g.init_env().into_iter().filter(|(k, _)| k != "GARAGE_INIT_ADMIN_TOKEN").collect();
        for (i, (var, name, _)) in settings.iter().enumerate() {
            let path = if i == swapped { file(name) } else { file(&format!("{name}.stable")) };
            env.push((var.to_string(), path.display().to_string()));
        }
        env
    };
    let plans: Vec<_> = (0..3).map(env_swapping).collect();
    // Against a dead admin port, a run that has read its files can only wait: it ends by SIGTERM.
    let mut waiting = with(&env_swapping(0), "GARAGE_INIT_ADMIN_URL", "http://127.0.0.1:1");
    waiting = with(&waiting, "GARAGE_INIT_DEADLINE", "60s");

    // `env` reads only the secret file, and no more: many quick runs.
    let env_run = env_swapping(1);

    let swapper = Swapper::start(vec![file("token"), file("secret"), file("spec")]);
    let outcomes = tokio::task::spawn_blocking(move || {
        let mut outcomes = Vec::new();
        for _ in 0..300 {
            let ended = run_bounded(&env_run, &["env", "--format", "json"], None, Duration::from_secs(5));
            assert!(matches!(ended.code, Some(0 | 2)), "{ended:?}");
            outcomes.push((false, ended));
        }
        for i in 0..60u64 {
            // Every fourth run is signalled, at a moment that moves through 25 to 85 ms after its
            // start (earlier, the process may not have reached its first instruction yet).
            let (env, args, sigterm) = match i % 4 {
                3 => (&waiting, &["apply"][..], Some(Duration::from_millis(25 + (i * 7) % 60))),
                _ => (&plans[(i % 3) as usize], &["plan"][..], None),
            };
            outcomes.push((sigterm.is_some(), run_bounded(env, args, sigterm, Duration::from_secs(10))));
        }
        outcomes
    })
    .await
    .unwrap();
    drop(swapper);
    let (mut refused, mut planned, mut interrupted) = (0, 0, 0);
    for (signalled, ended) in &outcomes {
        match ended.code {
            Some(2) => {
                assert!(ended.stderr.contains("is a named pipe (FIFO), not a regular file"), "{ended:?}");
                assert!(settings.iter().any(|(_, _, named)| ended.stderr.contains(named)), "{ended:?}");
                refused += 1;
            }
            Some(0 | 10) if !signalled => planned += 1,
            Some(130) if *signalled => {
                assert!(ended.took < Duration::from_millis(1500), "exit {:?} after SIGTERM", ended.took);
                assert!(ended.stderr.contains("interrupted"), "{ended:?}");
                interrupted += 1;
            }
            _ => panic!("signalled: {signalled}: {ended:?}"),
        }
        assert!(!ended.stderr.contains(&g.token));
    }
    eprintln!("{refused} refused a FIFO, {planned} read the files, {interrupted} interrupted");
    assert!(
        refused > 0 && planned > 0 && interrupted > 0,
        "{refused} refused, {planned} planned, {interrupted} interrupted"
    );
}

#[tokio::test]
async fn a_url_with_a_password_is_refused_from_every_source_without_repeating_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, "cluster:\n  nodes:\n    - admin_url: http://admin:hunter2@garage-1:3903\n").unwrap();
    let base = admin_env("http://127.0.0.1:9", "http://127.0.0.1:9");
    let spec_path = spec.display().to_string();
    // Each source, with something else wrong in most of the URLs too.
    /// The environment, the arguments, and the setting the error must name.
    type Case<'a> = (Vec<(String, String)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (base.clone(), vec!["--admin-url", "https://admin:hunter2@garage:3903"], "--admin-url (GARAGE_INIT_ADMIN_URL)"),
        (
            with(&base, "GARAGE_INIT_ADMIN_URL", "admin:hunter2@gar age:3903"),
            vec![],
            "--admin-url (GARAGE_INIT_ADMIN_URL)",
        ),
        (base.clone(), vec!["--s3-url", "http://key:hunter2@garage:99999"], "--s3-url (GARAGE_INIT_S3_URL)"),
        (
            with(&base, "GARAGE_INIT_S3_URL", "ftp://key:hunter2@garage/?x#y"),
            vec!["plan"],
            "--s3-url (GARAGE_INIT_S3_URL)",
        ),
        (with(&base, "GARAGE_INIT_SPEC", &spec_path), vec!["plan"], "line 3, column 18: admin_url:"),
        (
            vec![],
            vec!["check", "--registry", "http://ci:hunter2@registry:5050/v2"],
            "--registry (GARAGE_INIT_REGISTRY)",
        ),
        (
            vec![("GARAGE_INIT_REGISTRY".into(), "ci:hunter2@localhost:5050".into())],
            vec!["env"],
            "--registry (GARAGE_INIT_REGISTRY)",
        ),
        (vec![], vec!["env", "--s3-url", "http://key:hunter2@localhost:3900"], "--s3-url (GARAGE_INIT_S3_ENDPOINT)"),
        (
            vec![("GARAGE_INIT_ADMIN_ENDPOINT".into(), "http://admin:hunter2@localhost:3903".into())],
            vec!["check"],
            "--admin-url (GARAGE_INIT_ADMIN_ENDPOINT)",
        ),
    ];
    for (env, args, setting) in cases {
        let run = garage_init(&env, &args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(setting) && run.stderr.contains("user name or password"), "{args:?}: {run:?}");
        assert!(!run.all_output().contains("hunter2"), "{args:?}: {run:?}");
    }
}

/// A scripted server (not a real one): answers every request with a 307 to `target`.
fn redirecting_server(target: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let answer = format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

#[tokio::test]
async fn an_answer_that_came_through_a_redirect_names_where_it_came_from() {
    let g = Garage::started().await;
    // Redirected to Garage's S3 port, whose XML error is the answer.
    let target = format!("{}/v2/GetClusterStatus", g.s3_url());
    let redirector = redirecting_server(target.clone());
    let run = garage_init(&with(&g.init_env(), "GARAGE_INIT_ADMIN_URL", &redirector), &[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!("GetClusterStatus at {redirector} (redirected to {target}): this is an S3 API")),
        "{run:?}"
    );
}

#[tokio::test]
async fn the_deadline_names_the_requests_a_stopped_garage_never_answered() {
    let mut g = Garage::started().await;
    let pid = g.pid().expect("running");
    // Stopped, Garage's kernel still accepts connections; nothing answers them.
    // SAFETY: signals the test's own Garage process.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
    let run = garage_init(&with(&g.init_env(), "GARAGE_INIT_DEADLINE", "2s"), &[]).await;
    // SAFETY: as above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
    g.kill();
    assert_eq!(run.code, 3, "{run:?}");
    let admin = g.admin_url();
    assert!(run.stderr.contains("gave up after 2s"), "{run:?}");
    assert!(
        run.stderr.contains(&format!("no answer yet to GetClusterStatus at {admin} (sent 2.0s earlier)")),
        "{run:?}"
    );
    assert!(run.stderr.contains(&format!("GetKeyInfo at {admin} (sent 2.0s earlier)")), "{run:?}");
}

/// A tmpfs of `size` mounted at `dir` (which is created) until dropped: a
/// disk that fills up. Mounting needs root, as the test machines run.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: std::path::PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&dir).output();
        let out = out.expect("run mount");
        assert!(out.status.success(), "mount -t tmpfs (needs root): {}", String::from_utf8_lossy(&out.stderr));
        Self(dir)
    }

    /// Fills what is left of it.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: Garage may still hold files open on it.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_garage_whose_disk_is_full_is_reported_as_such_long_before_the_deadline() {
    let mut g = Garage::new();
    let disk = Tmpfs::mount(g.metadata_dir(), "8m");
    g.start();
    g.wait_for_admin().await;
    let run = garage_init(&g.init_env(), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    disk.fill();
    // Another key and bucket: Garage's database answers its writes with errors of the full disk.
    let mut env = g.init_env();
    for (var, value) in [
        ("GARAGE_INIT_ACCESS_KEY_ID", "GK0123456789abcdef01234567"),
        ("GARAGE_INIT_SECRET_ACCESS_KEY", "0000000000000000000000000000000000000000000000000000000000000001"),
        ("GARAGE_INIT_BUCKET", "second"),
        ("GARAGE_INIT_DEADLINE", "60s"),
    ] {
        env = with(&env, var, value);
    }
    let run = garage_init(&env, &[]).await;
    eprintln!("{run:?}");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.elapsed < Duration::from_secs(20), "reported after {:?}, not at once", run.elapsed);
    assert!(run.stderr.contains("Garage's storage is failing (a full disk, or an I/O error)"), "{run:?}");
    assert!(
        ["No space left on device", "Input/output error"].iter().any(|e| run.stderr.contains(e)),
        "Garage's own words are given: {run:?}"
    );
    assert!(run.stderr.contains("Free space on the volumes of Garage's metadata_dir"), "{run:?}");
    assert!(!run.stderr.contains("Is Garage running"), "{run:?}");
    assert!(!run.stderr.contains("&quot;"), "S3's XML is decoded: {run:?}");
    assert!(g.log().contains("LMDB"), "Garage's log shows its database failing");
}

#[tokio::test]
async fn proxy_variables_do_not_change_a_run() {
    let g = Garage::started().await;
    let registry = registry::Registry::started().await;
    // A port nothing listens on: a request sent through it would fail.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut env = g.init_env();
    for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        env.push((var.into(), dead.clone()));
    }
    env.push(("NO_PROXY".into(), "nothing.invalid".into()));
    env.push(("no_proxy".into(), "nothing.invalid".into()));
    let run = garage_init(&env, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let run = garage_init(&env, &["plan"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let mut check_env: Vec<(String, String)> =
        env.iter().filter(|(k, _)| !k.starts_with("GARAGE_INIT_")).cloned().collect();
    check_env.push(("GARAGE_INIT_REGISTRY".into(), format!("127.0.0.1:{}", registry.port)));
    check_env.push(("GARAGE_INIT_S3_ENDPOINT".into(), g.s3_url()));
    check_env.push(("GARAGE_INIT_ADMIN_ENDPOINT".into(), g.admin_url()));
    let run = garage_init(&check_env, &["check"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // And the choice is documented where a user looks.
    let help = garage_init(&[], &["--help"]).await;
    assert!(help.stdout.contains("Proxy variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY"), "{help:?}");
}
