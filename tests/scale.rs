//! Big specs on a real Garage: hundreds of buckets, applied to a Garage
//! started with a low open-file limit. garage-init must keep a few
//! connections open, not one per bucket, leave Garage healthy, and observe a
//! converged cluster with a handful of requests.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

const KEY_ID: &str = "GK5ca1e0000000000000000001";
const SECRET: &str = "5ca1e5ca1e5ca1e5ca1e5ca1e5ca1e5ca1e5ca1e5ca1e5ca1e5ca1e5ca1e5ca1";
const BUCKETS: usize = 300;
/// Far below the 600+ connections one per request would take, and above
/// what Garage itself needs.
const OPEN_FILES: u64 = 256;

fn bucket(i: usize) -> String {
    format!("scale-{i:04}")
}

/// `n` buckets, every third with a lifecycle rule; one key with read, write
/// and owner on each.
fn many_buckets(n: usize) -> String {
    let mut spec = String::from("buckets:\n");
    for i in 0..n {
        spec.push_str(&format!("  - name: {}\n", bucket(i)));
        if i % 3 == 0 {
            spec.push_str("    lifecycle:\n      expire_after_days: 30\n");
        }
    }
    spec.push_str(&format!("keys:\n  - id: {KEY_ID}\n    name: scale-key\n    secret: {SECRET}\ngrants:\n"));
    for i in 0..n {
        spec.push_str(&format!(
            "  - key: {KEY_ID}\n    bucket: {}\n    permissions: [read, write, owner]\n",
            bucket(i)
        ));
    }
    spec
}

/// Samples the sockets Garage holds open until stopped; returns the most seen.
fn watch_sockets(g: &Garage) -> (Arc<AtomicBool>, std::thread::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let pid = g.pid().expect("Garage runs");
    let most = Arc::new(AtomicUsize::new(0));
    let (stop2, most2) = (stop.clone(), most.clone());
    let handle = std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            let sockets = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|fds| {
                    fds.filter_map(Result::ok)
                        .filter(|fd| {
                            std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                        })
                        .count()
                })
                .unwrap_or(0);
            most2.fetch_max(sockets, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
        most2.load(Ordering::Relaxed)
    });
    (stop, handle)
}

#[tokio::test]
async fn hundreds_of_buckets_converge_on_a_garage_with_few_open_files_through_a_few_connections() {
    let mut g = Garage::new();
    g.limit_open_files(OPEN_FILES);
    g.start();
    g.wait_for_admin().await;
    let idle_sockets = g.open_sockets();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, many_buckets(BUCKETS)).unwrap();
    let env = with(&with(&g.init_env(), "GARAGE_INIT_SPEC", path.to_str().unwrap()), "GARAGE_INIT_DEADLINE", "300s");

    let (stop, watcher) = watch_sockets(&g);
    let fresh = garage_init(&env, &[]).await;
    stop.store(true, Ordering::Relaxed);
    let most_sockets = watcher.join().unwrap();
    assert_eq!(fresh.code, 0, "{fresh:?}\ngarage log:\n{}", g.log());
    assert_eq!(fresh.stdout.lines().filter(|l| l.starts_with("bucket    created")).count(), BUCKETS, "{fresh:?}");
    assert_eq!(fresh.stdout.lines().filter(|l| l.starts_with("s3 check  passed")).count(), BUCKETS, "{fresh:?}");

    // Four admin requests and four S3 requests at most in flight: a few connections, never hundreds.
    let bound = idle_sockets + 2 * 4 + 4;
    assert!(most_sockets <= bound, "Garage held {most_sockets} sockets (idle: {idle_sockets}, bound {bound})");
    assert!(!g.log().contains("Too many open files"), "garage log:\n{}", g.log());

    // Garage still answers, and holds every bucket with the grant.
    let listed = g.get("ListBuckets").await.expect("Garage's admin API answers after the run");
    let names: std::collections::BTreeSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["globalAliases"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()))
        .collect();
    assert_eq!(names.len(), BUCKETS, "{listed}");
    assert!((0..BUCKETS).all(|i| names.contains(bucket(i).as_str())), "{names:?}");
    let key = g.get(&format!("GetKeyInfo?id={KEY_ID}")).await.unwrap();
    let granted = key["buckets"].as_array().unwrap();
    assert_eq!(granted.len(), BUCKETS, "{key}");
    assert!(
        granted.iter().all(|b| b["permissions"] == serde_json::json!({"read": true, "write": true, "owner": true}))
    );
    let lifecycle = boto3_lifecycle(&g.s3_url(), &bucket(3), (KEY_ID, SECRET), "get", None);
    let days = |id: &str| {
        let rules = lifecycle["rules"].as_array().cloned().unwrap_or_default();
        rules.iter().find(|r| r["ID"] == id).map(|r| r["Expiration"]["Days"].clone())
    };
    assert_eq!(days("garage-init-expire-blobs"), Some(serde_json::json!(30)), "{lifecycle}");
    assert_eq!(days("garage-init-expire-manifests"), Some(serde_json::json!(28)), "{lifecycle}");

    // A converged re-run: the key's own view answers for every bucket and grant.
    let before = g.token_checked_requests().await;
    let s3_before = g.s3_request_counts().await;
    let again = garage_init(&env, &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    let checked = g.token_checked_requests().await - before;
    assert!(checked <= 3, "converged run: {checked} token-checked requests; {:?}", g.admin_request_counts().await);
    assert_eq!(again.stdout.lines().filter(|l| l.starts_with("bucket    unchanged")).count(), BUCKETS, "{again:?}");
    assert!(!again.stdout.contains("created") && !again.stdout.contains("updated"), "{again:?}");
    // The lifecycle rules of a hundred buckets are read through S3, which checks no admin token.
    let s3_after = g.s3_request_counts().await;
    let reads =
        |c: &std::collections::BTreeMap<String, u64>| c.get("GetBucketLifecycleConfiguration").copied().unwrap_or(0);
    assert_eq!(reads(&s3_after) - reads(&s3_before), BUCKETS.div_ceil(3) as u64, "{s3_after:?}");
    assert!(g.get("GetClusterStatus").await.is_ok(), "Garage's admin API answers after the re-run");
}
