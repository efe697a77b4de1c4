//! The wanted state of a Garage cluster, whether it comes from flags (one
//! node, one bucket, one key) or from a spec file (many of each).

use url::Url;

use crate::admin::types::{Permissions, Quotas, ZoneRedundancy};
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
    /// `None`: the bucket's lifecycle rules are not managed.
    pub lifecycle: Option<LifecycleWant>,
}

/// The lifecycle rules garage-init keeps on a bucket, each `None` when off.
/// Rules of other ids, set by someone else, are kept alongside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LifecycleWant {
    /// Objects are deleted this many days after their last write.
    pub expire_after_days: Option<u32>,
    /// Multipart uploads never completed are aborted this many days after they started.
    pub abort_incomplete_uploads_after_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantWant {
    pub key_id: String,
    pub bucket: String,
    pub permissions: Permissions,
}

impl Desired {
    /// Today's single-node behaviour: one bucket, one key with read, write and owner on it.
    pub fn single(template: RoleTemplate, bucket: String, key: KeyWant, lifecycle: Option<LifecycleWant>) -> Self {
        let grant = GrantWant { key_id: key.id.clone(), bucket: bucket.clone(), permissions: Permissions::ALL };
        Self {
            exhaustive: false,
            cluster: ClusterWant { nodes: NodesWant::Auto, template, zone_redundancy: None, remove: Vec::new() },
            buckets: vec![BucketWant { name: bucket, aliases: Vec::new(), quotas: None, lifecycle }],
            keys: vec![key],
            grants: vec![grant],
        }
    }

    pub fn key(&self, id: &str) -> Option<&KeyWant> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The key that reads and writes bucket `bucket`'s lifecycle rules: the
    /// first declared key granted owner on it (S3 allows only owners).
    pub fn lifecycle_key(&self, bucket: usize) -> Option<&KeyWant> {
        let name = &self.buckets[bucket].name;
        self.grants.iter().find(|g| &g.bucket == name && g.permissions.owner).and_then(|g| self.key(&g.key_id))
    }

    /// The position of the bucket named `name` (its name, not an extra alias) in `buckets`.
    pub fn bucket_index(&self, name: &str) -> Option<usize> {
        self.buckets.iter().position(|b| b.name == name)
    }
}
