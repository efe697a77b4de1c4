//! The host-side commands `check`, `env` and `status`.
//!
//! Without Docker: against a real registry process (Debian's docker-registry)
//! and real `garage server` processes on free loopback ports, initialized by
//! running garage-init `apply` against them.
//!
//! With Docker (`e2e`, `#[ignore]`d): against compose.yaml on the real engine,
//! on the stack's fixed ports, one test at a time (`scripts/test` runs them).

mod common;

use std::time::Duration;

use common::registry::Registry;
use common::*;
use serde_json::Value;

const BUCKET: &str = "buildkit-cache";
const KEY_ID: &str = "GK6275696c646b69742d6b6579";
const SECRET: &str = "8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3";
const START_HINT: &str = "Run 'docker compose up -d' to start infrastructure services.";

/// The host-side settings that point the commands at these processes, as
/// `localhost:PORT` like the defaults. Nothing else is inherited.
fn host_env(registry: &Registry, garage: &Garage) -> Vec<(String, String)> {
    vec![
        ("GARAGE_INIT_REGISTRY".into(), registry.addr()),
        ("GARAGE_INIT_S3_ENDPOINT".into(), format!("http://localhost:{}", garage.s3_port)),
        ("GARAGE_INIT_ADMIN_ENDPOINT".into(), format!("http://localhost:{}", garage.admin_port)),
    ]
}

fn registry_block(registry: &Registry) -> String {
    format!("Error: Registry not reachable at {}\n{START_HINT}\n", registry.addr())
}

fn garage_block(garage: &Garage) -> String {
    format!("Error: Garage not reachable at localhost:{}\n{START_HINT}\n", garage.s3_port)
}

/// Initializes Garage the documented way: garage-init `apply`.
async fn apply(garage: &Garage) {
    apply_with(garage, &garage.init_env()).await;
}

async fn apply_with(garage: &Garage, env: &[(String, String)]) {
    let run = garage_init(env, &["apply"]).await;
    assert_eq!(run.code, 0, "apply failed: {run:?}\nGarage log:\n{}", garage.log());
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {run:?}"))
}

// ---- check ----

#[tokio::test]
async fn registry_down_prints_the_design_message_and_exits_3() {
    let garage = Garage::started().await;
    apply(&garage).await;
    let registry = Registry::new(); // configured, never started

    let run = garage_init(&host_env(&registry, &garage), &["check"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stderr, registry_block(&registry), "{run:?}");
    assert!(run.stdout.contains("garage    ready"), "Garage itself is fine: {run:?}");
}

#[tokio::test]
async fn garage_down_prints_the_design_message_and_exits_3() {
    let registry = Registry::started().await;
    let garage = Garage::new(); // configured, never started

    let run = garage_init(&host_env(&registry, &garage), &["check"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stderr, garage_block(&garage), "{run:?}");
    assert!(run.stdout.contains("registry  ready"), "{run:?}");
}

#[tokio::test]
async fn both_down_print_one_block_each_registry_first() {
    let registry = Registry::new();
    let garage = Garage::new();

    let run = garage_init(&host_env(&registry, &garage), &["check"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stderr, registry_block(&registry) + &garage_block(&garage), "{run:?}");
}

#[tokio::test]
async fn garage_up_but_not_initialized_exits_7_and_names_garage_init() {
    let registry = Registry::started().await;
    let garage = Garage::started().await; // no apply: no layout, key or bucket

    let run = garage_init(&host_env(&registry, &garage), &["check"]).await;
    assert_eq!(run.code, 7, "{run:?}");
    let first = format!("Error: Garage at localhost:{} is not initialized: ", garage.s3_port);
    assert!(run.stderr.starts_with(&first), "{run:?}");
    assert!(run.stderr.contains("access key GK6275696c646b69742d6b6579 does not exist"), "{run:?}");
    assert!(run.stderr.contains("no cluster layout yet"), "/health's 503 explains why: {run:?}");
    assert!(run.stderr.ends_with("Run 'docker compose run --rm garage-init' to initialize it.\n"), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 2, "one block: {run:?}");
}

#[tokio::test]
async fn bucket_missing_after_init_elsewhere_is_not_initialized_and_says_which_bucket() {
    let registry = Registry::started().await;
    let garage = Garage::started().await;
    apply(&garage).await;

    let env = with(&host_env(&registry, &garage), "GARAGE_INIT_BUCKET", "another-bucket");
    let run = garage_init(&env, &["check"]).await;
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stderr.contains("bucket another-bucket does not exist"), "{run:?}");
    assert!(run.stderr.contains("docker compose run --rm garage-init"), "{run:?}");
}

#[tokio::test]
async fn another_secret_for_the_key_is_not_initialized() {
    let registry = Registry::started().await;
    let garage = Garage::started().await;
    apply(&garage).await;

    let env = with(&host_env(&registry, &garage), "GARAGE_INIT_SECRET_ACCESS_KEY", &"ab".repeat(32));
    let run = garage_init(&env, &["check"]).await;
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stderr.contains("Garage holds another secret for access key GK6275696c646b69742d6b6579"), "{run:?}");
    assert!(!run.all_output().contains(&"ab".repeat(32)), "the secret must not be printed: {run:?}");
}

#[tokio::test]
async fn after_apply_check_exits_0_and_json_lists_every_service() {
    let registry = Registry::started().await;
    let garage = Garage::started().await;
    apply(&garage).await;

    let run = garage_init(&host_env(&registry, &garage), &["check"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");
    for service in ["registry  ready", "garage    ready", "admin     ready"] {
        assert!(run.stdout.contains(service), "{service}: {run:?}");
    }

    let run = garage_init(&host_env(&registry, &garage), &["check", "--format", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let report = json(&run);
    assert_eq!((report["ready"].clone(), report["exit_code"].clone()), (Value::Bool(true), Value::from(0)));
    assert_eq!(report["format_version"], 1, "{report}");
    for service in ["registry", "garage", "admin"] {
        assert_eq!(report["services"][service]["state"], "ready", "{service}: {report}");
    }
    assert_eq!(report["services"]["garage"]["address"], format!("localhost:{}", garage.s3_port));
    assert_eq!(report["services"]["garage"]["bucket"], BUCKET);
    assert_eq!(report["errors"], serde_json::json!([]));
    // The probe object is gone again.
    let info = garage.get(&format!("GetBucketInfo?globalAlias={BUCKET}")).await.unwrap();
    assert_eq!(info["objects"], 0, "{info}");
}

#[tokio::test]
async fn check_shows_the_cache_buckets_lifecycle_and_with_the_admin_token_its_size() {
    let registry = Registry::started().await;
    let garage = Garage::started().await;
    let init = with(&garage.init_env(), "GARAGE_INIT_EXPIRE_AFTER_DAYS", "30");
    let run = garage_init(&with(&init, "GARAGE_INIT_ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS", "1"), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let blob = vec![7u8; 5000];
    S3::new(&garage.s3_url(), BUCKET, KEY_ID, SECRET).put("blobs/sha256-1", &blob).await.unwrap();

    // Without the admin token: the rules, and why the size is unknown.
    let run = garage_init(&host_env(&registry, &garage), &["check", "--format", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let cache = &json(&run)["cache"];
    assert_eq!(cache["bucket"], BUCKET);
    let rules = cache["lifecycle"].as_array().unwrap_or_else(|| panic!("{cache}"));
    let days: Vec<(Value, Value)> = rules
        .iter()
        .map(|r| (r["expire_after_days"].clone(), r["abort_incomplete_uploads_after_days"].clone()))
        .collect();
    // Manifests expire 2 days before the blobs they list.
    let want = [(Value::from(28), Value::Null), (Value::from(30), Value::Null), (Value::Null, Value::from(1))];
    assert_eq!(days, want, "{cache}");
    assert!(cache["size_error"].as_str().unwrap().contains("admin token"), "{cache}");

    // With it (from a file): objects and bytes from the admin API's bucket info.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, garage.token.as_str()).unwrap();
    let env = with(&host_env(&registry, &garage), "GARAGE_INIT_ADMIN_TOKEN_FILE", token_file.to_str().unwrap());
    let run = garage_init(&env, &["check", "--format", "json"]).await;
    let cache = &json(&run)["cache"];
    assert_eq!((cache["objects"].clone(), cache["bytes"].clone()), (Value::from(1), Value::from(5000)), "{cache}");
    let run = garage_init(&env, &["check"]).await;
    let line = run.stdout.lines().find(|l| l.starts_with("cache")).unwrap_or_else(|| panic!("{run:?}"));
    assert!(line.contains("1 objects, 5.0 KB") && line.contains("expires objects after 30 days"), "{run:?}");
    assert!(!run.all_output().contains(garage.token.as_str()), "the token leaked: {run:?}");
}

#[tokio::test]
async fn check_json_reports_unreachable_services_with_exit_code_3() {
    let registry = Registry::new();
    let garage = Garage::new();
    let run = garage_init(&host_env(&registry, &garage), &["check", "--format", "json"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    let report = json(&run);
    assert_eq!(report["exit_code"], 3);
    assert_eq!(report["services"]["registry"]["state"], "unreachable");
    assert_eq!(report["services"]["garage"]["state"], "unreachable");
    assert_eq!(report["errors"][1]["message"], format!("Garage not reachable at localhost:{}", garage.s3_port));
}

#[tokio::test]
async fn check_wait_started_before_the_services_exits_0_once_they_are_initialized() {
    let mut registry = Registry::new();
    let mut garage = Garage::new();
    let env = host_env(&registry, &garage);
    let check = tokio::spawn(async move { garage_init(&env, &["check", "--wait", "30"]).await });

    // Nothing answers for a while; then the services start, then the initialization runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!check.is_finished(), "check --wait gave up while nothing answered");
    registry.start();
    garage.start();
    garage.wait_for_admin().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!check.is_finished(), "check --wait passed before Garage was initialized");
    apply(&garage).await;

    let run = tokio::time::timeout(Duration::from_secs(30), check).await.expect("check --wait 30 returned").unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("garage    ready"), "{run:?}");
}

#[tokio::test]
async fn check_wait_gives_up_after_its_time_with_the_last_result() {
    let registry = Registry::new();
    let garage = Garage::new();
    let run = garage_init(&host_env(&registry, &garage), &["check", "--wait", "2"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.elapsed >= Duration::from_secs(2) && run.elapsed < Duration::from_secs(8), "{run:?}");
    assert!(run.stderr.ends_with(&(registry_block(&registry) + &garage_block(&garage))), "{run:?}");
}

#[tokio::test]
async fn invalid_host_settings_exit_2_naming_the_setting() {
    let run = garage_init(&[("GARAGE_INIT_S3_ENDPOINT".into(), "https://localhost:3900".into())], &["check"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--s3-url (GARAGE_INIT_S3_ENDPOINT)"), "{run:?}");
}

// ---- env ----

#[tokio::test]
async fn env_json_credentials_work_with_an_independent_s3_client() {
    let garage = Garage::started().await;
    apply(&garage).await;
    let endpoint = format!("http://localhost:{}", garage.s3_port);
    let run = garage_init(&[("GARAGE_INIT_S3_ENDPOINT".into(), endpoint.clone())], &["env", "--format", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let env = json(&run);
    assert_eq!(env["s3_endpoint"], endpoint);
    assert_eq!(env["registry"], "localhost:5050");
    assert_eq!(env["region"], REGION);

    // The test's own signer and HTTP client, with exactly what env printed.
    let s3 = S3::new(
        env["s3_endpoint"].as_str().unwrap(),
        env["bucket"].as_str().unwrap(),
        env["access_key_id"].as_str().unwrap(),
        env["secret_access_key"].as_str().unwrap(),
    );
    s3.round_trip("from-env-json", b"layer blob").await.unwrap();
}

/// `key=value` attributes of one BuildKit cache option, in order.
fn attributes(value: &str) -> Vec<(String, String)> {
    value
        .split(',')
        .map(|a| {
            let (k, v) = a.split_once('=').unwrap_or_else(|| panic!("`{a}` is not key=value"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[tokio::test]
async fn env_buildkit_format_gives_both_cache_options_attribute_by_attribute() {
    let secret = random_hex(32);
    let env = vec![
        ("GARAGE_INIT_S3_ENDPOINT".into(), "http://127.0.0.1:3900".into()),
        ("GARAGE_INIT_BUCKET".into(), "ci-cache".into()),
        ("GARAGE_INIT_ACCESS_KEY_ID".into(), "GK0123456789abcdef01234567".into()),
        ("GARAGE_INIT_SECRET_ACCESS_KEY".into(), secret.clone()),
        ("GARAGE_INIT_S3_REGION".into(), "eu-local".into()),
    ];
    let run = garage_init(&env, &["env", "--format", "buildkit", "--cache-name", "base"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    let export = lines[0].strip_prefix("--export-cache ").expect("first line: --export-cache");
    let import = lines[1].strip_prefix("--import-cache ").expect("second line: --import-cache");

    let expected: Vec<(String, String)> = [
        ("type", "s3"),
        ("endpoint_url", "http://127.0.0.1:3900"),
        ("bucket", "ci-cache"),
        ("region", "eu-local"),
        ("access_key_id", "GK0123456789abcdef01234567"),
        ("secret_access_key", secret.as_str()),
        ("use_path_style", "true"),
        ("name", "base"),
        // Where the lifecycle rules and `cache` look: BuildKit's defaults, said out loud.
        ("manifests_prefix", "manifests/"),
        ("blobs_prefix", "blobs/"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(attributes(import), expected);
    let mut with_mode = expected.clone();
    with_mode.push(("mode".into(), "max".into()));
    // No expiry declared here, but the stack's bucket may expire objects: blobs in use are touched daily.
    with_mode.push(("touch_refresh".into(), "24h".into()));
    assert_eq!(attributes(export), with_mode);
}

#[tokio::test]
async fn env_shell_format_sourced_by_sh_gives_back_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let secret = random_hex(32);
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    // A region with quotes and a dollar sign: the quoting must survive sh.
    let region = r#"it's-"$HOME"-`x`"#;
    let env = vec![
        ("GARAGE_INIT_REGISTRY".into(), "registry.local:5000".into()),
        ("GARAGE_INIT_S3_ENDPOINT".into(), "http://garage.local:3900/".into()),
        ("GARAGE_INIT_SECRET_ACCESS_KEY_FILE".into(), secret_file.display().to_string()),
        ("GARAGE_INIT_S3_REGION".into(), region.into()),
        // apply's container-side URL must not leak into the host-side endpoint.
        ("GARAGE_INIT_S3_URL".into(), "http://garage:3900".into()),
    ];
    let run = garage_init(&env, &["env"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let file = dir.path().join("env.sh");
    std::fs::write(&file, &run.stdout).unwrap();

    let names = [
        "REGISTRY_ADDR",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "GARAGE_BUCKET",
    ];
    let quoted: Vec<String> = names.iter().map(|n| format!("\"${n}\"")).collect();
    let script = format!(". '{}' && printf '%s\\n' {}", file.display(), quoted.join(" "));
    let out = std::process::Command::new("sh").arg("-c").arg(&script).env_clear().output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let values: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    assert_eq!(
        values,
        [
            "registry.local:5000",
            "http://garage.local:3900",
            region,
            region,
            "GK6275696c646b69742d6b6579",
            secret.as_str(),
            BUCKET
        ],
        "sourced from:\n{}",
        run.stdout
    );
}

#[tokio::test]
async fn env_dotenv_format_is_one_plain_assignment_per_line() {
    let run = garage_init(&[], &["env", "--format", "dotenv"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "REGISTRY_ADDR=localhost:5050",
            "AWS_ENDPOINT_URL=http://localhost:3900",
            "AWS_REGION=garage",
            "AWS_DEFAULT_REGION=garage",
            "AWS_ACCESS_KEY_ID=GK6275696c646b69742d6b6579",
            "AWS_SECRET_ACCESS_KEY=8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3",
            "GARAGE_BUCKET=buildkit-cache",
        ]
    );
}

#[tokio::test]
async fn env_github_format_masks_on_stdout_and_appends_the_variables_to_github_env() {
    let garage = Garage::started().await;
    let secret = random_hex(32);
    apply_with(&garage, &with(&garage.init_env(), "GARAGE_INIT_SECRET_ACCESS_KEY", &secret)).await;
    let dir = tempfile::tempdir().unwrap();
    let github_env = dir.path().join("github_env");
    std::fs::write(&github_env, "EARLIER_STEP=kept\n").unwrap();
    let env = vec![
        ("GARAGE_INIT_S3_ENDPOINT".into(), format!("http://localhost:{}", garage.s3_port)),
        ("GARAGE_INIT_SECRET_ACCESS_KEY".into(), secret.clone()),
        ("GITHUB_ENV".into(), github_env.display().to_string()),
    ];
    let run = garage_init(&env, &["env", "--format", "github"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // Only workflow commands on stdout; the secret nowhere else in the log.
    assert_eq!(run.stdout, format!("::add-mask::{secret}\n"), "{run:?}");
    assert!(!run.stderr.contains(&secret) && run.stderr.contains("GITHUB_ENV"), "{run:?}");

    // Read back as the runner does: one KEY=value per line, after what was there.
    let written = std::fs::read_to_string(&github_env).unwrap();
    let vars: std::collections::BTreeMap<&str, &str> =
        written.lines().map(|l| l.split_once('=').unwrap_or_else(|| panic!("`{l}` is not KEY=value"))).collect();
    assert_eq!(vars.len(), 8, "{written}");
    assert_eq!(vars["EARLIER_STEP"], "kept");
    assert_eq!(vars["AWS_REGION"], REGION);
    let s3 = S3::new(
        vars["AWS_ENDPOINT_URL"],
        vars["GARAGE_BUCKET"],
        vars["AWS_ACCESS_KEY_ID"],
        vars["AWS_SECRET_ACCESS_KEY"],
    );
    s3.round_trip("from-github-env", b"layer blob").await.unwrap();
}

#[tokio::test]
async fn env_github_format_outside_a_workflow_exits_2_and_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("no-such-file");
    for github_env in [None, Some(absent.display().to_string())] {
        let env: Vec<(String, String)> = github_env.iter().map(|p| ("GITHUB_ENV".to_string(), p.clone())).collect();
        let run = garage_init(&env, &["env", "--format", "github"]).await;
        assert_eq!(run.code, 2, "{run:?}");
        assert_eq!(run.stdout, "", "no mask without the variables: {run:?}");
        assert!(run.stderr.contains("GITHUB_ENV"), "{run:?}");
    }
    assert!(!absent.exists(), "a GITHUB_ENV file the runner did not create is not created");
}

#[tokio::test]
async fn env_refuses_an_invalid_secret_like_apply_does() {
    let env = [("GARAGE_INIT_SECRET_ACCESS_KEY".to_string(), "not-hex".to_string())];
    let run = garage_init(&env, &["env"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--secret-access-key (GARAGE_INIT_SECRET_ACCESS_KEY)"), "{run:?}");
    assert_eq!(run.stdout, "", "nothing printed: {run:?}");
}

// ---- status, without Docker ----

#[tokio::test]
async fn status_without_docker_says_so_and_reports_the_probes() {
    let registry = Registry::started().await;
    let garage = Garage::started().await;
    apply(&garage).await;
    let env = with(&host_env(&registry, &garage), "DOCKER_HOST", "unix:///nonexistent.sock");

    let run = garage_init(&env, &["status", "-p", "demo"]).await;
    assert_eq!(run.code, 9, "{run:?}");
    assert!(
        run.stderr.starts_with(
            "Error: Docker not reachable at unix:///nonexistent.sock (DOCKER_HOST): \
             the socket /nonexistent.sock does not exist\n"
        ),
        "{run:?}"
    );
    for probe in ["registry  ready", "garage    ready", "admin     ready"] {
        assert!(run.stdout.contains(probe), "{probe}: {run:?}");
    }

    let run = garage_init(&env, &["status", "-p", "demo", "--format", "json"]).await;
    assert_eq!(run.code, 9, "{run:?}");
    let status = json(&run);
    assert_eq!(status["format_version"], 1, "{status}");
    assert_eq!(status["docker"]["reachable"], false);
    assert_eq!(status["probes"]["services"]["garage"]["state"], "ready");
    assert_eq!(status["probes"]["exit_code"], 0);
}

#[tokio::test]
async fn status_takes_the_project_name_from_the_directory_as_compose_does() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("_My.Build-Stack 2");
    std::fs::create_dir(&dir).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_garage-init"))
        .args(["status", "--format", "json"])
        .current_dir(&dir)
        .env_clear()
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        // Nothing listens on these: the fallback probes fail fast.
        .env("GARAGE_INIT_REGISTRY", format!("localhost:{}", free_port()))
        .env("GARAGE_INIT_S3_ENDPOINT", format!("http://localhost:{}", free_port()))
        .env("GARAGE_INIT_ADMIN_ENDPOINT", format!("http://localhost:{}", free_port()))
        .output()
        .await
        .unwrap();
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["project"], "mybuild-stack2");
    assert_eq!(status["probes"]["exit_code"], 3);
}

// ---- end to end, on the Docker engine ----

mod e2e {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::common::stack::{Stack, repo_root};

    /// Runs garage-init on the host with the stack's default addresses.
    fn host_command(args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_garage-init"));
        cmd.args(args).env_clear().stdin(Stdio::null());
        // PATH and DOCKER_HOST only: the defaults are the stack's published ports.
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        if let Some(host) = std::env::var_os("DOCKER_HOST") {
            cmd.env("DOCKER_HOST", host);
        }
        cmd
    }

    struct Out {
        code: i32,
        stdout: String,
        stderr: String,
    }

    impl std::fmt::Debug for Out {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
        }
    }

    fn run(cmd: &mut Command) -> Out {
        let out = cmd.output().expect("run garage-init");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn up(stack: &Stack) {
        let up = stack.up();
        assert_eq!(up.code, 0, "up failed: {up:?}\ngarage-init log:\n{}", stack.logs("garage-init"));
    }

    /// The table row of a service: its cells.
    fn row<'a>(stdout: &'a str, service: &str) -> Vec<&'a str> {
        stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells.first() == Some(&service))
            .unwrap_or_else(|| panic!("no row for {service} in:\n{stdout}"))
    }

    #[test]
    #[ignore = "needs Docker and the local images: run scripts/test"]
    fn check_wait_started_before_compose_up_exits_0_once_garage_init_finished() {
        let stack = Stack::new("check-wait");
        let started = Instant::now();
        let check = host_command(&["check", "--wait", "30"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
        let check = check.expect("start garage-init check");
        std::thread::sleep(Duration::from_millis(500));
        up(&stack);
        let out = check.wait_with_output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(code, 0, "after {:?}: {said}", started.elapsed());
        // Ready means initialized: garage-init has finished, and successfully.
        let init = stack.inspect("garage-init");
        assert_eq!(init["State"]["Status"], "exited", "{said}");
        assert_eq!(init["State"]["ExitCode"], 0, "{said}");
    }

    #[test]
    #[ignore = "needs Docker and the local images: run scripts/test"]
    fn status_on_a_running_stack_lists_each_service_with_its_state() {
        let stack = Stack::new("status");
        up(&stack);
        let out = run(&mut host_command(&["status", "-p", &stack.project]));
        assert_eq!(out.code, 0, "{out:?}");
        eprintln!("{}", out.stdout);
        assert_eq!(row(&out.stdout, "garage")[2..], ["running", "healthy", "-"], "{out:?}");
        assert_eq!(row(&out.stdout, "garage-init")[2..], ["exited", "-", "0"], "{out:?}");
        assert_eq!(row(&out.stdout, "registry")[2..], ["running", "healthy", "-"], "{out:?}");
        assert!(out.stdout.contains("Ready: every service runs and garage-init exited 0."), "{out:?}");

        let out = run(&mut host_command(&["status", "-p", &stack.project, "--format", "json"]));
        assert_eq!(out.code, 0, "{out:?}");
        let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let services = status["services"].as_array().unwrap();
        let names: Vec<&str> = services.iter().map(|s| s["service"].as_str().unwrap()).collect();
        assert_eq!(names, ["garage", "garage-init", "registry", "registry-ui"], "{status}");
        assert!(services.iter().all(|s| s["ready"] == true), "{status}");
        assert_eq!(status["docker"]["api_version"], "1.41", "Docker 20.10 here: {status}");
        // The stack's default lifecycle rules, and (with the development token file) the bucket's size.
        let cache = &status["cache"];
        let expiry: Vec<&serde_json::Value> =
            cache["lifecycle"].as_array().into_iter().flatten().map(|r| &r["expire_after_days"]).collect();
        assert!(expiry.contains(&&serde_json::Value::from(30)), "{cache}");

        let token = repo_root().join("infrastructure/dev-secrets/admin-token");
        let out = run(host_command(&["status", "-p", &stack.project]).env("GARAGE_INIT_ADMIN_TOKEN_FILE", &token));
        let line = out.stdout.lines().find(|l| l.starts_with("Cache: buildkit-cache: ")).unwrap_or_default();
        assert!(line.contains(" objects, ") && line.contains("expires objects after 30 days"), "{out:?}");
    }

    #[test]
    #[ignore = "needs Docker and the local images: run scripts/test"]
    fn status_after_a_wrong_token_shows_exit_code_4_its_meaning_and_the_log() {
        let stack = Stack::new("status-badtoken").with_wrong_admin_token();
        let up = stack.up();
        assert_ne!(up.code, 0, "{up:?}");

        let out = run(&mut host_command(&["status", "-p", &stack.project]));
        eprintln!("{}{}", out.stdout, out.stderr);
        assert_eq!(out.code, 8, "{out:?}");
        assert_eq!(row(&out.stdout, "garage-init")[2..], ["exited", "-", "4"], "{out:?}");
        // The registry does not depend on Garage: it serves whatever garage-init did.
        assert_eq!(row(&out.stdout, "registry")[2..4], ["running", "healthy"], "{out:?}");
        assert!(out.stdout.contains("garage-init exited with code 4: Garage rejected the admin token"), "{out:?}");
        assert!(out.stdout.contains("log lines of"), "{out:?}");
        assert!(
            out.stdout.contains("  Error: Garage's admin API at http://garage:3903 rejected the admin token"),
            "{out:?}"
        );
        assert!(out.stderr.contains("garage-init exited with code 4"), "{out:?}");

        let out = run(&mut host_command(&["status", "-p", &stack.project, "--format", "json"]));
        let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let init = status["services"].as_array().unwrap().iter().find(|s| s["service"] == "garage-init").unwrap();
        assert_eq!(init["exit_code"], 4, "{status}");
        assert_eq!(init["exit_meaning"], "Garage rejected the admin token", "{status}");
        assert!(!init["logs"].as_array().unwrap().is_empty(), "{status}");
        assert_eq!(status["exit_code"], 8);
    }

    #[test]
    #[ignore = "needs Docker and the local images: run scripts/test"]
    fn status_with_docker_host_pointing_nowhere_says_so_and_still_reports_the_probes() {
        let stack = Stack::new("status-nodocker");
        up(&stack);
        let out = run(host_command(&["status", "-p", &stack.project]).env("DOCKER_HOST", "unix:///nonexistent.sock"));
        eprintln!("{}{}", out.stdout, out.stderr);
        assert_eq!(out.code, 9, "{out:?}");
        assert!(
            out.stderr.starts_with("Error: Docker not reachable at unix:///nonexistent.sock (DOCKER_HOST)"),
            "{out:?}"
        );
        for probe in ["registry  ready", "garage    ready", "admin     ready"] {
            assert!(out.stdout.contains(probe), "{probe}: {out:?}");
        }
        assert!(out.stdout.contains("localhost:5050") && out.stdout.contains("localhost:3900"), "{out:?}");
    }
}
