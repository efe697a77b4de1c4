//! Lifecycle rules on a bucket, against real Garage processes. What
//! garage-init wrote is read back with boto3 (`tests/support/s3_lifecycle.py`),
//! not with garage-init's own S3 code; whether it wrote at all is counted by
//! Garage's own metrics.

mod common;

use common::*;
use serde_json::{Value, json};

const KEY_ID: &str = "GK6275696c646b69742d6b6579";
const SECRET: &str = "8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3";
const BUCKET: &str = "buildkit-cache";
const KEY: (&str, &str) = (KEY_ID, SECRET);

fn lifecycle_env(g: &Garage, expire: &str, abort: &str) -> Vec<(String, String)> {
    let env = with(&g.init_env(), "GARAGE_INIT_EXPIRE_AFTER_DAYS", expire);
    with(&env, "GARAGE_INIT_ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS", abort)
}

/// The bucket's rules as boto3 reads them, sorted by id.
fn rules(g: &Garage) -> Vec<Value> {
    let mut rules = boto3_lifecycle(&g.s3_url(), BUCKET, KEY, "get", None)["rules"].as_array().unwrap().clone();
    rules.sort_by_key(|r| r["ID"].as_str().unwrap_or("").to_string());
    rules
}

/// The single rule of earlier versions: every object alike.
fn single_expire_rule(days: u64) -> Value {
    json!({"ID": "garage-init-expire-objects", "Status": "Enabled", "Expiration": {"Days": days}})
}

/// The pair for a declared expiry of `days`: blobs after it, manifests 2 days sooner.
fn expire_rules(days: u64) -> [Value; 2] {
    [
        json!({"ID": "garage-init-expire-blobs", "Status": "Enabled", "Filter": {"Prefix": "blobs/"},
               "Expiration": {"Days": days}}),
        json!({"ID": "garage-init-expire-manifests", "Status": "Enabled", "Filter": {"Prefix": "manifests/"},
               "Expiration": {"Days": days - 2}}),
    ]
}

/// The rules for a declared expiry and abort, sorted by id as [`rules`] gives them.
fn declared(expire: u64, abort: u64) -> Vec<Value> {
    let [blobs, manifests] = expire_rules(expire);
    vec![abort_rule(abort), blobs, manifests]
}

fn abort_rule(days: u64) -> Value {
    json!({"ID": "garage-init-abort-incomplete-uploads", "Status": "Enabled",
           "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days}})
}

/// A rule someone else set: expires objects under `logs/` after 3 days.
fn foreign_rule() -> Value {
    json!({"ID": "expire-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 3}})
}

/// A rule someone else set that reaches the cache: blobs under `blobs/old/` after 3 days.
fn foreign_cache_rule() -> Value {
    json!({"ID": "expire-old-blobs", "Status": "Enabled", "Filter": {"Prefix": "blobs/old/"}, "Expiration": {"Days": 3}})
}

/// Lifecycle writes Garage has answered so far.
async fn lifecycle_writes(g: &Garage) -> u64 {
    let counts = g.s3_request_counts().await;
    ["PutBucketLifecycleConfiguration", "DeleteBucketLifecycle"]
        .iter()
        .map(|e| counts.get(*e).copied().unwrap_or(0))
        .sum()
}

/// The rules as boto3 shows them, without the fields boto3 adds for empty filters.
fn normalised(rules: &[Value]) -> Vec<Value> {
    rules
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if r.get("Filter")
                .is_some_and(|f| f.as_object().is_some_and(|o| o.is_empty()) || f == &json!({"Prefix": ""}))
            {
                r.as_object_mut().unwrap().remove("Filter");
            }
            r
        })
        .collect()
}

#[tokio::test]
async fn a_fresh_bucket_gets_exactly_the_declared_rules_and_a_second_run_writes_nothing() {
    let g = Garage::started().await;
    let env = lifecycle_env(&g, "30", "1");

    let plan = garage_init(&env, &["plan"]).await;
    assert_eq!(plan.code, 10, "{plan:?}");
    assert_eq!(plan.outcome("lifecycle").as_deref(), Some("create"), "{plan:?}");

    let run = garage_init(&env, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome("lifecycle").as_deref(), Some("created"), "{run:?}");
    assert!(
        run.stdout
            .contains("blobs expire after 30 days and manifests after 28, incomplete uploads are aborted after 1 day"),
        "{run:?}"
    );
    assert_eq!(normalised(&rules(&g)), declared(30, 1));

    let writes = lifecycle_writes(&g).await;
    assert_eq!(writes, 1, "one write for a fresh bucket");
    let s3_before = g.s3_request_counts().await;
    let again = garage_init(&env, &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.outcome("lifecycle").as_deref(), Some("unchanged"), "{again:?}");
    assert_eq!(lifecycle_writes(&g).await, writes, "a second run wrote lifecycle rules: {again:?}");
    // The converged run's S3 requests: one read of the rules and the proof's round trip.
    let s3_after = g.s3_request_counts().await;
    let spent: Vec<(String, u64)> = s3_after
        .iter()
        .map(|(e, n)| (e.clone(), n - s3_before.get(e).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let want = [("DeleteObject", 1), ("GetBucketLifecycleConfiguration", 1), ("GetObject", 1), ("PutObject", 1)];
    assert_eq!(spent, want.map(|(e, n)| (e.to_string(), n)), "{again:?}");
    let plan = garage_init(&env, &["plan"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
}

#[tokio::test]
async fn a_changed_declaration_updates_the_rules_and_off_removes_only_ours() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&lifecycle_env(&g, "30", "1"), &[]).await.code, 0);

    let env = lifecycle_env(&g, "7", "1");
    let plan = garage_init(&env, &["plan"]).await;
    assert_eq!((plan.code, plan.outcome("lifecycle").as_deref()), (10, Some("update")), "{plan:?}");
    let run = garage_init(&env, &[]).await;
    assert_eq!((run.code, run.outcome("lifecycle").as_deref()), (0, Some("updated")), "{run:?}");
    assert_eq!(normalised(&rules(&g)), declared(7, 1));

    // Someone adds a rule of their own; turning garage-init's rules off keeps it.
    let mut all = rules(&g);
    all.push(foreign_rule());
    boto3_lifecycle(&g.s3_url(), BUCKET, KEY, "put", Some(&Value::Array(all)));
    let run = garage_init(&lifecycle_env(&g, "off", "0"), &[]).await;
    assert_eq!((run.code, run.outcome("lifecycle").as_deref()), (0, Some("updated")), "{run:?}");
    assert!(run.stdout.contains("1 other rule kept"), "{run:?}");
    assert_eq!(rules(&g), vec![foreign_rule()]);
}

#[tokio::test]
async fn a_foreign_rule_is_kept_and_reported_as_drift_when_it_also_expires_cache_objects() {
    let g = Garage::started().await;
    // The bucket and the key first, without lifecycle rules; then someone's own rules.
    assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    boto3_lifecycle(&g.s3_url(), BUCKET, KEY, "put", Some(&json!([foreign_cache_rule(), foreign_rule()])));

    let env = lifecycle_env(&g, "30", "1");
    let run = garage_init(&env, &[]).await;
    assert_eq!((run.code, run.outcome("lifecycle").as_deref()), (0, Some("created")), "{run:?}");
    let drift: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("lifecycle") && l.contains("drift")).collect();
    assert_eq!(drift.len(), 1, "only the rule under the cache's prefixes is drift: {run:?}");
    assert!(drift[0].contains("expire-old-blobs") && drift[0].contains("expires objects after 3 days"), "{run:?}");
    let mut want = vec![foreign_rule(), foreign_cache_rule()];
    want.extend(declared(30, 1));
    assert_eq!(normalised(&rules(&g)), want);

    let writes = lifecycle_writes(&g).await;
    let again = garage_init(&env, &[]).await;
    assert_eq!((again.code, again.outcome("lifecycle").as_deref()), (0, Some("unchanged")), "{again:?}");
    assert_eq!(lifecycle_writes(&g).await, writes, "{again:?}");
    // Drift alone: plan exits 11.
    assert_eq!(garage_init(&env, &["plan"]).await.code, 11);
}

#[tokio::test]
async fn the_single_rule_of_earlier_versions_is_replaced_by_apply_and_plan_then_has_nothing_to_do() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    // What an earlier garage-init left: every object after 30 days; and someone's own rule.
    let before = json!([single_expire_rule(30), abort_rule(1), foreign_rule()]);
    boto3_lifecycle(&g.s3_url(), BUCKET, KEY, "put", Some(&before));

    let env = lifecycle_env(&g, "30", "1");
    let plan = garage_init(&env, &["plan"]).await;
    assert_eq!((plan.code, plan.outcome("lifecycle").as_deref()), (10, Some("update")), "{plan:?}");
    assert!(plan.stdout.contains("blobs expire after 30 days and manifests after 28"), "{plan:?}");
    assert_eq!(lifecycle_writes(&g).await, 1, "plan wrote nothing (the one write is the test's)");

    let run = garage_init(&env, &[]).await;
    assert_eq!((run.code, run.outcome("lifecycle").as_deref()), (0, Some("updated")), "{run:?}");
    assert!(run.stdout.contains("(1 other rule kept)"), "{run:?}");
    let mut want = vec![foreign_rule()];
    want.extend(declared(30, 1));
    assert_eq!(normalised(&rules(&g)), want, "the old rule is gone, the pair and the other rule are there");

    let plan = garage_init(&env, &["plan"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
}

#[tokio::test]
async fn every_declared_expiry_lets_manifests_expire_before_the_blobs_they_list() {
    let g = Garage::started().await;
    for days in [3u64, 4, 10, 30, 365, 36500] {
        let env = lifecycle_env(&g, &days.to_string(), "1");
        let run = garage_init(&env, &[]).await;
        assert_eq!(run.code, 0, "{days}: {run:?}");
        // touch_refresh as `env` prints it for the same declaration.
        let printed = garage_init(&env, &["env", "--format", "json"]).await;
        let touch = serde_json::from_str::<Value>(&printed.stdout).unwrap()["buildkit"]["touch_refresh"].clone();
        let hours: u64 = touch.as_str().and_then(|t| t.strip_suffix('h')).and_then(|h| h.parse().ok()).unwrap();
        let all = rules(&g);
        let days_of = |id: &str, prefix: &str| {
            let r = all.iter().find(|r| r["ID"] == id).unwrap_or_else(|| panic!("{days}: no {id} in {all:?}"));
            assert_eq!(r["Filter"]["Prefix"], prefix, "{days}: {r}");
            r["Expiration"]["Days"].as_u64().unwrap()
        };
        let blobs = days_of("garage-init-expire-blobs", "blobs/");
        let manifests = days_of("garage-init-expire-manifests", "manifests/");
        assert_eq!(blobs, days, "blobs expire after the declared days");
        // A manifest written at t lists blobs written since t - touch_refresh; Garage's daily
        // pass needs one more day between the two.
        let margin = hours.div_ceil(24) + 1;
        let gap = blobs.checked_sub(manifests);
        assert!(manifests >= 1 && gap.is_some_and(|g| g >= margin), "{days}: manifests {manifests}, touch {hours}h");
    }
}

#[tokio::test]
async fn the_rules_follow_buildkits_prefixes_as_env_prints_them() {
    let g = Garage::started().await;
    let env = with(&lifecycle_env(&g, "30", "1"), "GARAGE_INIT_CACHE_PREFIX", "ci/");
    let env = with(&env, "GARAGE_INIT_CACHE_BLOBS_PREFIX", "layers/");
    assert_eq!(garage_init(&env, &[]).await.code, 0);
    let prefixes: Vec<Value> = rules(&g).iter().map(|r| r["Filter"]["Prefix"].clone()).collect();
    assert_eq!(prefixes, [Value::Null, json!("ci/layers/"), json!("ci/manifests/")]);
    let printed = garage_init(&env, &["env", "--format", "buildkit"]).await;
    assert!(printed.stdout.contains(",prefix=ci/,manifests_prefix=manifests/,blobs_prefix=layers/"), "{printed:?}");
    assert_eq!(garage_init(&env, &["plan"]).await.code, 0);
}

#[tokio::test]
async fn an_expiry_too_short_to_keep_manifests_whole_is_refused_with_the_smallest_that_works() {
    let g = Garage::started().await;
    let requests = async || {
        g.admin_request_counts().await.iter().filter(|(e, _)| !e.contains("etrics")).map(|(_, n)| n).sum::<u64>()
    };
    let before = requests().await;
    for days in ["1", "2"] {
        // Every command that declares or prints the expiry; `cache` takes no lifecycle setting.
        for args in [&[][..], &["plan"], &["env"]] {
            let run = garage_init(&lifecycle_env(&g, days, "1"), args).await;
            assert_eq!(run.code, 2, "{days} {args:?}: {run:?}");
            assert!(run.stderr.contains("--expire-after-days (GARAGE_INIT_EXPIRE_AFTER_DAYS)"), "{run:?}");
            assert!(run.stderr.contains("the smallest value that works is 3"), "{run:?}");
        }
    }
    // The same in a spec, at the line that says it.
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "buckets:\n  - name: {BUCKET}\n    lifecycle:\n      expire_after_days: 2\n\
             keys:\n  - id: {KEY_ID}\n    secret: {SECRET}\n\
             grants:\n  - key: {KEY_ID}\n    bucket: {BUCKET}\n    permissions: [read, write, owner]\n"
        ),
    )
    .unwrap();
    let run = garage_init(&g.init_env(), &["--spec", spec.to_str().unwrap()]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("spec.yaml, line 4") && run.stderr.contains("smallest value that works is 3"),
        "{run:?}"
    );
    assert_eq!(requests().await, before, "nothing was sent to Garage");
}

#[tokio::test]
async fn a_bucket_without_a_declared_lifecycle_is_left_as_it_is() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    boto3_lifecycle(&g.s3_url(), BUCKET, KEY, "put", Some(&json!([foreign_rule(), single_expire_rule(90)])));
    let before = rules(&g);
    let writes = lifecycle_writes(&g).await;

    let run = garage_init(&g.init_env(), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome("lifecycle"), None, "{run:?}");
    assert_eq!(rules(&g), before);
    assert_eq!(lifecycle_writes(&g).await, writes);
}

#[tokio::test]
async fn a_lifecycle_on_a_bucket_the_key_does_not_own_is_refused_before_any_request() {
    let g = Garage::started().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "buckets:\n  - name: {BUCKET}\n    lifecycle:\n      expire_after_days: 30\n\
             keys:\n  - id: {KEY_ID}\n    secret: {SECRET}\n\
             grants:\n  - key: {KEY_ID}\n    bucket: {BUCKET}\n    permissions: [read, write]\n"
        ),
    )
    .unwrap();
    // Every admin request but the metrics reads themselves (Garage 2.5 counts those).
    let requests = async || {
        g.admin_request_counts().await.iter().filter(|(e, _)| !e.contains("etrics")).map(|(_, n)| n).sum::<u64>()
    };
    let before = requests().await;
    let run = garage_init(&g.init_env(), &["--spec", spec.to_str().unwrap()]).await;
    assert_eq!(run.code, 2, "{run:?}");
    // Where: the bucket's `lifecycle:` line.
    assert!(run.stderr.contains("spec.yaml, line 4"), "{run:?}");
    assert!(run.stderr.contains("owner") && run.stderr.contains("add `owner` to a grant"), "{run:?}");
    assert_eq!(requests().await, before, "{run:?}");
}

#[tokio::test]
async fn out_of_range_days_are_refused_before_any_request() {
    for (expire, abort) in [("36501", "1"), ("-3", "1"), ("30", "soon")] {
        let env = vec![
            ("GARAGE_INIT_ADMIN_TOKEN".to_string(), "t".repeat(32)),
            ("GARAGE_INIT_ADMIN_URL".to_string(), "http://127.0.0.1:9".to_string()),
            ("GARAGE_INIT_EXPIRE_AFTER_DAYS".to_string(), expire.to_string()),
            ("GARAGE_INIT_ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS".to_string(), abort.to_string()),
        ];
        let run = garage_init(&env, &[]).await;
        assert_eq!(run.code, 2, "{expire} {abort}: {run:?}");
        assert!(run.stderr.contains("DAYS"), "{run:?}");
    }
}

#[tokio::test]
async fn a_long_configuration_of_someone_elses_rules_is_read_whole_and_kept() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    // 600 narrow rules: a document past the 64 KiB an S3 probe answer may have.
    let theirs: Vec<Value> = (0..600)
        .map(|i| {
            json!({"ID": format!("team-{i:04}-scratch-space"), "Status": "Enabled",
                   "Filter": {"Prefix": format!("scratch/team-{i:04}/")}, "Expiration": {"Days": 7}})
        })
        .collect();
    boto3_lifecycle(&g.s3_url(), BUCKET, KEY, "put", Some(&Value::Array(theirs)));

    let run = garage_init(&lifecycle_env(&g, "30", "1"), &[]).await;
    assert_eq!((run.code, run.outcome("lifecycle").as_deref()), (0, Some("created")), "{run:?}");
    assert!(run.stdout.contains("(600 other rules kept)"), "{run:?}");
    let all = rules(&g);
    assert_eq!(all.len(), 603);
    assert_eq!(all.iter().filter(|r| r["ID"].as_str().unwrap().starts_with("team-")).count(), 600);
}

/// Runs whose S3 requests pass a gate that holds them once the rules were
/// written (`PUT ?lifecycle`), so that the test can act between the write
/// and the read-back.
async fn held_after_the_write(g: &Garage, expire: &str) -> (common::gate::Gate, tokio::task::JoinHandle<Run>) {
    let gate = common::gate::Gate::hold_after_s3(g.s3_port, "PUT", "lifecycle").await;
    let env = with(&lifecycle_env(g, expire, "1"), "GARAGE_INIT_S3_URL", &gate.url());
    let run = tokio::spawn(async move { garage_init(&env, &[]).await });
    gate.until_holding(std::time::Duration::from_secs(30)).await;
    (gate, run)
}

#[tokio::test]
async fn written_rules_are_read_back_before_the_run_reports_them() {
    let g = Garage::started().await;
    let (gate, run) = held_after_the_write(&g, "30").await;
    gate.release();
    let run = run.await.unwrap();
    assert_eq!((run.code, run.outcome("lifecycle").as_deref()), (0, Some("created")), "{run:?}");
    let s3: Vec<String> =
        gate.requests().into_iter().filter(|r| r.contains("&lifecycle=") || r.contains("?lifecycle")).collect();
    let put =
        s3.iter().position(|r| r.starts_with("PUT ")).unwrap_or_else(|| panic!("no write: {:?}", gate.requests()));
    assert!(
        s3[put + 1..].iter().any(|r| r.starts_with("GET ")),
        "the rules were not read back after the write: {s3:?}"
    );
}

#[tokio::test]
async fn rules_another_writer_changes_before_the_read_back_end_the_run_with_a_conflict() {
    let g = Garage::started().await;
    let (gate, run) = held_after_the_write(&g, "30").await;
    // A second run (or a person) declares 7 days, between this run's write and its read-back.
    let theirs = declared(7, 1);
    boto3_lifecycle(&g.s3_url(), BUCKET, KEY, "put", Some(&Value::Array(theirs.clone())));
    gate.release();
    let run = run.await.unwrap();
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("changed by someone else"), "{run:?}");
    assert!(run.stderr.contains("(objects under blobs/) expires objects after 30 days"), "says what it wrote: {run:?}");
    assert!(
        run.stderr.contains("(objects under blobs/) expires objects after 7 days"),
        "says what it read back: {run:?}"
    );
    assert!(!run.stdout.contains("s3 check"), "a run that lost its rules does not go on to prove: {run:?}");
    // The other writer's rules stay: garage-init does not fight over them.
    assert_eq!(normalised(&rules(&g)), theirs);
    assert_eq!(
        garage_init(&lifecycle_env(&g, "7", "1"), &["plan"]).await.code,
        0,
        "Garage holds the other declaration"
    );
}
