//! `garage-init plan`: the same observations and decisions as `apply`,
//! printed as the actions apply would take, with nothing changed: no layout
//! staged, no node connected, no key, bucket or grant written.

use futures_util::future::try_join_all;

use crate::admin::types::StagedRoleChange;
use crate::config::ApplyConfig;
use crate::error::Error;
use crate::report::{Line, Outcome, Reporter, short_id};
use crate::wait::Progress;

use super::bucket::{describe_quotas, extra_grant_drift, plan_bucket, plan_grant, undeclared_grants};
use super::key::{KeyPlan, plan_key};
use super::layout::{describe_change, plan_layout};
use super::{Clients, Ctx, cluster, within_deadline};

/// What `plan` found; the exit code follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    NothingToDo,
    /// Apply would change something.
    Changes,
    /// Nothing for apply to do, but Garage differs from the spec where apply leaves it alone.
    DriftOnly,
}

pub async fn plan(cfg: &ApplyConfig, reporter: &mut Reporter) -> Result<Verdict, Error> {
    let progress = Progress::default();
    let clients = Clients::new(cfg)?;
    let ctx = Ctx { client: clients.coordinator(), progress: &progress };
    let desired = &cfg.desired;
    let mut lines: Vec<Line> = Vec::new();

    let work = async {
        let gathered = cluster::gather(&ctx, &desired.cluster, &clients.members, false).await?;
        for k in &gathered.unconnected {
            let detail = format!(
                "connect node {} ({}) at {}",
                short_id(&k.id),
                k.want.admin_url.as_str().trim_end_matches('/'),
                k.want.rpc_address
            );
            lines.push(Line::new("cluster", Outcome::ToUpdate, detail));
        }

        let (status, layout) = &gathered.observed;
        let lp = plan_layout(status, layout, &desired.cluster, &gathered.known, cfg.allow_layout_changes);
        for change in &lp.stage {
            let outcome = match change {
                StagedRoleChange::Assign { id, .. } if layout.role_of(id).is_none() => Outcome::ToCreate,
                _ => Outcome::ToUpdate,
            };
            lines.push(Line::new("layout", outcome, format!("role for {}", describe_change(change))));
        }
        if lp.parameters.is_some() {
            lines.push(Line::new("layout", Outcome::ToUpdate, "zone redundancy as the spec sets it"));
        }
        for change in &layout.staged_role_changes {
            let detail = format!("staged earlier, to apply: {}", describe_change(change));
            lines.push(Line::new("layout", Outcome::ToUpdate, detail));
        }
        if lp.stages_something() || layout.has_staged_changes() {
            let outcome = if layout.version == 0 { Outcome::ToCreate } else { Outcome::ToUpdate };
            lines.push(Line::new("layout", outcome, format!("apply layout version {}", layout.version + 1)));
        }
        lines.extend(lp.drift.iter().map(|d| Line::new("layout", Outcome::Drift, d.clone())));

        // Without a layout, Garage's key and bucket tables cannot be read: all is to create.
        let fresh = layout.version == 0;
        let found_keys = if fresh {
            vec![None; desired.keys.len()]
        } else {
            let reads = desired.keys.iter().map(|k| ctx.call("access key", || ctx.client.key_info_with_secret(&k.id)));
            try_join_all(reads).await.map_err(|e| ctx.fail(e))?
        };
        for (want, found) in desired.keys.iter().zip(&found_keys) {
            match plan_key(found.as_ref(), want) {
                KeyPlan::Import => {
                    lines.push(Line::new("key", Outcome::ToCreate, format!("import {} ({})", want.id, want.name)));
                }
                KeyPlan::Rename { from } => lines.push(Line::new(
                    "key",
                    Outcome::ToUpdate,
                    format!("{}: rename from \"{from}\" to \"{}\"", want.id, want.name),
                )),
                KeyPlan::Conflict { message, hint } => return Err(Error::Conflict { message, hint }),
                KeyPlan::Unchanged => {}
            }
        }

        let found_buckets = if fresh {
            vec![None; desired.buckets.len()]
        } else {
            let reads = desired.buckets.iter().map(|b| ctx.call("bucket", || ctx.client.bucket_by_alias(&b.name)));
            try_join_all(reads).await.map_err(|e| ctx.fail(e))?
        };
        for (want, found) in desired.buckets.iter().zip(&found_buckets) {
            let Some(have) = found else {
                let mut extras: Vec<String> = want.aliases.iter().map(|a| format!("alias {a}")).collect();
                extras.extend(want.quotas.map(describe_quotas));
                let detail =
                    if extras.is_empty() { want.name.clone() } else { format!("{}: {}", want.name, extras.join(", ")) };
                lines.push(Line::new("bucket", Outcome::ToCreate, detail));
                continue;
            };
            let bp = plan_bucket(have, want, desired.exhaustive);
            for alias in &bp.add_aliases {
                lines.push(Line::new("bucket", Outcome::ToUpdate, format!("{}: add alias {alias}", want.name)));
            }
            if let Some(q) = bp.set_quotas {
                lines.push(Line::new(
                    "bucket",
                    Outcome::ToUpdate,
                    format!("{}: set {}", want.name, describe_quotas(q)),
                ));
            }
            lines.extend(bp.drift.into_iter().map(|d| Line::new("bucket", Outcome::Drift, d)));
        }

        for grant in &desired.grants {
            let i = desired.buckets.iter().position(|b| b.name == grant.bucket).expect("grants name declared buckets");
            let have = found_buckets[i].as_ref().map(|b| b.permissions_of(&grant.key_id)).unwrap_or_default();
            let missing = plan_grant(have, grant.permissions);
            if !missing.is_empty() {
                let outcome = if have.is_empty() { Outcome::ToCreate } else { Outcome::ToUpdate };
                let detail = format!("{} for {} on {}", missing.describe(), grant.key_id, grant.bucket);
                lines.push(Line::new("grant", outcome, detail));
            }
            if desired.exhaustive {
                lines.extend(extra_grant_drift(have, grant));
            }
        }
        if desired.exhaustive {
            for (want, found) in desired.buckets.iter().zip(&found_buckets) {
                if let Some(have) = found {
                    lines.extend(undeclared_grants(have, &want.name, &desired.grants));
                }
            }
        }
        Ok(())
    };
    within_deadline(cfg, &progress, work).await?;

    for line in lines {
        reporter.record(line);
    }
    Ok(match reporter.finish_plan() {
        (0, 0) => Verdict::NothingToDo,
        (0, _) => Verdict::DriftOnly,
        _ => Verdict::Changes,
    })
}
