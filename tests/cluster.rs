//! Multi-node clusters and the spec file, against real Garage processes on
//! loopback (replication factor 3), and `plan`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const KEY_A: &str = "GK0a0a0a0a0a0a0a0a0a0a0a0a";
const SECRET_A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const KEY_B: &str = "GK0b0b0b0b0b0b0b0b0b0b0b0b";
const SECRET_B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";

/// `n` configured nodes sharing one admin token, not started.
fn nodes(n: usize) -> Vec<Garage> {
    let first = Garage::with_replication(3);
    let token = first.token.clone();
    let mut all = vec![first];
    for _ in 1..n {
        all.push(Garage::with_replication_and_token(3, &token));
    }
    all
}

fn node_yaml(g: &Garage, zone: &str) -> String {
    format!(
        "    - admin_url: {}\n      rpc_address: 127.0.0.1:{}\n      zone: {zone}\n      capacity: 1GB\n",
        g.admin_url(),
        g.rpc_port
    )
}

fn cluster_yaml(nodes: &[&Garage]) -> String {
    let mut y = String::from("cluster:\n  nodes:\n");
    for (i, g) in nodes.iter().enumerate() {
        y.push_str(&node_yaml(g, &format!("dc{}", i + 1)));
    }
    y
}

const RESOURCES: &str = "buckets:
  - name: buildkit-cache
keys:
  - id: GK0a0a0a0a0a0a0a0a0a0a0a0a
    name: builder
    secret: a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1
grants:
  - key: builder
    bucket: buildkit-cache
    permissions: [read, write, owner]
";

struct SpecFile {
    _dir: tempfile::TempDir,
    path: String,
}

fn spec(text: &str) -> SpecFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, text).unwrap();
    SpecFile { path: path.display().to_string(), _dir: dir }
}

fn env_for(g: &Garage, spec: &SpecFile) -> Vec<(String, String)> {
    with(&g.init_env(), "GARAGE_INIT_SPEC", &spec.path)
}

async fn started(n: usize) -> Vec<Garage> {
    let mut all = nodes(n);
    for g in &mut all {
        g.start();
    }
    for g in &all {
        g.wait_for_admin().await;
    }
    all
}

/// The test's own S3 round trip through one node, retried briefly: other
/// nodes learn new keys and buckets through Garage's anti-entropy.
async fn s3_eventually(endpoint: &str, bucket: &str, key: &str, secret: &str, object: &str, body: &[u8]) {
    let s3 = S3::new(endpoint, bucket, key, secret);
    let mut last = String::new();
    for _ in 0..100 {
        match s3.round_trip(object, body).await {
            Ok(()) => return,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("S3 through {endpoint} never worked: {last}");
}

#[tokio::test]
async fn three_nodes_converge_and_data_crosses_nodes() {
    let g = started(3).await;
    let s = spec(&(cluster_yaml(&[&g[0], &g[1], &g[2]]) + RESOURCES));
    let run = garage_init(&env_for(&g[0], &s), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome("layout").as_deref(), Some("created"), "{run:?}");

    for node in &g {
        // garage-init returns once no node is `unavailable`; the full mesh follows within seconds.
        let mut health = Value::Null;
        for _ in 0..100 {
            health = node.get("GetClusterHealth").await.unwrap();
            if health["status"] == "healthy" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(health["status"], "healthy", "{}: {health}", node.admin_url());
        assert_eq!(health["storageNodes"], 3);
        let layout = node.get("GetClusterLayout").await.unwrap();
        assert_eq!(layout["version"], 1);
    }
    let layout = g[2].get("GetClusterLayout").await.unwrap();
    let mut zones: Vec<&str> =
        layout["roles"].as_array().unwrap().iter().map(|r| r["zone"].as_str().unwrap()).collect();
    zones.sort();
    assert_eq!(zones, ["dc1", "dc2", "dc3"]);

    // Written through node 1, read back through node 3, by the test's own client.
    let body = random_hex(64).into_bytes();
    let s3_1 = S3::new(&g[0].s3_url(), "buildkit-cache", KEY_A, SECRET_A);
    s3_1.put("crosses-nodes", &body).await.unwrap();
    let s3_3 = S3::new(&g[2].s3_url(), "buildkit-cache", KEY_A, SECRET_A);
    let mut got = Err(String::new());
    for _ in 0..100 {
        got = s3_3.get("crosses-nodes").await;
        if got.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.unwrap(), body);
}

#[tokio::test]
async fn second_run_is_unchanged_and_plan_has_nothing_to_do() {
    let g = started(3).await;
    let s = spec(&(cluster_yaml(&[&g[0], &g[1], &g[2]]) + RESOURCES));
    let env = env_for(&g[0], &s);
    assert_eq!(garage_init(&env, &[]).await.code, 0);
    let counts: Vec<_> = futures_counts(&g).await;

    let again = garage_init(&env, &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    for resource in ["layout", "key", "bucket", "grant"] {
        assert_eq!(again.outcome(resource).as_deref(), Some("unchanged"), "{resource}: {again:?}");
    }
    let plan = garage_init(&env, &["plan"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    assert_eq!(plan.stdout.trim(), "garage-init plan: nothing to do", "{plan:?}");

    // Neither the second apply nor plan sent a changing request to any node.
    let after = futures_counts(&g).await;
    for (before, after) in counts.iter().zip(&after) {
        for endpoint in MUTATING_ENDPOINTS {
            assert_eq!(before.get(*endpoint), after.get(*endpoint), "{endpoint}: {before:?} -> {after:?}");
        }
    }
}

async fn futures_counts(g: &[Garage]) -> Vec<std::collections::BTreeMap<String, u64>> {
    let mut all = Vec::new();
    for node in g {
        all.push(node.admin_request_counts().await);
    }
    all
}

#[tokio::test]
async fn a_node_added_to_the_spec_only_gets_its_own_role() {
    let mut g = started(3).await;
    let three = spec(&(cluster_yaml(&[&g[0], &g[1], &g[2]]) + RESOURCES));
    assert_eq!(garage_init(&env_for(&g[0], &three), &[]).await.code, 0);
    let before = g[0].get("GetClusterLayout").await.unwrap();

    let mut fourth = Garage::with_replication_and_token(3, &g[0].token);
    fourth.start();
    fourth.wait_for_admin().await;
    let fourth_id = fourth.node_id().await;
    g.push(fourth);
    let four = spec(&(cluster_yaml(&[&g[0], &g[1], &g[2], &g[3]]) + RESOURCES));
    let env = env_for(&g[0], &four);

    let plan = garage_init(&env, &["plan"]).await;
    assert_eq!(plan.code, 10, "{plan:?}");
    let actions: Vec<&str> = plan.stdout.lines().filter(|l| !l.starts_with("garage-init plan:")).collect();
    assert_eq!(actions.len(), 2, "connect, then the layout with the new role: {plan:?}");
    assert!(actions[0].starts_with("cluster   update") && actions[0].contains(&fourth_id[..16]), "{plan:?}");
    let words: Vec<&str> = actions[1].split_whitespace().take(4).collect();
    assert_eq!(words, ["layout", "update", "version", "2:"], "{plan:?}");
    assert!(actions[1].contains(&fourth_id[..16]) && actions[1].contains("zone dc4"), "{plan:?}");

    let run = garage_init(&env, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome("layout").as_deref(), Some("updated"), "{run:?}");
    let after = g[0].get("GetClusterLayout").await.unwrap();
    assert_eq!(after["version"], 2);
    let roles = after["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 4);
    for old in before["roles"].as_array().unwrap() {
        let same = roles.iter().find(|r| r["id"] == old["id"]).unwrap();
        assert_eq!((&same["zone"], &same["capacity"], &same["tags"]), (&old["zone"], &old["capacity"], &old["tags"]));
    }
    assert_eq!(garage_init(&env, &["plan"]).await.code, 0);
}

#[tokio::test]
async fn a_node_down_at_start_is_named_and_waited_for() {
    let mut g = nodes(3);
    g[0].start();
    g[1].start();
    let s = spec(&(cluster_yaml(&[&g[0], &g[1], &g[2]]) + RESOURCES));
    let env = with(&env_for(&g[0], &s), "GARAGE_INIT_DEADLINE", "60s");
    let init = tokio::spawn(async move { garage_init(&env, &[]).await });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    g[2].start();
    let run = init.await.unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains(&format!("nodes not answering: {}", g[2].admin_url())), "{run:?}");
    assert!(run.elapsed > Duration::from_millis(2500));

    // Never up: the deadline, naming the node.
    let g2 = nodes(3);
    let mut first = g2;
    first[0].start();
    first[1].start();
    let s = spec(&(cluster_yaml(&[&first[0], &first[1], &first[2]]) + RESOURCES));
    let run = garage_init(&with(&env_for(&first[0], &s), "GARAGE_INIT_DEADLINE", "3s"), &[]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("gave up after 3s"), "{run:?}");
    assert!(run.stderr.contains(&format!("nodes not answering: {}", first[2].admin_url())), "{run:?}");
}

#[tokio::test]
async fn a_node_down_that_holds_its_role_does_not_fail_a_rerun() {
    let mut g = started(3).await;
    let s = spec(&(cluster_yaml(&[&g[0], &g[1], &g[2]]) + RESOURCES));
    assert_eq!(garage_init(&env_for(&g[0], &s), &[]).await.code, 0);
    let third = g[2].node_id().await;
    g[2].kill();

    // Three nodes, replication factor 3: with one down every partition keeps its quorum.
    let run = garage_init(&with(&env_for(&g[0], &s), "GARAGE_INIT_DEADLINE", "30s"), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let warning = run.stdout.lines().find(|l| l.starts_with("cluster   warning")).unwrap_or_else(|| panic!("{run:?}"));
    assert!(warning.contains(&third[..16]) && warning.contains(&g[2].admin_url()), "{run:?}");
    assert!(run.stdout.contains("1 warning"), "{run:?}");
    for resource in ["layout", "key", "bucket", "grant"] {
        assert_eq!(run.outcome(resource).as_deref(), Some("unchanged"), "{resource}: {run:?}");
    }
    // The first node down: the next listed node coordinates.
    let reordered = format!(
        "cluster:\n  nodes:\n{}{}{}{RESOURCES}",
        node_yaml(&g[2], "dc3"),
        node_yaml(&g[0], "dc1"),
        node_yaml(&g[1], "dc2")
    );
    let s2 = spec(&reordered);
    let plan = garage_init(&with(&env_for(&g[0], &s2), "GARAGE_INIT_DEADLINE", "30s"), &["plan"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(plan.stdout.contains("warning") && plan.stdout.contains(&third[..16]), "{plan:?}");
}

#[tokio::test]
async fn buckets_keys_grants_quotas_and_websites_come_from_the_spec() {
    let g = started(3).await;
    let s = spec(&format!(
        "{}buckets:
  - name: buildkit-cache
    aliases: [cache]
    quotas:
      max_size: 5GB
      max_objects: 1000
  - name: artifacts
    website:
      error_document: 404.html
keys:
  - id: {KEY_A}
    name: builder
    secret: {SECRET_A}
  - id: {KEY_B}
    name: reader
    secret: {SECRET_B}
grants:
  - key: builder
    bucket: buildkit-cache
    permissions: [read, write, owner]
  - key: builder
    bucket: artifacts
    permissions: [read, write]
  - key: reader
    bucket: cache
    permissions: [read]
",
        cluster_yaml(&[&g[0], &g[1], &g[2]])
    ));
    let run = garage_init(&env_for(&g[0], &s), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.lines().filter(|l| l.starts_with("s3 check  passed")).count(), 2, "{run:?}");

    let cache = g[1].get("GetBucketInfo?globalAlias=cache").await.unwrap();
    assert_eq!(cache["quotas"], json!({"maxSize": 5_000_000_000u64, "maxObjects": 1000}));
    let mut aliases: Vec<&str> =
        cache["globalAliases"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    aliases.sort();
    assert_eq!(aliases, ["buildkit-cache", "cache"]);
    let perms = |b: &Value, key: &str| {
        b["keys"].as_array().unwrap().iter().find(|k| k["accessKeyId"] == key).map(|k| k["permissions"].clone())
    };
    assert_eq!(perms(&cache, KEY_A), Some(json!({"read": true, "write": true, "owner": true})));
    assert_eq!(perms(&cache, KEY_B), Some(json!({"read": true, "write": false, "owner": false})));
    let artifacts = g[0].get("GetBucketInfo?globalAlias=artifacts").await.unwrap();
    assert_eq!(perms(&artifacts, KEY_A), Some(json!({"read": true, "write": true, "owner": false})));
    assert_eq!(perms(&artifacts, KEY_B), None);
    assert_eq!(artifacts["websiteAccess"], true, "{artifacts}");
    // (Garage 2.5 adds `routingRules` to the config.)
    let site = &artifacts["websiteConfig"];
    assert_eq!((&site["indexDocument"], &site["errorDocument"]), (&json!("index.html"), &json!("404.html")), "{site}");
    assert_eq!(cache["websiteAccess"], false, "a bucket that declares no website is not served: {cache}");
    s3_eventually(&g[2].s3_url(), "artifacts", KEY_A, SECRET_A, "x", b"y").await;
    let plan = garage_init(&env_for(&g[0], &s), &["plan"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");

    // Other documents than declared: plan shows the correction, apply makes it.
    let elsewhere = json!({"websiteAccess": {"enabled": true, "indexDocument": "home.html"}});
    g[0].post(&format!("UpdateBucket?id={}", artifacts["id"].as_str().unwrap()), elsewhere).await.unwrap();
    let plan = garage_init(&env_for(&g[0], &s), &["plan"]).await;
    assert_eq!(plan.code, 10, "{plan:?}");
    assert!(plan.stdout.contains("artifacts: website: index.html, errors 404.html"), "{plan:?}");
    assert_eq!(garage_init(&env_for(&g[0], &s), &[]).await.code, 0);
    let artifacts = g[0].get("GetBucketInfo?globalAlias=artifacts").await.unwrap();
    assert_eq!(artifacts["websiteConfig"]["indexDocument"], "index.html", "{artifacts}");
}

#[tokio::test]
async fn a_grant_or_quota_removed_from_the_spec_is_reported_not_revoked() {
    let g = started(3).await;
    let nodes = cluster_yaml(&[&g[0], &g[1], &g[2]]);
    let full = spec(&format!(
        "{nodes}buckets:\n  - name: buildkit-cache\n    quotas:\n      max_objects: 500\nkeys:\n  - id: {KEY_A}\n    secret: {SECRET_A}\n  - id: {KEY_B}\n    secret: {SECRET_B}\ngrants:\n  - key: {KEY_A}\n    bucket: buildkit-cache\n    permissions: [read, write]\n  - key: {KEY_B}\n    bucket: buildkit-cache\n    permissions: [read]\n"
    ));
    assert_eq!(garage_init(&env_for(&g[0], &full), &[]).await.code, 0);

    let trimmed = spec(&format!(
        "{nodes}buckets:\n  - name: buildkit-cache\nkeys:\n  - id: {KEY_A}\n    secret: {SECRET_A}\n  - id: {KEY_B}\n    secret: {SECRET_B}\ngrants:\n  - key: {KEY_A}\n    bucket: buildkit-cache\n    permissions: [read, write]\n"
    ));
    let env = env_for(&g[0], &trimmed);
    let plan = garage_init(&env, &["plan"]).await;
    assert_eq!(plan.code, 11, "{plan:?}");
    let drift: Vec<&str> = plan.stdout.lines().filter(|l| l.split_whitespace().nth(1) == Some("drift")).collect();
    assert_eq!(drift.len(), 2, "{plan:?}");
    assert!(drift.iter().any(|l| l.contains("max objects 500")), "{plan:?}");
    assert!(drift.iter().any(|l| l.contains(KEY_B) && l.contains("read")), "{plan:?}");

    // apply sees the grant in KEY_B's own view; the quota only plan reads (one request per bucket).
    let run = garage_init(&env, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("1 drift left as is"), "{run:?}");
    assert!(run.stdout.lines().any(|l| l.contains("drift") && l.contains(KEY_B)), "{run:?}");
    let bucket = g[0].get("GetBucketInfo?globalAlias=buildkit-cache").await.unwrap();
    assert_eq!(bucket["quotas"]["maxObjects"], 500, "quota was revoked: {bucket}");
    let b = bucket["keys"].as_array().unwrap().iter().find(|k| k["accessKeyId"] == KEY_B).unwrap();
    assert_eq!(b["permissions"]["read"], true, "grant was revoked: {bucket}");
}

#[tokio::test]
async fn bad_specs_fail_with_line_and_column_before_any_network_call() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let base = vec![
        ("GARAGE_INIT_ADMIN_URL".to_string(), url.clone()),
        ("GARAGE_INIT_S3_URL".to_string(), url),
        ("GARAGE_INIT_ADMIN_TOKEN".to_string(), "tok".to_string()),
    ];
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..10 {
        let p = if i == 0 { "a".to_string() } else { format!("b{}", i - 1) };
        bomb.push_str(&format!("b{i}: &b{i} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"));
    }
    let cases: Vec<(String, &str, &str)> = vec![
        ("buckets:\n  - name: ok-name\n    size: 3\n".into(), "line 3", "size"),
        ("buckets: 12\n".into(), "line 1", ""),
        ("cluster:\n  expected_nodes: lots\n".into(), "line 2", ""),
        (bomb, "", ""),
        (format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)), "", ""),
        ("#".repeat(300 * 1024), "", "at most"),
        ("buckets:\n  - name: Not_Valid\n".into(), "line 2, column 11", "bucket name"),
        (format!("keys:\n  - id: GK123\n    secret: {SECRET_A}\n"), "line 2", "key id"),
        (format!("keys:\n  - id: {KEY_A}\n    secret: nothex\n"), "line 3", "key secret"),
        ("buckets:\n  - name: same\n  - name: same\n".into(), "line 3", "declared twice"),
        (
            "buckets:\n  - name: abc\ngrants:\n  - key: ghost\n    bucket: abc\n    permissions: [read]\n".into(),
            "line 4",
            "not declared under `keys`",
        ),
    ];
    for (text, at, what) in cases {
        let s = spec(&text);
        let run = garage_init(&with(&base, "GARAGE_INIT_SPEC", &s.path), &["plan"]).await;
        let short: String = text.chars().take(60).collect();
        assert_eq!(run.code, 2, "{short:?}: {run:?}");
        assert!(run.stderr.starts_with(&format!("Error: invalid spec {}", s.path)), "{short:?}: {run:?}");
        assert!(run.stderr.contains(at) && run.stderr.contains(what), "{short:?}: want `{at}` `{what}`: {run:?}");
        assert!(run.elapsed < Duration::from_secs(2), "{short:?} took {:?}", run.elapsed);
        assert!(!run.stderr.contains("nothex"));
    }
    assert!(listener.accept().is_err(), "garage-init connected despite an invalid spec");
}

#[tokio::test]
async fn a_changed_role_is_drift_until_layout_changes_are_allowed() {
    let g = started(3).await;
    let original = spec(&(cluster_yaml(&[&g[0], &g[1], &g[2]]) + RESOURCES));
    assert_eq!(garage_init(&env_for(&g[0], &original), &[]).await.code, 0);
    let third = g[2].node_id().await;

    // The spec now wants node 3 in another zone.
    let moved = spec(&(cluster_yaml(&[&g[0], &g[1]]) + &node_yaml(&g[2], "dc9") + RESOURCES));
    let env = env_for(&g[0], &moved);
    let plan = garage_init(&env, &["plan"]).await;
    assert_eq!(plan.code, 11, "{plan:?}");
    assert!(plan.stdout.contains("Garage has zone dc3") && plan.stdout.contains("wants zone dc9"), "{plan:?}");

    let run = garage_init(&env, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("layout    drift"), "{run:?}");
    let zone_of = |layout: &Value| {
        layout["roles"].as_array().unwrap().iter().find(|r| r["id"] == third.as_str()).unwrap()["zone"].clone()
    };
    let layout = g[0].get("GetClusterLayout").await.unwrap();
    assert_eq!((layout["version"].as_u64(), zone_of(&layout)), (Some(1), json!("dc3")), "changed without permission");

    let allowed = garage_init(&env, &["--allow-layout-changes"]).await;
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert_eq!(allowed.outcome("layout").as_deref(), Some("updated"), "{allowed:?}");
    let layout = g[0].get("GetClusterLayout").await.unwrap();
    assert_eq!((layout["version"].as_u64(), zone_of(&layout)), (Some(2), json!("dc9")));
    assert_eq!(garage_init(&env, &["plan"]).await.code, 0);
}

#[tokio::test]
async fn expected_nodes_waits_for_the_count_and_gives_each_the_default_role() {
    let g = started(3).await;
    // The nodes find each other on their own here (as through bootstrap_peers): the test connects them.
    let peers: Vec<String> = {
        let mut p = Vec::new();
        for node in &g[1..] {
            p.push(format!("{}@127.0.0.1:{}", node.node_id().await, node.rpc_port));
        }
        p
    };
    let connected = g[0].call("POST", "ConnectClusterNodes", Some(json!(peers))).await.unwrap();
    assert!(connected.as_array().unwrap().iter().all(|r| r["success"] == true), "{connected}");

    let s = spec(&format!("cluster:\n  expected_nodes: 3\n  zone: dc1\n  capacity: 2GB\n{RESOURCES}"));
    let run = garage_init(&env_for(&g[0], &s), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let layout = g[0].get("GetClusterLayout").await.unwrap();
    let roles = layout["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 3, "{layout}");
    assert!(roles.iter().all(|r| r["zone"] == "dc1" && r["capacity"] == 2_000_000_000u64), "{layout}");

    // Four expected, three up: the deadline, saying how many are up.
    let four = spec(&format!("cluster:\n  expected_nodes: 4\n  zone: dc1\n  capacity: 2GB\n{RESOURCES}"));
    let run = garage_init(&with(&env_for(&g[0], &four), "GARAGE_INIT_DEADLINE", "2s"), &[]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("3 of 4 expected nodes up"), "{run:?}");
}
