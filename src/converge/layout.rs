//! Layout: give every node that is up and has no role a role, in one staged
//! change, and apply it. Roles already present are never touched; changes an
//! interrupted earlier run left staged are adopted and applied with ours.

use crate::admin::AdminError;
use crate::admin::types::{ClusterLayout, ClusterStatus, Role, StagedRoleChange, UpdateLayoutRequest};
use crate::config::RoleTemplate;
use crate::error::Error;
use crate::report::{Line, Outcome, human_bytes, short_id};
use crate::wait::Waiter;

use super::Ctx;

/// Capacity used when neither the settings nor Garage give a size.
pub const FALLBACK_CAPACITY: u64 = 1_000_000_000;

/// Roles to stage: one for each node that is up, has no role in the current
/// layout, and has no change staged already.
pub fn plan_new_roles(
    status: &ClusterStatus,
    layout: &ClusterLayout,
    template: &RoleTemplate,
) -> Vec<StagedRoleChange> {
    status
        .nodes
        .iter()
        .filter(|n| n.is_up && layout.role_of(&n.id).is_none() && layout.staged_change_for(&n.id).is_none())
        .map(|n| {
            let reported = n.data_partition.map(|p| p.total).filter(|t| *t >= 1024);
            let capacity = template.capacity.or(reported).unwrap_or(FALLBACK_CAPACITY);
            StagedRoleChange::Assign {
                id: n.id.clone(),
                role: Role { zone: template.zone.clone(), tags: template.tags.clone(), capacity: Some(capacity) },
            }
        })
        .collect()
}

/// "node 0a1b2c3d4e5f6a7b: zone dc1, capacity 250.8 GB"
pub fn describe_change(change: &StagedRoleChange) -> String {
    match change {
        StagedRoleChange::Assign { id, role } => {
            let what = match role.capacity {
                Some(c) => format!("capacity {}", human_bytes(c)),
                None => "gateway".to_string(),
            };
            let tags = if role.tags.is_empty() { String::new() } else { format!(", tags {}", role.tags.join(",")) };
            format!("node {}: zone {}, {what}{tags}", short_id(id), role.zone)
        }
        StagedRoleChange::Remove { id, .. } => format!("node {}: removed", short_id(id)),
    }
}

/// Converges the layout, starting from what [`super::ready::wait_for_admin`]
/// observed; returns the resulting version and the report line.
pub async fn converge(
    ctx: &Ctx<'_>,
    template: &RoleTemplate,
    mut observed: (ClusterStatus, ClusterLayout),
) -> Result<(u64, Line), Error> {
    let mut waiter = Waiter::new(&ctx.describe("cluster layout"), ctx.progress);
    loop {
        let (status, layout) = observed;
        let new_roles = plan_new_roles(&status, &layout, template);

        if new_roles.is_empty() && !layout.has_staged_changes() {
            let n = layout.roles.len();
            let detail = format!("version {}, {n} role{}", layout.version, if n == 1 { "" } else { "s" });
            return Ok((layout.version, Line::new("layout", Outcome::Unchanged, detail)));
        }

        let adopted = layout.staged_role_changes.len() + usize::from(layout.staged_parameters.is_some());
        let result = if new_roles.is_empty() {
            Ok(layout)
        } else {
            ctx.client.update_layout(&UpdateLayoutRequest { roles: new_roles, parameters: None }).await
        };
        let result = match result {
            // Empty when another run applied the same roles between our read and our write.
            Ok(staged) if staged.has_staged_changes() => match ctx.client.apply_layout(staged.version + 1).await {
                Ok(applied) => return Ok((applied.version, applied_line(&staged, applied.version, adopted))),
                Err(e) => Err(e),
            },
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {}
            // Lost a race with a concurrent run, or Garage went away: look again.
            Err(e) if e.is_layout_version_race() || e.is_transient() => waiter.pause(&e).await,
            Err(AdminError::Api { status: 500, message, .. }) => return Err(Error::Layout { message }),
            Err(e) => return Err(ctx.fail(e)),
        }
        observed = ctx
            .read("cluster layout", || async {
                tokio::try_join!(ctx.client.cluster_status(), ctx.client.cluster_layout())
            })
            .await
            .map_err(|e| ctx.fail(e))?;
    }
}

fn applied_line(staged: &ClusterLayout, version: u64, adopted: usize) -> Line {
    let changes: Vec<String> = staged.staged_role_changes.iter().map(describe_change).collect();
    let mut detail = format!("version {version}: {}", changes.join("; "));
    if staged.staged_parameters.is_some() {
        detail.push_str("; new layout parameters");
    }
    if adopted > 0 {
        detail.push_str(&format!(" ({adopted} change(s) left staged by an earlier run, adopted)"));
    }
    let outcome = if staged.version == 0 { Outcome::Created } else { Outcome::Updated };
    Line::new("layout", outcome, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::types::{LayoutParameters, LayoutRole, NodeStatus, Partition, ZoneRedundancy};

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

    fn layout(roles: &[&str], staged: Vec<StagedRoleChange>) -> ClusterLayout {
        ClusterLayout {
            version: if roles.is_empty() { 0 } else { 1 },
            roles: roles
                .iter()
                .map(|id| LayoutRole {
                    id: id.to_string(),
                    role: Role { zone: "dc1".into(), tags: vec![], capacity: Some(5000) },
                })
                .collect(),
            staged_role_changes: staged,
            staged_parameters: None,
            parameters: LayoutParameters { zone_redundancy: ZoneRedundancy::Maximum },
        }
    }

    fn template(capacity: Option<u64>) -> RoleTemplate {
        RoleTemplate { zone: "dc1".into(), capacity, tags: vec![] }
    }

    fn status(nodes: Vec<NodeStatus>) -> ClusterStatus {
        ClusterStatus { layout_version: 0, nodes }
    }

    #[test]
    fn fresh_node_gets_a_role_sized_like_its_data_partition() {
        let plan = plan_new_roles(
            &status(vec![node("a", true, Some(250_000_000_000))]),
            &layout(&[], vec![]),
            &template(None),
        );
        assert_eq!(
            plan,
            vec![StagedRoleChange::Assign {
                id: "a".into(),
                role: Role { zone: "dc1".into(), tags: vec![], capacity: Some(250_000_000_000) }
            }]
        );
    }

    #[test]
    fn capacity_setting_wins_and_unknown_size_falls_back_to_one_gigabyte() {
        let s = status(vec![node("a", true, Some(250_000_000_000)), node("b", true, None)]);
        let with_setting = plan_new_roles(&s, &layout(&[], vec![]), &template(Some(4096)));
        assert!(
            with_setting
                .iter()
                .all(|c| matches!(c, StagedRoleChange::Assign { role, .. } if role.capacity == Some(4096)))
        );
        let fallback = plan_new_roles(&s, &layout(&[], vec![]), &template(None));
        assert!(
            matches!(&fallback[1], StagedRoleChange::Assign { role, .. } if role.capacity == Some(FALLBACK_CAPACITY))
        );
    }

    #[test]
    fn nodes_with_roles_staged_changes_or_down_are_left_alone() {
        let s = status(vec![
            node("has-role", true, None),
            node("staged", true, None),
            node("down", false, None),
            node("new", true, None),
        ]);
        let staged = vec![StagedRoleChange::Assign {
            id: "staged".into(),
            role: Role { zone: "other".into(), tags: vec![], capacity: Some(9999) },
        }];
        let plan = plan_new_roles(&s, &layout(&["has-role"], staged), &template(None));
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].id(), "new");
    }

    #[test]
    fn converged_layout_plans_nothing() {
        let s = status(vec![node("a", true, None)]);
        let l = layout(&["a"], vec![]);
        assert!(plan_new_roles(&s, &l, &template(None)).is_empty());
        assert!(!l.has_staged_changes());
    }

    #[test]
    fn changes_read_like_garage_status() {
        let c = StagedRoleChange::Assign {
            id: "0123456789abcdef0123".into(),
            role: Role { zone: "dc1".into(), tags: vec!["ssd".into()], capacity: Some(1_000_000_000) },
        };
        assert_eq!(describe_change(&c), "node 0123456789abcdef: zone dc1, capacity 1.0 GB, tags ssd");
        let g =
            StagedRoleChange::Assign { id: "ab".into(), role: Role { zone: "z".into(), tags: vec![], capacity: None } };
        assert_eq!(describe_change(&g), "node ab: zone z, gateway");
    }
}
