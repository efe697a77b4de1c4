//! The plan: a pure function of what is wanted and what was observed,
//! returning a value: the actions that would bring Garage to the wanted
//! state, the drift left alone, the warnings, the conflicts that stop a run,
//! and what the plan is still waiting for. `garage-init plan` prints this
//! value; `apply` executes it, a phase at a time, and plans again.

use crate::admin::types::{BucketUpdate, Permissions, StagedRoleChange};
use crate::desired::{Desired, KeyIx, LifecycleWant, NodesWant};
use crate::error::Conflict;
use crate::report::{Line, Outcome, short_id};

use super::bucket::{extra_grant_drift, plan_bucket, plan_grant, undeclared_grants};
use super::key::{KeyPlan, plan_key};
use super::layout::{
    KnownNode, SkipDead, find_replaced, plan_layout, replaced_conflict, role_matches, skip_after_change, skip_command,
    skip_draining,
};
use super::lifecycle::{Rule, plan_lifecycle};
use super::observe::{LifecycleSeen, Observed};

/// A listed node as an observation identified it: its position in the spec
/// (and among the run's admin APIs), and the id its own admin API answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub node: usize,
    pub id: String,
}

/// A node another node must dial: `id@rpc_address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub rpc_address: String,
    /// Its admin URL, for messages.
    pub admin_url: String,
    /// Its position in the spec: its own admin API tells whether it still answers as `id`.
    pub node: usize,
}

/// One layout change: roles to stage (with the parameters), then apply as `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutChange {
    pub stage: Vec<StagedRoleChange>,
    pub parameters: Option<crate::admin::types::LayoutParameters>,
    /// Changes an earlier, interrupted run left staged, applied with ours.
    pub adopted: Vec<StagedRoleChange>,
    pub adopted_parameters: Option<crate::admin::types::LayoutParameters>,
    /// The version the apply creates: the current one plus one.
    pub version: u64,
    /// The listed nodes that get a role, as identified: each must still
    /// answer with that id when the change is applied.
    pub identities: Vec<Identity>,
    /// Old ids whose role goes to the new id of the same node: (old, new).
    pub replaces: Vec<(String, String)>,
    /// Once applied, what Garage must stop waiting for (the old ids).
    pub skip: Option<SkipDead>,
}

/// One change to Garage: one line in `plan`, one line in `apply`'s report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Connect {
        peers: Vec<Peer>,
    },
    Layout(LayoutChange),
    /// Garage stops waiting for nodes gone for good that hold data only in
    /// an older layout version.
    SkipDeadNodes(SkipDead),
    ImportKey {
        key: usize,
    },
    RenameKey {
        key: usize,
        from: String,
    },
    CreateBucket {
        bucket: usize,
    },
    /// Give the bucket's name to the bucket (`id`) that an earlier create made
    /// before it got no answer: Garage stores a new bucket, then its alias.
    AdoptBucket {
        bucket: usize,
        id: String,
    },
    AddAlias {
        bucket: usize,
        alias: String,
    },
    /// Change the bucket's settings (quotas, ...) with one `UpdateBucket`.
    UpdateBucket {
        bucket: usize,
        update: BucketUpdate,
    },
    Grant {
        grant: usize,
        add: Permissions,
        had: Permissions,
    },
    /// Write the bucket's whole lifecycle configuration: others' rules as
    /// read, then ours (none: delete it).
    SetLifecycle {
        bucket: usize,
        /// The key that owns the bucket: S3 lets only an owner write the rules.
        owner: KeyIx,
        declared: LifecycleWant,
        rules: Vec<Rule>,
        /// garage-init had no rule there.
        creates: bool,
        /// Others' rules kept.
        kept: usize,
    },
    /// The bucket declares a lifecycle whose current rules its key cannot
    /// read yet (the grant that makes it an owner comes first): they are
    /// read, and the write decided, once it can.
    ReadLifecycle {
        bucket: usize,
        owner: KeyIx,
        declared: LifecycleWant,
    },
}

/// Actions run in phases; an action may need what an earlier phase makes
/// (a grant needs its bucket's id), so `apply` runs one phase, then plans again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Nodes see each other.
    Membership,
    /// Every node has its role.
    Layout,
    /// Keys and buckets exist (needs a ready cluster).
    Tables,
    /// Aliases, quotas and grants on existing buckets (needs a ready cluster).
    Details,
    /// Lifecycle rules, through S3 with a key that owns the bucket (needs its grant).
    Lifecycle,
}

impl Phase {
    /// Whether the cluster must have quorum for this phase's requests.
    pub fn needs_ready_cluster(self) -> bool {
        self >= Phase::Tables
    }
}

/// What a resource's report line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Cluster,
    Layout,
    Key(usize),
    Bucket(usize),
    Grant(usize),
    Lifecycle(usize),
}

impl Action {
    pub fn phase(&self) -> Phase {
        match self {
            Self::Connect { .. } => Phase::Membership,
            Self::Layout(_) | Self::SkipDeadNodes(_) => Phase::Layout,
            Self::ImportKey { .. } | Self::RenameKey { .. } | Self::CreateBucket { .. } | Self::AdoptBucket { .. } => {
                Phase::Tables
            }
            Self::AddAlias { .. } | Self::UpdateBucket { .. } | Self::Grant { .. } => Phase::Details,
            Self::SetLifecycle { .. } | Self::ReadLifecycle { .. } => Phase::Lifecycle,
        }
    }

    pub fn resource(&self) -> Resource {
        match self {
            Self::Connect { .. } => Resource::Cluster,
            Self::Layout(_) | Self::SkipDeadNodes(_) => Resource::Layout,
            Self::ImportKey { key } | Self::RenameKey { key, .. } => Resource::Key(*key),
            Self::CreateBucket { bucket }
            | Self::AdoptBucket { bucket, .. }
            | Self::AddAlias { bucket, .. }
            | Self::UpdateBucket { bucket, .. } => Resource::Bucket(*bucket),
            Self::Grant { grant, .. } => Resource::Grant(*grant),
            Self::SetLifecycle { bucket, .. } | Self::ReadLifecycle { bucket, .. } => Resource::Lifecycle(*bucket),
        }
    }
}

/// The actions of one phase, run together.
#[derive(Debug, Clone)]
pub struct Wave {
    pub phase: Phase,
    pub actions: Vec<Action>,
}

/// The plan for one observation.
#[derive(Debug, Default)]
pub struct Plan {
    /// In phase order.
    pub actions: Vec<Action>,
    /// Differences garage-init leaves alone.
    pub drift: Vec<Line>,
    /// Worth a user's attention, but no reason to fail (a listed node down
    /// that already holds its role).
    pub warnings: Vec<Line>,
    /// Contradictions that stop a run before it changes anything.
    pub conflicts: Vec<Conflict>,
    /// Why nothing can be decided yet (nodes missing); `actions` is then empty.
    pub waiting: Vec<String>,
}

impl Plan {
    /// The actions of the earliest phase: what `apply` runs next.
    pub fn next_phase(&self) -> Option<Wave> {
        let phase = self.actions.iter().map(Action::phase).min()?;
        Some(Wave { phase, actions: self.actions.iter().filter(|a| a.phase() == phase).cloned().collect() })
    }
}

/// Decides. Pure: no I/O, no clock; the same inputs give the same plan.
pub fn plan(desired: &Desired, observed: &Observed, allow_layout_changes: bool) -> Plan {
    let mut plan = Plan::default();
    let known = observed.known_nodes(desired);
    // Listed nodes the layout step considers: those that answered, and the
    // silent ones matched to the role they hold.
    let mut in_layout = known.clone();

    // ---- membership
    match &desired.cluster.nodes {
        NodesWant::Auto => {}
        NodesWant::Count(n) => {
            let up = observed.status.nodes.iter().filter(|s| s.is_up).count();
            if up < *n {
                plan.waiting.push(format!("{up} of {n} expected nodes up"));
                return plan;
            }
        }
        NodesWant::Listed(wants) => {
            // A silent node that already holds its role does not hold the
            // run up; one that still needs a role is waited for.
            let mut claimed: Vec<&str> = known.iter().map(|k| k.id.as_str()).collect();
            let mut missing = Vec::new();
            for (want, seen) in wants.iter().zip(&observed.nodes).filter(|(_, s)| s.id.is_none()) {
                let url = want.admin_url.as_str().trim_end_matches('/');
                let why = seen.silent.as_deref().unwrap_or("no answer");
                let holder = observed
                    .status
                    .nodes
                    .iter()
                    .filter(|n| !claimed.contains(&n.id.as_str()))
                    .filter(|n| n.role.as_ref().is_some_and(|r| role_matches(r, want)))
                    .max_by_key(|n| n.addr.as_deref() == Some(want.rpc_address.as_str()));
                match holder {
                    Some(n) => {
                        claimed.push(&n.id);
                        in_layout.push(KnownNode { id: n.id.clone(), want: want.clone() });
                        plan.warnings.push(Line::new(
                            "cluster",
                            Outcome::Warning,
                            format!(
                                "node {} ({url}) is down ({why}); it holds its role, so the run goes on without it",
                                short_id(&n.id)
                            ),
                        ));
                    }
                    None => missing.push(format!("{url} ({why})")),
                }
            }
            if !missing.is_empty() {
                plan.waiting.push(format!("nodes not answering: {}", missing.join(", ")));
                return plan;
            }
            let coordinator = observed.nodes[observed.coordinator].id.as_deref();
            let up = |id: &str| observed.status.nodes.iter().any(|n| n.is_up && n.id == id);
            let peers: Vec<Peer> = known
                .iter()
                .filter(|k| Some(k.id.as_str()) != coordinator && !up(&k.id))
                .filter_map(|k| {
                    Some(Peer {
                        id: k.id.clone(),
                        rpc_address: k.want.rpc_address.clone(),
                        admin_url: k.want.admin_url.as_str().trim_end_matches('/').to_string(),
                        node: listed_position(observed, &k.id)?,
                    })
                })
                .collect();
            if !peers.is_empty() {
                plan.actions.push(Action::Connect { peers });
            }
        }
    }

    // ---- layout
    let layout = &observed.layout;
    let claimed: Vec<&str> = in_layout.iter().map(|k| k.id.as_str()).collect();
    let (replaced, draining) = match &desired.cluster.nodes {
        NodesWant::Listed(_) => {
            let found = find_replaced(&observed.status, layout, &known, &claimed);
            if !found.waiting.is_empty() {
                plan.actions.clear();
                plan.waiting = found.waiting;
                return plan;
            }
            let draining = skip_draining(&observed.status, layout, observed.history.as_ref(), &claimed);
            (found.replaced, draining)
        }
        _ => (Vec::new(), None),
    };
    if !replaced.is_empty() && !allow_layout_changes {
        plan.conflicts.push(replaced_conflict(&replaced, &observed.status, layout));
    }
    let lp = plan_layout(&observed.status, layout, &desired.cluster, &in_layout, &replaced, allow_layout_changes);
    plan.drift.extend(lp.drift.iter().map(|d| Line::new("layout", Outcome::Drift, d.clone())));
    if lp.stages_something() || layout.has_staged_changes() {
        let ours: Vec<&str> = lp.stage.iter().map(StagedRoleChange::id).collect();
        // A staged change ours replaces (the role staged for an old id) is not adopted.
        let adopted: Vec<StagedRoleChange> =
            layout.staged_role_changes.iter().filter(|c| !ours.contains(&c.id())).cloned().collect();
        let identities = lp
            .stage
            .iter()
            .chain(&adopted)
            .filter(|c| matches!(c, StagedRoleChange::Assign { .. }))
            .filter_map(|c| Some(Identity { node: listed_position(observed, c.id())?, id: c.id().to_string() }))
            .collect();
        let version = layout.version + 1;
        let gone: Vec<String> = replaced
            .iter()
            .filter(|r| allow_layout_changes && matches!(r.held, super::layout::Held::Role(_)))
            .map(|r| r.old.clone())
            .collect();
        plan.actions.push(Action::Layout(LayoutChange {
            stage: lp.stage,
            parameters: lp.parameters,
            adopted,
            adopted_parameters: layout.staged_parameters,
            version,
            identities,
            replaces: replaced.iter().map(|r| (r.old.clone(), r.node.id.clone())).collect(),
            skip: skip_after_change(layout, &gone, version),
        }));
    } else if let Some(skip) = draining {
        // Nodes gone for good that Garage still waits for, in an older version.
        let nodes: Vec<&str> = skip.nodes.iter().map(|id| short_id(id)).collect();
        let what = format!(
            "node {} is down and holds data only in layout version {} or older, which Garage keeps active until \
             it syncs",
            nodes.join(", "),
            skip.version - 1
        );
        if allow_layout_changes {
            plan.actions.push(Action::SkipDeadNodes(skip));
        } else if skip.allow_missing_data {
            // The nodes left cannot sync it: Garage waits forever, and refuses writes meanwhile.
            plan.conflicts.push(Conflict {
                message: format!("layout: {what}; the nodes left hold no write quorum of its data"),
                hint: format!(
                    "If the node is gone for good, tell Garage to stop waiting for it: `{}`; or let garage-init do it: \
                     `garage-init apply --allow-layout-changes`. Otherwise start it again.",
                    skip_command(&skip)
                ),
            });
        } else {
            plan.drift.push(Line::new(
                "layout",
                Outcome::Drift,
                format!(
                    "{what}; if it is gone for good, `{}` ends the wait; apply with --allow-layout-changes to do it",
                    skip_command(&skip)
                ),
            ));
        }
    }

    // ---- keys
    let keys = desired.keys.iter().zip(&observed.namesakes).zip(&observed.keys);
    for ((want, others), found) in keys.filter(|((_, o), _)| !o.is_empty()) {
        let (who, all) = match others.len() {
            1 => (format!("another key, {}, is", others[0]), "both"),
            _ => (format!("other keys, {}, are", others.join(", ")), "all"),
        };
        let what = match found {
            None => "is imported with the same name",
            Some(_) => "has the same name",
        };
        let detail = format!("{who} also named \"{}\"; {} {what}, and {all} are kept", want.name, want.id);
        plan.warnings.push(Line::new("key", Outcome::Warning, detail));
    }
    for (i, (want, found)) in desired.keys.iter().zip(&observed.keys).enumerate() {
        match plan_key(found.as_ref(), want) {
            KeyPlan::Import => plan.actions.push(Action::ImportKey { key: i }),
            KeyPlan::Rename { from } => plan.actions.push(Action::RenameKey { key: i, from }),
            KeyPlan::Conflict(c) => plan.conflicts.push(c),
            KeyPlan::Unchanged => {}
        }
    }

    // ---- buckets
    let mut details = Vec::new();
    // Quotas the spec leaves alone, and grants of keys it does not declare,
    // are known only where every bucket was read whole (`plan`); apply reads
    // a bucket's own record only where an action depends on it.
    let audit = desired.exhaustive && observed.audited;
    for (i, (want, seen)) in desired.buckets.iter().zip(&observed.buckets).enumerate() {
        let bp = plan_bucket(seen.found.as_ref(), &seen.elsewhere, want, audit);
        if bp.create {
            plan.actions.push(match &seen.orphan {
                Some(id) => Action::AdoptBucket { bucket: i, id: id.clone() },
                None => Action::CreateBucket { bucket: i },
            });
        }
        details.extend(bp.add_aliases.into_iter().map(|alias| Action::AddAlias { bucket: i, alias }));
        if !bp.update.is_empty() {
            details.push(Action::UpdateBucket { bucket: i, update: bp.update });
        }
        plan.drift.extend(bp.drift.into_iter().map(|d| Line::new("bucket", Outcome::Drift, d)));
        plan.conflicts.extend(bp.conflicts);
    }
    plan.actions.extend(details);

    // ---- grants
    for (i, grant) in desired.grants.iter().enumerate() {
        let found = observed.buckets[grant.bucket.0].found.as_ref();
        let had = found.map(|f| f.permissions_of(&desired.grant_key(grant).id)).unwrap_or_default();
        let add = plan_grant(had, grant.permissions);
        if !add.is_empty() {
            plan.actions.push(Action::Grant { grant: i, add, had });
        }
        if desired.exhaustive {
            plan.drift.extend(extra_grant_drift(had, grant, desired));
        }
    }
    if desired.exhaustive {
        let known = |key: &str| audit || desired.key(key).is_some();
        for (i, seen) in observed.buckets.iter().enumerate() {
            if let Some(found) = &seen.found {
                plan.drift.extend(undeclared_grants(found, i, desired, known));
            }
        }
    }

    // ---- lifecycle rules
    for (i, lifecycle, owner) in desired.lifecycles() {
        let declared = lifecycle.clone();
        match &observed.lifecycles[i] {
            LifecycleSeen::Unread => plan.actions.push(Action::ReadLifecycle { bucket: i, owner, declared }),
            LifecycleSeen::Read(current) => {
                let lp = plan_lifecycle(current, lifecycle);
                let name = &desired.buckets[i].name;
                plan.drift.extend(
                    lp.drift.into_iter().map(|d| Line::new("lifecycle", Outcome::Drift, format!("{name}: {d}"))),
                );
                if let Some(rules) = lp.write {
                    let (creates, kept) = (lp.creates, lp.kept);
                    plan.actions.push(Action::SetLifecycle { bucket: i, owner, declared, rules, creates, kept });
                }
            }
        }
    }
    plan
}

/// The position in the spec of the listed node that answered as `id`.
fn listed_position(observed: &Observed, id: &str) -> Option<usize> {
    observed.nodes.iter().position(|n| n.id.as_deref() == Some(id))
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::admin::types::{
        BucketInfo, BucketKey, ClusterLayout, ClusterStatus, KeyInfo, LayoutParameters, LayoutRole, NodeStatus, Quotas,
        Role, ZoneRedundancy,
    };
    use crate::converge::layout::SkipDead;
    use crate::converge::observe::{BucketSeen, NodeSeen, Readiness};
    use crate::desired::{ClusterWant, KeyWant, NodeWant, RoleTemplate};
    use crate::secret::Secret;

    const KEY: &str = "GK6275696c646b69742d6b6579";
    const NODE: &str = "aa";

    fn desired() -> Desired {
        let template = RoleTemplate { zone: "dc1".into(), capacity: Some(2048), tags: vec![] };
        let key = KeyWant { id: KEY.into(), secret: Secret::new("s".repeat(64)), name: "buildkit-key".into() };
        Desired::single(template, "buildkit-cache".into(), key, None)
    }

    fn role() -> Role {
        Role { zone: "dc1".into(), tags: vec![], capacity: Some(2048) }
    }

    fn node(id: &str, up: bool, role: Option<Role>) -> NodeStatus {
        NodeStatus { id: id.into(), hostname: None, addr: None, is_up: up, role, draining: false, data_partition: None }
    }

    fn layout(version: u64, roles: &[(&str, Role)], staged: Vec<StagedRoleChange>) -> ClusterLayout {
        ClusterLayout {
            version,
            roles: roles
                .iter()
                .map(|(id, r)| LayoutRole { id: id.to_string(), role: r.clone(), stored_partitions: None })
                .collect(),
            staged_role_changes: staged,
            staged_parameters: None,
            parameters: LayoutParameters { zone_redundancy: ZoneRedundancy::Maximum },
        }
    }

    fn key(secret: &str) -> KeyInfo {
        KeyInfo {
            access_key_id: KEY.into(),
            name: "buildkit-key".into(),
            created: None,
            expired: false,
            secret_access_key: Some(Secret::new(secret)),
            buckets: vec![],
        }
    }

    fn bucket(permissions: Permissions) -> BucketSeen {
        let keys = vec![BucketKey { access_key_id: KEY.into(), permissions }];
        let info = BucketInfo {
            id: "b".repeat(64),
            created: None,
            global_aliases: vec!["buildkit-cache".into()],
            keys,
            ..BucketInfo::default()
        };
        BucketSeen { found: Some(info), elsewhere: vec![], orphan: None }
    }

    /// A single node: fresh (no layout, nothing in the tables).
    fn fresh() -> Observed {
        Observed {
            coordinator: 0,
            status: ClusterStatus { layout_version: 0, nodes: vec![node(NODE, true, None)] },
            layout: layout(0, &[], vec![]),
            history: None,
            bucket_ids: Some(Default::default()),
            nodes: vec![],
            keys: vec![None],
            namesakes: vec![vec![]],
            buckets: vec![BucketSeen::default()],
            lifecycles: vec![LifecycleSeen::Unread],
            audited: false,
            readiness: Readiness::Unknown,
            at: Instant::now(),
        }
    }

    fn converged() -> Observed {
        Observed {
            status: ClusterStatus { layout_version: 1, nodes: vec![node(NODE, true, Some(role()))] },
            layout: layout(1, &[(NODE, role())], vec![]),
            keys: vec![Some(key(&"s".repeat(64)))],
            buckets: vec![bucket(Permissions::ALL)],
            ..fresh()
        }
    }

    /// The plan as the words of its lines: (resource, outcome).
    type Words = Vec<(&'static str, String)>;

    fn words(plan: &Plan) -> Words {
        let d = desired();
        plan.actions.iter().map(|a| a.line(&d, true)).map(|l| (l.resource, l.outcome.to_string())).collect()
    }

    fn w(items: &[(&'static str, &str)]) -> Words {
        items.iter().map(|(r, o)| (*r, o.to_string())).collect()
    }

    #[test]
    fn a_table_of_starting_states_plans_what_each_needs() {
        let staged = Observed {
            layout: layout(0, &[], vec![StagedRoleChange::Assign { id: NODE.into(), role: role() }]),
            ..fresh()
        };
        let missing_grant =
            Observed { buckets: vec![bucket(Permissions { read: true, write: false, owner: false })], ..converged() };
        let bucket_gone = Observed { buckets: vec![BucketSeen::default()], ..converged() };
        let layout_lost = Observed {
            status: ClusterStatus { layout_version: 0, nodes: vec![node("new-id", true, None)] },
            layout: layout(0, &[], vec![]),
            ..converged()
        };
        let cases: Vec<(&str, Observed, Words)> = vec![
            (
                "fresh node",
                fresh(),
                w(&[("layout", "create"), ("key", "create"), ("bucket", "create"), ("grant", "create")]),
            ),
            (
                "staged layout",
                staged,
                w(&[("layout", "create"), ("key", "create"), ("bucket", "create"), ("grant", "create")]),
            ),
            ("converged", converged(), vec![]),
            ("missing grant", missing_grant, w(&[("grant", "update")])),
            ("bucket gone", bucket_gone, w(&[("bucket", "create"), ("grant", "create")])),
            // A node back from a crash with a new id and no layout: only its role is planned; the
            // key and bucket it still lists are left alone.
            ("layout lost, new node id", layout_lost, w(&[("layout", "create")])),
        ];
        for (name, observed, expected) in cases {
            let plan = plan(&desired(), &observed, false);
            assert_eq!(words(&plan), expected, "{name}: {plan:?}");
            assert!(plan.conflicts.is_empty() && plan.waiting.is_empty(), "{name}: {plan:?}");
        }
    }

    #[test]
    fn unmanaged_quotas_and_undeclared_keys_grants_are_drift_only_when_every_bucket_was_read_whole() {
        let spec = Desired { exhaustive: true, ..desired() };
        let mut seen = bucket(Permissions::ALL);
        let found = seen.found.as_mut().unwrap();
        found.quotas = Some(Quotas { max_size: None, max_objects: Some(9) });
        found
            .keys
            .push(BucketKey { access_key_id: "GK0000000000000000000000aa".into(), permissions: Permissions::ALL });
        let read = Observed { buckets: vec![seen], ..converged() };
        let drift = |audited: bool| {
            let p = plan(&spec, &Observed { audited, ..read.clone() }, false);
            assert!(p.actions.is_empty(), "{p:?}");
            p.drift.into_iter().map(|l| l.detail).collect::<Vec<_>>()
        };
        let audited = drift(true);
        assert_eq!(audited.len(), 2, "{audited:?}");
        assert!(audited.iter().any(|d| d.contains("max objects 9")), "{audited:?}");
        assert!(
            audited.iter().any(|d| d.starts_with("GK0000000000000000000000aa has read, write, owner")),
            "{audited:?}"
        );
        assert!(drift(false).is_empty(), "{:?}", drift(false));
    }

    #[test]
    fn a_key_whose_name_is_taken_is_imported_with_a_warning_naming_both() {
        let taken =
            Observed { namesakes: vec![vec!["GK0000000000000000000000aa".into()]], keys: vec![None], ..converged() };
        let plan = plan(&desired(), &taken, false);
        assert_eq!(words(&plan), w(&[("key", "create")]));
        let warning = &plan.warnings[0].detail;
        assert!(warning.contains("GK0000000000000000000000aa") && warning.contains(KEY), "{warning}");
        assert!(warning.contains("\"buildkit-key\"") && warning.contains("both are kept"), "{warning}");
    }

    #[test]
    fn a_nameless_bucket_left_by_an_unanswered_create_is_adopted_not_created_again() {
        let orphan = BucketSeen { orphan: Some("c".repeat(64)), ..BucketSeen::default() };
        let o = Observed { buckets: vec![orphan], ..converged() };
        let plan = plan(&desired(), &o, false);
        assert_eq!(plan.actions[0], Action::AdoptBucket { bucket: 0, id: "c".repeat(64) });
        assert_eq!(plan.actions[0].phase(), Phase::Tables);
        assert!(plan.actions[0].line(&desired(), true).detail.contains("got no answer"));
    }

    #[test]
    fn phases_run_layout_first_then_tables_then_details() {
        let plan = plan(&desired(), &fresh(), false);
        let wave = plan.next_phase().unwrap();
        assert_eq!(wave.phase, Phase::Layout);
        assert!(!wave.phase.needs_ready_cluster());
        assert_eq!(wave.actions.len(), 1);
        let Action::Layout(change) = &wave.actions[0] else { panic!("{wave:?}") };
        assert_eq!(change.version, 1);
        let tables = Plan { actions: plan.actions[1..].to_vec(), ..Plan::default() };
        let wave = tables.next_phase().unwrap();
        assert_eq!((wave.phase, wave.actions.len()), (Phase::Tables, 2));
        assert!(wave.phase.needs_ready_cluster());
    }

    #[test]
    fn a_staged_layout_is_adopted_not_staged_again() {
        let staged = Observed {
            layout: layout(0, &[], vec![StagedRoleChange::Assign { id: NODE.into(), role: role() }]),
            ..fresh()
        };
        let plan = plan(&desired(), &staged, false);
        let Action::Layout(change) = &plan.actions[0] else { panic!("{plan:?}") };
        assert!(change.stage.is_empty() && change.adopted.len() == 1, "{change:?}");
        assert!(plan.actions[0].line(&desired(), false).detail.contains("left staged by an earlier run, adopted"));
    }

    #[test]
    fn a_key_with_another_secret_is_a_conflict_and_plans_no_key_action() {
        let other = Observed { keys: vec![Some(key(&"t".repeat(64)))], ..converged() };
        let plan = plan(&desired(), &other, false);
        assert!(plan.actions.is_empty(), "{plan:?}");
        assert!(plan.conflicts[0].message.contains("different secret"), "{plan:?}");
    }

    fn listed(n: usize) -> Desired {
        let wants = (0..n)
            .map(|i| NodeWant {
                admin_url: format!("http://garage-{i}:3903").parse().unwrap(),
                rpc_address: format!("garage-{i}:3901"),
                zone: format!("dc{i}"),
                gateway: false,
                capacity: Some(2048),
                tags: vec![],
            })
            .collect();
        Desired { cluster: ClusterWant { nodes: NodesWant::Listed(wants), ..desired().cluster }, ..desired() }
    }

    fn zone(i: usize) -> Role {
        Role { zone: format!("dc{i}"), ..role() }
    }

    fn plan_for(d: &Desired, o: &Observed) -> Plan {
        plan(d, o, false)
    }

    #[test]
    fn a_silent_node_holding_its_role_is_a_warning_and_one_without_is_waited_for() {
        let d = listed(2);
        let holds = Observed {
            status: ClusterStatus {
                layout_version: 1,
                nodes: vec![node("n0", true, Some(zone(0))), node("n1", false, Some(zone(1)))],
            },
            layout: layout(1, &[("n0", zone(0)), ("n1", zone(1))], vec![]),
            nodes: vec![
                NodeSeen { id: Some("n0".into()), silent: None },
                NodeSeen { id: None, silent: Some("Connection refused".into()) },
            ],
            ..converged()
        };
        let plan = plan(&d, &holds, false);
        assert!(plan.actions.is_empty() && plan.waiting.is_empty() && plan.drift.is_empty(), "{plan:?}");
        assert!(plan.warnings[0].detail.contains("node n1 (http://garage-1:3903) is down"), "{plan:?}");

        // The role held is another zone's: not this node's role, so the node is waited for.
        let other_role = Observed {
            status: ClusterStatus {
                layout_version: 1,
                nodes: vec![node("n0", true, Some(zone(0))), node("n1", false, Some(zone(7)))],
            },
            ..holds
        };
        let waited = plan_for(&d, &other_role);
        assert!(waited.actions.is_empty(), "{waited:?}");
        assert_eq!(waited.waiting, vec!["nodes not answering: http://garage-1:3903 (Connection refused)"]);
    }

    /// Two listed nodes; node 1 answers as "new" and is up; "old" held node 1's role and is down.
    fn replaced_peer() -> Observed {
        Observed {
            status: ClusterStatus {
                layout_version: 1,
                nodes: vec![
                    node("n0", true, Some(zone(0))),
                    node("new", true, None),
                    node("old", false, Some(zone(1))),
                ],
            },
            layout: layout(1, &[("n0", zone(0)), ("old", zone(1))], vec![]),
            nodes: vec![
                NodeSeen { id: Some("n0".into()), silent: None },
                NodeSeen { id: Some("new".into()), silent: None },
            ],
            ..converged()
        }
    }

    #[test]
    fn a_table_of_peers_back_with_a_new_id_plans_a_wait_a_conflict_or_one_replacement() {
        let d = listed(2);
        let mut stale = replaced_peer();
        stale.status.nodes[2] = NodeStatus { addr: Some("garage-1:3901".into()), ..node("old", true, Some(zone(1))) };
        let mut fresh_cluster = replaced_peer();
        fresh_cluster.status = ClusterStatus {
            layout_version: 0,
            nodes: vec![node("n0", true, None), node("new", true, None), node("old", true, None)],
        };
        fresh_cluster.layout = layout(0, &[], vec![]);
        // (case, observed, allow, waiting, conflict, layout stage)
        type Case = (&'static str, Observed, bool, bool, bool, Vec<StagedRoleChange>);
        let cases: Vec<Case> = vec![
            ("old id still shown up at the node's address", stale, true, true, false, vec![]),
            ("replaced, changes not allowed", replaced_peer(), false, false, true, vec![]),
            (
                "replaced, changes allowed",
                replaced_peer(),
                true,
                false,
                false,
                vec![
                    StagedRoleChange::Assign { id: "new".into(), role: zone(1) },
                    StagedRoleChange::Remove { id: "old".into(), remove: true },
                ],
            ),
            // The old id has no role: it is only a stale entry, and nothing of it is staged.
            (
                "no layout yet, old id without a role",
                fresh_cluster,
                false,
                false,
                false,
                vec![
                    StagedRoleChange::Assign { id: "n0".into(), role: zone(0) },
                    StagedRoleChange::Assign { id: "new".into(), role: zone(1) },
                ],
            ),
        ];
        for (case, observed, allow, waits, conflict, stage) in cases {
            let plan = plan(&d, &observed, allow);
            assert_eq!(!plan.waiting.is_empty(), waits, "{case}: {plan:?}");
            assert_eq!(!plan.conflicts.is_empty(), conflict, "{case}: {plan:?}");
            if waits {
                assert!(plan.actions.is_empty(), "{case}: {plan:?}");
            }
            let staged: Vec<StagedRoleChange> = plan
                .actions
                .iter()
                .filter_map(|a| if let Action::Layout(c) = a { Some(c.stage.clone()) } else { None })
                .flatten()
                .collect();
            assert_eq!(staged, stage, "{case}: {plan:?}");
            for action in &plan.actions {
                if let Action::Layout(c) = action {
                    assert!(!c.identities.iter().any(|i| i.id == "old"), "{case}: {c:?}");
                }
            }
        }
    }

    #[test]
    fn a_replacement_is_one_layout_version_that_then_stops_waiting_for_the_old_id() {
        let mut observed = replaced_peer();
        for r in &mut observed.layout.roles {
            r.stored_partitions = Some(256);
        }
        let plan = plan(&listed(2), &observed, true);
        let changes: Vec<&LayoutChange> =
            plan.actions.iter().filter_map(|a| if let Action::Layout(c) = a { Some(c) } else { None }).collect();
        assert_eq!(changes.len(), 1, "{plan:?}");
        let change = changes[0];
        assert_eq!(change.version, 2);
        assert_eq!(change.identities, vec![Identity { node: 1, id: "new".into() }]);
        assert_eq!(change.skip, Some(SkipDead { version: 2, nodes: vec!["old".into()], allow_missing_data: true }));
        let line = plan.actions.iter().find(|a| matches!(a, Action::Layout(_))).unwrap().line(&listed(2), true);
        assert!(line.detail.starts_with("version 2: node new: zone dc1"), "{line:?}");
        assert!(line.detail.contains("node old: removed (gone: replaced by node new)"), "{line:?}");
        assert!(line.detail.contains("skip-dead-nodes --version 2 --allow-missing-data"), "{line:?}");
        let conflict = super::plan(&listed(2), &observed, false).conflicts.remove(0);
        assert!(conflict.hint.contains("--replace old"), "{conflict:?}");
    }

    #[test]
    fn a_dead_node_left_draining_is_skipped_with_permission_and_named_without() {
        use crate::admin::types::{LayoutHistory, LayoutVersionInfo, UpdateTrackers};
        let version = |v: u64, status: &str| LayoutVersionInfo {
            version: v,
            status: status.into(),
            storage_nodes: 2,
            gateway_nodes: 0,
        };
        let tracker = |ack: u64, sync: u64| UpdateTrackers { ack, sync, sync_ack: sync };
        let mut observed = Observed {
            status: ClusterStatus {
                layout_version: 2,
                nodes: vec![
                    node("n0", true, Some(zone(0))),
                    node("new", true, Some(zone(1))),
                    NodeStatus { draining: true, ..node("old", false, None) },
                ],
            },
            layout: layout(2, &[("n0", zone(0)), ("new", zone(1))], vec![]),
            history: Some(LayoutHistory {
                current_version: 2,
                versions: vec![version(2, "Current"), version(1, "Draining")],
                update_trackers: Some(
                    [("n0", tracker(2, 1)), ("new", tracker(2, 1)), ("old", tracker(1, 1))]
                        .into_iter()
                        .map(|(id, t)| (id.to_string(), t))
                        .collect(),
                ),
            }),
            ..replaced_peer()
        };
        for r in &mut observed.layout.roles {
            r.stored_partitions = Some(256);
        }
        let allowed = plan(&listed(2), &observed, true);
        assert_eq!(
            allowed.actions,
            vec![Action::SkipDeadNodes(SkipDead { version: 2, nodes: vec!["old".into()], allow_missing_data: true })]
        );
        assert!(allowed.actions[0].line(&listed(2), true).detail.contains("stop waiting for node old"));
        // Without permission: the one node left cannot sync alone, so the run stops and says how to go on.
        let refused = plan(&listed(2), &observed, false);
        assert!(refused.actions.is_empty(), "{refused:?}");
        assert!(refused.conflicts[0].hint.contains("skip-dead-nodes --version 2 --allow-missing-data"), "{refused:?}");
        // Three copies: the nodes left sync by themselves once the acknowledgement is skipped; drift meanwhile.
        for r in &mut observed.layout.roles {
            r.stored_partitions = Some(384);
        }
        if let Some(h) = observed.history.as_mut() {
            h.versions[1].storage_nodes = 3;
        }
        let drift = plan(&listed(2), &observed, false);
        assert!(drift.conflicts.is_empty() && drift.actions.is_empty(), "{drift:?}");
        assert!(drift.drift[0].detail.contains("`garage layout skip-dead-nodes --version 2`"), "{drift:?}");
    }

    #[test]
    fn listed_nodes_not_up_are_connected_before_the_layout() {
        let d = listed(2);
        let observed = Observed {
            status: ClusterStatus { layout_version: 0, nodes: vec![node("n0", true, None)] },
            nodes: vec![
                NodeSeen { id: Some("n0".into()), silent: None },
                NodeSeen { id: Some("n1".into()), silent: None },
            ],
            ..fresh()
        };
        let plan = plan(&d, &observed, false);
        let Action::Connect { peers } = &plan.actions[0] else { panic!("{plan:?}") };
        assert_eq!(peers[0].id, "n1");
        assert!(matches!(&plan.actions[1], Action::Layout(c) if c.stage.len() == 2), "{plan:?}");
    }

    #[test]
    fn too_few_nodes_up_is_waited_for() {
        let d = Desired { cluster: ClusterWant { nodes: NodesWant::Count(3), ..desired().cluster }, ..desired() };
        let plan = plan(&d, &fresh(), false);
        assert_eq!(plan.waiting, vec!["1 of 3 expected nodes up"]);
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn unchanged_lines_cover_what_no_action_touched() {
        let lines = crate::converge::wording::unchanged_lines(
            &desired(),
            &converged(),
            &[Resource::Grant(0)],
            &[Resource::Bucket(0)],
        );
        let resources: Vec<&str> = lines.iter().map(|l| l.resource).collect();
        assert_eq!(resources, ["layout", "key", "bucket"]);
        assert_eq!(lines[0].detail, "version 1, 1 role");
        assert!(lines[2].detail.starts_with("buildkit-cache (id bbbb"), "{lines:?}");
        // The bucket's create got no answer, and the bucket is there: reported as created.
        assert_eq!(lines[2].outcome, Outcome::Created);
        assert!(lines[2].detail.ends_with("(its change got no answer; found in place)"), "{lines:?}");
    }
}
