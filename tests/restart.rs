//! `garage-init apply` against a real Garage that crashes in the middle of
//! the run and comes back without state it had: its applied layout, or its
//! whole metadata directory (and with it its node id). Whatever garage-init
//! did before the crash, it must observe Garage again and converge in the
//! same run.
//!
//! Environment: `RESTART_TEST_DEADLINE` (garage-init's deadline in these
//! tests, default `60s`), `RESTART_SOAK_CASES` (default 30) and
//! `RESTART_SOAK_SEED` (replays a soak; the seed is printed at its start).

mod common;

use std::time::{Duration, Instant};

use common::gate::Gate;
use common::*;
use serde_json::Value;

const KEY_ID: &str = "GK6275696c646b69742d6b6579";
const SECRET: &str = "8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3";
const BUCKET: &str = "buildkit-cache";

/// Garage's log line when it starts without a readable `cluster_layout`.
const STARTED_WITHOUT_LAYOUT: &str = "No valid previous cluster layout stored";

/// garage-init's environment for `g`, with its admin API at `admin_url`.
fn init_env(g: &Garage, admin_url: &str) -> Vec<(String, String)> {
    let deadline = std::env::var("RESTART_TEST_DEADLINE").unwrap_or_else(|_| "60s".into());
    with(&with(&g.init_env(), "GARAGE_INIT_ADMIN_URL", admin_url), "GARAGE_INIT_DEADLINE", &deadline)
}

/// What a converged run leaves, read with the test's own calls: one role,
/// for `node_id`, in an applied layout with nothing staged; one bucket and
/// one key, the key allowed to read, write and own the bucket; and the test's
/// own signed PUT, GET and DELETE with that key.
async fn check_converged(g: &Garage, node_id: &str) -> Result<(), String> {
    let get = |what: String| async move { g.get(&what).await.map_err(|e| format!("{what}: {e:?}")) };
    let layout = get("GetClusterLayout".into()).await?;
    let roles: Vec<&str> = layout["roles"].as_array().into_iter().flatten().filter_map(|r| r["id"].as_str()).collect();
    if roles != [node_id] || layout["version"].as_u64() < Some(1) {
        return Err(format!("wanted an applied layout with one role, for {node_id}; Garage holds {layout}"));
    }
    if layout["stagedRoleChanges"].as_array().is_none_or(|s| !s.is_empty()) {
        return Err(format!("layout changes left staged: {layout}"));
    }
    let buckets = get("ListBuckets".into()).await?;
    if buckets.as_array().map(Vec::len) != Some(1) || buckets[0]["globalAliases"] != serde_json::json!([BUCKET]) {
        return Err(format!("wanted one bucket, {BUCKET}; Garage holds {buckets}"));
    }
    let keys = get("ListKeys".into()).await?;
    if keys.as_array().map(Vec::len) != Some(1) || keys[0]["id"] != KEY_ID {
        return Err(format!("wanted one key, {KEY_ID}; Garage holds {keys}"));
    }
    let bucket = get(format!("GetBucketInfo?globalAlias={BUCKET}")).await?;
    let grant = bucket["keys"].as_array().into_iter().flatten().find(|k| k["accessKeyId"] == KEY_ID);
    let all = serde_json::json!({"read": true, "write": true, "owner": true});
    if grant.map(|k| &k["permissions"]) != Some(&all) {
        return Err(format!("wanted {KEY_ID} to read, write and own {BUCKET}; bucket: {bucket}"));
    }
    S3::new(&g.s3_url(), BUCKET, KEY_ID, SECRET)
        .round_trip("written-by-the-test", b"after a restart")
        .await
        .map_err(|e| format!("the test's own S3 round trip as {KEY_ID}: {e}"))
}

/// A second run finds everything in place and changes nothing.
async fn assert_second_run_changes_nothing(g: &Garage) {
    let run = garage_init(&init_env(g, &g.admin_url()), &[]).await;
    assert_eq!(run.code, 0, "second run: {run:?}");
    for resource in ["layout", "key", "bucket", "grant"] {
        assert_eq!(run.outcome(resource).as_deref(), Some("unchanged"), "second run, {resource}: {run:?}");
    }
    assert_eq!(run.outcome("s3 check").as_deref(), Some("passed"), "second run: {run:?}");
}

async fn node_id(g: &Garage) -> Result<String, String> {
    let info = g.get("GetNodeInfo?node=self").await.map_err(|e| format!("GetNodeInfo: {e:?}"))?;
    info["success"].as_object().and_then(|m| m.keys().next().cloned()).ok_or(format!("GetNodeInfo: {info}"))
}

fn layout_version(status: &Value) -> u64 {
    status["layoutVersion"].as_u64().expect("GetClusterStatus has layoutVersion")
}

/// Starts Garage and garage-init, and returns once garage-init has applied
/// the layout and is held at the gate before its next admin request.
async fn run_held_after_the_layout_is_applied() -> (Garage, Gate, tokio::task::JoinHandle<Run>) {
    let g = Garage::started().await;
    let gate = Gate::hold_after(g.admin_port, "ApplyClusterLayout").await;
    let env = init_env(&g, &gate.url());
    let init = tokio::spawn(async move { garage_init(&env, &[]).await });
    gate.until_holding(Duration::from_secs(30)).await;
    assert!(!init.is_finished(), "garage-init ended while held: {:?}", init.await.unwrap());
    let status = g.get("GetClusterStatus").await.unwrap();
    assert!(layout_version(&status) >= 1, "garage-init's ApplyClusterLayout did not apply a layout: {status}");
    (g, gate, init)
}

/// Opens the gate and waits for garage-init; prints how long it took.
async fn release_and_finish(g: &Garage, gate: &Gate, init: tokio::task::JoinHandle<Run>) -> Run {
    let released = Instant::now();
    gate.release();
    let run = init.await.unwrap();
    eprintln!(
        "garage-init exited {} after {:.2} s, {:.2} s after the gate opened",
        run.code,
        run.elapsed.as_secs_f64(),
        released.elapsed().as_secs_f64()
    );
    assert_eq!(run.code, 0, "garage-init did not converge in the same run: {run:?}\ngarage log:\n{}", g.log());
    run
}

#[tokio::test]
async fn layout_lost_in_a_restart_mid_run_is_applied_again() {
    // The sequence, the same every time:
    // 1. Garage starts; garage-init starts with its admin URL on a gate, a
    //    pass-through proxy that holds every request made after the first
    //    ApplyClusterLayout.
    // 2. garage-init stages its role and applies layout v1; its next admin
    //    request waits at the gate. It has seen v1 applied, and done nothing
    //    since.
    // 3. The test checks that Garage holds v1, kills it (SIGKILL), deletes
    //    meta/cluster_layout (what a kill right after the apply can leave
    //    unreadable), starts it again, and checks that the fault took:
    //    layout version 0 and Garage's log says it started without a layout.
    // 4. The gate opens. Every request garage-init makes from here meets a
    //    Garage without the layout it applied: it exits 0 only if it notices
    //    and applies the layout again.
    // Killing Garage when the test's own polling first sees v1 would race
    // garage-init's remaining steps (a few hundred ms): a run that ended
    // before the kill would pass without meeting the fault.
    let (mut g, gate, init) = run_held_after_the_layout_is_applied().await;
    let id = g.node_id().await;
    g.kill();
    g.delete_layout_file();
    let log_before = g.log().len();
    g.start();
    g.wait_for_admin().await;
    let status = g.get("GetClusterStatus").await.unwrap();
    assert_eq!(layout_version(&status), 0, "the layout survived the restart: {status}");
    assert!(g.log()[log_before..].contains(STARTED_WITHOUT_LAYOUT), "garage log:\n{}", g.log());
    assert_eq!(g.node_id().await, id, "the node id changed with only the layout file gone");

    release_and_finish(&g, &gate, init).await;
    check_converged(&g, &id).await.unwrap_or_else(|e| panic!("{e}\ngarage log:\n{}", g.log()));
    assert_second_run_changes_nothing(&g).await;
}

#[tokio::test]
async fn metadata_lost_in_a_restart_mid_run_converges_with_the_new_node_id() {
    // The sequence of the test above, with the whole metadata directory
    // removed while Garage is down: it comes back with a new node id, no
    // layout, and empty key and bucket tables. garage-init applied a layout
    // with a role for the old id; the layout it ends with must hold one role,
    // for the new id.
    let (mut g, gate, init) = run_held_after_the_layout_is_applied().await;
    let old_id = g.node_id().await;
    g.kill();
    g.wipe_metadata();
    g.start();
    g.wait_for_admin().await;
    let new_id = g.node_id().await;
    assert_ne!(new_id, old_id, "the node kept its id without its metadata");
    let status = g.get("GetClusterStatus").await.unwrap();
    assert_eq!(layout_version(&status), 0, "a layout survived the loss of the metadata: {status}");
    let layout = g.get("GetClusterLayout").await.unwrap();
    assert_eq!(layout["roles"], serde_json::json!([]), "roles survived the loss of the metadata: {layout}");

    release_and_finish(&g, &gate, init).await;
    check_converged(&g, &new_id).await.unwrap_or_else(|e| panic!("{e}\ngarage log:\n{}", g.log()));
    assert_second_run_changes_nothing(&g).await;
}

#[tokio::test]
async fn an_import_refused_before_a_state_loss_is_tried_again_after_it() {
    // What a run remembers must not outvote what it sees. Garage refuses to
    // import a deleted key id (409); the run holds that answer, Garage then
    // loses its metadata (and with it the deleted id), and the import must
    // simply be made again: no "the key was deleted" from the earlier answer.
    let mut g = Garage::started().await;
    assert_eq!(garage_init(&init_env(&g, &g.admin_url()), &[]).await.code, 0);
    g.post(&format!("DeleteKey?id={KEY_ID}"), serde_json::json!({})).await.unwrap();

    let gate = Gate::hold_after(g.admin_port, "ImportKey").await;
    let env = init_env(&g, &gate.url());
    let init = tokio::spawn(async move { garage_init(&env, &[]).await });
    gate.until_holding(Duration::from_secs(30)).await;
    assert!(!init.is_finished(), "garage-init ended while held: {:?}", init.await.unwrap());
    let refused = g.post("ImportKey", serde_json::json!({"accessKeyId": KEY_ID, "secretAccessKey": SECRET})).await;
    assert_eq!(refused.map_err(|(status, _)| status).err(), Some(409), "Garage should refuse the deleted id");

    g.kill();
    g.wipe_metadata();
    g.start();
    g.wait_for_admin().await;
    let new_id = g.node_id().await;

    release_and_finish(&g, &gate, init).await;
    check_converged(&g, &new_id).await.unwrap_or_else(|e| panic!("{e}\ngarage log:\n{}", g.log()));
    assert_second_run_changes_nothing(&g).await;
}

#[tokio::test]
async fn a_create_lost_on_the_way_never_takes_a_nameless_bucket_made_before_it() {
    // Someone made a nameless, empty bucket before the run. garage-init's
    // first CreateBucket is lost before it reaches Garage: no answer, and no
    // bucket made. The nameless bucket must not be taken for the one the
    // create could have left: the create is sent again, and the foreign
    // bucket stays as it was.
    let g = Garage::started().await;
    let first = garage_init(&init_env(&g, &g.admin_url()), &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let ours = g.get(&format!("GetBucketInfo?globalAlias={BUCKET}")).await.unwrap()["id"].as_str().unwrap().to_string();
    g.post(&format!("DeleteBucket?id={ours}"), serde_json::json!({})).await.unwrap();
    let foreign = g.post("CreateBucket", serde_json::json!({})).await.unwrap()["id"].as_str().unwrap().to_string();

    let gate = Gate::lose_first(g.admin_port, "CreateBucket").await;
    let run = garage_init(&init_env(&g, &gate.url()), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let creates = gate.requests().iter().filter(|r| r.contains("/v2/CreateBucket")).count();
    assert_eq!(creates, 2, "the lost create is sent again: {:?}", gate.requests());
    let made = g.get(&format!("GetBucketInfo?globalAlias={BUCKET}")).await.unwrap();
    assert_ne!(made["id"], foreign.as_str(), "the foreign nameless bucket was taken: {made}");
    let foreign_now = g.get(&format!("GetBucketInfo?id={foreign}")).await.unwrap();
    assert_eq!(foreign_now["globalAliases"], serde_json::json!([]), "{foreign_now}");
    let buckets = g.get("ListBuckets").await.unwrap();
    assert_eq!(buckets.as_array().unwrap().len(), 2, "ours and the foreign one: {buckets}");
}

/// splitmix64: a tiny seeded generator, so that a soak can be replayed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for test timings.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.parse().unwrap_or_else(|_| panic!("{name}={value}: not a number")))
}

#[tokio::test]
async fn soak_sigkill_at_random_moments_converges_every_time() {
    // A case: fresh Garage, garage-init started, Garage SIGKILLed at a random
    // moment of the first 600 ms and started again after a random 0-300 ms.
    // A kill after garage-init's last answer is not a crash in the middle of
    // a run (and a kill then could cost Garage a layout that no run is left
    // to restore): such a draw is not counted (and not killed at all if
    // garage-init has already exited), and drawing goes on until
    // RESTART_SOAK_CASES kills landed during a run, that is until that many
    // runs had to talk to the restarted Garage.
    let cases = env_number("RESTART_SOAK_CASES").unwrap_or(30);
    let seed = env_number("RESTART_SOAK_SEED").unwrap_or_else(|| fastrand::u64(..));
    let max_draws = cases * 10;
    eprintln!("restart soak: seed {seed}, {cases} cases (replay with RESTART_SOAK_SEED={seed})");
    let mut rng = SplitMix64(seed);
    let mut times = Vec::new();
    let (mut draws, mut lost_layout) = (0, 0);

    while (times.len() as u64) < cases {
        draws += 1;
        assert!(
            draws <= max_draws,
            "seed {seed}: {draws} draws and only {} kills landed during a run: garage-init ends before most kill moments",
            times.len()
        );
        let kill_at = Duration::from_millis(rng.below(600));
        let pause = Duration::from_millis(rng.below(301));
        let case = times.len() + 1;
        let what = format!(
            "seed {seed}, case {case} of {cases} (draw {draws}): SIGKILL {} ms into the run, restart {} ms later",
            kill_at.as_millis(),
            pause.as_millis()
        );

        let mut g = Garage::new();
        g.start();
        let env = init_env(&g, &g.admin_url());
        let started = tokio::time::Instant::now();
        let init = tokio::spawn(async move { garage_init(&env, &[]).await });
        tokio::time::sleep_until(started + kill_at).await;
        if init.is_finished() {
            let run = init.await.unwrap();
            assert_eq!(run.code, 0, "{what}: garage-init failed without a crash: {run:?}\ngarage log:\n{}", g.log());
            eprintln!(
                "draw {draws:>3}: kill at {:>3} ms: garage-init had exited 0 in {:.2} s; not killed, not counted",
                kill_at.as_millis(),
                run.elapsed.as_secs_f64()
            );
            continue;
        }
        g.kill();
        let layout_on_disk = g.metadata_dir().join("cluster_layout").exists();
        tokio::time::sleep(pause).await;
        let log_before = g.log().len();
        g.start();
        let run = init.await.unwrap();
        // What the restarted Garage logged before the test's own calls: the
        // requests garage-init made to it, and whether it lost its layout.
        let restarted_log = g.log().get(log_before..).unwrap_or("").to_string();
        let fail = |failure: String| -> ! {
            let log = g.log();
            let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("restart-soak-seed-{seed}-case-{case}-garage.log"));
            std::fs::write(&kept, &log).unwrap();
            panic!("{what}: {failure}\nGarage log (kept in {}):\n{log}", kept.display());
        };
        if run.code != 0 {
            fail(format!("garage-init did not converge in the same run: {run:?}"));
        }
        if !restarted_log.lines().any(|l| l.contains("generic_server") && !l.contains("listening")) {
            // Killed between garage-init's last answer and its exit: no
            // crash in the middle of a run, and any state the kill cost
            // Garage has no run left to restore.
            eprintln!(
                "draw {draws:>3}: kill at {:>3} ms: garage-init had its last answer before the kill and exited 0 \
                 in {:.2} s; not counted",
                kill_at.as_millis(),
                run.elapsed.as_secs_f64()
            );
            continue;
        }
        let lost = layout_on_disk && restarted_log.contains(STARTED_WITHOUT_LAYOUT);
        lost_layout += u32::from(lost);
        eprintln!(
            "draw {draws:>3}: kill at {:>3} ms, restart after {:>3} ms: case {case:>2}: exit 0 in {:.2} s{}",
            kill_at.as_millis(),
            pause.as_millis(),
            run.elapsed.as_secs_f64(),
            if lost { " (Garage came back without its layout)" } else { "" }
        );
        let checked = async {
            g.admin_answers_within(Duration::from_secs(20)).await?;
            check_converged(&g, &node_id(&g).await?).await
        };
        if let Err(failure) = checked.await {
            fail(failure);
        }
        times.push(run.elapsed);
    }

    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    eprintln!(
        "restart soak, seed {seed}: {cases} cases converged (in {draws} draws); garage-init took median {:.2} s, \
         max {:.2} s; Garage came back without its layout in {lost_layout}",
        median.as_secs_f64(),
        max.as_secs_f64()
    );
}
