//! Buckets, found by their global alias and created when missing, with their
//! extra aliases and quotas; and grants, the permissions of keys on buckets,
//! added only where missing. Nothing is ever revoked or deleted: a grant or
//! quota in Garage that the spec does not declare is reported as drift.

use crate::admin::types::{BucketInfo, Permissions, Quotas};
use crate::desired::{BucketWant, GrantWant};
use crate::error::Error;
use crate::report::{Line, Outcome, human_bytes, short_id};
use crate::wait::Waiter;

use super::{Ctx, Start};

/// "max size 50.0 GB, max objects 1000" or "no quotas".
pub fn describe_quotas(q: Quotas) -> String {
    let size = q.max_size.map(|s| format!("max size {}", human_bytes(s)));
    let objects = q.max_objects.map(|o| format!("max objects {o}"));
    let parts: Vec<String> = size.into_iter().chain(objects).collect();
    if parts.is_empty() { "no quotas".into() } else { parts.join(", ") }
}

/// Bucket changes besides creation: missing aliases, different quotas, and
/// quotas the spec does not declare (drift, left alone).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BucketPlan {
    pub add_aliases: Vec<String>,
    pub set_quotas: Option<Quotas>,
    pub drift: Vec<String>,
}

pub fn plan_bucket(have: &BucketInfo, want: &BucketWant, exhaustive: bool) -> BucketPlan {
    let mut plan = BucketPlan {
        add_aliases: want.aliases.iter().filter(|a| !have.global_aliases.contains(a)).cloned().collect(),
        ..BucketPlan::default()
    };
    let current = have.quotas.unwrap_or_default();
    match want.quotas {
        Some(q) if q != current => plan.set_quotas = Some(q),
        None if exhaustive && current != Quotas::default() => plan.drift.push(format!(
            "{} has quotas ({}) that the spec does not declare; left as they are",
            want.name,
            describe_quotas(current)
        )),
        _ => {}
    }
    plan
}

pub async fn converge(
    ctx: &Ctx<'_>,
    want: &BucketWant,
    exhaustive: bool,
    start: Start<BucketInfo>,
) -> Result<(BucketInfo, Vec<Line>), Error> {
    let name = want.name.as_str();
    let (mut bucket, created) = ensure_exists(ctx, name, start).await?;
    let plan = plan_bucket(&bucket, want, exhaustive);
    let mut changes = Vec::new();
    for alias in &plan.add_aliases {
        // An alias naming another bucket is a conflict, not something to move.
        if let Some(other) = ctx.call("bucket", || ctx.client.bucket_by_alias(alias)).await.map_err(|e| ctx.fail(e))?
            && other.id != bucket.id
        {
            return Err(Error::Conflict {
                message: format!("alias {alias} already names another bucket (id {})", short_id(&other.id)),
                hint: format!("garage-init never moves an alias. Remove `{alias}` from the spec, or move it yourself."),
            });
        }
        bucket =
            ctx.call("bucket", || ctx.client.add_bucket_alias(&bucket.id, alias)).await.map_err(|e| ctx.fail(e))?;
        changes.push(format!("alias {alias}"));
    }
    if let Some(q) = plan.set_quotas {
        bucket = ctx.call("bucket", || ctx.client.set_bucket_quotas(&bucket.id, q)).await.map_err(|e| ctx.fail(e))?;
        changes.push(describe_quotas(q));
    }
    let label = format!("{name} (id {})", short_id(&bucket.id));
    let line = match (created, changes.is_empty()) {
        (true, true) => Line::new("bucket", Outcome::Created, label),
        (true, false) => Line::new("bucket", Outcome::Created, format!("{label}: {}", changes.join(", "))),
        (false, true) => Line::new("bucket", Outcome::Unchanged, label),
        (false, false) => Line::new("bucket", Outcome::Updated, format!("{label}: {}", changes.join(", "))),
    };
    let lines = std::iter::once(line).chain(plan.drift.into_iter().map(|d| Line::new("bucket", Outcome::Drift, d)));
    Ok((bucket, lines.collect()))
}

/// Finds the bucket by its global alias, or creates it. `true` when created.
async fn ensure_exists(ctx: &Ctx<'_>, name: &str, start: Start<BucketInfo>) -> Result<(BucketInfo, bool), Error> {
    let mut waiter = Waiter::new(&ctx.describe("bucket"), ctx.progress);
    let mut create_attempted = false;
    let mut known = match start {
        Start::Known(found) => Some(found),
        Start::Read => None,
    };
    loop {
        let found = match known.take() {
            Some(found) => found,
            None => ctx.call("bucket", || ctx.client.bucket_by_alias(name)).await.map_err(|e| ctx.fail(e))?,
        };
        if let Some(bucket) = found {
            return Ok((bucket, create_attempted));
        }
        match ctx.client.create_bucket(name).await {
            Ok(bucket) => return Ok((bucket, true)),
            // A concurrent run created it between our read and our create.
            Err(e) if e.is_conflict() => tracing::debug!(bucket = name, "bucket created concurrently"),
            Err(e) if e.is_transient() => {
                create_attempted = true;
                waiter.pause(&e).await;
            }
            Err(e) => return Err(ctx.fail(e)),
        }
    }
}

/// What to grant: the wanted permissions the key does not have yet.
pub fn plan_grant(have: Permissions, want: Permissions) -> Permissions {
    want.missing_from(have)
}

/// Permissions a key has that the spec does not grant: drift, never revoked.
pub fn extra_permissions(have: Permissions, want: Permissions) -> Permissions {
    have.missing_from(want)
}

/// Drift for permissions a key has beyond its grant (never revoked).
pub fn extra_grant_drift(have: Permissions, want: &GrantWant) -> Option<Line> {
    let extra = extra_permissions(have, want.permissions);
    (!extra.is_empty()).then(|| {
        let detail = format!(
            "{} also has {} on {}, which the spec does not grant; left as is",
            want.key_id,
            extra.describe(),
            want.bucket
        );
        Line::new("grant", Outcome::Drift, detail)
    })
}

pub async fn grant(ctx: &Ctx<'_>, bucket: &BucketInfo, want: &GrantWant, exhaustive: bool) -> Result<Vec<Line>, Error> {
    let (key_id, name) = (want.key_id.as_str(), want.bucket.as_str());
    let have = bucket.permissions_of(key_id);
    let missing = plan_grant(have, want.permissions);
    let mut lines = Vec::new();
    if missing.is_empty() {
        lines.push(Line::new("grant", Outcome::Unchanged, format!("{} for {key_id} on {name}", have.describe())));
    } else {
        let after = ctx
            .call("bucket permissions", || ctx.client.allow_bucket_key(&bucket.id, key_id, missing))
            .await
            .map_err(|e| ctx.fail(e))?;
        let now = after.permissions_of(key_id);
        let outcome = if have.is_empty() { Outcome::Created } else { Outcome::Updated };
        let detail = format!("{} for {key_id} on {name} (added {})", now.describe(), missing.describe());
        lines.push(Line::new("grant", outcome, detail));
    }
    if exhaustive {
        lines.extend(extra_grant_drift(have, want));
    }
    Ok(lines)
}

/// Keys with permissions on a declared bucket but no grant in the spec.
pub fn undeclared_grants(bucket: &BucketInfo, name: &str, grants: &[GrantWant]) -> Vec<Line> {
    bucket
        .keys
        .iter()
        .filter(|k| !k.permissions.is_empty())
        .filter(|k| !grants.iter().any(|g| g.key_id == k.access_key_id && g.bucket == name))
        .map(|k| {
            Line::new(
                "grant",
                Outcome::Drift,
                format!(
                    "{} has {} on {name}, which the spec does not grant; left as is",
                    k.access_key_id,
                    k.permissions.describe()
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(aliases: &[&str], quotas: Option<Quotas>) -> BucketInfo {
        BucketInfo {
            id: "b".repeat(64),
            created: None,
            global_aliases: aliases.iter().map(|a| a.to_string()).collect(),
            keys: vec![],
            quotas,
        }
    }

    fn want(aliases: &[&str], quotas: Option<Quotas>) -> BucketWant {
        BucketWant { name: "cache".into(), aliases: aliases.iter().map(|a| a.to_string()).collect(), quotas }
    }

    #[test]
    fn grant_only_what_is_missing() {
        let have = Permissions { read: true, write: false, owner: false };
        assert_eq!(plan_grant(have, Permissions::ALL), Permissions { read: false, write: true, owner: true });
        assert!(plan_grant(Permissions::ALL, Permissions::ALL).is_empty());
        // Extra permissions the key has are never revoked: the plan only adds, and reports the rest.
        let want_read = Permissions { read: true, write: false, owner: false };
        assert!(plan_grant(Permissions::ALL, want_read).is_empty());
        assert_eq!(
            extra_permissions(Permissions::ALL, want_read),
            Permissions { read: false, write: true, owner: true }
        );
    }

    #[test]
    fn missing_aliases_and_other_quotas_are_planned() {
        let q = Quotas { max_size: Some(1_000_000), max_objects: Some(10) };
        let plan = plan_bucket(&bucket(&["cache"], None), &want(&["cache", "extra"], Some(q)), true);
        assert_eq!(plan.add_aliases, vec!["extra"]);
        assert_eq!(plan.set_quotas, Some(q));
        assert_eq!(
            plan_bucket(&bucket(&["cache", "extra"], Some(q)), &want(&["extra"], Some(q)), true),
            BucketPlan::default()
        );
    }

    #[test]
    fn undeclared_quotas_are_drift_only_for_a_spec() {
        let q = Quotas { max_size: None, max_objects: Some(10) };
        let plan = plan_bucket(&bucket(&["cache"], Some(q)), &want(&[], None), true);
        assert_eq!(plan.set_quotas, None);
        assert!(plan.drift[0].contains("max objects 10"), "{:?}", plan.drift);
        assert!(plan_bucket(&bucket(&["cache"], Some(q)), &want(&[], None), false).drift.is_empty());
    }

    #[test]
    fn quotas_read_like_sentences() {
        assert_eq!(describe_quotas(Quotas::default()), "no quotas");
        assert_eq!(
            describe_quotas(Quotas { max_size: Some(50_000_000_000), max_objects: Some(7) }),
            "max size 50.0 GB, max objects 7"
        );
    }
}
