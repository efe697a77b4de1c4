//! A listed node that comes back with a new node id (its metadata directory
//! lost, the same RPC address), against real Garage processes on loopback:
//! two nodes, replication factor 2, so that every write needs both.
//!
//! A node is what answers at its admin URL now: garage-init never stages a
//! role for an id that no longer answers there, and a layout that still
//! holds the role of a replaced node is named, with the Garage commands that
//! fix it, and replaced only with `--allow-layout-changes`.

mod common;

use std::time::Duration;

use common::gate::Gate;
use common::*;
use serde_json::{Value, json};

const KEY: &str = "GK0a0a0a0a0a0a0a0a0a0a0a0a";
const SECRET: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const BUCKET: &str = "buildkit-cache";

/// Two configured nodes sharing one admin token, not started.
fn two_nodes() -> (Garage, Garage) {
    let a = Garage::with_replication(2);
    let b = Garage::with_replication_and_token(2, &a.token);
    (a, b)
}

struct SpecFile {
    _dir: tempfile::TempDir,
    path: String,
}

/// The spec: node A (reached at `a_admin`, which may be a gate in front of
/// it) in zone dc1, node B in zone dc2, 1 GB each; one bucket, one key.
fn spec(a: &Garage, a_admin: &str, b: &Garage) -> SpecFile {
    spec_with(a, a_admin, b, "")
}

/// [`spec`], with more buckets (`  - name: x` lines).
fn spec_with(a: &Garage, a_admin: &str, b: &Garage, more_buckets: &str) -> SpecFile {
    let text = format!(
        "cluster:
  nodes:
    - admin_url: {a_admin}
      rpc_address: 127.0.0.1:{}
      zone: dc1
      capacity: 1GB
    - admin_url: {}
      rpc_address: 127.0.0.1:{}
      zone: dc2
      capacity: 1GB
      tags: [spare]
buckets:
  - name: {BUCKET}
{more_buckets}keys:
  - id: {KEY}
    name: builder
    secret: {SECRET}
grants:
  - key: builder
    bucket: {BUCKET}
    permissions: [read, write, owner]
",
        a.rpc_port,
        b.admin_url(),
        b.rpc_port
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, text).unwrap();
    SpecFile { path: path.display().to_string(), _dir: dir }
}

fn env_for(a: &Garage, spec: &SpecFile, deadline: &str) -> Vec<(String, String)> {
    with(&with(&a.init_env(), "GARAGE_INIT_SPEC", &spec.path), "GARAGE_INIT_DEADLINE", deadline)
}

/// Kills `node`, removes its metadata directory and starts it again on the
/// same ports: it answers with a new id. Returns (old id, new id).
async fn replace(node: &mut Garage) -> (String, String) {
    let old = node.node_id().await;
    node.kill();
    node.wipe_metadata();
    node.start();
    node.wait_for_admin().await;
    let new = node.node_id().await;
    assert_ne!(new, old, "the node kept its id without its metadata");
    (old, new)
}

fn role_ids(layout: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        layout["roles"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Every bucket Garage lists, through `node`.
async fn buckets(node: &Garage) -> Vec<Value> {
    node.get("ListBuckets").await.unwrap().as_array().unwrap().clone()
}

/// The test's own S3 round trip through `node`, retried briefly.
async fn s3_works(node: &Garage) {
    let s3 = S3::new(&node.s3_url(), BUCKET, KEY, SECRET);
    let mut last = String::new();
    for _ in 0..100 {
        match s3.round_trip("written-by-the-test", b"after a replacement").await {
            Ok(()) => return,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("S3 through {} never worked: {last}", node.s3_url());
}

#[tokio::test]
async fn a_peer_back_with_a_new_id_right_after_connect_gets_its_role_under_the_new_id() {
    // Each case: A and B start fresh; garage-init runs with A's admin API
    // behind a gate that holds every request after the first
    // ConnectClusterNodes. While garage-init is held (connected to B's old
    // id, nothing staged), B restarts with wiped metadata on the same RPC
    // address; the gate opens at once (A may still list the old id as up for
    // a moment), or a few seconds later (A has seen the old id go).
    for hold in [Duration::ZERO, Duration::from_secs(4)] {
        let (mut a, mut b) = two_nodes();
        a.start();
        b.start();
        a.wait_for_admin().await;
        b.wait_for_admin().await;
        let a_id = a.node_id().await;
        let gate = Gate::hold_after(a.admin_port, "ConnectClusterNodes").await;
        let s = spec(&a, &gate.url(), &b);
        let env = env_for(&a, &s, "60s");
        let init = tokio::spawn(async move { garage_init(&env, &[]).await });
        gate.until_holding(Duration::from_secs(30)).await;
        let (old, new) = replace(&mut b).await;
        tokio::time::sleep(hold).await;
        gate.release();
        let run = init.await.unwrap();
        let case = format!("hold {hold:?}, B was {old}, now {new}");
        assert_eq!(run.code, 0, "{case}: {run:?}\nA's log:\n{}", a.log());

        // No role was ever staged for the dead id, and the layout holds the live ones.
        for body in gate.bodies("UpdateClusterLayout") {
            assert!(!body.contains(&old), "{case}: a role was staged for the dead id: {body}");
        }
        let layout = a.get("GetClusterLayout").await.unwrap();
        assert_eq!(role_ids(&layout), sorted(vec![a_id.clone(), new.clone()]), "{case}: {layout}");
        assert_eq!(layout["version"], 1, "{case}: {layout}");
        let listed = buckets(&a).await;
        assert_eq!(listed.len(), 1, "{case}: one bucket wanted, Garage holds {listed:?}");

        let again = garage_init(&env_for(&a, &spec(&a, &a.admin_url(), &b), "30s"), &[]).await;
        assert_eq!(again.code, 0, "{case}: re-run: {again:?}");
        for resource in ["layout", "key", "bucket", "grant"] {
            assert_eq!(again.outcome(resource).as_deref(), Some("unchanged"), "{case}, {resource}: {again:?}");
        }
        assert_eq!(buckets(&a).await.len(), 1, "{case}");
    }
}

#[tokio::test]
async fn a_role_held_by_a_replaced_node_is_named_and_replaced_only_when_allowed() {
    let (mut a, mut b) = two_nodes();
    a.start();
    b.start();
    a.wait_for_admin().await;
    b.wait_for_admin().await;
    let a_id = a.node_id().await;
    let s = spec(&a, &a.admin_url(), &b);
    let env = env_for(&a, &s, "30s");
    let first = garage_init(&env, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let (old, new) = replace(&mut b).await;
    let before = a.get("GetClusterLayout").await.unwrap();
    assert_eq!(before["version"], 1);
    assert!(role_ids(&before).contains(&old), "{before}");
    let counts = a.admin_request_counts().await;

    // plan names the fix, with the full ids, and exits with the conflict code.
    let plan = garage_init(&env, &["plan"]).await;
    assert_eq!(plan.code, 5, "{plan:?}");
    for expected in [
        format!("garage layout assign {new} -z dc2 -c 1000000000 -t spare --replace {old}"),
        "garage layout apply --version 2".to_string(),
        "garage layout skip-dead-nodes --version 2 --allow-missing-data".to_string(),
        "--allow-layout-changes".to_string(),
        b.admin_url(),
    ] {
        assert!(plan.stderr.contains(&expected), "plan does not say `{expected}`: {plan:?}");
    }

    // apply without the flag refuses the same way, and changes nothing.
    let refused = garage_init(&env, &[]).await;
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(refused.stderr.contains(&format!("--replace {old}")), "{refused:?}");
    let after = a.admin_request_counts().await;
    for endpoint in MUTATING_ENDPOINTS {
        assert_eq!(counts.get(*endpoint), after.get(*endpoint), "{endpoint}: {counts:?} -> {after:?}");
    }
    assert_eq!(a.get("GetClusterLayout").await.unwrap()["version"], 1);

    // The preview with the flag names what goes.
    let preview = garage_init(&env, &["plan", "--allow-layout-changes"]).await;
    assert_eq!(preview.code, 10, "{preview:?}");
    let line = preview.stdout.lines().find(|l| l.starts_with("layout")).unwrap_or_else(|| panic!("{preview:?}"));
    assert!(line.contains("version 2") && line.contains(&format!("node {}: removed", &old[..16])), "{preview:?}");
    assert!(line.contains(&new[..16]) && line.contains("skip-dead-nodes"), "{preview:?}");

    // With the flag: one new layout version, the old role's zone, capacity and tags under the new id.
    let run = garage_init(&env, &["--allow-layout-changes"]).await;
    assert_eq!(run.code, 0, "{run:?}\nA's log:\n{}", a.log());
    assert_eq!(run.outcome("layout").as_deref(), Some("updated"), "{run:?}");
    let layout = a.get("GetClusterLayout").await.unwrap();
    assert_eq!(layout["version"], 2, "one layout version for the whole replacement: {layout}");
    assert_eq!(role_ids(&layout), sorted(vec![a_id, new.clone()]), "{layout}");
    let role = layout["roles"].as_array().unwrap().iter().find(|r| r["id"] == new.as_str()).unwrap();
    assert_eq!(
        (&role["zone"], &role["capacity"], &role["tags"]),
        (&json!("dc2"), &json!(1_000_000_000u64), &json!(["spare"])),
        "{layout}"
    );
    s3_works(&a).await;

    // A re-run changes nothing; plan has nothing to do.
    let again = garage_init(&env, &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    for resource in ["layout", "key", "bucket", "grant"] {
        assert_eq!(again.outcome(resource).as_deref(), Some("unchanged"), "{resource}: {again:?}");
    }
    let plan = garage_init(&env, &["plan"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    assert_eq!(a.get("GetClusterLayout").await.unwrap()["version"], 2);
    assert_eq!(buckets(&a).await.len(), 1);
}

#[tokio::test]
async fn creates_answered_503_for_a_while_leave_one_bucket_per_wanted_bucket() {
    // A writes with a 1 s RPC timeout. With B frozen (SIGSTOP), A still calls B up for a minute (it
    // pings every 15 s) and its `/health` says so, but every write that needs B (both copies, with
    // two nodes and two copies) fails with 503 after that second; Garage has stored the new
    // bucket on A by then, nameless.
    let (mut a, mut b) = two_nodes();
    a.configure("rpc_timeout_msec = 1000");
    a.start();
    b.start();
    a.wait_for_admin().await;
    b.wait_for_admin().await;
    let first = garage_init(&env_for(&a, &spec(&a, &a.admin_url(), &b), "30s"), &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    // A nameless, empty bucket someone else made before the run: never taken for ours.
    let foreign = a.post("CreateBucket", json!({})).await.unwrap()["id"].as_str().unwrap().to_string();
    let counts = a.admin_request_counts().await;

    // Two buckets wanted; the nodes by count, not by their admin APIs (B's answers nothing while frozen).
    let text = format!(
        "cluster:\n  expected_nodes: 2\nbuckets:\n  - name: {BUCKET}\n  - name: artifacts\nkeys:\n  - id: {KEY}\n    \
         name: builder\n    secret: {SECRET}\ngrants:\n  - key: builder\n    bucket: {BUCKET}\n    permissions: [read, \
         write, owner]\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spec.yaml"), text).unwrap();
    let two = SpecFile { path: dir.path().join("spec.yaml").display().to_string(), _dir: dir };
    b.pause();
    let stuck = garage_init(&env_for(&a, &two, "12s"), &[]).await;
    let listed = buckets(&a).await;
    b.resume();
    assert_eq!(stuck.code, 3, "{stuck:?}");
    let after = a.admin_request_counts().await;
    let sent = |e: &str| after.get(e).copied().unwrap_or(0) - counts.get(e).copied().unwrap_or(0);
    assert!(
        sent("CreateBucket") + sent("AddBucketAlias") >= 2,
        "the bucket was not tried again under the 503s: {after:?}\n{stuck:?}"
    );
    eprintln!(
        "under the 503s: {} CreateBucket, {} AddBucketAlias sent; Garage holds {} buckets",
        sent("CreateBucket"),
        sent("AddBucketAlias"),
        listed.len()
    );
    let nameless: Vec<&Value> = listed.iter().filter(|b| b["globalAliases"] == json!([])).collect();
    assert!(nameless.len() <= 2, "the foreign bucket and at most one made by the run: {listed:?}");
    assert!(nameless.iter().any(|b| b["id"] == foreign.as_str()), "{listed:?}");

    let run = garage_init(&env_for(&a, &two, "60s"), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let listed = buckets(&a).await;
    let named: Vec<&Value> = listed.iter().filter(|b| b["globalAliases"] != json!([])).collect();
    assert_eq!(named.len(), 2, "one bucket per wanted bucket: {listed:?}");
    assert!(named.iter().all(|b| b["id"] != foreign.as_str()), "the foreign bucket was taken: {listed:?}");
    assert!(listed.len() <= 3, "{listed:?}");
}
