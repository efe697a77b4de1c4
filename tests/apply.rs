//! `garage-init apply` against real Garage processes.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const KEY_ID: &str = "GK6275696c646b69742d6b6579";
const SECRET: &str = "8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3";
const BUCKET: &str = "buildkit-cache";

/// Bucket id, key creation time, layout version: what a re-run must not change.
async fn snapshot(g: &Garage) -> (String, String, String, u64) {
    let bucket = g.get(&format!("GetBucketInfo?globalAlias={BUCKET}")).await.unwrap();
    let key = g.get(&format!("GetKeyInfo?id={KEY_ID}")).await.unwrap();
    let layout = g.get("GetClusterLayout").await.unwrap();
    (
        bucket["id"].as_str().unwrap().to_string(),
        bucket["created"].as_str().unwrap().to_string(),
        key["created"].as_str().unwrap().to_string(),
        layout["version"].as_u64().unwrap(),
    )
}

async fn assert_one_bucket_and_one_key(g: &Garage) {
    let buckets = g.get("ListBuckets").await.unwrap();
    assert_eq!(buckets.as_array().unwrap().len(), 1, "buckets: {buckets}");
    let keys = g.get("ListKeys").await.unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1, "keys: {keys}");
}

#[tokio::test]
async fn fresh_node_converges_and_the_key_can_write() {
    let g = Garage::started().await;
    let run = garage_init(&g.init_env(), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    for resource in ["layout", "key", "bucket", "grant"] {
        assert_eq!(run.outcome(resource).as_deref(), Some("created"), "{resource}: {run:?}");
    }
    assert_eq!(run.outcome("s3 check").as_deref(), Some("passed"), "{run:?}");
    assert!(run.stdout.lines().last().unwrap().starts_with("garage-init: converged in"), "{run:?}");

    let layout = g.get("GetClusterLayout").await.unwrap();
    assert_eq!(layout["version"], 1);
    assert_eq!(layout["roles"][0]["zone"], "dc1");
    assert!(layout["roles"][0]["capacity"].as_u64().unwrap() >= 1024);

    let bucket = g.get(&format!("GetBucketInfo?globalAlias={BUCKET}")).await.unwrap();
    let grant = bucket["keys"].as_array().unwrap().iter().find(|k| k["accessKeyId"] == KEY_ID).unwrap();
    assert_eq!(grant["permissions"], json!({"read": true, "write": true, "owner": true}));
    let key = g.get(&format!("GetKeyInfo?id={KEY_ID}")).await.unwrap();
    assert_eq!(key["name"], "buildkit-key");

    // The test's own signed requests, not garage-init's.
    S3::new(&g.s3_url(), BUCKET, KEY_ID, SECRET).round_trip("from-the-test", b"cache blob").await.unwrap();
    // garage-init's probe object is gone.
    assert_eq!(bucket["objects"], 0, "{bucket}");
}

#[tokio::test]
async fn second_run_changes_nothing() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    let before = snapshot(&g).await;
    let counts_before = g.admin_request_counts().await;

    let run = garage_init(&g.init_env(), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    for resource in ["layout", "key", "bucket", "grant"] {
        assert_eq!(run.outcome(resource).as_deref(), Some("unchanged"), "{resource}: {run:?}");
    }
    assert!(run.stdout.contains("nothing changed"), "{run:?}");
    assert!(run.stdout.contains(" 0 changes)"), "{run:?}");

    assert_eq!(snapshot(&g).await, before, "bucket id, creation times or layout version changed");
    let counts_after = g.admin_request_counts().await;
    // The first run's mutations are visible, so the comparison below can fail.
    for endpoint in ["UpdateClusterLayout", "ApplyClusterLayout", "ImportKey", "CreateBucket", "AllowBucketKey"] {
        assert_eq!(counts_before.get(endpoint), Some(&1), "{endpoint} in {counts_before:?}");
    }
    for endpoint in MUTATING_ENDPOINTS {
        assert_eq!(
            counts_after.get(*endpoint),
            counts_before.get(*endpoint),
            "the second run called {endpoint}; counts before {counts_before:?}, after {counts_after:?}"
        );
    }
    assert!(counts_after.get("GetClusterStatus") > counts_before.get("GetClusterStatus"));
}

#[tokio::test]
async fn waits_for_a_garage_started_later() {
    let mut g = Garage::new();
    let env = g.init_env();
    let init = tokio::spawn(async move { garage_init(&env, &[]).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    g.start();
    let run = init.await.unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome("bucket").as_deref(), Some("created"));
    assert!(run.elapsed > Duration::from_millis(1500));
}

#[tokio::test]
async fn layout_left_staged_by_an_interrupted_run_is_applied() {
    let g = Garage::started().await;
    let id = g.node_id().await;
    let staged = g
        .post(
            "UpdateClusterLayout",
            json!({"roles": [{"id": id, "zone": "staged-zone", "capacity": 2_000_000_000u64, "tags": ["kept"]}]}),
        )
        .await
        .unwrap();
    assert_eq!(staged["version"], 0);
    assert_eq!(staged["stagedRoleChanges"].as_array().unwrap().len(), 1);

    let run = garage_init(&g.init_env(), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome("layout").as_deref(), Some("created"), "{run:?}");
    assert!(run.stdout.contains("adopted"), "{run:?}");

    let layout = g.get("GetClusterLayout").await.unwrap();
    assert_eq!(layout["version"], 1);
    assert!(layout["stagedRoleChanges"].as_array().unwrap().is_empty());
    // The staged role, not garage-init's default, is what got applied.
    assert_eq!(layout["roles"][0]["zone"], "staged-zone");
    assert_eq!(layout["roles"][0]["capacity"], 2_000_000_000u64);
    assert_eq!(layout["roles"][0]["tags"], json!(["kept"]));
}

#[tokio::test]
async fn existing_role_is_left_as_it_is() {
    let g = Garage::started().await;
    let id = g.node_id().await;
    g.post("UpdateClusterLayout", json!({"roles": [{"id": id, "zone": "mine", "capacity": 5_000_000u64, "tags": []}]}))
        .await
        .unwrap();
    g.post("ApplyClusterLayout", json!({"version": 1})).await.unwrap();

    let run = garage_init(&with(&g.init_env(), "GARAGE_INIT_ZONE", "other"), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome("layout").as_deref(), Some("unchanged"), "{run:?}");
    let layout = g.get("GetClusterLayout").await.unwrap();
    assert_eq!((layout["version"].as_u64(), layout["roles"][0]["zone"].as_str()), (Some(1), Some("mine")));
}

#[tokio::test]
async fn garage_restarted_in_the_middle_of_a_run_still_converges() {
    // Kill Garage at several moments of the run, restart it 300 ms later.
    for kill_after_ms in [30u64, 120, 250] {
        let mut g = Garage::new();
        g.start();
        let env = g.init_env();
        let init = tokio::spawn(async move { garage_init(&env, &[]).await });
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        g.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        g.start();
        let run = init.await.unwrap();
        assert_eq!(run.code, 0, "killed after {kill_after_ms} ms: {run:?}\ngarage log:\n{}", g.log());
        g.wait_for_admin().await;
        assert_one_bucket_and_one_key(&g).await;
        let layout = g.get("GetClusterLayout").await.unwrap();
        assert_eq!(layout["roles"].as_array().unwrap().len(), 1);
        assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    }
}

#[tokio::test]
async fn two_runs_at_once_make_one_bucket_and_one_key() {
    let g = Garage::started().await;
    let env = g.init_env();
    let (a, b) = tokio::join!(garage_init(&env, &[]), garage_init(&env, &[]));
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(b.code, 0, "{b:?}");
    assert_one_bucket_and_one_key(&g).await;
    let layout = g.get("GetClusterLayout").await.unwrap();
    assert_eq!(layout["roles"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_admin_token_fails_fast_with_a_hint() {
    let g = Garage::started().await;
    let run = garage_init(&with(&g.init_env(), "GARAGE_INIT_ADMIN_TOKEN", "not-the-token"), &[]).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.elapsed < Duration::from_secs(2), "{run:?}");
    assert!(
        run.stderr.contains(&format!("Error: Garage's admin API at {} rejected the admin token", g.admin_url())),
        "{run:?}"
    );
    assert!(run.stderr.contains("admin_token"), "{run:?}");
    assert!(!run.all_output().contains(&g.token));
}

#[tokio::test]
async fn garage_that_never_starts_hits_the_deadline() {
    let g = Garage::new();
    let env = with(&g.init_env(), "GARAGE_INIT_DEADLINE", "2s");
    let run = garage_init(&env, &[]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.elapsed >= Duration::from_secs(2) && run.elapsed < Duration::from_secs(4), "{run:?}");
    assert!(run.stderr.contains("gave up after 2s"), "{run:?}");
    assert!(run.stderr.contains(&g.admin_url()), "{run:?}");
    assert!(run.stderr.contains("Connection refused"), "{run:?}");
}

#[tokio::test]
async fn key_with_another_secret_is_a_conflict_and_left_alone() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    let other_secret = random_hex(32);
    let run = garage_init(&with(&g.init_env(), "GARAGE_INIT_SECRET_ACCESS_KEY", &other_secret), &[]).await;
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains(&format!("access key {KEY_ID} exists in Garage with a different secret")), "{run:?}");
    assert!(!run.all_output().contains(&other_secret) && !run.all_output().contains(SECRET));
    let key = g.get(&format!("GetKeyInfo?id={KEY_ID}&showSecretKey=true")).await.unwrap();
    assert_eq!(key["secretAccessKey"], SECRET, "Garage's secret was changed");
}

#[tokio::test]
async fn deleted_key_id_is_a_conflict_with_a_way_out() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    g.post(&format!("DeleteKey?id={KEY_ID}"), json!({})).await.unwrap();
    let run = garage_init(&g.init_env(), &[]).await;
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("was deleted from Garage"), "{run:?}");
    assert!(run.stderr.contains("--access-key-id"), "{run:?}");
}

/// A TCP listener that counts connections: proof that nothing was sent.
async fn connection_counter() -> (String, tokio::task::JoinHandle<usize>, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(async move {
        let mut n = 0;
        loop {
            tokio::select! {
                accepted = listener.accept() => { if accepted.is_ok() { n += 1; } }
                _ = &mut stopped => return n,
            }
        }
    });
    (url, handle, stop)
}

#[tokio::test]
async fn invalid_input_fails_before_any_network_call() {
    let (url, counter, stop) = connection_counter().await;
    let base = vec![
        ("GARAGE_INIT_ADMIN_URL".to_string(), url.clone()),
        ("GARAGE_INIT_S3_URL".to_string(), url.clone()),
        ("GARAGE_INIT_ADMIN_TOKEN".to_string(), "tok".to_string()),
    ];
    let cases: &[(&str, &str, &str)] = &[
        ("GARAGE_INIT_ACCESS_KEY_ID", "GK123", "--access-key-id (GARAGE_INIT_ACCESS_KEY_ID)"),
        ("GARAGE_INIT_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", "must start with GK"),
        ("GARAGE_INIT_SECRET_ACCESS_KEY", "not-hex-and-short", "--secret-access-key (GARAGE_INIT_SECRET_ACCESS_KEY)"),
        ("GARAGE_INIT_BUCKET", "Bad_Bucket", "--bucket (GARAGE_INIT_BUCKET)"),
        ("GARAGE_INIT_BUCKET", "10.0.0.1", "IP address"),
        ("GARAGE_INIT_ADMIN_URL", "https://garage:3903", "https"),
        ("GARAGE_INIT_ADMIN_TOKEN", "two words", "whitespace"),
        ("GARAGE_INIT_ADMIN_TOKEN_FILE", "/nonexistent/token", "cannot read /nonexistent/token"),
        ("GARAGE_INIT_CAPACITY", "12", "1024"),
        ("GARAGE_INIT_DEADLINE", "soon", "not a duration"),
        ("GARAGE_INIT_REQUESTS_PER_NODE", "0", "`0` is not between 1 and 64"),
        ("GARAGE_INIT_REQUESTS_PER_NODE", "many", "--requests-per-node"),
    ];
    for (var, value, expected) in cases {
        let mut env = with(&base, var, value);
        if *var == "GARAGE_INIT_ADMIN_TOKEN_FILE" {
            env.retain(|(k, _)| k != "GARAGE_INIT_ADMIN_TOKEN");
        }
        let run = garage_init(&env, &[]).await;
        assert_eq!(run.code, 2, "{var}={value}: {run:?}");
        assert!(run.stderr.contains(expected), "{var}={value}: expected `{expected}` in {run:?}");
        assert!(!run.stderr.contains("not-hex-and-short"), "the secret was echoed: {run:?}");
    }
    let empty = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(empty.path(), "\n").unwrap();
    let env: Vec<_> = with(&base, "GARAGE_INIT_ADMIN_TOKEN_FILE", empty.path().to_str().unwrap())
        .into_iter()
        .filter(|(k, _)| k != "GARAGE_INIT_ADMIN_TOKEN")
        .collect();
    let run = garage_init(&env, &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is empty"), "{run:?}");

    stop.send(()).unwrap();
    assert_eq!(counter.await.unwrap(), 0, "garage-init connected despite invalid input");
}

#[tokio::test]
async fn secrets_from_files_are_trimmed() {
    let g = Garage::started().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("  {}\n", g.token)).unwrap();
    let secret = random_hex(32);
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let key_id = format!("GK{}", random_hex(12));
    let env: Vec<_> = g
        .init_env()
        .into_iter()
        .filter(|(k, _)| k != "GARAGE_INIT_ADMIN_TOKEN")
        .chain([
            ("GARAGE_INIT_ADMIN_TOKEN_FILE".to_string(), token_file.display().to_string()),
            ("GARAGE_INIT_SECRET_ACCESS_KEY_FILE".to_string(), secret_file.display().to_string()),
            ("GARAGE_INIT_ACCESS_KEY_ID".to_string(), key_id.clone()),
        ])
        .collect();
    let run = garage_init(&env, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    S3::new(&g.s3_url(), BUCKET, &key_id, &secret).round_trip("x", b"y").await.unwrap();
}

#[tokio::test]
async fn trace_logs_never_show_the_token_or_the_secret() {
    let g = Garage::started().await;
    let secret = random_hex(32);
    let key_id = format!("GK{}", random_hex(12));
    let env = with(
        &with(&with(&g.init_env(), "RUST_LOG", "trace"), "GARAGE_INIT_SECRET_ACCESS_KEY", &secret),
        "GARAGE_INIT_ACCESS_KEY_ID",
        &key_id,
    );
    for args in [&[][..], &["--format", "json"][..]] {
        let run = garage_init(&env, args).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.all_output().len() > 2000, "trace output is suspiciously short: {run:?}");
        assert!(!run.all_output().contains(&g.token), "admin token in output ({args:?})");
        assert!(!run.all_output().contains(&secret), "secret key in output ({args:?})");
    }
    // A conflict run prints errors too: still nothing.
    let other = random_hex(32);
    let run = garage_init(&with(&env, "GARAGE_INIT_SECRET_ACCESS_KEY", &other), &[]).await;
    assert_eq!(run.code, 5);
    for s in [&g.token, &secret, &other] {
        assert!(!run.all_output().contains(s.as_str()));
    }
}

#[tokio::test]
async fn json_log_format_gives_one_object_per_line() {
    let g = Garage::started().await;
    let run = garage_init(&g.init_env(), &["--format", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let events: Vec<serde_json::Value> =
        run.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let outcomes: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["resource"].is_string())
        .map(|e| (e["resource"].as_str().unwrap().into(), e["outcome"].as_str().unwrap().into()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("layout", "created"),
        ("key", "created"),
        ("bucket", "created"),
        ("grant", "created"),
        ("s3 check", "passed"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(outcomes, expected);
    assert!(events.last().unwrap()["message"] == "converged", "{run:?}");
    // Report lines, and the closing one, carry the JSON format's version.
    for e in events.iter().filter(|e| e["resource"].is_string() || e["message"] == "converged") {
        assert_eq!(e["format_version"], 1, "{e}");
    }
}

#[tokio::test]
async fn quiet_prints_the_closing_line_and_verbose_each_request() {
    let g = Garage::started().await;
    let fresh = garage_init(&g.init_env(), &["apply", "-q"]).await;
    assert_eq!(fresh.code, 0, "{fresh:?}");
    let lines: Vec<&str> = fresh.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{fresh:?}");
    assert!(lines[0].starts_with("garage-init: converged in ") && lines[0].contains("4 created"), "{fresh:?}");
    assert!(fresh.stderr.is_empty(), "{fresh:?}");
    let verbose = garage_init(&g.init_env(), &["apply", "-v"]).await;
    assert_eq!(verbose.code, 0, "{verbose:?}");
    assert_eq!(verbose.outcome("bucket").as_deref(), Some("unchanged"), "{verbose:?}");
    assert!(verbose.stderr.contains("DEBUG"), "-v shows garage-init's debug events: {verbose:?}");
    assert!(!verbose.all_output().contains(&g.token), "{verbose:?}");
}

#[tokio::test]
async fn apply_subcommand_is_the_default() {
    let g = Garage::started().await;
    let run = garage_init(&g.init_env(), &["apply"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(garage_init(&g.init_env(), &[]).await.outcome("bucket").as_deref(), Some("unchanged"));
}

#[tokio::test]
async fn wrong_s3_region_fails_the_check_with_the_verification_code() {
    let g = Garage::started().await;
    let run = garage_init(&with(&g.init_env(), "GARAGE_INIT_S3_REGION", "us-east-1"), &[]).await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("S3 check against"), "{run:?}");
    assert!(run.stderr.contains("--s3-region"), "{run:?}");
}

/// Token-checked admin requests (every one but `/health` and `/metrics`), from Garage's own counters.
async fn token_checked(g: &Garage) -> u64 {
    g.admin_request_counts()
        .await
        .iter()
        .filter(|(e, _)| !e.starts_with("/health") && !e.starts_with("/metrics"))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test]
async fn a_fresh_run_costs_eight_token_checks_and_a_converged_one_two() {
    // Each token-checked request costs Garage an argon2 hash: tens of milliseconds. The buckets a
    // create must be told apart from come from the observation that planned it (a fresh node has
    // none), not from another request.
    let g = Garage::started().await;
    let before = token_checked(&g).await;
    let fresh = garage_init(&g.init_env(), &[]).await;
    assert_eq!(fresh.code, 0, "{fresh:?}");
    let after_fresh = token_checked(&g).await;
    let again = garage_init(&g.init_env(), &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    let after_again = token_checked(&g).await;
    assert!(
        after_fresh - before <= 8,
        "fresh run: {} token-checked requests; {:?}",
        after_fresh - before,
        g.admin_request_counts().await
    );
    assert!(
        after_again - after_fresh <= 2,
        "converged run: {} token-checked requests; {:?}",
        after_again - after_fresh,
        g.admin_request_counts().await
    );
    // The counters can fail this test: the fresh run made its changes through them.
    assert!(after_fresh - before >= 5, "{:?}", g.admin_request_counts().await);
}

#[tokio::test]
async fn a_cluster_without_quorum_names_every_unfinished_step_at_the_deadline() {
    // Half the partitions on a node that never existed: Garage stays `unavailable`.
    let g = Garage::started().await;
    let id = g.node_id().await;
    let ghost = "ab".repeat(32);
    let roles = json!({"roles": [
        {"id": id, "zone": "dc1", "capacity": 1_000_000_000u64, "tags": []},
        {"id": ghost, "zone": "dc1", "capacity": 1_000_000_000u64, "tags": []}]});
    g.post("UpdateClusterLayout", roles).await.unwrap();
    g.post("ApplyClusterLayout", json!({"version": 1})).await.unwrap();

    let run = garage_init(&with(&g.init_env(), "GARAGE_INIT_DEADLINE", "3s"), &[]).await;
    assert_eq!(run.code, 3, "{run:?}");
    let error =
        run.stderr.lines().find(|l| l.starts_with("Error: gave up after 3s")).unwrap_or_else(|| panic!("{run:?}"));
    assert!(error.contains("steps unfinished"), "{run:?}");
    assert!(error.contains(&format!("cluster readiness at {} (last error:", g.admin_url())), "{run:?}");
    for step in [format!("key {KEY_ID} (buildkit-key)"), format!("bucket {BUCKET}"), "grant read, write, owner".into()]
    {
        assert!(error.contains(&step), "`{step}` missing: {run:?}");
    }
}

#[tokio::test]
async fn a_key_name_already_taken_is_reported_and_both_keys_are_kept() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    // Another key, made by someone else, carries the name garage-init gives its own.
    let other = g.post("CreateKey", json!({"name": "shared-name"})).await.unwrap();
    let other_id = other["accessKeyId"].as_str().unwrap().to_string();
    let key_id = format!("GK{}", random_hex(12));
    let env = with(
        &with(&with(&g.init_env(), "GARAGE_INIT_ACCESS_KEY_ID", &key_id), "GARAGE_INIT_KEY_NAME", "shared-name"),
        "GARAGE_INIT_SECRET_ACCESS_KEY",
        &random_hex(32),
    );
    // Before the import, the import itself, and plan afterwards: each names both keys.
    for (args, code) in [(&["plan"][..], 10), (&[][..], 0), (&["plan"][..], 0)] {
        let run = garage_init(&env, args).await;
        assert_eq!(run.code, code, "{args:?}: {run:?}");
        let warning =
            run.stdout.lines().find(|l| l.starts_with("key       warning")).unwrap_or_else(|| panic!("{run:?}"));
        assert!(warning.contains(&other_id) && warning.contains(&key_id), "{run:?}");
    }
    // check --format json, given the admin token, lists the other key (no registry here: exit 3).
    let check_env =
        with(&with(&env, "GARAGE_INIT_S3_ENDPOINT", &g.s3_url()), "GARAGE_INIT_ADMIN_ENDPOINT", &g.admin_url());
    let run = garage_init(&check_env, &["check", "--format", "json"]).await;
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    assert_eq!(report["services"]["garage"]["state"], "ready", "{report}");
    assert_eq!(report["services"]["garage"]["key_name_shared_with"], json!([other_id]), "{report}");
    let keys = g.get("ListKeys").await.unwrap();
    let named: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "shared-name")
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(named.len(), 2, "{keys}");
}
