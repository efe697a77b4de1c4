//! The bucket, found by its global alias and created when missing, and the
//! key's read, write and owner permissions on it, granted only where missing.

use crate::admin::types::{BucketInfo, Permissions};
use crate::error::Error;
use crate::report::{Line, Outcome, short_id};
use crate::wait::Waiter;

use super::Ctx;

pub async fn converge(ctx: &Ctx<'_>, alias: &str) -> Result<(BucketInfo, Line), Error> {
    let mut waiter = Waiter::new(&ctx.describe("bucket"), ctx.progress);
    let mut create_attempted = false;
    loop {
        let found = ctx.read("bucket", || ctx.client.bucket_by_alias(alias)).await.map_err(|e| ctx.fail(e))?;
        if let Some(bucket) = found {
            let outcome = if create_attempted { Outcome::Created } else { Outcome::Unchanged };
            let line = Line::new("bucket", outcome, format!("{alias} (id {})", short_id(&bucket.id)));
            return Ok((bucket, line));
        }
        match ctx.client.create_bucket(alias).await {
            Ok(bucket) => {
                let line = Line::new("bucket", Outcome::Created, format!("{alias} (id {})", short_id(&bucket.id)));
                return Ok((bucket, line));
            }
            // A concurrent run created it between our read and our create.
            Err(e) if e.is_conflict() => {
                tracing::debug!(bucket = alias, "bucket created concurrently");
            }
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

pub async fn grant(ctx: &Ctx<'_>, bucket: &BucketInfo, key_id: &str) -> Result<Line, Error> {
    let alias = bucket.global_aliases.first().map(String::as_str).unwrap_or(&bucket.id);
    let mut have = bucket.permissions_of(key_id);
    let mut waiter = Waiter::new(&ctx.describe("bucket permissions"), ctx.progress);
    loop {
        let missing = plan_grant(have, Permissions::ALL);
        if missing.is_empty() {
            return Ok(Line::new("grant", Outcome::Unchanged, format!("{} for {key_id} on {alias}", have.describe())));
        }
        match ctx.client.allow_bucket_key(&bucket.id, key_id, missing).await {
            Ok(after) => {
                let now = after.permissions_of(key_id);
                let outcome = if have.is_empty() { Outcome::Created } else { Outcome::Updated };
                let detail = format!("{} for {key_id} on {alias} (added {})", now.describe(), missing.describe());
                return Ok(Line::new("grant", outcome, detail));
            }
            Err(e) if e.is_transient() => {
                waiter.pause(&e).await;
                let fresh = ctx.read("bucket", || ctx.client.bucket_by_alias(alias)).await.map_err(|e| ctx.fail(e))?;
                have = fresh.map(|b| b.permissions_of(key_id)).unwrap_or_default();
            }
            Err(e) => return Err(ctx.fail(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_only_what_is_missing() {
        let have = Permissions { read: true, write: false, owner: false };
        assert_eq!(plan_grant(have, Permissions::ALL), Permissions { read: false, write: true, owner: true });
        assert!(plan_grant(Permissions::ALL, Permissions::ALL).is_empty());
        // Extra permissions the key has are never revoked: the plan only adds.
        let want_read = Permissions { read: true, write: false, owner: false };
        assert!(plan_grant(Permissions::ALL, want_read).is_empty());
    }
}
