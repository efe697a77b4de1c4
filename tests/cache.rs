//! `garage-init cache` against real Garage processes, on BuildKit-shaped
//! caches that the tests write with boto3 (`tests/support/s3_buildkit.py`):
//! blobs named by the sha256 of their bytes, manifests in BuildKit's JSON
//! format. What the commands leave in the bucket is listed with boto3 too.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const KEY_ID: &str = "GK6275696c646b69742d6b6579";
const SECRET: &str = "8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3";
const BUCKET: &str = "buildkit-cache";

/// A Garage initialized by `apply`, with the stack's lifecycle rules.
async fn initialized() -> Garage {
    let g = Garage::started().await;
    let env = with(&g.init_env(), "GARAGE_INIT_EXPIRE_AFTER_DAYS", "30");
    let run = garage_init(&with(&env, "GARAGE_INIT_ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS", "1"), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    g
}

/// The host-side settings of `cache`: only the S3 endpoint differs from the defaults.
fn host_env(g: &Garage) -> Vec<(String, String)> {
    vec![("GARAGE_INIT_S3_ENDPOINT".into(), g.s3_url())]
}

fn boto3(g: &Garage, op: &str, arg: Option<Value>) -> Value {
    let arg = arg.map(|a| a.to_string());
    let url = g.s3_url();
    let mut args = vec![url.as_str(), BUCKET, KEY_ID, SECRET, REGION, op];
    args.extend(arg.as_deref());
    let (code, json) = boto3_script("s3_buildkit.py", &args);
    assert_eq!(code, 0, "boto3 {op}: {json}");
    json
}

/// Writes a cache; returns each label's digest.
fn put(g: &Garage, cache: Value) -> Value {
    boto3(g, "put", Some(cache))["digests"].clone()
}

/// Every key in the bucket, as boto3 lists it.
fn keys(g: &Garage) -> BTreeSet<String> {
    boto3(g, "list", None)["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect()
}

fn blob(digests: &Value, label: &str) -> String {
    format!("blobs/{}", digests[label].as_str().unwrap())
}

async fn cache(g: &Garage, args: &[&str]) -> Run {
    let mut all = vec!["cache"];
    all.extend(args);
    garage_init(&host_env(g), &all).await
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {run:?}"))
}

/// `main` lists b1, b2, b3 (all there); `old` lists b3, b4, b5, and b4 was
/// never uploaded; u1 and u2 no manifest lists. Beside them: an object under
/// `blobs/` not named like a blob, and objects outside BuildKit's prefixes.
fn the_usual_cache(g: &Garage) -> Value {
    put(
        g,
        json!({
            "blobs": {"b1": 1000, "b2": 2000, "b3": 3000, "b5": 5000, "u1": 100, "u2": 200},
            "manifests": {"main": ["b1", "b2", "b3"], "old": ["b3", "b4", "b5"]},
            "objects": {"blobs/README": "not a blob", "notes/manifests/x": "elsewhere", "manifestsx": "elsewhere"},
        }),
    )
}

#[tokio::test]
async fn stats_counts_manifests_blobs_shared_and_unlisted_and_changes_nothing() {
    let g = initialized().await;
    let d = the_usual_cache(&g);
    let before = keys(&g);

    let run = cache(&g, &["stats", "--format", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let s = json(&run);
    assert_eq!(s["format_version"], 1, "{s}");
    assert_eq!(s["manifests"]["objects"], 2, "{s}");
    assert_eq!((s["blobs"]["objects"].clone(), s["not_blobs"]["objects"].clone()), (json!(7), json!(1)), "{s}");
    assert_eq!(s["blobs"]["bytes"], 1000 + 2000 + 3000 + 5000 + 100 + 200 + "not a blob".len(), "{s}");
    assert_eq!(s["shared"], json!({"blobs": 1, "bytes": 3000}), "b3 is in both manifests: {s}");
    assert_eq!((s["unlisted"]["blobs"].clone(), s["unlisted"]["bytes"].clone()), (json!(2), json!(300)), "{s}");
    assert!(s["unlisted"]["oldest"].as_str().is_some_and(|t| t.starts_with("20")), "{s}");
    let main = s["caches"].as_array().unwrap().iter().find(|c| c["name"] == "main").unwrap();
    assert_eq!((main["layers"].clone(), main["referenced_bytes"].clone()), (json!(3), json!(6000)), "{main}");
    assert_eq!(main["missing_blobs"], 0);
    let old = s["caches"].as_array().unwrap().iter().find(|c| c["name"] == "old").unwrap();
    assert_eq!(old["missing_blobs"], 1, "{old}");
    assert_eq!(old["key"], "manifests/old");

    let text = cache(&g, &["stats"]).await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains("unlisted   2 blobs no manifest lists, 300 B"), "{text:?}");
    assert!(text.stdout.lines().any(|l| l.starts_with("main ") && l.contains(" 6.0 KB ")), "{text:?}");
    assert!(!text.all_output().contains(SECRET), "{text:?}");
    assert_eq!(keys(&g), before, "stats changed the bucket");
    let _ = d;
}

#[tokio::test]
async fn verify_finds_the_manifest_with_a_missing_blob_and_repair_removes_exactly_it() {
    let g = initialized().await;
    let d = the_usual_cache(&g);
    let before = keys(&g);

    let run = cache(&g, &["verify", "--format", "json"]).await;
    assert_eq!(run.code, 12, "{run:?}");
    let v = json(&run);
    assert_eq!((v["manifests"].clone(), v["whole"].clone()), (json!(2), json!(1)), "{v}");
    assert_eq!(v["broken"], json!([{"key": "manifests/old", "name": "old", "blobs": 3, "missing": [blob(&d, "b4")]}]));
    assert!(run.stderr.contains("garage-init cache repair"), "the error names the next command: {run:?}");

    let text = cache(&g, &["verify"]).await;
    assert_eq!(text.code, 12, "{text:?}");
    assert!(text.stdout.contains("broken     manifests/old: 1 of 3 blobs missing"), "{text:?}");
    assert!(text.stdout.contains(&blob(&d, "b4")), "which blob: {text:?}");
    assert!(text.stdout.contains("whole      manifests/main: 3 blobs, all in the bucket"), "{text:?}");

    // A dry run: says what would go, changes nothing.
    let dry = cache(&g, &["repair"]).await;
    assert_eq!(dry.code, 12, "{dry:?}");
    assert!(dry.stdout.contains("would remove manifests/old: 1 of 3 blobs missing"), "{dry:?}");
    assert!(dry.stdout.contains("Dry run: nothing was removed"), "{dry:?}");
    assert_eq!(keys(&g), before, "a dry run changed the bucket");

    let run = cache(&g, &["repair", "--yes", "--format", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(json(&run)["removed"][0]["key"], "manifests/old", "{run:?}");
    let mut expected = before.clone();
    expected.remove("manifests/old");
    assert_eq!(keys(&g), expected, "exactly the broken manifest went; no blob did");

    let run = cache(&g, &["verify"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let run = cache(&g, &["repair", "--yes"]).await;
    assert_eq!(run.code, 0, "nothing left to repair: {run:?}");
    assert_eq!(keys(&g), expected);
}

#[tokio::test]
async fn gc_deletes_exactly_the_unlisted_blobs_past_the_grace_period() {
    let g = initialized().await;
    // `old` is gone already (as `repair` leaves it): b5 is now listed by no manifest.
    let d = put(
        &g,
        json!({
            "blobs": {"b1": 1000, "b2": 2000, "b3": 3000, "b5": 5000, "u1": 100, "u2": 200},
            "manifests": {"main": ["b1", "b2", "b3"]},
            "objects": {"blobs/README": "not a blob", "notes/x": "elsewhere"},
        }),
    );
    let before = keys(&g);

    // Everything is minutes old at most: a grace period of an hour keeps it all.
    for args in [&["gc", "--older-than", "1h"][..], &["gc", "--older-than", "1h", "--yes"]] {
        let run = cache(&g, args).await;
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        assert_eq!(keys(&g), before, "{args:?} deleted a fresh blob: {run:?}");
    }
    let run = cache(&g, &["gc", "--older-than", "1h"]).await;
    assert!(
        run.stdout.contains("Nothing to delete: no unlisted blob is older than 1h (3 younger are kept)"),
        "{run:?}"
    );

    // A grace period of 0: the dry run lists the three unlisted blobs, and deletes nothing.
    let run = cache(&g, &["gc", "--older-than", "0s", "--format", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let listed: BTreeSet<String> =
        lines.iter().filter(|l| l["action"] == "would delete").map(|l| l["blob"].as_str().unwrap().into()).collect();
    let unlisted: BTreeSet<String> = ["b5", "u1", "u2"].iter().map(|l| blob(&d, l)).collect();
    assert_eq!(listed, unlisted, "{run:?}");
    assert_eq!(lines.last().unwrap()["summary"]["dry_run"], true, "{run:?}");
    assert_eq!(keys(&g), before, "a dry run deleted");

    // One more unlisted blob, younger than the grace period; the others are older than it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let young = put(&g, json!({"blobs": {"u3": 300}}));
    let run = cache(&g, &["gc", "--older-than", "4s", "--yes"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    for gone in &unlisted {
        assert!(run.stdout.contains(&format!("deleted      {gone} (")), "{gone}: {run:?}");
    }
    assert!(run.stdout.contains("deleted 3 blobs, 5.3 KB (older than 4s); kept 1 younger than that"), "{run:?}");
    let mut expected: BTreeSet<String> = before.difference(&unlisted).cloned().collect();
    expected.insert(blob(&young, "u3"));
    assert_eq!(keys(&g), expected, "exactly the unlisted blobs past the grace period went");

    // Every blob `main` lists is still there.
    assert_eq!(cache(&g, &["verify"]).await.code, 0);
}

#[tokio::test]
async fn gc_keeps_a_blob_that_an_export_touches_or_lists_while_it_runs() {
    let g = initialized().await;
    let d = put(&g, json!({"blobs": {"b1": 10, "u1": 100, "u2": 200, "u3": 300}, "manifests": {"main": ["b1"]}}));
    // Held once the first page of blobs was listed: u1, u2 and u3 are then candidates.
    let gate = common::gate::Gate::hold_after_s3(g.s3_port, "GET", "prefix=blobs%2F").await;
    let env = with(&host_env(&g), "GARAGE_INIT_S3_ENDPOINT", &gate.url());
    let run = tokio::spawn(async move { garage_init(&env, &["cache", "gc", "--older-than", "0s", "--yes"]).await });
    gate.until_holding(Duration::from_secs(30)).await;
    // Meanwhile an export re-uses u1 (a new manifest lists it) and touches u2.
    put(&g, json!({"sizes": {"u1": 100}, "manifests": {"late": ["u1"]}}));
    boto3(&g, "touch", Some(json!([blob(&d, "u2")])));
    gate.release();
    let run = run.await.unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    let left = keys(&g);
    assert!(left.contains(&blob(&d, "u1")), "a blob a new manifest lists was deleted: {run:?}");
    assert!(left.contains(&blob(&d, "u2")), "a blob touched since the listing was deleted: {run:?}");
    assert!(!left.contains(&blob(&d, "u3")), "{run:?}");
    assert!(run.stdout.contains("and 2 written or listed again while gc ran"), "{run:?}");
    assert_eq!(cache(&g, &["verify"]).await.code, 0);
}

#[tokio::test]
async fn nothing_outside_buildkits_prefixes_is_touched() {
    let g = initialized().await;
    // A cache under the prefix ci/, and one under the default prefixes.
    let ci = put(&g, json!({"prefix": "ci/", "blobs": {"c1": 10, "cu": 20}, "manifests": {"app": ["c1"]}}));
    let plain = put(&g, json!({"blobs": {"p1": 10, "pu": 20}, "manifests": {"app": ["p1"]}}));
    let before = keys(&g);

    let env = with(&host_env(&g), "GARAGE_INIT_CACHE_PREFIX", "ci/");
    let run = garage_init(&env, &["cache", "gc", "--older-than", "0s", "--yes"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let mut expected = before.clone();
    expected.remove(&format!("ci/blobs/{}", ci["cu"].as_str().unwrap()));
    assert_eq!(keys(&g), expected, "only the ci/ cache's unlisted blob went: {run:?}");

    let run = cache(&g, &["gc", "--older-than", "0s", "--yes"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    expected.remove(&blob(&plain, "pu"));
    assert_eq!(keys(&g), expected, "only the default cache's unlisted blob went: {run:?}");
}

#[tokio::test]
async fn a_manifest_buildkit_cannot_read_stops_gc_and_repair_removes_it() {
    let g = initialized().await;
    let d = put(
        &g,
        json!({"blobs": {"b1": 10, "u1": 10}, "manifests": {"main": ["b1"]},
               "objects": {"manifests/garbled": "{\"layers\": [{\"blob\": "}}),
    );
    let before = keys(&g);

    let run = cache(&g, &["verify", "--format", "json"]).await;
    assert_eq!(run.code, 12, "{run:?}");
    let broken = &json(&run)["broken"];
    assert_eq!(broken[0]["key"], "manifests/garbled", "{run:?}");
    assert!(broken[0]["unreadable"].as_str().unwrap().starts_with("not a BuildKit cache manifest"), "{run:?}");

    // gc cannot know which blobs it lists: it deletes nothing.
    let run = cache(&g, &["gc", "--older-than", "0s", "--yes"]).await;
    assert_eq!(run.code, 12, "{run:?}");
    assert!(
        run.stderr.contains("manifests/garbled cannot be read") && run.stderr.contains("cache repair --yes"),
        "{run:?}"
    );
    assert_eq!(keys(&g), before);

    assert_eq!(cache(&g, &["repair", "--yes"]).await.code, 0);
    let run = cache(&g, &["gc", "--older-than", "0s", "--yes"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let mut expected = before.clone();
    expected.remove("manifests/garbled");
    expected.remove(&blob(&d, "u1"));
    assert_eq!(keys(&g), expected);
}

#[tokio::test]
async fn s3_refusals_and_absences_get_their_exit_codes_and_no_secret_is_printed() {
    let g = initialized().await;
    let other_secret = random_hex(32);
    let env = with(&host_env(&g), "GARAGE_INIT_SECRET_ACCESS_KEY", &other_secret);
    let run = garage_init(&env, &["cache", "stats"]).await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr.starts_with(&format!("Error: S3 at 127.0.0.1:{} refused access key {KEY_ID}", g.s3_port)),
        "{run:?}"
    );
    assert!(!run.all_output().contains(&other_secret), "the secret leaked: {run:?}");

    let run = garage_init(&with(&host_env(&g), "GARAGE_INIT_BUCKET", "no-such-bucket"), &["cache", "verify"]).await;
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stderr.contains("bucket no-such-bucket does not exist"), "{run:?}");

    let down = Garage::new(); // configured, never started
    let run = cache(&down, &["stats", "--format", "json"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(json(&run)["exit_code"], 3, "{run:?}");
    assert!(run.stderr.contains("Run 'docker compose up -d'"), "{run:?}");

    let run = cache(&g, &["gc", "--older-than", "2w"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("unknown unit"), "{run:?}");
}

/// Runs `garage-init cache ARGS` against `s3_url`: exit code, stdout, and peak RSS (KiB) from wait4.
#[allow(clippy::zombie_processes)] // reaped by wait4, which clippy does not see
fn peak_rss(s3_url: &str, args: &[&str]) -> (i32, String, i64) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_garage-init"))
        .arg("cache")
        .args(args)
        .env_clear()
        .env("GARAGE_INIT_S3_ENDPOINT", s3_url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: our own child, not reaped yet; both pointers are valid for the call.
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    (code, out, usage.ru_maxrss)
}

/// Writes `n` unlisted blobs (and one small manifest), 64 at a time.
async fn fill(g: &Garage, from: usize, n: usize) {
    use futures_util::StreamExt;
    let s3 = S3::new(&g.s3_url(), BUCKET, KEY_ID, SECRET);
    let s3 = &s3;
    futures_util::stream::iter(from..from + n)
        .map(|i| async move {
            let key = format!("blobs/sha256:{:064x}", i);
            s3.put(&key, format!("blob {i}").as_bytes()).await.unwrap_or_else(|e| panic!("{key}: {e}"));
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test]
#[ignore = "slow: writes 100 000 objects; run with --ignored to measure"]
async fn memory_stays_bounded_on_a_bucket_of_100k_objects() {
    let g = initialized().await;
    put(&g, json!({"blobs": {"b1": 1000}, "manifests": {"main": ["b1"]}}));
    let mut measured = Vec::new();
    let mut written = 0;
    for total in [10_000, 100_000] {
        let started = std::time::Instant::now();
        fill(&g, written, total - written).await;
        written = total;
        eprintln!("{total} objects written in {:?}", started.elapsed());
        for args in [&["stats"][..], &["verify"], &["gc", "--older-than", "0s"]] {
            let started = std::time::Instant::now();
            let (url, args_owned) = (g.s3_url(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
            let (code, out, rss) = tokio::task::spawn_blocking(move || {
                peak_rss(&url, &args_owned.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await
            .unwrap();
            assert_eq!(code, 0, "{args:?}: {}", out.lines().last().unwrap_or_default());
            eprintln!("{total} objects: cache {args:?}: peak RSS {rss} KiB, {:?}", started.elapsed());
            measured.push((total, args[0], rss));
        }
    }
    for (_, args, rss) in &measured {
        assert!(*rss < 48 * 1024, "cache {args}: peak RSS {rss} KiB");
    }
    let (small, large) = (measured[0].2, measured[3].2);
    assert!(large < small + 8 * 1024, "stats: {small} KiB at 10k objects, {large} KiB at 100k");
}
