//! `garage-init cache`: BuildKit's S3 cache in the bucket, seen from the
//! host with the access key: what is in it (`stats`), whether every manifest
//! is whole (`verify`), removing the manifests that are not (`repair`), and
//! deleting blobs no manifest lists (`gc`).
//!
//! The layout is BuildKit's: a manifest `<prefix><manifests_prefix><name>`
//! lists blobs `<prefix><blobs_prefix><digest>`. An export uploads (or
//! touches) every blob first and writes the manifest last; an import reads
//! the manifest and then each blob, and one blob missing fails the whole
//! build (a 404 from `GetObject`). Nothing outside the two prefixes is read
//! or deleted; nothing is deleted without `--yes`.
//!
//! Every run reads the manifests first ([`census`] keeps the blobs they list
//! in a compact table), then lists the blobs page by page, keeping only
//! counters: memory grows with the blobs manifests list, not with the
//! bucket.
//!
//! - [`store`]: the S3 requests (list a page, read an object, delete a batch);
//! - [`manifest`]: BuildKit's manifest format;
//! - [`census`]: what one pass counts.

pub mod census;
pub mod manifest;
pub mod store;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::cli::{CacheArgs, CacheCommand, CacheSettings, OutputFormat};
use crate::desired::{CacheLayout, KeyWant, TOUCH_REFRESH_HOURS};
use crate::error::Error;
use crate::exit::Code;
use crate::host::check::{INIT_HINT, START_HINT};
use crate::host::{Endpoint, HostOutcome, Problem, Rendered};
use crate::report::human_bytes;
use crate::s3::S3Error;
use census::{BlobClass, Broken, Census, Digest, Manifest, ManifestState, Table};
use store::{ListFrom, MAX_MANIFEST_BYTES, Object, Store};

/// Everything a `cache` command needs, validated before any request.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub s3: Endpoint,
    pub bucket: String,
    pub key: KeyWant,
    pub region: String,
    pub layout: CacheLayout,
    pub format: OutputFormat,
}

impl CacheConfig {
    pub fn from_args(args: &CacheSettings) -> Result<Self, crate::validate::ConfigError> {
        let s3 = Endpoint::s3(&args.s3)?;
        let crate::config::Access { bucket, key, region } = crate::config::access(&args.access)?;
        let layout = crate::config::cache_layout(&args.cache_layout)?;
        crate::config::warn_if_public_secret(&key, &s3.url);
        Ok(Self { s3, bucket, key, region, layout, format: args.format })
    }
}

/// Why a command stopped before it had a result: an `Error:` block, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stop {
    code: Code,
    message: String,
    hint: String,
}

impl Stop {
    fn outcome(self, format: OutputFormat) -> HostOutcome {
        HostOutcome::stopped(self.code, Problem::new(self.message, self.hint), format == OutputFormat::Json)
    }
}

/// Gathers a line of stdout into a `String`, printed when the command ends.
macro_rules! push_line {
    ($out:expr, $($arg:tt)*) => { $out.push_str(&format!("{}\n", format_args!($($arg)*))) };
}

/// Runs a `cache` subcommand and returns its outcome for
/// [`crate::host::finish`] to print (`gc` prints a line per blob as it goes).
pub async fn run(args: &CacheArgs) -> Result<HostOutcome, Error> {
    let settings = match &args.command {
        CacheCommand::Stats(s) | CacheCommand::Verify(s) => s,
        CacheCommand::Repair { settings, .. } | CacheCommand::Gc { settings, .. } => settings,
    };
    let cfg = CacheConfig::from_args(settings)?;
    let store = Store::new(&cfg.s3.url, &cfg.region, &cfg.bucket, &cfg.key)
        .map_err(|f| crate::validate::ConfigError::new("--s3-url (GARAGE_INIT_S3_ENDPOINT)", f.to_string()))?;
    let mut progress = Progress::new();
    let outcome = match &args.command {
        CacheCommand::Stats(_) => stats(&cfg, &store, &mut progress).await,
        CacheCommand::Verify(_) => verify(&cfg, &store, &mut progress).await,
        CacheCommand::Repair { yes, .. } => repair(&cfg, &store, &mut progress, *yes).await,
        CacheCommand::Gc { older_than, yes, .. } => gc(&cfg, &store, &mut progress, *older_than, *yes).await,
    };
    progress.clear();
    Ok(outcome.unwrap_or_else(|stop| stop.outcome(cfg.format)))
}

/// Turns an S3 failure into the error a user reads: what failed, where, what to do.
fn stopped(cfg: &CacheConfig, failure: S3Error) -> Stop {
    let at = &cfg.s3.shown;
    let bucket = &cfg.bucket;
    match &failure {
        S3Error::Transport(reason) => Stop {
            code: Code::Unreachable,
            message: format!("Garage not reachable at {at}: {reason}"),
            hint: START_HINT.into(),
        },
        S3Error::Status { code: Some(crate::s3::S3Code::NoSuchBucket), .. } => Stop {
            code: Code::NotInitialized,
            message: format!("bucket {bucket} does not exist at {at} ({failure})"),
            hint: INIT_HINT.into(),
        },
        S3Error::Status { status: 403, .. } => Stop {
            code: Code::Verify,
            message: format!("S3 at {at} refused access key {} in bucket {bucket} ({failure})", cfg.key.id),
            hint: "The key needs read and write on the bucket: check --access-key-id and --secret-access-key(-file) \
                   (GARAGE_INIT_ACCESS_KEY_ID, GARAGE_INIT_SECRET_ACCESS_KEY_FILE); `garage-init check` tests them."
                .into(),
        },
        _ => Stop {
            code: Code::Failure,
            message: format!("bucket {bucket} at {at}: {failure}"),
            hint: "`garage-init check` shows whether Garage and the key work; `docker compose logs garage` shows \
                   Garage's side."
                .into(),
        },
    }
}

/// A one-line progress report on stderr, rewritten in place, when stderr is
/// a terminal; nothing otherwise.
struct Progress {
    on: bool,
    shown: bool,
    last: Option<Instant>,
}

impl Progress {
    fn new() -> Self {
        Self { on: std::io::stderr().is_terminal(), shown: false, last: None }
    }

    /// Shows `line` at most ten times a second.
    fn show(&mut self, line: impl FnOnce() -> String) {
        if !self.on || self.last.is_some_and(|l| l.elapsed() < Duration::from_millis(100)) {
            return;
        }
        self.last = Some(Instant::now());
        self.shown = true;
        crate::output::stderr(format_args!("\r{}\x1b[K", line()));
    }

    /// Removes the line, before other output or at the end.
    fn clear(&mut self) {
        if self.shown {
            crate::output::stderr(format_args!("\r\x1b[K"));
            self.shown = false;
            self.last = None;
        }
    }
}

/// Reads every manifest: the first half of every command.
async fn read_manifests(cfg: &CacheConfig, store: &Store, progress: &mut Progress) -> Result<Census, Stop> {
    let prefix = cfg.layout.manifests();
    progress.show(|| format!("listing {prefix}"));
    let objects = store.list_all(&prefix).await.map_err(|f| stopped(cfg, f))?;
    let total = objects.len();
    let mut manifests = Vec::with_capacity(total);
    let mut listings = Vec::with_capacity(total);
    for (i, object) in objects.into_iter().enumerate() {
        progress.show(|| format!("reading manifest {} of {total}: {}", i + 1, object.key));
        let name = object.key.strip_prefix(&prefix).unwrap_or(&object.key).to_string();
        match read_manifest(cfg, store, &object.key).await? {
            None => continue, // removed since it was listed
            Some(Ok(listing)) => {
                listings.push(listing.blobs.iter().map(|(d, s)| (Digest::parse(d), *s)).collect());
                let layers = listing.layers;
                manifests.push((name, object, Ok(layers)));
            }
            Some(Err(why)) => {
                listings.push(Vec::new());
                manifests.push((name, object, Err(why)));
            }
        }
    }
    let (table, indexes) = Table::build(listings);
    let manifests = manifests
        .into_iter()
        .zip(indexes)
        .map(|((name, object, read), blobs)| Manifest {
            name,
            object,
            state: match read {
                Ok(layers) => ManifestState::Read { blobs, layers },
                Err(why) => ManifestState::Unreadable(why),
            },
        })
        .collect();
    Ok(Census { blobs_prefix: cfg.layout.blobs(), manifests, table, ..Default::default() })
}

/// One manifest: `None` when it is gone, `Some(Err)` when BuildKit could not use it.
async fn read_manifest(
    cfg: &CacheConfig,
    store: &Store,
    key: &str,
) -> Result<Option<Result<manifest::Listing, String>>, Stop> {
    match store.get(key, MAX_MANIFEST_BYTES).await {
        Ok(bytes) => Ok(Some(manifest::parse(&bytes))),
        Err(S3Error::Status { status: 404, code, .. }) if code != Some(crate::s3::S3Code::NoSuchBucket) => Ok(None),
        Err(S3Error::TooLarge { .. }) => Err(Stop {
            code: Code::Failure,
            message: format!(
                "manifest {key} in bucket {} is larger than {} MiB, more than garage-init reads",
                cfg.bucket,
                MAX_MANIFEST_BYTES >> 20
            ),
            hint: "Nothing was changed. BuildKit writes manifests of a few kilobytes per layer: check what wrote \
                   this one."
                .into(),
        }),
        Err(f) => Err(stopped(cfg, f)),
    }
}

/// Lists every blob into the census: the second half of `stats`, `verify`, `repair`.
async fn count_blobs(
    cfg: &CacheConfig,
    store: &Store,
    census: &mut Census,
    progress: &mut Progress,
) -> Result<(), Stop> {
    let prefix = cfg.layout.blobs();
    let mut token: Option<String> = None;
    loop {
        let page = store.list(&prefix, token.as_deref().map_or(ListFrom::Start, ListFrom::Token)).await;
        let page = page.map_err(|f| stopped(cfg, f))?;
        for object in &page.objects {
            census.observe(object);
        }
        progress.show(|| listing_line(&prefix, census));
        match page.next {
            Some(next) => token = Some(next),
            None => return Ok(()),
        }
    }
}

fn listing_line(prefix: &str, census: &Census) -> String {
    format!("listing {prefix}: {} objects, {}", census.blobs.objects, human_bytes(census.blobs.bytes))
}

/// `blobs/ and manifests/ in bucket buildkit-cache at localhost:3900`.
fn place(cfg: &CacheConfig) -> String {
    format!("{} and {} in bucket {} at {}", cfg.layout.manifests(), cfg.layout.blobs(), cfg.bucket, cfg.s3.shown)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// ---- stats

async fn stats(cfg: &CacheConfig, store: &Store, progress: &mut Progress) -> Result<HostOutcome, Stop> {
    let mut census = read_manifests(cfg, store, progress).await?;
    count_blobs(cfg, store, &mut census, progress).await?;
    progress.clear();
    let manifests = census.manifests_tally();
    let shared = census.shared();
    let caches: Vec<Value> = census
        .manifests
        .iter()
        .map(|m| {
            let mut v = json!({ "name": m.name, "key": m.object.key, "size": m.object.size, "last_modified": m.object.last_modified });
            match &m.state {
                ManifestState::Read { blobs, layers } => {
                    v["layers"] = json!(layers);
                    v["blobs"] = json!(blobs.len());
                    v["referenced_bytes"] = json!(census.referenced_bytes(blobs));
                    v["missing_blobs"] = json!(blobs.iter().filter(|&&i| !census.table.entry(i).present).count());
                }
                ManifestState::Unreadable(why) => v["error"] = json!(why),
            }
            v
        })
        .collect();
    let oldest = census.oldest_unlisted.map(|t| t.to_string());
    let output = match cfg.format {
        OutputFormat::Json => Rendered::Document(json!({
            "bucket": cfg.bucket,
            "prefixes": { "manifests": cfg.layout.manifests(), "blobs": cfg.layout.blobs() },
            "total": { "objects": manifests.objects + census.blobs.objects, "bytes": manifests.bytes + census.blobs.bytes },
            "manifests": { "objects": manifests.objects, "bytes": manifests.bytes },
            "blobs": { "objects": census.blobs.objects, "bytes": census.blobs.bytes },
            "not_blobs": { "objects": census.other.objects, "bytes": census.other.bytes },
            "caches": caches,
            "shared": { "blobs": shared.objects, "bytes": shared.bytes },
            "unlisted": { "blobs": census.unlisted.objects, "bytes": census.unlisted.bytes, "oldest": oldest },
        })),
        OutputFormat::Text => {
            let mut out = String::new();
            push_line!(
                out,
                "{}: {}, {}",
                place(cfg),
                plural(manifests.objects + census.blobs.objects, "object", "objects"),
                human_bytes(manifests.bytes + census.blobs.bytes)
            );
            push_line!(
                out,
                "{:<10} {}, {}",
                "manifests",
                plural(manifests.objects, "object", "objects"),
                human_bytes(manifests.bytes)
            );
            let other = if census.other.objects > 0 {
                format!(" ({} not named like a blob)", plural(census.other.objects, "object", "objects"))
            } else {
                String::new()
            };
            push_line!(
                out,
                "{:<10} {}, {}{other}",
                "blobs",
                plural(census.blobs.objects, "object", "objects"),
                human_bytes(census.blobs.bytes)
            );
            push_line!(
                out,
                "{:<10} {}, {}",
                "shared",
                plural(shared.objects, "blob listed by several manifests", "blobs listed by several manifests"),
                human_bytes(shared.bytes)
            );
            let oldest = oldest.map(|o| format!(", the oldest written {o}")).unwrap_or_default();
            push_line!(
                out,
                "{:<10} {}, {}{oldest}",
                "unlisted",
                plural(census.unlisted.objects, "blob no manifest lists", "blobs no manifest lists"),
                human_bytes(census.unlisted.bytes)
            );
            if !census.manifests.is_empty() {
                push_line!(
                    out,
                    "\n{:<24} {:>10} {:>7} {:>12} {:>8}  LAST WRITTEN",
                    "MANIFEST",
                    "SIZE",
                    "LAYERS",
                    "REFERENCES",
                    "MISSING"
                );
                for (m, v) in census.manifests.iter().zip(&caches) {
                    let cell = |k: &str| v.get(k).map_or("-".to_string(), Value::to_string);
                    let refs = v.get("referenced_bytes").and_then(Value::as_u64).map_or("-".into(), human_bytes);
                    push_line!(
                        out,
                        "{:<24} {:>10} {:>7} {:>12} {:>8}  {}",
                        m.name,
                        human_bytes(m.object.size),
                        cell("layers"),
                        refs,
                        cell("missing_blobs"),
                        m.object.last_modified
                    );
                }
            }
            Rendered::Text(out)
        }
    };
    Ok(HostOutcome::done(Code::Ok, output))
}

// ---- verify and repair

/// Each broken manifest, with why.
fn broken(census: &Census) -> Vec<(&Manifest, Broken)> {
    census.manifests.iter().filter_map(|m| census.broken(m).map(|b| (m, b))).collect()
}

fn broken_json(cfg: &CacheConfig, m: &Manifest, b: &Broken) -> Value {
    match b {
        Broken::Missing { missing, listed } => json!({
            "key": m.object.key, "name": m.name, "blobs": listed,
            "missing": missing.iter().map(|d| format!("{}{d}", cfg.layout.blobs())).collect::<Vec<_>>(),
        }),
        Broken::Unreadable(why) => json!({ "key": m.object.key, "name": m.name, "unreadable": why }),
    }
}

/// `manifests/old: 1 of 3 blobs missing`, then each missing blob's key.
fn broken_text(cfg: &CacheConfig, m: &Manifest, b: &Broken) -> String {
    match b {
        Broken::Missing { missing, listed } => {
            let mut text =
                format!("{}: {} of {} missing", m.object.key, missing.len(), plural(*listed as u64, "blob", "blobs"));
            for d in missing {
                text.push_str(&format!("\n           {}{d}", cfg.layout.blobs()));
            }
            text
        }
        Broken::Unreadable(why) => format!("{}: {why}", m.object.key),
    }
}

async fn verify(cfg: &CacheConfig, store: &Store, progress: &mut Progress) -> Result<HostOutcome, Stop> {
    let mut census = read_manifests(cfg, store, progress).await?;
    count_blobs(cfg, store, &mut census, progress).await?;
    progress.clear();
    let broken = broken(&census);
    let code = if broken.is_empty() { Code::Ok } else { Code::CacheBroken };
    let output = match cfg.format {
        OutputFormat::Json => Rendered::Document(json!({
            "bucket": cfg.bucket,
            "manifests": census.manifests.len(),
            "whole": census.manifests.len() - broken.len(),
            "broken": broken.iter().map(|(m, b)| broken_json(cfg, m, b)).collect::<Vec<_>>(),
            "exit_code": code.as_u8(),
        })),
        OutputFormat::Text => {
            let mut out = String::new();
            for m in &census.manifests {
                match broken.iter().find(|(b, _)| std::ptr::eq(*b, m)) {
                    Some((_, b)) => push_line!(out, "{:<10} {}", "broken", broken_text(cfg, m, b)),
                    None => {
                        let n = match &m.state {
                            ManifestState::Read { blobs, .. } => blobs.len() as u64,
                            ManifestState::Unreadable(_) => 0,
                        };
                        push_line!(
                            out,
                            "{:<10} {}: {}, all in the bucket",
                            "whole",
                            m.object.key,
                            plural(n, "blob", "blobs")
                        )
                    }
                }
            }
            push_line!(
                out,
                "{}: {}, {} broken",
                place(cfg),
                plural(census.manifests.len() as u64, "manifest", "manifests"),
                broken.len()
            );
            Rendered::Text(out)
        }
    };
    let mut outcome = HostOutcome::done(code, output);
    if !broken.is_empty() {
        let (n, it) =
            if broken.len() == 1 { ("1 manifest", "it") } else { (&*format!("{} manifests", broken.len()), "them") };
        outcome.problems.push(Problem::new(
            format!(
                "{n} of bucket {} would fail the build that imports {it}: a listed blob is missing, or BuildKit \
                 cannot read the manifest",
                cfg.bucket
            ),
            "Run `garage-init cache repair` to see what it removes, then `garage-init cache repair --yes`: the next \
             build then misses the cache and exports it again.",
        ));
    }
    Ok(outcome)
}

async fn repair(cfg: &CacheConfig, store: &Store, progress: &mut Progress, yes: bool) -> Result<HostOutcome, Stop> {
    let mut census = read_manifests(cfg, store, progress).await?;
    count_blobs(cfg, store, &mut census, progress).await?;
    progress.clear();
    let broken = broken(&census);
    let json = cfg.format == OutputFormat::Json;
    if !yes || broken.is_empty() {
        let code = if broken.is_empty() { Code::Ok } else { Code::CacheBroken };
        let output = if json {
            Rendered::Document(json!({
                "bucket": cfg.bucket,
                "dry_run": true,
                "would_remove": broken.iter().map(|(m, b)| broken_json(cfg, m, b)).collect::<Vec<_>>(),
                "removed": [],
                "exit_code": code.as_u8(),
            }))
        } else {
            let mut out = String::new();
            for (m, b) in &broken {
                push_line!(out, "{:<10} {}", "would remove", broken_text(cfg, m, b));
            }
            if broken.is_empty() {
                push_line!(out, "{}: every manifest is whole; nothing to remove", place(cfg));
            } else {
                let these = if broken.len() == 1 {
                    "this manifest".to_string()
                } else {
                    format!("these {} manifests", broken.len())
                };
                push_line!(
                    out,
                    "Dry run: nothing was removed. `garage-init cache repair --yes` removes {these} (no blob is removed)."
                );
            }
            Rendered::Text(out)
        };
        return Ok(HostOutcome::done(code, output));
    }

    // Only what is still as it was read: an export may have rewritten a manifest since.
    let now: HashMap<String, String> = store
        .list_all(&cfg.layout.manifests())
        .await
        .map_err(|f| stopped(cfg, f))?
        .into_iter()
        .map(|o| (o.key, o.etag))
        .collect();
    let (go, kept): (Vec<_>, Vec<_>) =
        broken.iter().partition(|(m, _)| now.get(&m.object.key).is_some_and(|etag| *etag == m.object.etag));
    let keys: Vec<String> = go.iter().map(|(m, _)| m.object.key.clone()).collect();
    let mut failed = Vec::new();
    for batch in keys.chunks(store::DELETE_BATCH) {
        failed.extend(store.delete(batch).await.map_err(|f| stopped(cfg, f))?);
    }
    let removed: Vec<_> = go.iter().filter(|(m, _)| !failed.iter().any(|(k, _)| *k == m.object.key)).collect();
    let code = if removed.len() == broken.len() { Code::Ok } else { Code::CacheBroken };
    let kept_why = "written again since it was read: `garage-init cache verify` checks it anew";
    let output = if json {
        Rendered::Document(json!({
            "bucket": cfg.bucket,
            "dry_run": false,
            "removed": removed.iter().map(|(m, b)| broken_json(cfg, m, b)).collect::<Vec<_>>(),
            "kept": kept.iter().map(|(m, _)| json!({ "key": m.object.key, "why": kept_why })).collect::<Vec<_>>(),
            "failed": failed.iter().map(|(k, why)| json!({ "key": k, "why": why })).collect::<Vec<_>>(),
            "exit_code": code.as_u8(),
        }))
    } else {
        let mut out = String::new();
        for (m, b) in &removed {
            push_line!(out, "{:<10} {}", "removed", broken_text(cfg, m, b));
        }
        for (m, _) in &kept {
            push_line!(out, "{:<10} {}: {kept_why}", "kept", m.object.key);
        }
        for (k, why) in &failed {
            push_line!(out, "{:<10} {k}: S3 did not delete it: {why}", "failed");
        }
        push_line!(
            out,
            "{}: {} removed; the next build that imports {} misses the cache and exports it again",
            place(cfg),
            plural(removed.len() as u64, "manifest", "manifests"),
            if removed.len() == 1 { "it" } else { "them" }
        );
        Rendered::Text(out)
    };
    Ok(HostOutcome::done(code, output))
}

// ---- gc

/// What `gc` found and did.
#[derive(Debug, Default)]
struct Collected {
    candidates: u64,
    candidate_bytes: u64,
    deleted: u64,
    deleted_bytes: u64,
    /// Unlisted, but younger than the grace period.
    young: u64,
    /// Written again, or listed by a new manifest, since the listing.
    kept: u64,
    failed: u64,
}

async fn gc(
    cfg: &CacheConfig,
    store: &Store,
    progress: &mut Progress,
    older_than: Duration,
    yes: bool,
) -> Result<HostOutcome, Stop> {
    let mut census = read_manifests(cfg, store, progress).await?;
    let json = cfg.format == OutputFormat::Json;
    if let Some(m) = census.manifests.iter().find(|m| matches!(m.state, ManifestState::Unreadable(_))) {
        let ManifestState::Unreadable(why) = &m.state else { unreachable!() };
        return Err(Stop {
            code: Code::CacheBroken,
            message: format!(
                "manifest {} cannot be read ({why}), so gc cannot know which blobs it lists: nothing was deleted",
                m.object.key
            ),
            hint: "Run `garage-init cache repair --yes` to remove it, then gc again.".into(),
        });
    }
    let cutoff = Timestamp::now() - jiff::SignedDuration::try_from(older_than).unwrap_or(jiff::SignedDuration::MAX);
    let grace = human_duration(older_than);
    let verb = if yes { "delete" } else { "would delete" };
    // What each manifest was when read: one written since is read before the next deletion.
    let mut seen: HashMap<String, String> =
        census.manifests.iter().map(|m| (m.object.key.clone(), m.object.etag.clone())).collect();

    let prefix = cfg.layout.blobs();
    let mut done = Collected::default();
    let mut token: Option<String> = None;
    let mut previous_last: Option<String> = None;
    loop {
        let page = store.list(&prefix, token.as_deref().map_or(ListFrom::Start, ListFrom::Token)).await;
        let page = page.map_err(|f| stopped(cfg, f))?;
        let mut candidates: Vec<Object> = Vec::new();
        for object in &page.objects {
            if census.observe(object) != BlobClass::Unlisted {
                continue;
            }
            match object.last_modified.parse::<Timestamp>() {
                Ok(at) if at < cutoff => candidates.push(object.clone()),
                _ => done.young += 1,
            }
        }
        progress.show(|| listing_line(&prefix, &census));
        if yes && !candidates.is_empty() {
            let before = candidates.len() as u64;
            recheck_manifests(cfg, store, &mut census, &mut seen).await?;
            candidates.retain(|c| !census.table.lists(&Digest::parse(c.key.strip_prefix(&prefix).unwrap_or(&c.key))));
            unchanged_since_listed(cfg, store, &prefix, previous_last.as_deref(), &mut candidates).await?;
            done.kept += before - candidates.len() as u64;
        }
        if !candidates.is_empty() {
            let failed = if yes {
                let keys: Vec<String> = candidates.iter().map(|c| c.key.clone()).collect();
                debug_assert!(keys.iter().all(|k| k.starts_with(&prefix)));
                store.delete(&keys).await.map_err(|f| stopped(cfg, f))?
            } else {
                Vec::new()
            };
            progress.clear();
            for c in &candidates {
                let why = failed.iter().find(|(k, _)| *k == c.key).map(|(_, why)| why.as_str());
                done.candidates += 1;
                done.candidate_bytes += c.size;
                match why {
                    None if yes => {
                        done.deleted += 1;
                        done.deleted_bytes += c.size;
                    }
                    None => {}
                    Some(_) => done.failed += 1,
                }
                let action = if why.is_some() {
                    "failed"
                } else if yes {
                    "deleted"
                } else {
                    verb
                };
                if json {
                    crate::outln!(
                        "{}",
                        crate::output::json_line(
                            json!({ "blob": c.key, "size": c.size, "last_modified": c.last_modified, "action": action, "error": why })
                        )
                    );
                } else {
                    let error = why.map(|w| format!(": S3 did not delete it: {w}")).unwrap_or_default();
                    crate::outln!(
                        "{action:<12} {} ({}, last written {}){error}",
                        c.key,
                        human_bytes(c.size),
                        c.last_modified
                    );
                }
            }
        }
        previous_last = page.objects.last().map(|o| o.key.clone());
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    progress.clear();
    let code = if done.failed > 0 { Code::Failure } else { Code::Ok };
    Ok(HostOutcome::done(code, gc_summary(cfg, &census, &done, &grace, older_than, yes, code)))
}

/// Reads the manifests written since they were last read (an export that
/// finished while `gc` ran) and adds their blobs to those kept.
async fn recheck_manifests(
    cfg: &CacheConfig,
    store: &Store,
    census: &mut Census,
    seen: &mut HashMap<String, String>,
) -> Result<(), Stop> {
    let now = store.list_all(&cfg.layout.manifests()).await.map_err(|f| stopped(cfg, f))?;
    for object in now {
        if seen.get(&object.key) == Some(&object.etag) {
            continue;
        }
        match read_manifest(cfg, store, &object.key).await? {
            None => {}
            Some(Ok(listing)) => census.table.add_late(listing.blobs.iter().map(|(d, _)| Digest::parse(d))),
            Some(Err(why)) => {
                return Err(Stop {
                    code: Code::CacheBroken,
                    message: format!(
                        "manifest {} was written while gc ran and cannot be read ({why}): gc stopped before \
                         deleting more",
                        object.key
                    ),
                    hint: "Run `garage-init cache verify`, then `garage-init cache repair --yes` if it is broken, \
                           and gc again."
                        .into(),
                });
            }
        }
        seen.insert(object.key, object.etag);
    }
    Ok(())
}

/// Lists the page again, just before deleting from it: a blob an export
/// touched (copied onto itself) since it was listed has another
/// modification time and is kept, as is one no longer there.
async fn unchanged_since_listed(
    cfg: &CacheConfig,
    store: &Store,
    prefix: &str,
    after: Option<&str>,
    candidates: &mut Vec<Object>,
) -> Result<(), Stop> {
    if candidates.is_empty() {
        return Ok(());
    }
    let from = after.map_or(ListFrom::Start, ListFrom::After);
    let again = store.list(prefix, from).await.map_err(|f| stopped(cfg, f))?;
    let now: HashMap<&str, &str> = again.objects.iter().map(|o| (o.key.as_str(), o.last_modified.as_str())).collect();
    candidates.retain(|c| now.get(c.key.as_str()) == Some(&c.last_modified.as_str()));
    Ok(())
}

/// The last line (JSON) or lines (text) of `gc`: what it found and did.
fn gc_summary(
    cfg: &CacheConfig,
    census: &Census,
    done: &Collected,
    grace: &str,
    older_than: Duration,
    yes: bool,
    code: Code,
) -> Rendered {
    let short_grace = older_than < Duration::from_secs(u64::from(TOUCH_REFRESH_HOURS) * 3600 + 3600);
    let warning = short_grace.then(|| {
        format!(
            "a grace period under touch_refresh ({TOUCH_REFRESH_HOURS}h) and an hour may delete a blob that an export \
             in progress re-uses without touching it; that export's manifest then lists a missing blob \
             (`garage-init cache verify` finds it, `repair` removes it)"
        )
    });
    if cfg.format == OutputFormat::Json {
        return Rendered::Line(json!({ "summary": {
                "bucket": cfg.bucket,
                "dry_run": !yes,
                "older_than_seconds": older_than.as_secs(),
                "blobs": census.blobs.objects,
                "unlisted": census.unlisted.objects,
                "younger_than_grace": done.young,
                "candidates": done.candidates,
                "candidate_bytes": done.candidate_bytes,
                "deleted": done.deleted,
                "deleted_bytes": done.deleted_bytes,
                "kept_since_listed": done.kept,
                "failed": done.failed,
                "warning": warning,
            }, "exit_code": code.as_u8() }));
    }
    let mut out = String::new();
    let unlisted = plural(census.unlisted.objects, "blob", "blobs");
    let of = plural(census.blobs.objects, "object", "objects");
    push_line!(out, "{}: {unlisted} of {of} under {} listed by no manifest", place(cfg), cfg.layout.blobs());
    if yes {
        push_line!(
            out,
            "deleted {}, {} (older than {grace}); kept {} younger than that{}",
            plural(done.deleted, "blob", "blobs"),
            human_bytes(done.deleted_bytes),
            done.young,
            if done.kept > 0 {
                format!(", and {} written or listed again while gc ran", done.kept)
            } else {
                String::new()
            }
        );
    } else if done.candidates == 0 {
        push_line!(out, "Nothing to delete: no unlisted blob is older than {grace} ({} younger are kept).", done.young);
    } else {
        push_line!(
            out,
            "Dry run: nothing was deleted. {} ({}) older than {grace} would go; {} younger are kept. \
             `garage-init cache gc --yes` deletes them.",
            plural(done.candidates, "blob", "blobs"),
            human_bytes(done.candidate_bytes),
            done.young
        );
    }
    if let Some(w) = warning {
        push_line!(out, "Note: {w}.");
    }
    Rendered::Text(out)
}

/// `48h`, `90m`, `0s`.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 && s >= 7 * 86_400 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_given() {
        assert_eq!(human_duration(Duration::from_secs(48 * 3600)), "48h");
        assert_eq!(human_duration(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(human_duration(Duration::from_secs(90)), "90s");
        assert_eq!(human_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn s3_failures_say_where_and_what_next() {
        use clap::Parser;
        let cli = crate::cli::Cli::parse_from(["garage-init", "cache", "stats"]);
        let Some(crate::cli::Command::Cache(CacheArgs { command: CacheCommand::Stats(settings) })) = cli.command else {
            unreachable!("`cache stats` parses as such")
        };
        let cfg = CacheConfig::from_args(&settings).unwrap();
        let status = |status, code: &str| S3Error::Status {
            op: "ListObjectsV2",
            status,
            code: Some(crate::s3::S3Code::parse(code)),
            message: String::new(),
            redirected: None,
        };
        let s = stopped(&cfg, S3Error::Transport("Connection refused".into()));
        assert_eq!(
            (s.code, s.message.as_str()),
            (Code::Unreachable, "Garage not reachable at localhost:3900: Connection refused")
        );
        let s = stopped(&cfg, status(404, "NoSuchBucket"));
        assert_eq!(s.code, Code::NotInitialized);
        assert!(s.hint.contains("garage-init"), "{s:?}");
        let s = stopped(&cfg, status(403, "AccessDenied"));
        assert_eq!(s.code, Code::Verify);
        assert!(
            s.message.contains("GK6275696c646b69742d6b6579")
                && !s.message.contains(crate::config::DEFAULT_SECRET_ACCESS_KEY)
        );
        assert_eq!(stopped(&cfg, status(500, "InternalError")).code, Code::Failure);
    }
}
