//! garage-init on top of Garage's own single-node bootstrap (Garage >= 2.3:
//! `garage server --single-node --default-bucket` with GARAGE_DEFAULT_ACCESS_KEY,
//! GARAGE_DEFAULT_SECRET_KEY and GARAGE_DEFAULT_BUCKET), against a real Garage
//! process of `GARAGE_VERSION`. Older versions have no such flags: the tests
//! say so and return.

mod common;

use common::stack::{KEY_ID, SECRET};
use common::*;
use serde_json::json;

const BUCKET: &str = "buildkit-cache";

/// Why this Garage version cannot run the tests, if it cannot.
fn unsupported() -> Option<String> {
    let version = garage_version();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    ((major, minor) < (2, 3))
        .then(|| format!("skipped: Garage {version} has no --single-node/--default-bucket (they came in 2.3)"))
}

/// Starts (or restarts) the node with Garage's bootstrap of garage-init's key
/// and bucket; Garage bootstraps before it opens its APIs.
async fn start_bootstrapped(g: &mut Garage) {
    g.start_bootstrapped();
    g.wait_for_admin().await;
}

#[tokio::test]
async fn garage_init_converges_on_top_of_garages_own_bootstrap_and_a_rerun_changes_nothing() {
    if let Some(reason) = unsupported() {
        eprintln!("{reason}");
        return;
    }
    let mut g = Garage::new();
    start_bootstrapped(&mut g).await;
    // What Garage made by itself: a layout, the key under its own name, the bucket.
    let layout = g.get("GetClusterLayout").await.unwrap();
    assert_eq!((layout["version"].as_u64(), layout["roles"].as_array().map(Vec::len)), (Some(1), Some(1)), "{layout}");
    let key = g.get(&format!("GetKeyInfo?id={KEY_ID}")).await.unwrap();
    assert_eq!(key["name"], "default access key", "{key}");

    let run = garage_init(&g.init_env(), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // garage-init adopts the layout, bucket and grant, and names the key as it would have.
    let want = [
        ("layout", "unchanged"),
        ("key", "updated"),
        ("bucket", "unchanged"),
        ("grant", "unchanged"),
        ("s3 check", "passed"),
    ];
    for (resource, outcome) in want {
        assert_eq!(run.outcome(resource).as_deref(), Some(outcome), "{resource}: {run:?}");
    }
    assert!(run.stdout.contains(r#"name "default access key" -> "buildkit-key""#), "{run:?}");
    let after = g.get("GetClusterLayout").await.unwrap();
    assert_eq!(after["version"], 1, "no new layout version: {after}");
    assert_eq!(after["stagedRoleChanges"], json!([]), "nothing staged: {after}");
    assert_eq!(g.get(&format!("GetKeyInfo?id={KEY_ID}")).await.unwrap()["name"], "buildkit-key");

    let again = garage_init(&g.init_env(), &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("nothing changed (") && again.stdout.contains(" 0 changes)"), "{again:?}");

    // The key writes, by the test's own signed requests.
    let s3 = S3::new(&g.s3_url(), BUCKET, KEY_ID, SECRET);
    s3.round_trip("after-bootstrap", b"cache blob").await.unwrap();
    s3.put("kept", b"survives a restart").await.unwrap();

    // Garage restarted with the same flags accepts what garage-init renamed,
    // and garage-init still has nothing to do.
    g.kill();
    start_bootstrapped(&mut g).await;
    let restarted = garage_init(&g.init_env(), &[]).await;
    assert_eq!(restarted.code, 0, "{restarted:?}\nGarage log:\n{}", g.log());
    assert!(restarted.stdout.contains(" 0 changes)"), "{restarted:?}");
    assert_eq!(s3.get("kept").await.unwrap(), b"survives a restart");
}
