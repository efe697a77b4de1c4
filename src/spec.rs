//! The spec file: a YAML declaration of a cluster, its buckets, keys and
//! grants. Parsed with serde-saphyr (no `unsafe`, line and column in every
//! error, alias bombs and deep nesting refused by its budget), unknown
//! fields rejected, size capped, and every value validated before any
//! network call. Errors name the file, the line and the column.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::admin::types::{Permissions, Quotas, WebsiteConfig, ZoneRedundancy};
use crate::desired::{
    BucketIx, BucketWant, CacheLayout, ClusterWant, Desired, GrantWant, KeyIx, KeyWant, LifecycleWant, NodeWant,
    NodesWant, RoleTemplate, check_expire_after_days,
};
use crate::secret::Secret;
use crate::validate::{
    ConfigError, SmallFileError, parse_days, parse_http_url, parse_size, read_secret_file, read_small_file,
    validate_access_key_id, validate_bucket_name, validate_label, validate_secret_key,
};

/// Spec files larger than this are refused before parsing.
pub const MAX_SPEC_BYTES: u64 = 256 * 1024;
/// The RPC port other nodes dial when a node's `rpc_address` is not given.
const DEFAULT_RPC_PORT: u16 = 3901;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    #[serde(default)]
    cluster: Option<ClusterSpec>,
    #[serde(default)]
    buckets: Vec<BucketSpec>,
    #[serde(default)]
    keys: Vec<KeySpec>,
    #[serde(default)]
    grants: Vec<GrantSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSpec {
    #[serde(default)]
    nodes: Vec<NodeSpec>,
    #[serde(default)]
    expected_nodes: Option<Spanned<usize>>,
    /// Defaults for nodes that do not set their own.
    #[serde(default)]
    zone: Option<Spanned<String>>,
    #[serde(default)]
    capacity: Option<Spanned<Size>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    zone_redundancy: Option<Spanned<Redundancy>>,
    #[serde(default)]
    remove_nodes: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    admin_url: Spanned<String>,
    #[serde(default)]
    rpc_address: Option<Spanned<String>>,
    #[serde(default)]
    zone: Option<Spanned<String>>,
    #[serde(default)]
    capacity: Option<Spanned<Size>>,
    #[serde(default)]
    gateway: bool,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// `10GB`, `1TiB` or a number of bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// `maximum` or a number of zones.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Redundancy {
    AtLeast(usize),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketSpec {
    name: Spanned<String>,
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    #[serde(default)]
    quotas: Option<QuotaSpec>,
    #[serde(default)]
    website: Option<Spanned<WebsiteSpec>>,
    #[serde(default)]
    lifecycle: Option<Spanned<LifecycleSpec>>,
}

/// Served by Garage's web endpoint: `website: {index_document: index.html, error_document: 404.html}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebsiteSpec {
    #[serde(default)]
    index_document: Option<Spanned<String>>,
    #[serde(default)]
    error_document: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LifecycleSpec {
    #[serde(default)]
    expire_after_days: Option<Spanned<DaysSpec>>,
    #[serde(default)]
    abort_incomplete_uploads_after_days: Option<Spanned<DaysSpec>>,
}

/// `30`, or `off` / `0`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DaysSpec {
    Number(u64),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaSpec {
    #[serde(default)]
    max_size: Option<Spanned<Size>>,
    #[serde(default)]
    max_objects: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySpec {
    id: Spanned<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    secret: Option<Spanned<String>>,
    #[serde(default)]
    secret_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantSpec {
    /// A key's id, or its name as declared under `keys`.
    key: Spanned<String>,
    bucket: Spanned<String>,
    permissions: Vec<Spanned<String>>,
}

/// Reads, parses and validates a spec file. `template` gives the role of
/// nodes the spec does not describe (from the flags).
pub fn load(path: &Path, template: &RoleTemplate) -> Result<Desired, ConfigError> {
    let shown = path.display().to_string();
    let text = read_small_file(path, MAX_SPEC_BYTES).map_err(|e| {
        let problem = match e {
            SmallFileError::TooLarge { limit } => format!("a spec may have at most {limit} bytes; this one has more"),
            other => other.to_string(),
        };
        spec_error(&shown, None, problem)
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, &shown, base, template)
}

/// Parses spec text; `file` names it in errors, `base` resolves relative `secret_file`s.
pub fn parse(text: &str, file: &str, base: &Path, template: &RoleTemplate) -> Result<Desired, ConfigError> {
    if text.len() as u64 > MAX_SPEC_BYTES {
        return Err(spec_error(file, None, format!("a spec may have at most {MAX_SPEC_BYTES} bytes")));
    }
    // An empty file, one of comments only, `~` and `null` are all the empty spec, as `{}` is.
    let spec: Option<SpecFile> =
        serde_saphyr::from_str(text).map_err(|e| spec_error(file, e.location(), yaml_problem(&e)))?;
    Validator { file }.desired(spec.unwrap_or_default(), base, template)
}

/// Said when lists and mappings nest deeper than the parser follows.
const TOO_DEEP: &str = "lists and mappings nest deeper here than any spec needs (or garage-init reads)";

/// What a YAML error means, in the spec's words. serde-saphyr's own
/// messages speak to a Rust developer ("set DuplicateKeyPolicy in Options",
/// "use Option<String>", "budget breached: Depth { .. }", "untagged enum
/// Size"); the ones a spec can meet are said again here. None of them
/// quotes the input, which may hold a secret.
fn yaml_problem(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let fixed = match e {
        E::WithSnippet { error, .. } | E::AliasError { error, .. } => return yaml_problem(error),
        E::Eof { .. } => "the spec ends in the middle of a value",
        E::MultipleDocuments { .. } => "the spec holds more than one YAML document (a second `---`); keep one",
        E::Unexpected { expected: "mapping start" | "empty mapping start", .. } => {
            "expected `name: value` lines (a mapping) here"
        }
        E::Unexpected { expected: "sequence start", .. } => "expected a list here: `- item` lines, or `[a, b]`",
        E::Unexpected { expected: "string scalar" | "scalar" | "value", .. } => {
            "expected a single value here, not a list or a mapping"
        }
        E::DuplicateMappingKey { key: Some(key), .. } => return format!("`{key}` is given twice in the same mapping"),
        E::DuplicateMappingKey { key: None, .. } => "a name is given twice in the same mapping",
        E::NullIntoString { .. } | E::InvalidCharNull { .. } => "a value is missing here (empty, `~` or null)",
        E::InvalidScalar { ty: "boolean", .. } | E::InvalidBooleanStrict { .. } => "expected true or false here",
        E::InvalidScalar { ty, .. } if ty.starts_with('u') => "expected a whole number (0 or more) here",
        E::InvalidScalar { ty, .. } if ty.starts_with('i') => "expected a whole number here",
        E::InvalidScalar { .. } | E::NonFiniteFloat { .. } => "expected a number here",
        E::UnknownAnchor { .. } => "an alias (`*name`) refers to no anchor (`&name`) defined before it",
        E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => {
            "the spec's aliases (`*name`) repeat more than any spec needs (or garage-init reads): write the \
             values out"
        }
        E::Budget { breach: B::Depth { .. }, .. } => TOO_DEEP,
        E::Budget { breach: B::Aliases { .. } | B::Anchors { .. }, .. } => {
            "the spec has more anchors (`&name`) or aliases (`*name`) than any spec needs (or garage-init reads)"
        }
        E::Budget { .. } => "the spec holds more values than any spec needs (or garage-init reads)",
        E::Message { msg, .. } | E::ExternalMessage { msg, .. } if msg.contains("recursion limit") => TOO_DEEP,
        // serde's words for the values that take two forms.
        E::Message { msg, .. } if msg.contains("untagged enum Size") => {
            "expected a size here: a number of bytes, or a number and a unit such as 500GB or 1TiB"
        }
        E::Message { msg, .. } if msg.contains("untagged enum Redundancy") => {
            "expected `maximum` or a number of zones here"
        }
        E::Message { msg, .. } if msg.contains("untagged enum DaysSpec") => "expected a number of days here, or `off`",
        other => {
            use serde_saphyr::MessageFormatter;
            let message = serde_saphyr::UserMessageFormatter.format_message(other);
            return message.lines().next().unwrap_or_default().trim().to_string();
        }
    };
    fixed.to_string()
}

fn spec_error(file: &str, at: Option<Location>, problem: impl Into<String>) -> ConfigError {
    let setting = match at {
        Some(l) if l.line() > 0 => format!("spec {file}, line {}, column {}", l.line(), l.column()),
        _ => format!("spec {file}"),
    };
    ConfigError::new(setting, problem)
}

struct Validator<'a> {
    file: &'a str,
}

impl Validator<'_> {
    fn err<T>(&self, at: &Spanned<T>, problem: impl Into<String>) -> ConfigError {
        spec_error(self.file, Some(at.referenced), problem)
    }

    fn desired(&self, spec: SpecFile, base: &Path, template: &RoleTemplate) -> Result<Desired, ConfigError> {
        let cluster = self.cluster(spec.cluster, template)?;
        let buckets = self.buckets(&spec.buckets)?;
        let (keys, names) = self.keys(spec.keys, base)?;
        let lifecycles: Vec<_> = spec.buckets.iter().map(|b| b.lifecycle.as_ref().map(|l| l.referenced)).collect();
        let grants = self.grants(spec.grants, &keys, &names, &buckets)?;
        let desired = Desired { exhaustive: true, cluster, buckets, keys, grants };
        // S3 lets only a key with the owner permission read or write a bucket's lifecycle.
        for (i, at) in lifecycles.into_iter().enumerate() {
            if let Some(at) = at
                && desired.lifecycle_owner(i).is_none()
            {
                let name = &desired.buckets[i].name;
                return Err(spec_error(
                    self.file,
                    Some(at),
                    format!(
                        "bucket `{name}` declares a lifecycle, but no declared key has the owner permission on it, \
                         and Garage lets only an owner read or write lifecycle rules: add `owner` to a grant on `{name}`"
                    ),
                ));
            }
        }
        Ok(desired)
    }

    fn cluster(&self, spec: Option<ClusterSpec>, flags: &RoleTemplate) -> Result<ClusterWant, ConfigError> {
        let Some(c) = spec else {
            return Ok(ClusterWant {
                nodes: NodesWant::Auto,
                template: flags.clone(),
                zone_redundancy: None,
                remove: Vec::new(),
            });
        };
        let zone = match &c.zone {
            Some(z) => {
                validate_label(&z.value).map_err(|p| self.err(z, format!("zone: {p}")))?;
                z.value.clone()
            }
            None => flags.zone.clone(),
        };
        let capacity = match &c.capacity {
            Some(s) => Some(self.size(s)?),
            None => flags.capacity,
        };
        let tags = match &c.tags {
            Some(t) => self.tags(t, &c.zone)?,
            None => flags.tags.clone(),
        };
        let template = RoleTemplate { zone, capacity, tags };

        let nodes = match (&c.expected_nodes, c.nodes.is_empty()) {
            (Some(n), false) => {
                return Err(self.err(n, "give either `nodes` or `expected_nodes`, not both"));
            }
            (Some(n), true) if n.value == 0 => return Err(self.err(n, "expected_nodes must be at least 1")),
            (Some(n), true) => NodesWant::Count(n.value),
            (None, true) => NodesWant::Auto,
            (None, false) => NodesWant::Listed(self.nodes(&c.nodes, &template)?),
        };

        let zone_redundancy = match &c.zone_redundancy {
            None => None,
            Some(r) => Some(match &r.value {
                Redundancy::AtLeast(0) => return Err(self.err(r, "zone_redundancy must be at least 1")),
                Redundancy::AtLeast(n) => ZoneRedundancy::AtLeast(*n),
                Redundancy::Word(w) if w == "maximum" => ZoneRedundancy::Maximum,
                Redundancy::Word(w) => {
                    return Err(self.err(r, format!("zone_redundancy is `maximum` or a number, not `{w}`")));
                }
            }),
        };

        let mut remove = Vec::new();
        for id in &c.remove_nodes {
            if id.value.len() != 64 || !id.value.chars().all(|ch| ch.is_ascii_hexdigit()) {
                return Err(self.err(id, "remove_nodes takes full node ids: 64 hex digits, as `garage status` shows"));
            }
            remove.push(id.value.to_ascii_lowercase());
        }
        Ok(ClusterWant { nodes, template, zone_redundancy, remove })
    }

    fn nodes(&self, specs: &[NodeSpec], template: &RoleTemplate) -> Result<Vec<NodeWant>, ConfigError> {
        let mut seen = BTreeSet::new();
        let mut nodes = Vec::new();
        for n in specs {
            let admin_url = parse_http_url(&n.admin_url.value, "admin_url")
                .map_err(|e| self.err(&n.admin_url, format!("admin_url: {}", e.problem)))?;
            if !seen.insert(admin_url.to_string()) {
                return Err(self.err(&n.admin_url, format!("node {} is listed twice", n.admin_url.value)));
            }
            let rpc_address = match &n.rpc_address {
                Some(a) => {
                    if a.value.contains(['@', '/']) {
                        // Not repeated: what comes before an `@` may be a password.
                        return Err(self.err(a, "rpc_address must be host:port, with no user part or path"));
                    }
                    let ok = a.value.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                    if !ok {
                        return Err(self.err(a, format!("rpc_address `{}` must be host:port", a.value)));
                    }
                    a.value.clone()
                }
                None => format!("{}:{DEFAULT_RPC_PORT}", admin_url.host_str().unwrap_or_default()),
            };
            let zone = match &n.zone {
                Some(z) => {
                    validate_label(&z.value).map_err(|p| self.err(z, format!("zone: {p}")))?;
                    z.value.clone()
                }
                None => template.zone.clone(),
            };
            let capacity = match (&n.capacity, n.gateway) {
                (Some(c), true) => return Err(self.err(c, "a gateway node has no capacity: drop one of the two")),
                (Some(c), false) => Some(self.size(c)?),
                (None, _) => template.capacity,
            };
            let tags = match &n.tags {
                Some(t) => self.tags(t, &n.zone)?,
                None => template.tags.clone(),
            };
            nodes.push(NodeWant { admin_url, rpc_address, zone, gateway: n.gateway, capacity, tags });
        }
        Ok(nodes)
    }

    fn tags(&self, tags: &[String], near: &Option<Spanned<String>>) -> Result<Vec<String>, ConfigError> {
        for t in tags {
            if let Err(p) = validate_label(t) {
                return Err(match near {
                    Some(at) => self.err(at, format!("tag: {p}")),
                    None => spec_error(self.file, None, format!("tag: {p}")),
                });
            }
        }
        Ok(tags.to_vec())
    }

    fn size(&self, s: &Spanned<Size>) -> Result<u64, ConfigError> {
        let bytes = match &s.value {
            Size::Bytes(n) => *n,
            Size::Text(t) => parse_size(t).map_err(|p| self.err(s, p))?,
        };
        if bytes < 1024 {
            return Err(self.err(s, format!("{bytes} bytes is under 1024, the smallest capacity Garage accepts")));
        }
        Ok(bytes)
    }

    /// A website document: an object key, served as the index of every
    /// directory (`index.html`) or for a missing page (`404.html`).
    fn document(&self, d: &Spanned<String>) -> Result<String, ConfigError> {
        let key = d.value.trim();
        if key.is_empty() || key.len() > 1024 || key.chars().any(char::is_control) {
            return Err(self.err(d, "a website document is an object key: 1 to 1024 characters, no control characters"));
        }
        Ok(key.to_string())
    }

    /// A lifecycle rule's days; absent, `0` and `off` turn the rule off.
    fn days(&self, d: &Option<Spanned<DaysSpec>>) -> Result<Option<u32>, ConfigError> {
        let Some(d) = d else { return Ok(None) };
        let text = match &d.value {
            DaysSpec::Number(n) => n.to_string(),
            DaysSpec::Word(w) => w.clone(),
        };
        parse_days(&text).map(|days| days.0).map_err(|p| self.err(d, p))
    }

    fn buckets(&self, specs: &[BucketSpec]) -> Result<Vec<BucketWant>, ConfigError> {
        let mut names = BTreeSet::new();
        let mut buckets = Vec::new();
        for b in specs {
            for n in std::iter::once(&b.name).chain(&b.aliases) {
                validate_bucket_name(&n.value).map_err(|p| self.err(n, format!("bucket name: {p}")))?;
                if !names.insert(n.value.clone()) {
                    return Err(self.err(n, format!("bucket name `{}` is declared twice", n.value)));
                }
            }
            let quotas = match &b.quotas {
                None => None,
                Some(q) => Some(Quotas {
                    max_size: match &q.max_size {
                        Some(s) => Some(self.size(s)?),
                        None => None,
                    },
                    max_objects: q.max_objects,
                }),
            };
            let lifecycle = match &b.lifecycle {
                None => None,
                Some(l) => {
                    let expire_after_days = self.days(&l.value.expire_after_days)?;
                    if let Some(d) = &l.value.expire_after_days {
                        check_expire_after_days(expire_after_days).map_err(|p| self.err(d, p))?;
                    }
                    Some(LifecycleWant {
                        expire_after_days,
                        abort_incomplete_uploads_after_days: self.days(&l.value.abort_incomplete_uploads_after_days)?,
                        // The run's settings give the layout (`Desired::set_cache_layout`).
                        layout: CacheLayout::default(),
                    })
                }
            };
            let website = match &b.website {
                None => None,
                Some(w) => Some(WebsiteConfig {
                    index_document: match &w.value.index_document {
                        Some(d) => self.document(d)?,
                        None => "index.html".into(),
                    },
                    error_document: w.value.error_document.as_ref().map(|d| self.document(d)).transpose()?,
                }),
            };
            buckets.push(BucketWant {
                name: b.name.value.clone(),
                aliases: b.aliases.iter().map(|a| a.value.clone()).collect(),
                quotas,
                website,
                lifecycle,
            });
        }
        Ok(buckets)
    }

    /// Keys, and the names they were declared with (for grants that name them).
    fn keys(&self, specs: Vec<KeySpec>, base: &Path) -> Result<(Vec<KeyWant>, Vec<String>), ConfigError> {
        let mut keys: Vec<KeyWant> = Vec::new();
        let mut names = Vec::new();
        for k in specs {
            validate_access_key_id(&k.id.value).map_err(|p| self.err(&k.id, format!("key id: {p}")))?;
            if keys.iter().any(|other| other.id == k.id.value) {
                return Err(self.err(&k.id, format!("key {} is declared twice", k.id.value)));
            }
            let secret = match (&k.secret, &k.secret_file) {
                (Some(s), None) => Secret::new(s.value.trim()),
                (None, Some(f)) => {
                    let path = base.join(&f.value);
                    read_secret_file(&path, "secret_file").map_err(|e| self.err(f, e.problem))?
                }
                (Some(s), Some(_)) => return Err(self.err(s, "give either `secret` or `secret_file`, not both")),
                (None, None) => return Err(self.err(&k.id, "this key needs a `secret` or a `secret_file`")),
            };
            let at = k.secret.as_ref().map(|s| s.referenced).or(k.secret_file.as_ref().map(|s| s.referenced));
            validate_secret_key(secret.expose()).map_err(|p| spec_error(self.file, at, format!("key secret: {p}")))?;
            let name = k.name.clone().unwrap_or_else(|| k.id.value.clone());
            if name.trim().is_empty() {
                return Err(self.err(&k.id, "key name must not be empty"));
            }
            if names.contains(&name) {
                return Err(self.err(&k.id, format!("key name `{name}` is used twice")));
            }
            names.push(name.clone());
            keys.push(KeyWant { id: k.id.value, secret, name });
        }
        Ok((keys, names))
    }

    fn grants(
        &self,
        specs: Vec<GrantSpec>,
        keys: &[KeyWant],
        names: &[String],
        buckets: &[BucketWant],
    ) -> Result<Vec<GrantWant>, ConfigError> {
        let mut grants: Vec<GrantWant> = Vec::new();
        for g in specs {
            let key = keys
                .iter()
                .zip(names)
                .position(|(k, name)| k.id == g.key.value || **name == g.key.value)
                .ok_or_else(|| {
                    self.err(&g.key, format!("grant names key `{}`, which is not declared under `keys`", g.key.value))
                })?;
            let bucket = buckets
                .iter()
                .position(|b| b.name == g.bucket.value || b.aliases.contains(&g.bucket.value))
                .ok_or_else(|| {
                self.err(
                    &g.bucket,
                    format!("grant names bucket `{}`, which is not declared under `buckets`", g.bucket.value),
                )
            })?;
            let mut permissions = Permissions::default();
            for p in &g.permissions {
                match p.value.as_str() {
                    "read" => permissions.read = true,
                    "write" => permissions.write = true,
                    "owner" => permissions.owner = true,
                    other => {
                        return Err(self.err(p, format!("unknown permission `{other}`: use read, write or owner")));
                    }
                }
            }
            if permissions.is_empty() {
                return Err(self.err(&g.key, "a grant needs at least one permission (read, write, owner)"));
            }
            let (key, bucket) = (KeyIx(key), BucketIx(bucket));
            if grants.iter().any(|o: &GrantWant| o.key == key && o.bucket == bucket) {
                let name = &buckets[bucket.0].name;
                return Err(self.err(&g.key, format!("{} on {name} is granted twice", g.key.value)));
            }
            grants.push(GrantWant { key, bucket, permissions });
        }
        Ok(grants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "GK0123456789abcdef01234567";
    const SECRET: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn template() -> RoleTemplate {
        RoleTemplate { zone: "dc1".into(), capacity: None, tags: vec![] }
    }

    fn parse_ok(text: &str) -> Desired {
        parse(text, "spec.yaml", Path::new("."), &template()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(text: &str) -> String {
        parse(text, "spec.yaml", Path::new("."), &template()).unwrap_err().to_string()
    }

    #[test]
    fn full_spec_parses() {
        let d = parse_ok(&format!(
            r#"
cluster:
  capacity: 10GB
  zone_redundancy: 2
  nodes:
    - admin_url: http://garage-1:3903
      zone: dc1
    - admin_url: http://garage-2:3903
      rpc_address: garage-2.internal:3901
      zone: dc2
      tags: [ssd, fast]
    - admin_url: http://garage-3:3903
      gateway: true
buckets:
  - name: buildkit-cache
    aliases: [cache]
    quotas:
      max_size: 50GB
      max_objects: 1000
  - name: artifacts
keys:
  - id: {KEY}
    name: builder
    secret: {SECRET}
grants:
  - key: builder
    bucket: cache
    permissions: [read, write]
"#
        ));
        let NodesWant::Listed(nodes) = &d.cluster.nodes else { panic!("nodes") };
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].rpc_address, "garage-1:3901");
        assert_eq!(nodes[0].capacity, Some(10_000_000_000));
        assert_eq!(nodes[1].rpc_address, "garage-2.internal:3901");
        assert_eq!(nodes[1].tags, vec!["ssd", "fast"]);
        assert!(nodes[2].gateway);
        assert_eq!(d.cluster.zone_redundancy, Some(ZoneRedundancy::AtLeast(2)));
        assert_eq!(d.buckets[0].quotas, Some(Quotas { max_size: Some(50_000_000_000), max_objects: Some(1000) }));
        assert_eq!(d.buckets[0].aliases, vec!["cache"]);
        assert_eq!(d.keys[0].name, "builder");
        assert_eq!(
            d.grants,
            vec![GrantWant {
                key: KeyIx(0),
                bucket: BucketIx(0),
                permissions: Permissions { read: true, write: true, owner: false }
            }]
        );
    }

    #[test]
    fn empty_spec_is_today_single_node_cluster_with_nothing_else() {
        // An empty file, comments only, `~`, `null` and an empty document all mean the same as `{}`.
        for empty in ["{}", "", "\n", "# nothing yet\n", "~", "null", "~\n", "---\n", "--- ~\n"] {
            let d = parse_ok(empty);
            assert!(matches!(d.cluster.nodes, NodesWant::Auto), "{empty:?}");
            assert!(d.exhaustive && d.buckets.is_empty() && d.keys.is_empty() && d.grants.is_empty(), "{empty:?}");
        }
    }

    #[test]
    fn yaml_errors_speak_of_the_spec_not_of_the_parsers_options() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let aliases = format!(
            "keys:\n  - id: {KEY}\n    secret: {SECRET}\nbuckets:\n  - name: abc\n\
             grants: [{{key: {KEY}, bucket: abc, permissions: [&r read, {}]}}]\n",
            "*r,".repeat(50_001)
        );
        for (text, says) in [
            ("buckets:\n  - name: a\n    name: b\n", "`name` is given twice in the same mapping"),
            ("cluster:\n  zone: x\n  zone: y\n", "`zone` is given twice"),
            ("buckets:\n  - name: ~\n", "a value is missing here"),
            ("[]", "expected `name: value` lines (a mapping) here"),
            ("buckets: ~", "expected a list here"),
            ("cluster:\n  tags:\n    - [a]\n", "expected a single value here"),
            ("cluster:\n  expected_nodes: three\n", "expected a whole number (0 or more) here"),
            ("cluster:\n  nodes:\n    - admin_url: http://a:3903\n      gateway: maybe\n", "expected true or false"),
            ("buckets: [{name: abc, quotas: {max_size: [1]}}]", "expected a size here"),
            ("cluster: {zone_redundancy: [1]}", "expected `maximum` or a number of zones"),
            ("buckets: [{name: abc, lifecycle: {expire_after_days: [1]}}]", "expected a number of days"),
            ("buckets: *nope\n", "refers to no anchor"),
            ("cluster: {}\n---\nbuckets: []\n", "more than one YAML document"),
            (deep.as_str(), "nest deeper here than any spec needs"),
            (aliases.as_str(), "than any spec needs"),
        ] {
            let e = parse_err(text);
            assert!(e.contains(says), "{:?}: {e}", &text[..text.len().min(60)]);
            for jargon in ["Options", "Policy", "Option<", "budget", "untagged", "enum", "scalar", "u64", "recursion"] {
                assert!(!e.contains(jargon), "{:?}: `{jargon}` in {e}", &text[..text.len().min(60)]);
            }
        }
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = parse_err("buckets:\n  - name: ok-bucket\n    colour: blue\n");
        assert!(e.starts_with("invalid spec spec.yaml, line 3, column 5: unknown field `colour`"), "{e}");

        let e = parse_err("buckets:\n  - name: Bad_Name\n");
        assert!(e.starts_with("invalid spec spec.yaml, line 2, column 11"), "{e}");
        assert!(e.contains("contains `B`"), "{e}");

        let e = parse_err("keys:\n  - id: 12\n    secret: abc\n");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn wrong_types_are_refused() {
        let e = parse_err("buckets: yes\n");
        assert!(e.contains("line 1"), "{e}");
        let e = parse_err("cluster:\n  expected_nodes: three\n");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn duplicates_and_dangling_references_are_refused() {
        let e = parse_err("buckets:\n  - name: aaa\n  - name: aaa\n");
        assert!(e.contains("line 3") && e.contains("declared twice"), "{e}");
        let e =
            parse_err("buckets:\n  - name: aaa\ngrants:\n  - key: nobody\n    bucket: aaa\n    permissions: [read]\n");
        assert!(e.contains("line 4") && e.contains("not declared under `keys`"), "{e}");
        let e = parse_err(&format!(
            "keys:\n  - id: {KEY}\n    secret: {SECRET}\ngrants:\n  - key: {KEY}\n    bucket: nope\n    permissions: [read]\n"
        ));
        assert!(e.contains("line 6") && e.contains("not declared under `buckets`"), "{e}");
    }

    #[test]
    fn key_formats_are_checked_without_echoing_secrets() {
        let e = parse_err("keys:\n  - id: GK12\n    secret: abc\n");
        assert!(e.contains("line 2") && e.contains("26 in all"), "{e}");
        let e = parse_err(&format!("keys:\n  - id: {KEY}\n    secret: not-a-real-secret\n"));
        assert!(e.contains("line 3") && !e.contains("not-a-real-secret"), "{e}");
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused_fast() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 { "a".to_string() } else { format!("b{}", i - 1) };
            bomb.push_str(&format!("b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let started = std::time::Instant::now();
        assert!(parse(&bomb, "bomb.yaml", Path::new("."), &template()).is_err());
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&deep, "deep.yaml", Path::new("."), &template()).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn oversized_files_are_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        std::fs::write(&path, "#".repeat(MAX_SPEC_BYTES as usize + 1)).unwrap();
        let e = load(&path, &template()).unwrap_err().to_string();
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn secret_files_are_relative_to_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key.secret"), format!("{SECRET}\n")).unwrap();
        let path = dir.path().join("spec.yaml");
        std::fs::write(&path, format!("keys:\n  - id: {KEY}\n    secret_file: key.secret\n")).unwrap();
        let d = load(&path, &template()).unwrap();
        assert_eq!(d.keys[0].secret.expose(), SECRET);
    }

    #[test]
    fn node_capacity_defaults_to_its_disk_and_gateways_have_none() {
        let d = parse_ok("cluster:\n  nodes:\n    - admin_url: http://a:3903\n");
        let NodesWant::Listed(nodes) = &d.cluster.nodes else { panic!("nodes") };
        assert_eq!((nodes[0].capacity, nodes[0].gateway), (None, false));
        let e =
            parse_err("cluster:\n  nodes:\n    - admin_url: http://a:3903\n      gateway: true\n      capacity: 1GB\n");
        assert!(e.contains("gateway node has no capacity"), "{e}");
    }

    #[test]
    fn the_readme_example_is_a_valid_spec() {
        let readme = include_str!("../docs/cluster.md");
        let section = &readme[readme.find("## More than one node").expect("docs/cluster.md section")..];
        let start = section.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        for name in ["buildkit-key", "ci-reader"] {
            std::fs::write(dir.path().join("secrets").join(name), format!("{SECRET}\n")).unwrap();
        }
        let d = parse(example, "docs/cluster.md", dir.path(), &template()).unwrap_or_else(|e| panic!("{e}"));
        let NodesWant::Listed(nodes) = &d.cluster.nodes else { panic!("nodes") };
        assert_eq!(nodes.len(), 4);
        assert!(nodes[3].gateway);
        assert_eq!((d.buckets.len(), d.keys.len(), d.grants.len()), (2, 2, 2));
    }
}
