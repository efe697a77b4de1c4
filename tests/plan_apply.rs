//! `plan` prints the actions `apply` then takes: the same value, rendered
//! twice. A table of starting states on real Garage processes; for each,
//! `plan` runs first, then `apply`, and their action lines must be the same
//! actions (`create` ↔ `created`, `update` ↔ `updated`, same detail), their
//! drift the same drift, but for what only `plan` reads: every bucket's own
//! record, for quotas the spec leaves alone.

mod common;

use common::*;
use serde_json::json;

const KEY_ID: &str = "GK6275696c646b69742d6b6579";
const BUCKET: &str = "buildkit-cache";
const SECRET: &str = "8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3";

/// One report line: resource, outcome, detail (the report's fixed columns).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reported {
    resource: String,
    outcome: String,
    detail: String,
}

fn reported(stdout: &str) -> Vec<Reported> {
    stdout
        .lines()
        .filter(|l| !l.starts_with("garage-init"))
        .map(|l| Reported {
            resource: l.get(..10).unwrap_or(l).trim().to_string(),
            outcome: l.get(10..21).unwrap_or("").trim().to_string(),
            detail: l.get(21..).unwrap_or("").to_string(),
        })
        .collect()
}

/// The actions of a plan, in apply's words.
fn planned_actions(plan: &Run) -> Vec<Reported> {
    reported(&plan.stdout)
        .into_iter()
        .filter_map(|r| {
            let done = match r.outcome.as_str() {
                "create" => "created",
                "update" => "updated",
                _ => return None,
            };
            Some(Reported { outcome: done.into(), ..r })
        })
        .collect()
}

fn taken_actions(apply: &Run) -> Vec<Reported> {
    reported(&apply.stdout).into_iter().filter(|r| r.outcome == "created" || r.outcome == "updated").collect()
}

fn drift_lines(run: &Run) -> Vec<Reported> {
    reported(&run.stdout).into_iter().filter(|r| r.outcome == "drift" || r.outcome == "warning").collect()
}

/// Drift about quotas the spec does not manage: `apply` does not read them
/// (one request per bucket), `plan` does.
fn unmanaged_quotas(r: &Reported) -> bool {
    r.resource == "bucket" && r.detail.contains("that the spec does not declare")
}

/// Runs `plan`, then `apply`, with the same settings; checks they agree and
/// returns (plan, apply).
async fn plan_then_apply(env: &[(String, String)], state: &str) -> (Run, Run) {
    let plan = garage_init(env, &["plan"]).await;
    let apply = garage_init(env, &[]).await;
    assert_eq!(planned_actions(&plan), taken_actions(&apply), "{state}: plan and apply disagree\n{plan:?}\n{apply:?}");
    let audited: Vec<Reported> = drift_lines(&plan).into_iter().filter(|r| !unmanaged_quotas(r)).collect();
    assert_eq!(audited, drift_lines(&apply), "{state}: drift differs\n{plan:?}\n{apply:?}");
    // And apply left nothing for a plan to do.
    let after = garage_init(env, &["plan"]).await;
    assert!(planned_actions(&after).is_empty(), "{state}: apply left actions\n{after:?}");
    (plan, apply)
}

fn outcomes(run: &Run) -> Vec<(String, String)> {
    taken_actions(run).into_iter().map(|r| (r.resource, r.outcome)).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[tokio::test]
async fn plan_lists_what_apply_does_from_fresh_node() {
    let g = Garage::started().await;
    let (plan, apply) = plan_then_apply(&g.init_env(), "fresh node").await;
    assert_eq!(plan.code, 10, "{plan:?}");
    assert_eq!(apply.code, 0, "{apply:?}");
    let want = pairs(&[("layout", "created"), ("key", "created"), ("bucket", "created"), ("grant", "created")]);
    assert_eq!(outcomes(&apply), want, "{apply:?}");
}

#[tokio::test]
async fn plan_lists_what_apply_does_from_staged_layout() {
    let g = Garage::started().await;
    let id = g.node_id().await;
    g.post(
        "UpdateClusterLayout",
        json!({"roles": [{"id": id, "zone": "z9", "capacity": 3_000_000_000u64, "tags": []}]}),
    )
    .await
    .unwrap();
    let (plan, apply) = plan_then_apply(&g.init_env(), "staged layout").await;
    assert_eq!((plan.code, apply.code), (10, 0), "{plan:?}\n{apply:?}");
    let layout = taken_actions(&apply).into_iter().find(|r| r.resource == "layout").unwrap();
    assert!(layout.detail.contains("zone z9") && layout.detail.contains("adopted"), "{apply:?}");
}

#[tokio::test]
async fn plan_lists_what_apply_does_from_converged() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    let (plan, apply) = plan_then_apply(&g.init_env(), "converged").await;
    assert_eq!((plan.code, apply.code), (0, 0), "{plan:?}\n{apply:?}");
    assert!(taken_actions(&apply).is_empty(), "{apply:?}");
}

#[tokio::test]
async fn plan_lists_what_apply_does_from_missing_grant() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    let bucket = g.get(&format!("GetBucketInfo?globalAlias={BUCKET}")).await.unwrap();
    let denied = json!({"bucketId": bucket["id"], "accessKeyId": KEY_ID,
        "permissions": {"read": false, "write": true, "owner": true}});
    g.post("DenyBucketKey", denied).await.unwrap();
    let (plan, apply) = plan_then_apply(&g.init_env(), "missing grant").await;
    assert_eq!((plan.code, apply.code), (10, 0), "{plan:?}\n{apply:?}");
    let taken = taken_actions(&apply);
    assert_eq!(taken.len(), 1, "{apply:?}");
    assert_eq!((taken[0].resource.as_str(), taken[0].outcome.as_str()), ("grant", "updated"));
    assert!(taken[0].detail.starts_with("write, owner for") && taken[0].detail.ends_with("(had read)"), "{apply:?}");
}

#[tokio::test]
async fn plan_lists_what_apply_does_from_key_with_another_secret() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&g.init_env(), &[]).await.code, 0);
    let env = with(&g.init_env(), "GARAGE_INIT_SECRET_ACCESS_KEY", &random_hex(32));
    let plan = garage_init(&env, &["plan"]).await;
    let apply = garage_init(&env, &[]).await;
    // A conflict stops both before any action: nothing to compare but that.
    assert_eq!((plan.code, apply.code), (5, 5), "{plan:?}\n{apply:?}");
    assert!(planned_actions(&plan).is_empty() && taken_actions(&apply).is_empty());
    assert!(apply.stderr.contains("different secret"), "{apply:?}");
}

#[tokio::test]
async fn plan_lists_what_apply_does_from_new_node() {
    let first = Garage::started().await;
    let spec_for = |nodes: &[&Garage]| {
        let mut y = String::from("cluster:\n  nodes:\n");
        for (i, g) in nodes.iter().enumerate() {
            y.push_str(&format!(
                "    - admin_url: {}\n      rpc_address: 127.0.0.1:{}\n      zone: dc{}\n      capacity: 1GB\n",
                g.admin_url(),
                g.rpc_port,
                i + 1
            ));
        }
        y
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, spec_for(&[&first])).unwrap();
    let env = with(&first.init_env(), "GARAGE_INIT_SPEC", path.to_str().unwrap());
    assert_eq!(garage_init(&env, &[]).await.code, 0);

    let mut second = Garage::with_replication_and_token(1, &first.token);
    second.start();
    second.wait_for_admin().await;
    std::fs::write(&path, spec_for(&[&first, &second])).unwrap();
    let (plan, apply) = plan_then_apply(&env, "new node").await;
    assert_eq!((plan.code, apply.code), (10, 0), "{plan:?}\n{apply:?}");
    assert_eq!(outcomes(&apply), pairs(&[("cluster", "updated"), ("layout", "updated")]), "{apply:?}");
}

#[tokio::test]
async fn plan_lists_what_apply_does_from_drift() {
    let g = Garage::started().await;
    let key = format!(
        "keys:\n  - id: {KEY_ID}\n    secret: 8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3\n\
         grants:\n  - key: {KEY_ID}\n    bucket: {BUCKET}\n    permissions: [read, write]\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, format!("buckets:\n  - name: {BUCKET}\n    quotas:\n      max_objects: 100\n{key}")).unwrap();
    let env = with(&g.init_env(), "GARAGE_INIT_SPEC", path.to_str().unwrap());
    assert_eq!(garage_init(&env, &[]).await.code, 0);
    // The spec no longer declares the quota: drift that plan reports, left alone by both.
    std::fs::write(&path, format!("buckets:\n  - name: {BUCKET}\n{key}")).unwrap();
    let (plan, apply) = plan_then_apply(&env, "drift").await;
    assert_eq!((plan.code, apply.code), (11, 0), "{plan:?}\n{apply:?}");
    let drift = drift_lines(&plan);
    assert!(drift.len() == 1 && drift[0].detail.contains("max objects 100"), "{plan:?}");
    // apply reads a bucket's own record only where an action depends on it: not for this.
    assert!(drift_lines(&apply).is_empty(), "{apply:?}");
    let bucket = g.get(&format!("GetBucketInfo?globalAlias={BUCKET}")).await.unwrap();
    assert_eq!(bucket["quotas"]["maxObjects"], 100);
}

fn lifecycle_env(g: &Garage, expire: &str) -> Vec<(String, String)> {
    let env = with(&g.init_env(), "GARAGE_INIT_EXPIRE_AFTER_DAYS", expire);
    with(&env, "GARAGE_INIT_ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS", "1")
}

#[tokio::test]
async fn plan_lists_what_apply_does_from_fresh_node_with_lifecycle_rules() {
    let g = Garage::started().await;
    let (plan, apply) = plan_then_apply(&lifecycle_env(&g, "30"), "fresh node, lifecycle").await;
    assert_eq!((plan.code, apply.code), (10, 0), "{plan:?}\n{apply:?}");
    let want = pairs(&[
        ("layout", "created"),
        ("key", "created"),
        ("bucket", "created"),
        ("grant", "created"),
        ("lifecycle", "created"),
    ]);
    assert_eq!(outcomes(&apply), want, "{apply:?}");
}

#[tokio::test]
async fn plan_lists_what_apply_does_from_changed_lifecycle_beside_a_foreign_rule() {
    let g = Garage::started().await;
    assert_eq!(garage_init(&lifecycle_env(&g, "30"), &[]).await.code, 0);
    let mut rules =
        boto3_lifecycle(&g.s3_url(), BUCKET, (KEY_ID, SECRET), "get", None)["rules"].as_array().unwrap().clone();
    rules.push(
        json!({"ID": "expire-tmp", "Status": "Enabled", "Filter": {"Prefix": "blobs/tmp/"}, "Expiration": {"Days": 2}}),
    );
    boto3_lifecycle(&g.s3_url(), BUCKET, (KEY_ID, SECRET), "put", Some(&serde_json::Value::Array(rules)));

    let (plan, apply) = plan_then_apply(&lifecycle_env(&g, "7"), "changed lifecycle").await;
    assert_eq!((plan.code, apply.code), (10, 0), "{plan:?}\n{apply:?}");
    assert_eq!(outcomes(&apply), pairs(&[("lifecycle", "updated")]), "{apply:?}");
    assert!(drift_lines(&apply)[0].detail.contains("expire-tmp"), "{apply:?}");
}
