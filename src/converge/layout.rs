//! Layout decisions (pure): which roles to stage so that every wanted node
//! has its role. Roles already present are never changed or removed unless
//! the spec says so and `--allow-layout-changes` is given; otherwise a
//! difference is reported as drift. Changes an interrupted earlier run left
//! staged are adopted and applied with ours.

use crate::admin::types::{ClusterLayout, ClusterStatus, LayoutParameters, Role, StagedRoleChange};
use crate::desired::{ClusterWant, NodeWant, NodesWant};
use crate::report::{human_bytes, short_id};

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

/// Whether the layout itself (staged changes, parameters) must be read, or
/// `GetClusterStatus`, which carries every node's current role, says enough.
/// Staged changes matter only where garage-init would stage something: a
/// node without a role (an interrupted run may have staged its role) or a
/// role to change; each read costs Garage a token check.
pub fn needs_layout(status: &ClusterStatus, want: &ClusterWant, known: &[KnownNode]) -> bool {
    if status.layout_version == 0 || want.zone_redundancy.is_some() || !want.remove.is_empty() {
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
            .filter_map(|n| Some(crate::admin::types::LayoutRole { id: n.id.clone(), role: n.role.clone()? }))
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
pub fn plan_layout(
    status: &ClusterStatus,
    layout: &ClusterLayout,
    want: &ClusterWant,
    known: &[KnownNode],
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
                match layout.role_of(&node.id) {
                    None => plan.stage.push(StagedRoleChange::Assign { id: node.id.clone(), role: wanted_role(status, node) }),
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
            for r in &layout.roles {
                let listed = known.iter().any(|k| k.id == r.id);
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
            data_partition: total.map(|t| Partition { available: t / 2, total: t }),
        }
    }

    fn role(zone: &str, capacity: Option<u64>) -> Role {
        Role { zone: zone.into(), tags: vec![], capacity }
    }

    fn layout(roles: &[(&str, Role)], staged: Vec<StagedRoleChange>) -> ClusterLayout {
        ClusterLayout {
            version: if roles.is_empty() { 0 } else { 1 },
            roles: roles.iter().map(|(id, r)| LayoutRole { id: id.to_string(), role: r.clone() }).collect(),
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
            false,
        );
        assert_eq!(plan.stage, vec![assign("a", role("dc1", Some(250_000_000_000)))]);
    }

    #[test]
    fn capacity_setting_wins_and_unknown_size_falls_back_to_one_gigabyte() {
        let s = status(vec![node("a", true, Some(250_000_000_000)), node("b", true, None)]);
        let with_setting = plan_layout(&s, &layout(&[], vec![]), &auto(Some(4096)), &[], false);
        assert_eq!(
            with_setting.stage,
            vec![assign("a", role("dc1", Some(4096))), assign("b", role("dc1", Some(4096)))]
        );
        let fallback = plan_layout(&s, &layout(&[], vec![]), &auto(None), &[], false);
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
        let plan = plan_layout(&s, &l, &auto(None), &[], false);
        assert_eq!(plan.stage.len(), 1);
        assert_eq!(plan.stage[0].id(), "new");
    }

    #[test]
    fn converged_layout_plans_nothing() {
        let l = layout(&[("a", role("dc1", Some(5000)))], vec![]);
        let plan = plan_layout(&status(vec![node("a", true, None)]), &l, &auto(None), &[], false);
        assert_eq!(plan, LayoutPlan::default());
    }

    #[test]
    fn listed_nodes_get_their_own_zones_and_only_missing_roles_are_staged() {
        let (want, known) = listed(&[("a", "dc1", Some(2048)), ("b", "dc2", Some(2048)), ("c", "dc3", None)]);
        let s = status(vec![node("a", true, None), node("b", true, None), node("c", true, Some(7_000_000))]);
        let l = layout(&[("a", role("dc1", Some(2048)))], vec![]);
        let plan = plan_layout(&s, &l, &want, &known, false);
        assert_eq!(plan.stage, vec![assign("b", role("dc2", Some(2048))), assign("c", role("dc3", Some(7_000_000)))]);
        assert!(plan.drift.is_empty());
    }

    #[test]
    fn a_changed_role_is_drift_unless_changes_are_allowed() {
        let (want, known) = listed(&[("a", "dc9", Some(2048))]);
        let s = status(vec![node("a", true, None)]);
        let l = layout(&[("a", role("dc1", Some(2048)))], vec![]);
        let plan = plan_layout(&s, &l, &want, &known, false);
        assert!(plan.stage.is_empty());
        assert_eq!(plan.drift.len(), 1);
        assert!(
            plan.drift[0].contains("Garage has zone dc1") && plan.drift[0].contains("wants zone dc9"),
            "{:?}",
            plan.drift
        );
        let allowed = plan_layout(&s, &l, &want, &known, true);
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
        let plan = plan_layout(&status(vec![]), &l, &want, &known, false);
        assert!(plan.stage.is_empty());
        assert_eq!(plan.drift.len(), 2, "{:?}", plan.drift);
        assert!(plan.drift[0].contains("not in the spec"));
        assert!(plan.drift[1].contains("removes its role"));
        let allowed = plan_layout(&status(vec![]), &l, &want, &known, true);
        assert_eq!(allowed.stage, vec![StagedRoleChange::Remove { id: "gone".into(), remove: true }]);
    }

    #[test]
    fn zone_redundancy_is_set_on_a_fresh_layout_only() {
        let (mut want, known) = listed(&[("a", "dc1", Some(2048))]);
        want.zone_redundancy = Some(ZoneRedundancy::AtLeast(2));
        let fresh = plan_layout(&status(vec![]), &layout(&[], vec![]), &want, &known, false);
        assert_eq!(fresh.parameters, Some(LayoutParameters { zone_redundancy: ZoneRedundancy::AtLeast(2) }));
        let existing =
            plan_layout(&status(vec![]), &layout(&[("a", role("dc1", Some(2048)))], vec![]), &want, &known, false);
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
