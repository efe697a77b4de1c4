//! How the loop's decisions read: the report line of each action, of each
//! resource no action touched, and the name of each step a deadline error
//! lists. [`super::plan`] decides; this module only words.

use crate::desired::Desired;
use crate::report::{Line, Outcome, short_id};

use super::bucket::describe_update;
use super::layout::{SkipDead, describe_change, describe_redundancy, skip_command};
use super::lifecycle::{describe_kept, others};
use super::observe::{LifecycleSeen, Observed};
use super::plan::{Action, LayoutChange, Resource};

impl Action {
    /// Whether the action makes something new (rather than changing what exists).
    fn creates(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::SkipDeadNodes(_)
            | Self::RenameKey { .. }
            | Self::AddAlias { .. }
            | Self::UpdateBucket { .. } => false,
            Self::Layout(change) => change.version == 1,
            Self::ImportKey { .. } | Self::CreateBucket { .. } | Self::AdoptBucket { .. } => true,
            Self::Grant { had, .. } => had.is_empty(),
            Self::SetLifecycle { creates, .. } => *creates,
            Self::ReadLifecycle { .. } => false,
        }
    }

    /// The report line: `planned` for `garage-init plan` (create, update),
    /// else for apply once done (created, updated). The detail is the same.
    pub fn line(&self, desired: &Desired, planned: bool) -> Line {
        let outcome = match (self.creates(), planned) {
            (true, true) => Outcome::ToCreate,
            (false, true) => Outcome::ToUpdate,
            (true, false) => Outcome::Created,
            (false, false) => Outcome::Updated,
        };
        let (resource, detail) = match self {
            Self::Connect { peers } => {
                let each: Vec<String> = peers
                    .iter()
                    .map(|p| format!("node {} ({}) at {}", short_id(&p.id), p.admin_url, p.rpc_address))
                    .collect();
                ("cluster", format!("connect {}", each.join("; ")))
            }
            Self::Layout(change) => ("layout", describe_layout_change(change)),
            Self::SkipDeadNodes(skip) => ("layout", describe_skip(skip)),
            Self::ImportKey { key } => {
                let k = &desired.keys[*key];
                ("key", format!("{} ({})", k.id, k.name))
            }
            Self::RenameKey { key, from } => {
                let k = &desired.keys[*key];
                ("key", format!("{}: name \"{from}\" -> \"{}\"", k.id, k.name))
            }
            Self::CreateBucket { bucket } => ("bucket", desired.buckets[*bucket].name.clone()),
            Self::AdoptBucket { bucket, id } => (
                "bucket",
                format!(
                    "{} (id {}: made by a create that got no answer, before Garage gave it its name)",
                    desired.buckets[*bucket].name,
                    short_id(id)
                ),
            ),
            Self::AddAlias { bucket, alias } if *alias == desired.buckets[*bucket].name => (
                "bucket",
                format!(
                    "{alias}: name written back to the bucket's record (an interrupted change left it only in the alias table)"
                ),
            ),
            Self::AddAlias { bucket, alias } => ("bucket", format!("{}: alias {alias}", desired.buckets[*bucket].name)),
            Self::UpdateBucket { bucket, update } => {
                ("bucket", format!("{}: {}", desired.buckets[*bucket].name, describe_update(update)))
            }
            Self::Grant { grant, add, had } => {
                let g = &desired.grants[*grant];
                let (key, bucket) = (&desired.grant_key(g).id, &desired.grant_bucket(g).name);
                let mut detail = format!("{} for {key} on {bucket}", add.describe());
                if !had.is_empty() {
                    detail.push_str(&format!(" (had {})", had.describe()));
                }
                ("grant", detail)
            }
            Self::SetLifecycle { bucket, declared, kept, .. } => {
                ("lifecycle", format!("{}: {}", desired.buckets[*bucket].name, describe_kept(declared, *kept)))
            }
            Self::ReadLifecycle { bucket, declared, .. } => {
                let detail = format!(
                    "{}: {} (the current rules are read once the key owns the bucket)",
                    desired.buckets[*bucket].name,
                    describe_kept(declared, 0)
                );
                ("lifecycle", detail)
            }
        };
        Line::new(resource, outcome, detail)
    }
}

/// A resource as a step of the run, as a deadline error lists what was left:
/// "key GK6275696c646b69742d6b6579 (buildkit-key)", "bucket buildkit-cache".
pub fn step(desired: &Desired, resource: Resource) -> String {
    match resource {
        Resource::Cluster => "cluster: connecting the listed nodes".to_string(),
        Resource::Layout => "layout".to_string(),
        Resource::Key(k) => format!("key {} ({})", desired.keys[k].id, desired.keys[k].name),
        Resource::Bucket(b) => format!("bucket {}", desired.buckets[b].name),
        Resource::Grant(g) => {
            let g = &desired.grants[g];
            let (key, bucket) = (&desired.grant_key(g).id, &desired.grant_bucket(g).name);
            format!("grant {} for {key} on {bucket}", g.permissions.describe())
        }
        Resource::Lifecycle(b) => format!("lifecycle rules of bucket {}", desired.buckets[b].name),
    }
}

/// "version 2: node 0a1b…: zone dc1, capacity 1.0 GB; zone redundancy at least 2 (1 change left staged by an
/// earlier run, adopted)"
fn describe_layout_change(change: &LayoutChange) -> String {
    let mut parts: Vec<String> = change
        .adopted
        .iter()
        .chain(&change.stage)
        .map(|c| match change.replaces.iter().find(|(old, _)| old == c.id()) {
            Some((_, new)) => format!("{} (gone: replaced by node {})", describe_change(c), short_id(new)),
            None => describe_change(c),
        })
        .collect();
    if let Some(p) = change.parameters.or(change.adopted_parameters) {
        parts.push(format!("zone redundancy {}", describe_redundancy(p)));
    }
    let mut detail = format!("version {}: {}", change.version, parts.join("; "));
    let adopted = change.adopted.len() + usize::from(change.adopted_parameters.is_some());
    if adopted > 0 {
        let s = if adopted == 1 { "" } else { "s" };
        detail.push_str(&format!(" ({adopted} change{s} left staged by an earlier run, adopted)"));
    }
    if let Some(skip) = &change.skip {
        detail.push_str(&format!("; then {}", describe_skip(skip)));
    }
    detail
}

/// "stop waiting for node 0a1b… (gone): `garage layout skip-dead-nodes --version 2`"
fn describe_skip(skip: &SkipDead) -> String {
    let nodes: Vec<&str> = skip.nodes.iter().map(|id| short_id(id)).collect();
    let missing = if skip.allow_missing_data {
        ", and for the data only they could sync (the nodes left hold no write quorum of it)"
    } else {
        ""
    };
    format!(
        "stop waiting for node {} (gone, holding data of an older version){missing}: `{}`",
        nodes.join(", "),
        skip_command(skip)
    )
}

/// The report lines of resources that no action touched: `unchanged`, with
/// what Garage holds. A resource whose change failed without an answer, and
/// that a later observation found in place, was most likely changed by that
/// request: it is reported as changed, and says so.
pub fn unchanged_lines(
    desired: &Desired,
    observed: &Observed,
    touched: &[Resource],
    unanswered: &[Resource],
) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut push = |resource: Resource, name: &'static str, detail: String| {
        if touched.contains(&resource) {
            return;
        }
        lines.push(match unanswered.contains(&resource) {
            true => Line::new(name, Outcome::Created, format!("{detail} (its change got no answer; found in place)")),
            false => Line::new(name, Outcome::Unchanged, detail),
        });
    };
    let n = observed.layout.roles.len();
    push(
        Resource::Layout,
        "layout",
        format!("version {}, {n} role{}", observed.layout.version, if n == 1 { "" } else { "s" }),
    );
    for (i, k) in desired.keys.iter().enumerate() {
        push(Resource::Key(i), "key", format!("{} ({})", k.id, k.name));
    }
    for (i, b) in desired.buckets.iter().enumerate() {
        let id = observed.buckets[i].found.as_ref().map(|f| format!(" (id {})", short_id(&f.id))).unwrap_or_default();
        push(Resource::Bucket(i), "bucket", format!("{}{id}", b.name));
    }
    for (i, g) in desired.grants.iter().enumerate() {
        let (key, bucket) = (&desired.grant_key(g).id, &desired.grant_bucket(g).name);
        let has = observed.buckets[g.bucket.0].found.as_ref().map(|f| f.permissions_of(key)).unwrap_or_default();
        push(Resource::Grant(i), "grant", format!("{} for {key} on {bucket}", has.describe()));
    }
    for (i, (b, seen)) in desired.buckets.iter().zip(&observed.lifecycles).enumerate() {
        if let (Some(want), LifecycleSeen::Read(current)) = (&b.lifecycle, seen) {
            push(Resource::Lifecycle(i), "lifecycle", format!("{}: {}", b.name, describe_kept(want, others(current))));
        }
    }
    lines
}
