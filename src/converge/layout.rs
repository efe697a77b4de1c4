//! Layout decisions (pure): which roles to stage so that every wanted node
//! has its role. Roles already present are never changed or removed unless
//! the spec says so and `--allow-layout-changes` is given; otherwise a
//! difference is reported as drift. Changes an interrupted earlier run left
//! staged are adopted and applied with ours.
//!
//! A node is what answers at its admin URL now. A listed node that came back
//! with a new id (its metadata lost) while the layout still holds the role
//! of its old id is *replaced*: Garage would wait for the old id forever.
//! Only with `--allow-layout-changes` is the old role given to the new id
//! (one layout version), and Garage told to stop waiting for the old one;
//! otherwise the run stops and names the Garage commands that do it.

use crate::admin::types::{ClusterLayout, ClusterStatus, LayoutHistory, LayoutParameters, Role, StagedRoleChange};
use crate::desired::{ClusterWant, NodeWant, NodesWant};
use crate::report::{human_bytes, short_id};

use crate::error::Conflict;

/// Capacity used when neither the settings nor Garage give a size.
pub const FALLBACK_CAPACITY: u64 = 1_000_000_000;

/// A listed node, once its id is known.
#[derive(Debug, Clone)]
pub struct KnownNode {
    pub id: String,
    pub want: NodeWant,
}

/// What the layout step would do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LayoutPlan {
    pub stage: Vec<StagedRoleChange>,
    pub parameters: Option<LayoutParameters>,
    /// Differences garage-init leaves alone, said in a sentence each.
    pub drift: Vec<String>,
}

impl LayoutPlan {
    pub fn stages_something(&self) -> bool {
        !self.stage.is_empty() || self.parameters.is_some()
    }
}

/// The size Garage reports for a node's data partition, if any.
fn disk_size(status: &ClusterStatus, id: &str) -> Option<u64> {
    status.nodes.iter().find(|n| n.id == id).and_then(|n| n.data_partition).map(|p| p.total).filter(|t| *t >= 1024)
}

fn wanted_role(status: &ClusterStatus, node: &KnownNode) -> Role {
    let w = &node.want;
    let capacity = if w.gateway {
        None
    } else {
        Some(w.capacity.or_else(|| disk_size(status, &node.id)).unwrap_or(FALLBACK_CAPACITY))
    };
    Role { zone: w.zone.clone(), tags: w.tags.clone(), capacity }
}

/// Whether a role Garage holds is what the spec asks for. A capacity left
/// to the disk size matches any capacity.
pub fn role_matches(have: &Role, want: &NodeWant) -> bool {
    have.zone == want.zone
        && have.tags == want.tags
        && have.capacity.is_none() == want.gateway
        && (want.gateway || want.capacity.is_none() || have.capacity == want.capacity)
}

/// A role Garage holds for an id that no listed node answers as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// In the current layout.
    Role(Role),
    /// Staged for the next version only.
    Staged(Role),
}

impl Held {
    pub fn role(&self) -> &Role {
        match self {
            Self::Role(r) | Self::Staged(r) => r,
        }
    }
}

/// A listed node that answers with a new id while the layout still holds
/// (or has staged) the role of its old id, which is gone for good: a node's
/// id is the key in its metadata directory.
#[derive(Debug, Clone)]
pub struct Replaced {
    pub old: String,
    pub held: Held,
    /// The node as it answers now.
    pub node: KnownNode,
    /// The address Garage last saw the old id at, when it still shows one:
    /// the node's own.
    pub address: Option<String>,
}

impl Replaced {
    /// The role the new id gets: the old one where it is what the spec asks
    /// for (its capacity kept where the spec leaves it to the disk), else the
    /// spec's.
    pub fn new_role(&self, status: &ClusterStatus) -> Role {
        let old = self.held.role();
        if role_matches(old, &self.node.want) { old.clone() } else { wanted_role(status, &self.node) }
    }
}

/// The replaced nodes of an observation, and why it cannot tell yet.
#[derive(Debug, Default)]
pub struct Replacements {
    pub replaced: Vec<Replaced>,
    pub waiting: Vec<String>,
}

/// Finds the listed nodes that were replaced. `known`: the listed nodes that
/// answered, with the id each answers as; `claimed`: every id a listed node
/// accounts for (those, and the roles matched to silent nodes).
///
/// An id whose role Garage holds and that no listed node claims is the old
/// id of listed node N when Garage still shows it at N's address; or, with
/// no address shown (Garage forgets the address of a peer once it is
/// disconnected), when it is down, its role is the one the spec gives N, N's
/// id has no role, and neither could be paired otherwise. An old id that
/// Garage still shows up at N's address is waited for: Garage notices within
/// seconds that it is gone.
pub fn find_replaced(
    status: &ClusterStatus,
    layout: &ClusterLayout,
    known: &[KnownNode],
    claimed: &[&str],
) -> Replacements {
    let mut found = Replacements::default();
    let held: Vec<(&str, Held)> = layout
        .roles
        .iter()
        .map(|r| (r.id.as_str(), Held::Role(r.role.clone())))
        .chain(layout.staged_role_changes.iter().filter_map(|c| match c {
            StagedRoleChange::Assign { id, role } if layout.role_of(id).is_none() => {
                Some((id.as_str(), Held::Staged(role.clone())))
            }
            _ => None,
        }))
        .filter(|(id, _)| !claimed.contains(id))
        .collect();
    let addr_of = |id: &str| status.nodes.iter().find(|n| n.id == id).and_then(|n| n.addr.clone());
    let at = |k: &KnownNode, addr: &str| k.want.rpc_address == addr || addr_of(&k.id).as_deref() == Some(addr);
    // Pairs found through the role alone, checked for ambiguity below.
    let mut by_role: Vec<Replaced> = Vec::new();
    for (old, held) in held {
        let seen = status.nodes.iter().find(|n| n.id == old);
        let up = seen.is_some_and(|n| n.is_up);
        if let Some(addr) = seen.and_then(|n| n.addr.as_deref()) {
            let there: Vec<&KnownNode> = known.iter().filter(|k| at(k, addr)).collect();
            match (there.as_slice(), up) {
                ([k], true) => found.waiting.push(format!(
                    "node {} is still shown up at {addr}, where {} now answers as node {}; waiting for Garage to \
                     see it gone",
                    short_id(old),
                    k.want.admin_url.as_str().trim_end_matches('/'),
                    short_id(&k.id)
                )),
                ([k], false) => found.replaced.push(Replaced {
                    old: old.to_string(),
                    held,
                    node: (*k).clone(),
                    address: Some(addr.to_string()),
                }),
                _ => {}
            }
            continue;
        }
        if up {
            continue;
        }
        let role = held.role();
        for k in known.iter().filter(|k| layout.role_of(&k.id).is_none() && role_matches(role, &k.want)) {
            by_role.push(Replaced { old: old.to_string(), held: held.clone(), node: k.clone(), address: None });
        }
    }
    for r in &by_role {
        let unique_old = by_role.iter().filter(|o| o.old == r.old).count() == 1;
        let unique_node = by_role.iter().filter(|o| o.node.id == r.node.id).count() == 1;
        let paired = found.replaced.iter().any(|o| o.old == r.old || o.node.id == r.node.id);
        if unique_old && unique_node && !paired {
            found.replaced.push(r.clone());
        }
    }
    found
}

/// Garage stops waiting for the nodes that are down (`nodes`: the ones gone
/// for good) to take part in layout `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipDead {
    pub version: u64,
    pub nodes: Vec<String>,
    /// Also stop waiting for every node to sync that version: needed when
    /// the nodes gone held a write quorum of some partition, so that the data
    /// can never be synced from the nodes left.
    pub allow_missing_data: bool,
}

/// Whether `gone` of an older version's `nodes` leave some data without a
/// write quorum among the nodes left (Garage's consistent mode: more than
/// half). Bucket and key tables are on every node; each partition of the
/// object tables is on `replication_factor` of them, and may be on all the
/// nodes gone. An unknown replication factor counts as the worst case.
pub fn missing_data_needed(replication_factor: Option<u64>, nodes: u64, gone: u64) -> bool {
    let quorum = |n: u64| n / 2 + 1;
    let tables = nodes.saturating_sub(gone) < quorum(nodes);
    let partitions = match replication_factor {
        Some(rf) => rf - gone.min(rf) < quorum(rf),
        None => true,
    };
    tables || partitions
}

/// After a layout change that removed roles of nodes gone for good: what
/// Garage must stop waiting for.
pub fn skip_after_change(layout: &ClusterLayout, gone: &[String], version: u64) -> Option<SkipDead> {
    (!gone.is_empty()).then(|| SkipDead {
        version,
        nodes: gone.to_vec(),
        allow_missing_data: missing_data_needed(
            layout.replication_factor(),
            layout.roles.len() as u64,
            gone.len() as u64,
        ),
    })
}

/// Nodes down that hold data only in an older layout version still active
/// (no role now, no listed node claims them), and what Garage must stop
/// waiting for: their acknowledgement of the current version, and, where
/// the nodes left cannot make up a quorum, every node's sync. `None` when
/// Garage waits for nothing they could give (or the history was not read).
pub fn skip_draining(
    status: &ClusterStatus,
    layout: &ClusterLayout,
    history: Option<&LayoutHistory>,
    claimed: &[&str],
) -> Option<SkipDead> {
    let dead: Vec<String> = status
        .nodes
        .iter()
        .filter(|n| n.draining && !n.is_up && !claimed.contains(&n.id.as_str()))
        .map(|n| n.id.clone())
        .collect();
    let history = history?;
    let trackers = history.update_trackers.as_ref()?;
    if dead.is_empty() {
        return None;
    }
    let current = history.current_version;
    let nodes = history.draining_nodes().unwrap_or(layout.roles.len() as u64);
    let allow_missing_data = missing_data_needed(layout.replication_factor(), nodes, dead.len() as u64);
    let acks = dead.iter().any(|id| trackers.get(id).is_some_and(|t| t.ack < current));
    let syncs = allow_missing_data && trackers.values().any(|t| t.sync < current);
    (acks || syncs).then_some(SkipDead { version: current, nodes: dead, allow_missing_data })
}

/// `garage layout skip-dead-nodes --version N [--allow-missing-data]`
pub fn skip_command(skip: &SkipDead) -> String {
    let missing = if skip.allow_missing_data { " --allow-missing-data" } else { "" };
    format!("garage layout skip-dead-nodes --version {}{missing}", skip.version)
}

/// `-z dc1 -c 1000000000 -t ssd` (or `-g` for a gateway): a role as `garage layout assign` takes it.
fn assign_args(role: &Role) -> String {
    let mut args = format!("-z {}", role.zone);
    match role.capacity {
        Some(c) => args.push_str(&format!(" -c {c}")),
        None => args.push_str(" -g"),
    }
    for tag in &role.tags {
        args.push_str(&format!(" -t {tag}"));
    }
    args
}

/// The run stops on replaced nodes unless layout changes are allowed: what
/// happened, and the Garage commands that replace them in one version.
pub fn replaced_conflict(replaced: &[Replaced], status: &ClusterStatus, layout: &ClusterLayout) -> Conflict {
    let version = layout.version + 1;
    let what: Vec<String> = replaced
        .iter()
        .map(|r| {
            let url = r.node.want.admin_url.as_str().trim_end_matches('/');
            let (has, kind) = match &r.held {
                Held::Role(role) => ("holds", describe_role(role)),
                Held::Staged(role) => ("has staged", describe_role(role)),
            };
            let seen = r.address.as_ref().map(|a| format!(" (last seen at {a})")).unwrap_or_default();
            format!(
                "node {}{seen} is gone: {url} now answers as node {}, and the layout still {has} the old id's role \
                 ({kind})",
                short_id(&r.old),
                short_id(&r.node.id)
            )
        })
        .collect();
    let mut commands: Vec<String> = replaced
        .iter()
        .map(|r| format!("garage layout assign {} {} --replace {}", r.node.id, assign_args(&r.new_role(status)), r.old))
        .collect();
    commands.push(format!("garage layout apply --version {version}"));
    let gone: Vec<String> =
        replaced.iter().filter(|r| matches!(r.held, Held::Role(_))).map(|r| r.old.clone()).collect();
    commands.extend(skip_after_change(layout, &gone, version).as_ref().map(skip_command));
    Conflict {
        message: format!("layout: {}; Garage would wait for it forever", what.join("; ")),
        hint: format!(
            "Give the old role to the new id and drop the old one, in one layout version (on any node, e.g. \
             `docker compose exec garage /garage ...`):\n  {}\nor let garage-init do the same: \
             `garage-init apply --allow-layout-changes` (`garage-init plan --allow-layout-changes` previews it).",
            commands.join("\n  ")
        ),
    }
}

/// Whether the layout itself (staged changes, parameters) must be read, or
/// `GetClusterStatus`, which carries every node's current role, says enough.
/// Staged changes matter only where garage-init would stage something: a
/// node without a role (an interrupted run may have staged its role) or a
/// role to change; each read costs Garage a token check.
pub fn needs_layout(status: &ClusterStatus, want: &ClusterWant, known: &[KnownNode]) -> bool {
    if status.layout_version == 0 || want.zone_redundancy.is_some() || !want.remove.is_empty() {
        return true;
    }
    // A node that holds data only in an older version: its partitions (the
    // replication factor) decide how Garage can stop waiting for it.
    if status.nodes.iter().any(|n| n.draining) {
        return true;
    }
    match &want.nodes {
        NodesWant::Auto | NodesWant::Count(_) => status.nodes.iter().any(|n| n.is_up && n.role.is_none()),
        NodesWant::Listed(_) => known.iter().any(|k| {
            let role = status.nodes.iter().find(|n| n.id == k.id).and_then(|n| n.role.as_ref());
            !role.is_some_and(|r| role_matches(r, &k.want))
        }),
    }
}

/// The layout as `GetClusterStatus` shows it: current roles, nothing staged.
pub fn layout_from_status(status: &ClusterStatus) -> ClusterLayout {
    ClusterLayout {
        version: status.layout_version,
        roles: status
            .nodes
            .iter()
            .filter_map(|n| {
                Some(crate::admin::types::LayoutRole {
                    id: n.id.clone(),
                    role: n.role.clone()?,
                    stored_partitions: None,
                })
            })
            .collect(),
        staged_role_changes: Vec::new(),
        staged_parameters: None,
        parameters: LayoutParameters { zone_redundancy: crate::admin::types::ZoneRedundancy::Maximum },
    }
}

/// Decides what to stage.
///
/// - Auto and Count: each node that is up, has no role and no staged change
///   gets the template role.
/// - Listed: each listed node without a role (and no staged change) gets its
///   role; a listed node whose role differs, a role to remove, or new layout
///   parameters are staged only when `allow_changes`, else reported as drift,
///   as are roles of nodes the spec does not list.
/// - A `replaced` node gets the old id's role and the old id loses it, in
///   the same change, only when `allow_changes`; otherwise neither is staged
///   (the plan stops on the conflict).
pub fn plan_layout(
    status: &ClusterStatus,
    layout: &ClusterLayout,
    want: &ClusterWant,
    known: &[KnownNode],
    replaced: &[Replaced],
    allow_changes: bool,
) -> LayoutPlan {
    let mut plan = LayoutPlan::default();
    let untouched = |id: &str| layout.role_of(id).is_none() && layout.staged_change_for(id).is_none();
    match &want.nodes {
        NodesWant::Auto | NodesWant::Count(_) => {
            for n in status.nodes.iter().filter(|n| n.is_up && untouched(&n.id)) {
                let capacity = want.template.capacity.or_else(|| disk_size(status, &n.id)).unwrap_or(FALLBACK_CAPACITY);
                let role = Role {
                    zone: want.template.zone.clone(),
                    tags: want.template.tags.clone(),
                    capacity: Some(capacity),
                };
                plan.stage.push(StagedRoleChange::Assign { id: n.id.clone(), role });
            }
        }
        NodesWant::Listed(_) => {
            for node in known {
                if layout.staged_change_for(&node.id).is_some() {
                    continue;
                }
                let replacing = replaced.iter().find(|r| r.node.id == node.id);
                match layout.role_of(&node.id) {
                    None => match replacing {
                        Some(r) if allow_changes => {
                            plan.stage.push(StagedRoleChange::Assign { id: node.id.clone(), role: r.new_role(status) });
                        }
                        Some(_) => {}
                        None => plan
                            .stage
                            .push(StagedRoleChange::Assign { id: node.id.clone(), role: wanted_role(status, node) }),
                    },
                    Some(have) if role_matches(&have.role, &node.want) => {}
                    Some(_) if allow_changes => {
                        plan.stage.push(StagedRoleChange::Assign { id: node.id.clone(), role: wanted_role(status, node) });
                    }
                    Some(have) => plan.drift.push(format!(
                        "node {} ({}): Garage has {}, the spec wants {}; apply with --allow-layout-changes to change it",
                        short_id(&node.id),
                        node.want.admin_url.as_str().trim_end_matches('/'),
                        describe_role(&have.role),
                        describe_role(&wanted_role(status, node)),
                    )),
                }
            }
            for r in replaced.iter().filter(|_| allow_changes) {
                let removing = matches!(layout.staged_change_for(&r.old), Some(StagedRoleChange::Remove { .. }));
                if !removing {
                    plan.stage.push(StagedRoleChange::Remove { id: r.old.clone(), remove: true });
                }
            }
            for r in &layout.roles {
                let listed = known.iter().any(|k| k.id == r.id) || replaced.iter().any(|o| o.old == r.id);
                if !listed && !want.remove.contains(&r.id) {
                    plan.drift.push(format!(
                        "node {} has a role ({}) but is not in the spec; left as it is",
                        short_id(&r.id),
                        describe_role(&r.role)
                    ));
                }
            }
        }
    }
    for id in &want.remove {
        if layout.role_of(id).is_none() || layout.staged_change_for(id).is_some() {
            continue;
        }
        if allow_changes {
            plan.stage.push(StagedRoleChange::Remove { id: id.clone(), remove: true });
        } else {
            plan.drift.push(format!(
                "node {}: the spec removes its role; apply with --allow-layout-changes to remove it",
                short_id(id)
            ));
        }
    }
    if let Some(z) = want.zone_redundancy {
        let wanted = LayoutParameters { zone_redundancy: z };
        let current = layout.staged_parameters.unwrap_or(layout.parameters);
        if current != wanted {
            if layout.version == 0 || allow_changes {
                plan.parameters = Some(wanted);
            } else {
                plan.drift.push(format!(
                    "zone redundancy: Garage has {}, the spec wants {}; apply with --allow-layout-changes to change it",
                    describe_redundancy(current),
                    describe_redundancy(wanted)
                ));
            }
        }
    }
    plan
}

pub fn describe_redundancy(p: LayoutParameters) -> String {
    match p.zone_redundancy {
        crate::admin::types::ZoneRedundancy::Maximum => "maximum".into(),
        crate::admin::types::ZoneRedundancy::AtLeast(n) => format!("at least {n}"),
    }
}

/// "zone dc1, capacity 250.8 GB, tags ssd" or "zone dc1, gateway".
pub fn describe_role(role: &Role) -> String {
    let what = match role.capacity {
        Some(c) => format!("capacity {}", human_bytes(c)),
        None => "gateway".to_string(),
    };
    let tags = if role.tags.is_empty() { String::new() } else { format!(", tags {}", role.tags.join(",")) };
    format!("zone {}, {what}{tags}", role.zone)
}

/// "node 0a1b2c3d4e5f6a7b: zone dc1, capacity 250.8 GB"
pub fn describe_change(change: &StagedRoleChange) -> String {
    match change {
        StagedRoleChange::Assign { id, role } => format!("node {}: {}", short_id(id), describe_role(role)),
        StagedRoleChange::Remove { id, .. } => format!("node {}: removed", short_id(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::types::{LayoutRole, NodeStatus, Partition, ZoneRedundancy};
    use crate::desired::RoleTemplate;

    fn node(id: &str, up: bool, total: Option<u64>) -> NodeStatus {
        NodeStatus {
            id: id.into(),
            hostname: None,
            addr: None,
            is_up: up,
            role: None,
            draining: false,
            data_partition: total.map(|t| Partition { available: t / 2, total: t }),
        }
    }

    fn role(zone: &str, capacity: Option<u64>) -> Role {
        Role { zone: zone.into(), tags: vec![], capacity }
    }

    fn layout(roles: &[(&str, Role)], staged: Vec<StagedRoleChange>) -> ClusterLayout {
        ClusterLayout {
            version: if roles.is_empty() { 0 } else { 1 },
            roles: roles
                .iter()
                .map(|(id, r)| LayoutRole { id: id.to_string(), role: r.clone(), stored_partitions: None })
                .collect(),
            staged_role_changes: staged,
            staged_parameters: None,
            parameters: LayoutParameters { zone_redundancy: ZoneRedundancy::Maximum },
        }
    }

    fn auto(capacity: Option<u64>) -> ClusterWant {
        ClusterWant {
            nodes: NodesWant::Auto,
            template: RoleTemplate { zone: "dc1".into(), capacity, tags: vec![] },
            zone_redundancy: None,
            remove: vec![],
        }
    }

    fn listed(nodes: &[(&str, &str, Option<u64>)]) -> (ClusterWant, Vec<KnownNode>) {
        let known: Vec<KnownNode> = nodes
            .iter()
            .map(|(id, zone, capacity)| KnownNode {
                id: id.to_string(),
                want: NodeWant {
                    admin_url: format!("http://{id}:3903").parse().unwrap(),
                    rpc_address: format!("{id}:3901"),
                    zone: zone.to_string(),
                    gateway: false,
                    capacity: *capacity,
                    tags: vec![],
                },
            })
            .collect();
        let want =
            ClusterWant { nodes: NodesWant::Listed(known.iter().map(|k| k.want.clone()).collect()), ..auto(None) };
        (want, known)
    }

    fn status(nodes: Vec<NodeStatus>) -> ClusterStatus {
        ClusterStatus { layout_version: 0, nodes }
    }

    fn assign(id: &str, r: Role) -> StagedRoleChange {
        StagedRoleChange::Assign { id: id.into(), role: r }
    }

    #[test]
    fn fresh_node_gets_a_role_sized_like_its_data_partition() {
        let plan = plan_layout(
            &status(vec![node("a", true, Some(250_000_000_000))]),
            &layout(&[], vec![]),
            &auto(None),
            &[],
            &[],
            false,
        );
        assert_eq!(plan.stage, vec![assign("a", role("dc1", Some(250_000_000_000)))]);
    }

    #[test]
    fn capacity_setting_wins_and_unknown_size_falls_back_to_one_gigabyte() {
        let s = status(vec![node("a", true, Some(250_000_000_000)), node("b", true, None)]);
        let with_setting = plan_layout(&s, &layout(&[], vec![]), &auto(Some(4096)), &[], &[], false);
        assert_eq!(
            with_setting.stage,
            vec![assign("a", role("dc1", Some(4096))), assign("b", role("dc1", Some(4096)))]
        );
        let fallback = plan_layout(&s, &layout(&[], vec![]), &auto(None), &[], &[], false);
        assert_eq!(fallback.stage[1], assign("b", role("dc1", Some(FALLBACK_CAPACITY))));
    }

    #[test]
    fn nodes_with_roles_staged_changes_or_down_are_left_alone() {
        let s = status(vec![
            node("has-role", true, None),
            node("staged", true, None),
            node("down", false, None),
            node("new", true, None),
        ]);
        let l = layout(&[("has-role", role("dc1", Some(5000)))], vec![assign("staged", role("other", Some(9999)))]);
        let plan = plan_layout(&s, &l, &auto(None), &[], &[], false);
        assert_eq!(plan.stage.len(), 1);
        assert_eq!(plan.stage[0].id(), "new");
    }

    #[test]
    fn converged_layout_plans_nothing() {
        let l = layout(&[("a", role("dc1", Some(5000)))], vec![]);
        let plan = plan_layout(&status(vec![node("a", true, None)]), &l, &auto(None), &[], &[], false);
        assert_eq!(plan, LayoutPlan::default());
    }

    #[test]
    fn listed_nodes_get_their_own_zones_and_only_missing_roles_are_staged() {
        let (want, known) = listed(&[("a", "dc1", Some(2048)), ("b", "dc2", Some(2048)), ("c", "dc3", None)]);
        let s = status(vec![node("a", true, None), node("b", true, None), node("c", true, Some(7_000_000))]);
        let l = layout(&[("a", role("dc1", Some(2048)))], vec![]);
        let plan = plan_layout(&s, &l, &want, &known, &[], false);
        assert_eq!(plan.stage, vec![assign("b", role("dc2", Some(2048))), assign("c", role("dc3", Some(7_000_000)))]);
        assert!(plan.drift.is_empty());
    }

    #[test]
    fn a_changed_role_is_drift_unless_changes_are_allowed() {
        let (want, known) = listed(&[("a", "dc9", Some(2048))]);
        let s = status(vec![node("a", true, None)]);
        let l = layout(&[("a", role("dc1", Some(2048)))], vec![]);
        let plan = plan_layout(&s, &l, &want, &known, &[], false);
        assert!(plan.stage.is_empty());
        assert_eq!(plan.drift.len(), 1);
        assert!(
            plan.drift[0].contains("Garage has zone dc1") && plan.drift[0].contains("wants zone dc9"),
            "{:?}",
            plan.drift
        );
        let allowed = plan_layout(&s, &l, &want, &known, &[], true);
        assert_eq!(allowed.stage, vec![assign("a", role("dc9", Some(2048)))]);
    }

    #[test]
    fn unlisted_roles_are_drift_and_removal_needs_permission() {
        let (mut want, known) = listed(&[("a", "dc1", Some(2048))]);
        let l = layout(
            &[("a", role("dc1", Some(2048))), ("zombie", role("dc1", Some(2048))), ("gone", role("dc1", Some(2048)))],
            vec![],
        );
        want.remove = vec!["gone".into()];
        let plan = plan_layout(&status(vec![]), &l, &want, &known, &[], false);
        assert!(plan.stage.is_empty());
        assert_eq!(plan.drift.len(), 2, "{:?}", plan.drift);
        assert!(plan.drift[0].contains("not in the spec"));
        assert!(plan.drift[1].contains("removes its role"));
        let allowed = plan_layout(&status(vec![]), &l, &want, &known, &[], true);
        assert_eq!(allowed.stage, vec![StagedRoleChange::Remove { id: "gone".into(), remove: true }]);
    }

    #[test]
    fn zone_redundancy_is_set_on_a_fresh_layout_only() {
        let (mut want, known) = listed(&[("a", "dc1", Some(2048))]);
        want.zone_redundancy = Some(ZoneRedundancy::AtLeast(2));
        let fresh = plan_layout(&status(vec![]), &layout(&[], vec![]), &want, &known, &[], false);
        assert_eq!(fresh.parameters, Some(LayoutParameters { zone_redundancy: ZoneRedundancy::AtLeast(2) }));
        let existing =
            plan_layout(&status(vec![]), &layout(&[("a", role("dc1", Some(2048)))], vec![]), &want, &known, &[], false);
        assert_eq!(existing.parameters, None);
        assert!(existing.drift[0].contains("zone redundancy"));
    }

    #[test]
    fn capacity_left_to_the_disk_matches_any_capacity() {
        let w = NodeWant {
            admin_url: "http://a:3903".parse().unwrap(),
            rpc_address: "a:3901".into(),
            zone: "dc1".into(),
            gateway: false,
            capacity: None,
            tags: vec![],
        };
        assert!(role_matches(&role("dc1", Some(123_456)), &w));
        assert!(!role_matches(&role("dc1", None), &w));
        assert!(role_matches(&role("dc1", None), &NodeWant { gateway: true, ..w.clone() }));
    }

    #[test]
    fn the_layout_is_read_only_where_something_could_be_staged() {
        let mut with_role = node("a", true, None);
        with_role.role = Some(role("dc1", Some(5000)));
        let converged = ClusterStatus { layout_version: 1, nodes: vec![with_role.clone()] };
        assert!(!needs_layout(&converged, &auto(None), &[]));
        assert_eq!(layout_from_status(&converged).roles.len(), 1);

        let fresh = ClusterStatus { layout_version: 0, nodes: vec![node("a", true, None)] };
        assert!(needs_layout(&fresh, &auto(None), &[]));
        let new_node = ClusterStatus { layout_version: 1, nodes: vec![with_role.clone(), node("b", true, None)] };
        assert!(needs_layout(&new_node, &auto(None), &[]));
        let down_without_role = ClusterStatus { layout_version: 1, nodes: vec![with_role, node("b", false, None)] };
        assert!(!needs_layout(&down_without_role, &auto(None), &[]));

        let (want, known) = listed(&[("a", "dc1", Some(5000))]);
        assert!(!needs_layout(&converged, &want, &known));
        let (other_zone, known) = listed(&[("a", "dc2", Some(5000))]);
        assert!(needs_layout(&converged, &other_zone, &known));
    }

    /// A status entry for `id`: up or not, with the address Garage shows (only while connected).
    fn seen(id: &str, up: bool, addr: Option<&str>, role: Option<Role>) -> NodeStatus {
        NodeStatus { addr: addr.map(Into::into), role, ..node(id, up, None) }
    }

    #[test]
    fn replaced_nodes_are_told_by_address_or_by_their_role_and_never_guessed() {
        // Listed: a (dc1) and b (dc2). b answers as "new"; "old" held b's role.
        let (_, known) = listed(&[("a", "dc1", Some(2048)), ("b", "dc2", Some(2048))]);
        let mut known = known;
        known[1].id = "new".into();
        let held = layout(&[("a", role("dc1", Some(2048))), ("old", role("dc2", Some(2048)))], vec![]);
        let staged_only = ClusterLayout {
            staged_role_changes: vec![assign("old", role("dc2", Some(2048)))],
            ..layout(&[("a", role("dc1", Some(2048)))], vec![])
        };
        let other_zone = layout(&[("a", role("dc1", Some(2048))), ("old", role("dc7", Some(2048)))], vec![]);
        let two_dead = layout(
            &[("a", role("dc1", Some(2048))), ("old", role("dc2", Some(2048))), ("old2", role("dc2", Some(2048)))],
            vec![],
        );
        let new_has_role = layout(
            &[("a", role("dc1", Some(2048))), ("old", role("dc2", Some(2048))), ("new", role("dc2", Some(2048)))],
            vec![],
        );
        let down = |id: &str| seen(id, false, None, None);
        let a_up = seen("a", true, Some("a:3901"), None);
        let new_up = seen("new", true, Some("10.0.0.2:3901"), None);
        // (case, status nodes, layout, claimed, replaced ids (old -> new), waiting)
        type Case<'a> = (&'a str, Vec<NodeStatus>, &'a ClusterLayout, Vec<&'a str>, Vec<(&'a str, &'a str)>, bool);
        let cases: Vec<Case> = vec![
            (
                "down, b's role, b has none",
                vec![a_up.clone(), down("old")],
                &held,
                vec!["a", "new"],
                vec![("old", "new")],
                false,
            ),
            (
                "staged only",
                vec![a_up.clone(), down("old")],
                &staged_only,
                vec!["a", "new"],
                vec![("old", "new")],
                false,
            ),
            (
                "still connected at b's address: waited for",
                vec![a_up.clone(), seen("old", true, Some("b:3901"), None)],
                &held,
                vec!["a", "new"],
                vec![],
                true,
            ),
            (
                "shown at the address b answers from, down",
                vec![a_up.clone(), new_up.clone(), seen("old", false, Some("10.0.0.2:3901"), None)],
                &held,
                vec!["a", "new"],
                vec![("old", "new")],
                false,
            ),
            (
                "up elsewhere: alive, not replaced",
                vec![a_up.clone(), new_up.clone(), seen("old", true, Some("10.0.0.9:3901"), None)],
                &held,
                vec!["a", "new"],
                vec![],
                false,
            ),
            ("another zone than b's", vec![a_up.clone(), down("old")], &other_zone, vec!["a", "new"], vec![], false),
            (
                "two candidates: ambiguous",
                vec![a_up.clone(), down("old"), down("old2")],
                &two_dead,
                vec!["a", "new"],
                vec![],
                false,
            ),
            (
                "b's new id has a role already",
                vec![a_up.clone(), down("old")],
                &new_has_role,
                vec!["a", "new"],
                vec![],
                false,
            ),
            (
                "claimed by a silent listed node",
                vec![a_up.clone(), down("old")],
                &held,
                vec!["a", "new", "old"],
                vec![],
                false,
            ),
        ];
        for (case, nodes, l, claimed, want, waits) in cases {
            let found = find_replaced(&status(nodes), l, &known, &claimed);
            let got: Vec<(&str, &str)> = found.replaced.iter().map(|r| (r.old.as_str(), r.node.id.as_str())).collect();
            assert_eq!(got, want, "{case}");
            assert_eq!(!found.waiting.is_empty(), waits, "{case}: {:?}", found.waiting);
        }
    }

    #[test]
    fn a_replacement_gives_the_old_role_to_the_new_id_and_removes_the_old_in_one_change_only_when_allowed() {
        let (want, mut known) = listed(&[("a", "dc1", Some(2048)), ("b", "dc2", None)]);
        known[1].id = "new".into();
        let old_role = Role { zone: "dc2".into(), tags: vec![], capacity: Some(7_000_000) };
        let l = layout(&[("a", role("dc1", Some(2048))), ("old", old_role.clone())], vec![]);
        let s = status(vec![node("a", true, None), node("old", false, None), node("new", true, Some(9_000_000))]);
        let found = find_replaced(&s, &l, &known, &["a", "new"]);
        assert_eq!(found.replaced.len(), 1);

        let refused = plan_layout(&s, &l, &want, &known, &found.replaced, false);
        assert!(refused.stage.is_empty(), "{refused:?}");
        assert!(refused.drift.is_empty(), "the old role is the conflict's, not drift: {refused:?}");

        // The spec leaves b's capacity to its disk: the old capacity is kept, not the new disk's.
        let allowed = plan_layout(&s, &l, &want, &known, &found.replaced, true);
        assert_eq!(
            allowed.stage,
            vec![assign("new", old_role), StagedRoleChange::Remove { id: "old".into(), remove: true }]
        );
    }

    #[test]
    fn the_conflict_names_the_garage_commands_that_replace_in_one_version() {
        let (_, mut known) = listed(&[("a", "dc1", Some(2048)), ("b", "dc2", Some(1_000_000_000))]);
        known[1].id = "new".into();
        known[1].want.tags = vec!["ssd".into()];
        let mut l = layout(
            &[
                ("a", role("dc1", Some(2048))),
                ("old", Role { zone: "dc2".into(), tags: vec!["ssd".into()], capacity: Some(1_000_000_000) }),
            ],
            vec![],
        );
        for r in &mut l.roles {
            r.stored_partitions = Some(256);
        }
        let s = status(vec![node("a", true, None), node("old", false, None)]);
        let found = find_replaced(&s, &l, &known, &["a", "new"]);
        let c = replaced_conflict(&found.replaced, &s, &l);
        assert!(c.message.contains("node old is gone: http://b:3903 now answers as node new"), "{c:?}");
        assert!(c.hint.contains("garage layout assign new -z dc2 -c 1000000000 -t ssd --replace old"), "{c:?}");
        assert!(c.hint.contains("garage layout apply --version 2"), "{c:?}");
        // Two nodes, two copies of everything: the one left cannot make a write quorum alone.
        assert!(c.hint.contains("garage layout skip-dead-nodes --version 2 --allow-missing-data"), "{c:?}");
        assert!(c.hint.contains("garage-init apply --allow-layout-changes"), "{c:?}");
    }

    #[test]
    fn missing_data_is_allowed_only_where_the_nodes_left_hold_no_write_quorum() {
        // (replication factor, nodes of the older version, nodes gone, needed)
        let cases = [
            (Some(2), 2, 1, true),
            (Some(3), 3, 1, false),
            (Some(3), 3, 2, true),
            (Some(3), 5, 1, false),
            (Some(2), 3, 1, true),
            (Some(1), 3, 1, true),
            (None, 3, 1, true),
            (Some(3), 2, 1, true),
        ];
        for (rf, nodes, gone, needed) in cases {
            assert_eq!(missing_data_needed(rf, nodes, gone), needed, "rf {rf:?}, {gone} of {nodes} gone");
        }
    }

    fn history(current: u64, draining_nodes: u64, trackers: &[(&str, u64, u64)]) -> LayoutHistory {
        use crate::admin::types::{LayoutVersionInfo, UpdateTrackers};
        LayoutHistory {
            current_version: current,
            versions: vec![
                LayoutVersionInfo { version: current, status: "Current".into(), storage_nodes: 2, gateway_nodes: 0 },
                LayoutVersionInfo {
                    version: current - 1,
                    status: "Draining".into(),
                    storage_nodes: draining_nodes,
                    gateway_nodes: 0,
                },
            ],
            update_trackers: Some(
                trackers
                    .iter()
                    .map(|(id, ack, sync)| (id.to_string(), UpdateTrackers { ack: *ack, sync: *sync, sync_ack: *sync }))
                    .collect(),
            ),
        }
    }

    #[test]
    fn a_dead_node_draining_is_skipped_only_while_garage_waits_for_it() {
        let draining = NodeStatus { draining: true, ..node("old", false, None) };
        let s = status(vec![node("a", true, None), node("new", true, None), draining.clone()]);
        let mut l = layout(&[("a", role("dc1", Some(2048))), ("new", role("dc2", Some(2048)))], vec![]);
        for r in &mut l.roles {
            r.stored_partitions = Some(256);
        }
        let skip = |h: Option<&LayoutHistory>, status: &ClusterStatus| skip_draining(status, &l, h, &["a", "new"]);
        let waiting_for_ack = history(2, 2, &[("a", 2, 1), ("new", 2, 1), ("old", 1, 1)]);
        assert_eq!(
            skip(Some(&waiting_for_ack), &s),
            Some(SkipDead { version: 2, nodes: vec!["old".into()], allow_missing_data: true })
        );
        // Acknowledged, but the nodes left cannot sync without it: missing data is allowed.
        let waiting_for_sync = history(2, 2, &[("a", 2, 1), ("new", 2, 1), ("old", 2, 1)]);
        assert!(skip(Some(&waiting_for_sync), &s).is_some_and(|k| k.allow_missing_data));
        // Done: every node synced version 2; Garage drops version 1 by itself.
        let synced = history(2, 2, &[("a", 2, 2), ("new", 2, 2), ("old", 2, 2)]);
        assert_eq!(skip(Some(&synced), &s), None);
        // History not read, or the node up, or claimed by a listed node: nothing.
        assert_eq!(skip(None, &s), None);
        let up = status(vec![node("a", true, None), NodeStatus { is_up: true, ..draining }]);
        assert_eq!(skip(Some(&waiting_for_ack), &up), None);

        // Three copies on three nodes: two are left, a quorum; only the acknowledgement is skipped.
        let mut three = l.clone();
        three.roles.push(crate::admin::types::LayoutRole {
            id: "c".into(),
            role: role("dc3", Some(2048)),
            stored_partitions: Some(256),
        });
        let h = history(2, 3, &[("a", 2, 1), ("new", 2, 1), ("c", 2, 1), ("old", 1, 1)]);
        let k = skip_draining(&s, &three, Some(&h), &["a", "new", "c"]).unwrap();
        assert!(!k.allow_missing_data, "{k:?}");
        let acked = history(2, 3, &[("a", 2, 1), ("new", 2, 1), ("c", 2, 1), ("old", 2, 1)]);
        assert_eq!(skip_draining(&s, &three, Some(&acked), &["a", "new", "c"]), None, "Garage syncs by itself now");
        assert_eq!(skip_command(&k), "garage layout skip-dead-nodes --version 2");
    }

    #[test]
    fn changes_read_like_garage_status() {
        let c = assign(
            "0123456789abcdef0123",
            Role { zone: "dc1".into(), tags: vec!["ssd".into()], capacity: Some(1_000_000_000) },
        );
        assert_eq!(describe_change(&c), "node 0123456789abcdef: zone dc1, capacity 1.0 GB, tags ssd");
        assert_eq!(describe_change(&assign("ab", role("z", None))), "node ab: zone z, gateway");
    }
}
