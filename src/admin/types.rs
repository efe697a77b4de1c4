//! Serde types for the parts of Garage's admin API v2 that garage-init uses,
//! written from the API's documented JSON. Unknown fields are ignored so that
//! later 2.x releases, which add fields, still parse.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

// ---- cluster ----

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub layout_version: u64,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub id: String,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub addr: Option<String>,
    pub is_up: bool,
    #[serde(default)]
    pub role: Option<Role>,
    /// No role in the current layout, but storage in an older one that is
    /// still active: Garage waits for its data to move.
    #[serde(default)]
    pub draining: bool,
    #[serde(default)]
    pub data_partition: Option<Partition>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Partition {
    pub available: u64,
    pub total: u64,
}

/// Answer of `GetNodeInfo?node=self`: one entry, keyed by the node's id.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeInfoResponse {
    #[serde(default)]
    pub success: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConnectResult {
    pub success: bool,
    #[serde(default)]
    pub error: Option<String>,
}

// ---- layout ----

/// A node's role: storage with a capacity in bytes, or a gateway (`capacity: null`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub zone: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub capacity: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterLayout {
    pub version: u64,
    pub roles: Vec<LayoutRole>,
    #[serde(default)]
    pub staged_role_changes: Vec<StagedRoleChange>,
    #[serde(default)]
    pub staged_parameters: Option<LayoutParameters>,
    pub parameters: LayoutParameters,
}

impl ClusterLayout {
    pub fn role_of(&self, node_id: &str) -> Option<&LayoutRole> {
        self.roles.iter().find(|r| r.id == node_id)
    }

    pub fn staged_change_for(&self, node_id: &str) -> Option<&StagedRoleChange> {
        self.staged_role_changes.iter().find(|c| c.id() == node_id)
    }

    /// Garage lists only staged changes that differ from the current layout.
    pub fn has_staged_changes(&self) -> bool {
        !self.staged_role_changes.is_empty() || self.staged_parameters.is_some()
    }

    /// Copies of each partition: Garage stores each of its 256 partitions on
    /// this many nodes. `None` when the layout does not say (not applied yet,
    /// or read from `GetClusterStatus`, which has no partition counts).
    pub fn replication_factor(&self) -> Option<u64> {
        let stored: u64 = self.roles.iter().filter_map(|r| r.stored_partitions).sum();
        (stored >= 256).then_some(stored / 256)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayoutRole {
    pub id: String,
    #[serde(flatten)]
    pub role: Role,
    /// Partitions the node stores in this version (every partition is stored
    /// `replication_factor` times); `None` for a gateway, or not reported.
    #[serde(default)]
    pub stored_partitions: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StagedRoleChange {
    Remove {
        id: String,
        remove: bool,
    },
    Assign {
        id: String,
        #[serde(flatten)]
        role: Role,
    },
}

impl StagedRoleChange {
    pub fn id(&self) -> &str {
        match self {
            Self::Remove { id, .. } | Self::Assign { id, .. } => id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayoutParameters {
    pub zone_redundancy: ZoneRedundancy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ZoneRedundancy {
    AtLeast(usize),
    Maximum,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpdateLayoutRequest {
    pub roles: Vec<StagedRoleChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<LayoutParameters>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApplyLayoutResponse {
    pub layout: ClusterLayout,
}

/// `GetClusterLayoutHistory`: the layout versions still active, and how far
/// each node has taken part in them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayoutHistory {
    pub current_version: u64,
    pub versions: Vec<LayoutVersionInfo>,
    /// Per node id; present only while more than one version is active.
    #[serde(default)]
    pub update_trackers: Option<std::collections::BTreeMap<String, UpdateTrackers>>,
}

impl LayoutHistory {
    /// Nodes (storage and gateway) of the largest older version still active.
    pub fn draining_nodes(&self) -> Option<u64> {
        self.versions.iter().filter(|v| v.status == "Draining").map(|v| v.storage_nodes + v.gateway_nodes).max()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayoutVersionInfo {
    pub version: u64,
    /// `Current`, `Draining` (still active) or `Historical`.
    pub status: String,
    #[serde(default)]
    pub storage_nodes: u64,
    #[serde(default)]
    pub gateway_nodes: u64,
}

/// The highest layout version a node has acknowledged, synced, and seen
/// every node sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTrackers {
    pub ack: u64,
    pub sync: u64,
    pub sync_ack: u64,
}

/// `ClusterLayoutSkipDeadNodes`: stop waiting for nodes that are down to
/// acknowledge (and, with `allow_missing_data`, to sync) layout `version`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkipDeadNodesRequest {
    pub version: u64,
    pub allow_missing_data: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkipDeadNodesResponse {
    #[serde(default)]
    pub ack_updated: Vec<String>,
    #[serde(default)]
    pub sync_updated: Vec<String>,
}

// ---- keys ----

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub access_key_id: String,
    pub name: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub expired: bool,
    /// Present only when asked for with `showSecretKey=true`.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// The buckets this key has permissions on.
    #[serde(default)]
    pub buckets: Vec<KeyBucket>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyBucket {
    pub id: String,
    #[serde(default)]
    pub global_aliases: Vec<String>,
    #[serde(default)]
    pub permissions: Permissions,
}

impl KeyInfo {
    /// What this key's own view tells of a bucket, found by a global alias:
    /// its id, aliases, and this key's permissions (not other keys', nor quotas).
    pub fn bucket_view(&self, alias: &str) -> Option<BucketInfo> {
        let b = self.buckets.iter().find(|b| b.global_aliases.iter().any(|a| a == alias))?;
        Some(BucketInfo {
            id: b.id.clone(),
            created: None,
            global_aliases: b.global_aliases.clone(),
            keys: vec![BucketKey { access_key_id: self.access_key_id.clone(), permissions: b.permissions }],
            ..BucketInfo::default()
        })
    }
}

/// One entry of `ListKeys`.
#[derive(Debug, Clone, Deserialize)]
pub struct ListedKey {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportKeyRequest<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub name: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenameKeyRequest<'a> {
    pub name: &'a str,
}

// ---- buckets ----

/// A bucket as `GetBucketInfo` answers; the keys' views and the bucket list
/// fill only some fields (the rest stay at their defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketInfo {
    pub id: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub global_aliases: Vec<String>,
    #[serde(default)]
    pub keys: Vec<BucketKey>,
    #[serde(default)]
    pub quotas: Option<Quotas>,
    /// Whether Garage's web endpoint serves the bucket, and with which documents.
    #[serde(default)]
    pub website_access: bool,
    #[serde(default)]
    pub website_config: Option<WebsiteConfig>,
    #[serde(default)]
    pub objects: i64,
    #[serde(default)]
    pub bytes: i64,
}

/// One entry of `ListBuckets`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedBucket {
    pub id: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub global_aliases: Vec<String>,
    #[serde(default)]
    pub local_aliases: Vec<serde_json::Value>,
}

impl BucketInfo {
    pub fn permissions_of(&self, access_key_id: &str) -> Permissions {
        self.keys.iter().find(|k| k.access_key_id == access_key_id).map(|k| k.permissions).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketKey {
    pub access_key_id: String,
    #[serde(default)]
    pub permissions: Permissions,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub write: bool,
    #[serde(default)]
    pub owner: bool,
}

impl Permissions {
    pub const ALL: Self = Self { read: true, write: true, owner: true };

    /// Flags set in `self` and missing from `have`.
    pub fn missing_from(self, have: Self) -> Self {
        Self { read: self.read && !have.read, write: self.write && !have.write, owner: self.owner && !have.owner }
    }

    pub fn is_empty(self) -> bool {
        !(self.read || self.write || self.owner)
    }

    /// `read, write, owner`, or `none`.
    pub fn describe(self) -> String {
        let names: Vec<&str> = [(self.read, "read"), (self.write, "write"), (self.owner, "owner")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        if names.is_empty() { "none".into() } else { names.join(", ") }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quotas {
    pub max_size: Option<u64>,
    pub max_objects: Option<u64>,
}

/// The body of `UpdateBucket`: each setting given is set, the others are
/// left as they are. A new bucket setting is a field here, its copy in
/// [`BucketInfo::take_settings`], and its rule in `converge::bucket`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quotas: Option<Quotas>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website_access: Option<WebsiteAccess>,
}

/// The documents Garage's web endpoint serves for a website bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebsiteConfig {
    pub index_document: String,
    #[serde(default)]
    pub error_document: Option<String>,
}

/// `UpdateBucket`'s `websiteAccess`: on with its documents, or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebsiteAccess {
    pub enabled: bool,
    #[serde(flatten)]
    pub config: Option<WebsiteConfig>,
}

impl BucketUpdate {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl BucketInfo {
    /// Takes the settings `UpdateBucket` changes from its answer.
    pub fn take_settings(&mut self, answer: &BucketInfo) {
        self.quotas = answer.quotas;
        self.website_access = answer.website_access;
        self.website_config.clone_from(&answer.website_config);
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBucketRequest<'a> {
    pub global_alias: &'a str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowBucketKeyRequest<'a> {
    pub bucket_id: &'a str,
    pub access_key_id: &'a str,
    pub permissions: Permissions,
}

/// The error body every failed admin call carries.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_changes_parse_both_shapes() {
        let json = r#"{"version":0,"roles":[],"partitionSize":0,
            "parameters":{"zoneRedundancy":"maximum"},
            "stagedRoleChanges":[
              {"id":"aa","zone":"dc1","tags":["x"],"capacity":2048},
              {"id":"bb","zone":"dc2","tags":[],"capacity":null},
              {"id":"cc","remove":true}],
            "stagedParameters":{"zoneRedundancy":{"atLeast":2}}}"#;
        let layout: ClusterLayout = serde_json::from_str(json).unwrap();
        assert!(layout.has_staged_changes());
        assert_eq!(
            layout.staged_change_for("aa"),
            Some(&StagedRoleChange::Assign {
                id: "aa".into(),
                role: Role { zone: "dc1".into(), tags: vec!["x".into()], capacity: Some(2048) }
            })
        );
        assert!(
            matches!(layout.staged_change_for("bb"), Some(StagedRoleChange::Assign { role, .. }) if role.capacity.is_none())
        );
        assert!(matches!(layout.staged_change_for("cc"), Some(StagedRoleChange::Remove { remove: true, .. })));
        assert_eq!(layout.staged_parameters.unwrap().zone_redundancy, ZoneRedundancy::AtLeast(2));
    }

    #[test]
    fn role_serializes_as_garage_expects() {
        let req = UpdateLayoutRequest {
            roles: vec![StagedRoleChange::Assign {
                id: "aa".into(),
                role: Role { zone: "dc1".into(), tags: vec![], capacity: Some(1024) },
            }],
            parameters: None,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"roles":[{"id":"aa","zone":"dc1","tags":[],"capacity":1024}]}"#
        );
    }

    #[test]
    fn missing_permissions() {
        let have = Permissions { read: true, write: false, owner: true };
        let missing = Permissions::ALL.missing_from(have);
        assert_eq!(missing, Permissions { read: false, write: true, owner: false });
        assert_eq!(missing.describe(), "write");
        assert!(Permissions::ALL.missing_from(Permissions::ALL).is_empty());
        assert_eq!(Permissions::default().describe(), "none");
    }

    #[test]
    fn key_secret_never_debug_prints() {
        let k: KeyInfo = serde_json::from_str(
            r#"{"accessKeyId":"GK1","name":"n","expired":false,"secretAccessKey":"abcdef0123","permissions":{},"buckets":[]}"#,
        )
        .unwrap();
        assert!(!format!("{k:?}").contains("abcdef0123"));
        assert_eq!(k.secret_access_key.unwrap().expose(), "abcdef0123");
    }
}
