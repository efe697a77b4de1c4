//! The wanted state of a Garage cluster, whether it comes from flags (one
//! node, one bucket, one key) or from a spec file (many of each).

use url::Url;

use crate::admin::types::{Permissions, Quotas, WebsiteConfig, ZoneRedundancy};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Desired {
    /// A spec declares everything: what Garage holds beyond it (grants of
    /// undeclared keys, quotas, roles of unlisted nodes) is reported as drift.
    /// Flags declare one bucket and one key and say nothing about the rest.
    pub exhaustive: bool,
    pub cluster: ClusterWant,
    pub buckets: Vec<BucketWant>,
    pub keys: Vec<KeyWant>,
    pub grants: Vec<GrantWant>,
}

/// An access key garage-init imports and checks.
#[derive(Debug, Clone)]
pub struct KeyWant {
    pub id: String,
    pub secret: Secret,
    pub name: String,
}

/// Role given to a node that has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleTemplate {
    pub zone: String,
    /// `None`: take the node's data partition size.
    pub capacity: Option<u64>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ClusterWant {
    pub nodes: NodesWant,
    /// Role of nodes that the spec does not describe one by one.
    pub template: RoleTemplate,
    pub zone_redundancy: Option<ZoneRedundancy>,
    /// Node ids whose role is to be removed (only with `--allow-layout-changes`).
    pub remove: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum NodesWant {
    /// Every node that is up and has no role gets the template role.
    Auto,
    /// This many nodes must be up, as the main admin URL sees them; each gets the template role.
    Count(usize),
    /// Exactly these nodes, each reached through its own admin API.
    Listed(Vec<NodeWant>),
}

#[derive(Debug, Clone)]
pub struct NodeWant {
    pub admin_url: Url,
    /// `host:port` other nodes dial for RPC.
    pub rpc_address: String,
    pub zone: String,
    /// A gateway stores nothing; `capacity` is then ignored.
    pub gateway: bool,
    /// Storage capacity in bytes; `None`: the node's data partition size as Garage reports it.
    pub capacity: Option<u64>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketWant {
    pub name: String,
    /// Global aliases besides `name`.
    pub aliases: Vec<String>,
    /// `None`: quotas are not managed.
    pub quotas: Option<Quotas>,
    /// Served as a website by Garage's web endpoint, with these documents;
    /// `None`: website access is not managed.
    pub website: Option<WebsiteConfig>,
    /// `None`: the bucket's lifecycle rules are not managed.
    pub lifecycle: Option<LifecycleWant>,
}

/// The lifecycle rules garage-init keeps on a bucket, each `None` when off.
/// Rules of other ids, set by someone else, are kept alongside.
///
/// The bucket is BuildKit's S3 cache: the declared expiry applies to its
/// blobs, and its manifests expire [`MANIFEST_MARGIN_DAYS`] sooner, so that
/// no manifest outlives a blob it lists (an import of such a manifest fails
/// the build with a 404).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LifecycleWant {
    /// Blobs are deleted this many days after their last write; manifests
    /// [`MANIFEST_MARGIN_DAYS`] sooner. At least [`MIN_EXPIRE_AFTER_DAYS`].
    pub expire_after_days: Option<u32>,
    /// Multipart uploads never completed are aborted this many days after they started.
    pub abort_incomplete_uploads_after_days: Option<u32>,
    /// Where BuildKit keeps the manifests and the blobs in the bucket.
    pub layout: CacheLayout,
}

/// BuildKit's `touch_refresh`, in hours, as `env --format buildkit` prints
/// it: an export re-writes (touches) every blob it lists that is older than
/// this, so a manifest written at `t` lists only blobs written since
/// `t - touch_refresh`.
pub const TOUCH_REFRESH_HOURS: u32 = 24;

/// How much sooner manifests expire than blobs, in days: `touch_refresh`
/// (rounded up to whole days) and one more day, because Garage evaluates
/// expiry in a pass that starts once a day, at midnight, on dates: a manifest
/// and the oldest blob it may list then never fall in the same pass.
pub const MANIFEST_MARGIN_DAYS: u32 = TOUCH_REFRESH_HOURS.div_ceil(24) + 1;

/// The shortest blob expiry that leaves manifests at least a day.
pub const MIN_EXPIRE_AFTER_DAYS: u32 = MANIFEST_MARGIN_DAYS + 1;

impl LifecycleWant {
    /// How long manifests live: [`MANIFEST_MARGIN_DAYS`] less than blobs.
    pub fn manifests_expire_after_days(&self) -> Option<u32> {
        self.expire_after_days.map(|d| d.saturating_sub(MANIFEST_MARGIN_DAYS))
    }
}

/// Refuses a blob expiry too short to keep every manifest whole, and says
/// the smallest value that works.
pub fn check_expire_after_days(days: Option<u32>) -> Result<(), String> {
    match days {
        Some(d) if d < MIN_EXPIRE_AFTER_DAYS => Err(format!(
            "{d} day{} is too short for BuildKit's cache: manifests must expire {MANIFEST_MARGIN_DAYS} days \
             before the blobs they list (touch_refresh, {TOUCH_REFRESH_HOURS}h, and a day for Garage's daily \
             lifecycle pass) and live at least a day, so the smallest value that works is \
             {MIN_EXPIRE_AFTER_DAYS} (or 0 / off: no expiry)",
            if d == 1 { "" } else { "s" }
        )),
        _ => Ok(()),
    }
}

/// Where BuildKit's S3 cache keeps its objects, as BuildKit's options
/// `prefix`, `manifests_prefix` and `blobs_prefix` say: a manifest is
/// `<prefix><manifests_prefix><name>`, a blob `<prefix><blobs_prefix><digest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheLayout {
    pub prefix: String,
    pub manifests_prefix: String,
    pub blobs_prefix: String,
}

/// BuildKit's defaults.
impl Default for CacheLayout {
    fn default() -> Self {
        Self { prefix: String::new(), manifests_prefix: "manifests/".into(), blobs_prefix: "blobs/".into() }
    }
}

impl CacheLayout {
    /// Where every manifest's key starts: `manifests/`.
    pub fn manifests(&self) -> String {
        format!("{}{}", self.prefix, self.manifests_prefix)
    }

    /// Where every blob's key starts: `blobs/`.
    pub fn blobs(&self) -> String {
        format!("{}{}", self.prefix, self.blobs_prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantWant {
    pub key: KeyIx,
    pub bucket: BucketIx,
    pub permissions: Permissions,
}

/// A declared key: its position in [`Desired::keys`], resolved once, when
/// the spec or the flags are assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyIx(pub usize);

/// A declared bucket: its position in [`Desired::buckets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketIx(pub usize);

impl Desired {
    /// Today's single-node behaviour: one bucket, one key with read, write and owner on it.
    pub fn single(template: RoleTemplate, bucket: String, key: KeyWant, lifecycle: Option<LifecycleWant>) -> Self {
        let grant = GrantWant { key: KeyIx(0), bucket: BucketIx(0), permissions: Permissions::ALL };
        Self {
            exhaustive: false,
            cluster: ClusterWant { nodes: NodesWant::Auto, template, zone_redundancy: None, remove: Vec::new() },
            buckets: vec![BucketWant { name: bucket, aliases: Vec::new(), quotas: None, website: None, lifecycle }],
            keys: vec![key],
            grants: vec![grant],
        }
    }

    pub fn key(&self, id: &str) -> Option<&KeyWant> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The key that reads and writes bucket `bucket`'s lifecycle rules: the
    /// first declared key granted owner on it (S3 allows only owners).
    pub fn lifecycle_owner(&self, bucket: usize) -> Option<KeyIx> {
        self.grants.iter().find(|g| g.bucket.0 == bucket && g.permissions.owner).map(|g| g.key)
    }

    /// Every bucket that declares a lifecycle, with it and the key that owns
    /// the bucket (a spec without one is refused when it is read).
    pub fn lifecycles(&self) -> impl Iterator<Item = (usize, &LifecycleWant, KeyIx)> {
        self.buckets.iter().enumerate().filter_map(|(i, b)| Some((i, b.lifecycle.as_ref()?, self.lifecycle_owner(i)?)))
    }

    pub fn grant_key(&self, grant: &GrantWant) -> &KeyWant {
        &self.keys[grant.key.0]
    }

    pub fn grant_bucket(&self, grant: &GrantWant) -> &BucketWant {
        &self.buckets[grant.bucket.0]
    }

    /// Gives every declared lifecycle the cache layout of the run's settings
    /// (the spec declares days, the settings where BuildKit writes).
    pub fn set_cache_layout(&mut self, layout: &CacheLayout) {
        for want in self.buckets.iter_mut().filter_map(|b| b.lifecycle.as_mut()) {
            want.layout = layout.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Garage's lifecycle pass of date `pass` expires an object written at
    /// `written` (ms) after `days` days when `pass >= date(written) + 1 + days`
    /// (garage_model's lifecycle worker, one pass a day from midnight): the
    /// first pass that deletes it.
    fn deleting_pass(written_ms: i64, days: u32) -> i64 {
        const DAY_MS: i64 = 86_400_000;
        written_ms.div_euclid(DAY_MS) + 1 + i64::from(days)
    }

    #[test]
    fn every_manifest_expires_in_an_earlier_pass_than_any_blob_it_lists_for_every_declared_value() {
        const HOUR_MS: i64 = 3_600_000;
        let touch_refresh_ms = i64::from(TOUCH_REFRESH_HOURS) * HOUR_MS;
        for blobs in MIN_EXPIRE_AFTER_DAYS..=36_500 {
            let want = LifecycleWant { expire_after_days: Some(blobs), ..Default::default() };
            let manifests = want.manifests_expire_after_days().unwrap();
            assert!(manifests >= 1, "{blobs}: manifests must live at least a day");
            // A manifest written at any hour of two days; its oldest blob was
            // last written `touch_refresh` earlier (a blob just younger than
            // that is not touched by the export).
            for hour in 0..48 {
                let manifest_at = 20_000 * 86_400_000 + hour * HOUR_MS + 1;
                let oldest_blob_at = manifest_at - touch_refresh_ms;
                assert!(
                    deleting_pass(manifest_at, manifests) < deleting_pass(oldest_blob_at, blobs),
                    "blobs {blobs} days, manifests {manifests}: same or later pass at hour {hour}"
                );
            }
        }
    }

    #[test]
    fn too_short_an_expiry_is_refused_with_the_smallest_value_that_works() {
        assert_eq!(MIN_EXPIRE_AFTER_DAYS, 3);
        for d in [1, 2] {
            let err = check_expire_after_days(Some(d)).unwrap_err();
            assert!(err.contains("smallest value that works is 3"), "{err}");
        }
        assert!(check_expire_after_days(Some(3)).is_ok() && check_expire_after_days(None).is_ok());
    }

    #[test]
    fn the_layout_joins_prefix_and_each_kind() {
        let layout = CacheLayout { prefix: "ci/".into(), ..Default::default() };
        assert_eq!((layout.manifests(), layout.blobs()), ("ci/manifests/".to_string(), "ci/blobs/".to_string()));
    }
}
