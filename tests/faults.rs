//! Faults a real Garage produces only rarely, driven through the SCRIPTED
//! FAKE admin API in `common/fake_garage.rs` (not Garage): a change that
//! lands and whose answer is lost, a layout or a node's metadata lost right
//! after the layout was applied, a version race on apply, a node id that
//! changes between two observations, a layout Garage keeps refusing. Each
//! run must converge in the same run (or fail with the documented code),
//! repeating no change that had landed.
//!
//! The same faults against real Garage processes are in `restart.rs`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::fake_garage::{Answer, Event, FakeGarage};
use common::*;

const KEY_ID: &str = "GK6275696c646b69742d6b6579";
const BUCKET: &str = "buildkit-cache";

/// Mutating endpoints a fresh converge calls, each exactly once without faults.
const CHANGES: [&str; 5] = ["UpdateClusterLayout", "ApplyClusterLayout", "ImportKey", "CreateBucket", "AllowBucketKey"];

fn show(fake: &FakeGarage, run: &Run) -> String {
    format!("{run:?}\ncalls: {:?}\neffects: {:?}", fake.calls(), fake.effects())
}

/// Runs garage-init against the fake and checks it converged.
async fn converges(fake: &FakeGarage, case: &str) -> Run {
    let run = garage_init(&fake.init_env(), &[]).await;
    assert_eq!(run.code, 0, "{case}: {}", show(fake, &run));
    let wrong = fake.unconverged(KEY_ID, BUCKET);
    assert!(wrong.is_empty(), "{case}: not converged: {wrong:?}\n{}", show(fake, &run));
    run
}

fn effects_of(fake: &FakeGarage, endpoint: &str) -> u32 {
    fake.effects().get(endpoint).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_fault_free_fake_converges_with_each_change_once_and_a_rerun_changes_nothing() {
    let fake = FakeGarage::start().await;
    converges(&fake, "first run").await;
    let once: BTreeMap<String, u32> = CHANGES.iter().map(|e| (e.to_string(), 1)).collect();
    assert_eq!(fake.effects(), once);
    let run = converges(&fake, "second run").await;
    assert_eq!(fake.effects(), once, "the second run changed something: {}", show(&fake, &run));
    assert!(run.stdout.contains("nothing changed"), "{run:?}");
}

#[tokio::test]
async fn a_change_that_landed_but_whose_answer_was_lost_is_not_repeated() {
    for endpoint in ["ImportKey", "CreateBucket", "AllowBucketKey", "ApplyClusterLayout"] {
        for answer in [Answer::Status500, Answer::Reset] {
            let case = format!("{endpoint} answered {answer:?} after its effect");
            let fake = FakeGarage::start().await;
            fake.after_effect(endpoint, 1, answer);
            converges(&fake, &case).await;
            // The change landed once; the fresh observation after the failure saw it.
            let effects = fake.effects();
            for change in CHANGES {
                assert_eq!(effects.get(change), Some(&1), "{case}: {change} took effect {effects:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_bucket_created_before_a_lost_answer_keeps_its_id() {
    let fake = FakeGarage::start().await;
    fake.after_effect("CreateBucket", 1, Answer::Status500);
    let first_id = {
        let run = converges(&fake, "CreateBucket 500").await;
        // Its answer was lost, but the bucket is there: the report says it was made, and how it knows.
        assert!(run.stdout.contains("bucket    created") && run.stdout.contains("got no answer"), "{run:?}");
        fake.bucket_id(BUCKET).unwrap()
    };
    assert_eq!(effects_of(&fake, "CreateBucket"), 1);
    converges(&fake, "rerun").await;
    assert_eq!(fake.bucket_id(BUCKET).unwrap(), first_id);
}

#[tokio::test]
async fn a_bucket_left_nameless_by_an_interrupted_create_is_named_not_duplicated() {
    let fake = FakeGarage::start().await;
    fake.create_bucket_crashes_before_alias(1);
    let run = converges(&fake, "CreateBucket interrupted before its alias").await;
    assert!(run.stdout.contains("made by a create that got no answer"), "{}", show(&fake, &run));
    assert_eq!(fake.calls().get("CreateBucket"), Some(&1), "{}", show(&fake, &run));
}

#[tokio::test]
async fn a_bucket_whose_name_reached_only_the_alias_table_gets_it_on_its_record() {
    // As real Garage 2.1.0 was seen to do when killed inside CreateBucket:
    // the bucket is found by its name, yet lists without one.
    let fake = FakeGarage::start().await;
    fake.create_bucket_crashes_between_alias_writes(1);
    let run = converges(&fake, "CreateBucket interrupted between its two alias writes").await;
    assert!(run.stdout.contains("name written back to the bucket's record"), "{}", show(&fake, &run));
    assert_eq!(fake.calls().get("CreateBucket"), Some(&1), "{}", show(&fake, &run));
    assert_eq!(fake.calls().get("AddBucketAlias"), Some(&1), "{}", show(&fake, &run));
}

#[tokio::test]
async fn a_layout_lost_right_after_it_was_applied_is_applied_again() {
    let fake = FakeGarage::start().await;
    fake.after("ApplyClusterLayout", 1, Event::LoseLayout);
    let run = converges(&fake, "layout lost").await;
    assert_eq!(effects_of(&fake, "ApplyClusterLayout"), 2, "{}", show(&fake, &run));
    assert_eq!(run.stdout.matches("layout    created").count(), 2, "both applies are reported: {run:?}");
}

#[tokio::test]
async fn a_layout_lost_after_the_key_and_bucket_were_made_keeps_them() {
    // The tables survive the layout's loss: re-importing and re-creating get 409s, which lead to
    // a fresh look that finds both; neither is made twice.
    let fake = FakeGarage::start().await;
    let bucket = {
        fake.after("AllowBucketKey", 1, Event::LoseLayout);
        let run = converges(&fake, "layout lost after the grant").await;
        assert_eq!(effects_of(&fake, "ApplyClusterLayout"), 2, "{}", show(&fake, &run));
        fake.bucket_id(BUCKET).unwrap()
    };
    assert_eq!((effects_of(&fake, "ImportKey"), effects_of(&fake, "CreateBucket")), (1, 1));
    converges(&fake, "rerun").await;
    assert_eq!(fake.bucket_id(BUCKET).unwrap(), bucket);
}

#[tokio::test]
async fn a_node_that_lost_its_metadata_gets_its_new_id_a_role_and_new_tables() {
    let fake = FakeGarage::start().await;
    let old_id = fake.node_id();
    fake.after("ApplyClusterLayout", 1, Event::LoseMetadata);
    let run = converges(&fake, "metadata lost").await;
    assert_ne!(fake.node_id(), old_id);
    assert!(run.stdout.contains(&fake.node_id()[..16]), "the new id's role is reported: {run:?}");
}

#[tokio::test]
async fn a_node_id_that_changes_between_two_observations_is_followed() {
    // The first observation sees the fresh node; right after it the node
    // comes back with a new id (its metadata lost). The plan made from the
    // first observation stages a role for an id that no longer answers.
    let fake = FakeGarage::start().await;
    let old_id = fake.node_id();
    fake.after("GetClusterStatus", 1, Event::LoseMetadata);
    let run = converges(&fake, "node id changed").await;
    assert_ne!(fake.node_id(), old_id);
    assert!(run.stdout.contains(&fake.node_id()[..16]), "the new id's role is reported: {run:?}");
}

#[tokio::test]
async fn a_version_race_on_apply_is_observed_not_fought() {
    let fake = FakeGarage::start().await;
    fake.race_next_apply();
    let run = converges(&fake, "version race").await;
    // The other writer applied garage-init's staged role: garage-init applied nothing itself.
    assert_eq!(effects_of(&fake, "ApplyClusterLayout"), 0, "{}", show(&fake, &run));
    assert_eq!(fake.calls().get("ApplyClusterLayout"), Some(&1));
}

#[tokio::test]
async fn a_layout_garage_keeps_refusing_fails_with_code_1_long_before_the_deadline() {
    let fake = FakeGarage::start().await;
    let refusal = "The number of nodes with positive capacity (1) is smaller than the replication factor (3)";
    fake.refuse("ApplyClusterLayout", refusal);
    let run = garage_init(&fake.init_env(), &[]).await;
    assert_eq!(run.code, 1, "{}", show(&fake, &run));
    assert!(run.stderr.contains(refusal), "{run:?}");
    assert!(run.elapsed < Duration::from_secs(10), "{run:?}");
    assert!(fake.calls().get("ApplyClusterLayout") <= Some(&3), "{}", show(&fake, &run));
}

/// The fake itself, checked against what the API document says Garage does,
/// so that a fake's bug is not taken for garage-init's.
#[tokio::test]
async fn the_fake_answers_like_garage_on_the_basics() {
    let fake = FakeGarage::start().await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut r = http.get(format!("{}{path}", fake.admin_url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let no_token = get("/v2/GetClusterStatus", None).await.unwrap();
    assert_eq!(no_token.status(), 403);
    let body: serde_json::Value = no_token.json().await.unwrap();
    assert_eq!(body["code"], "AccessDenied");
    assert_eq!(get("/v2/NoSuchEndpoint", Some(&fake.token)).await.unwrap().status(), 400);
    let key = get(&format!("/v2/GetKeyInfo?id={KEY_ID}"), Some(&fake.token)).await.unwrap();
    assert_eq!(key.status(), 500);
    assert!(key.text().await.unwrap().contains("Layout not ready"));
    assert_eq!(get("/health", None).await.unwrap().status(), 503);
    let apply = http
        .post(format!("{}/v2/ApplyClusterLayout", fake.admin_url))
        .bearer_auth(&fake.token)
        .json(&serde_json::json!({"version": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(apply.status(), 500);
    assert!(apply.text().await.unwrap().contains("Invalid new layout version"));
}
