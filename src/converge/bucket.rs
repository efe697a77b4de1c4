//! Bucket and grant decisions (pure): a bucket is found by its global alias
//! and created when missing, with its extra aliases and quotas; grants, the
//! permissions of keys on buckets, are added only where missing. Nothing is
//! ever revoked or deleted: a grant or quota in Garage that the spec does
//! not declare is reported as drift, an alias naming another bucket is a
//! conflict.

use crate::admin::types::{BucketInfo, BucketUpdate, Permissions, Quotas, WebsiteAccess, WebsiteConfig};
use crate::desired::{BucketWant, Desired, GrantWant};
use crate::report::{Line, Outcome, human_bytes, short_id};

use crate::error::Conflict;

/// What the rules here need to know of a bucket that only its own record
/// (`GetBucketInfo`) holds, not the keys' views nor the bucket list: each
/// managed setting of [`BucketUpdate`].
pub fn needs_own_record(want: &BucketWant) -> bool {
    want.quotas.is_some() || want.website.is_some()
}

/// "max size 50.0 GB; website: index.html, errors 404.html": the settings an update changes.
pub fn describe_update(update: &BucketUpdate) -> String {
    let quotas = update.quotas.map(describe_quotas);
    let website = update.website_access.as_ref().map(|w| match &w.config {
        Some(c) if w.enabled => format!("website: {}", describe_website(c)),
        _ => "website off".to_string(),
    });
    quotas.into_iter().chain(website).collect::<Vec<_>>().join("; ")
}

/// "index.html, errors 404.html"
fn describe_website(c: &WebsiteConfig) -> String {
    match &c.error_document {
        Some(e) => format!("{}, errors {e}", c.index_document),
        None => c.index_document.clone(),
    }
}

/// "max size 50.0 GB, max objects 1000" or "no quotas".
pub fn describe_quotas(q: Quotas) -> String {
    let size = q.max_size.map(|s| format!("max size {}", human_bytes(s)));
    let objects = q.max_objects.map(|o| format!("max objects {o}"));
    let parts: Vec<String> = size.into_iter().chain(objects).collect();
    if parts.is_empty() { "no quotas".into() } else { parts.join(", ") }
}

/// A wanted alias that already names another bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasElsewhere {
    pub alias: String,
    pub bucket_id: String,
}

/// What one bucket needs: creation, missing aliases, other quotas; and the
/// drift and conflicts left alone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BucketPlan {
    pub create: bool,
    pub add_aliases: Vec<String>,
    /// Settings to change with one `UpdateBucket` (empty: none).
    pub update: BucketUpdate,
    pub drift: Vec<String>,
    pub conflicts: Vec<Conflict>,
}

/// `unmanaged_quotas_are_drift`: the spec declares everything, and the
/// bucket's quotas were read even though the spec does not manage them.
pub fn plan_bucket(
    found: Option<&BucketInfo>,
    elsewhere: &[AliasElsewhere],
    want: &BucketWant,
    unmanaged_quotas_are_drift: bool,
) -> BucketPlan {
    let mut plan = BucketPlan { create: found.is_none(), ..BucketPlan::default() };
    let has = |alias: &String| found.is_some_and(|b| b.global_aliases.contains(alias));
    // Found by its name, yet its own record lacks the name: Garage writes an
    // alias to the alias table, then to the bucket, and a crash in between
    // leaves it so (S3 finds the bucket, listings show it nameless). Adding
    // the alias again writes both.
    if found.is_some() && !has(&want.name) {
        plan.add_aliases.push(want.name.clone());
    }
    for alias in want.aliases.iter().filter(|a| !has(a)) {
        match elsewhere.iter().find(|e| &e.alias == alias) {
            Some(e) => plan.conflicts.push(Conflict {
                message: format!("alias {alias} already names another bucket (id {})", short_id(&e.bucket_id)),
                hint: format!("garage-init never moves an alias. Remove `{alias}` from the spec, or move it yourself."),
            }),
            None => plan.add_aliases.push(alias.clone()),
        }
    }
    let current = found.and_then(|b| b.quotas).unwrap_or_default();
    match want.quotas {
        Some(q) if q != current => plan.update.quotas = Some(q),
        None if unmanaged_quotas_are_drift && current != Quotas::default() => plan.drift.push(format!(
            "{} has quotas ({}) that the spec does not declare; left as they are",
            want.name,
            describe_quotas(current)
        )),
        _ => {}
    }
    let serving = found.filter(|b| b.website_access).and_then(|b| b.website_config.as_ref());
    match (&want.website, serving) {
        (Some(w), serving) if serving != Some(w) => {
            plan.update.website_access = Some(WebsiteAccess { enabled: true, config: Some(w.clone()) });
        }
        (None, Some(serving)) if unmanaged_quotas_are_drift => plan.drift.push(format!(
            "{} is served as a website ({}), which the spec does not declare; left as it is",
            want.name,
            describe_website(serving)
        )),
        _ => {}
    }
    plan
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
pub fn extra_grant_drift(have: Permissions, want: &GrantWant, desired: &Desired) -> Option<Line> {
    let extra = extra_permissions(have, want.permissions);
    (!extra.is_empty()).then(|| {
        let detail = format!(
            "{} also has {} on {}, which the spec does not grant; left as is",
            desired.grant_key(want).id,
            extra.describe(),
            desired.grant_bucket(want).name
        );
        Line::new("grant", Outcome::Drift, detail)
    })
}

/// Keys with permissions on a declared bucket but no grant in the spec;
/// only the keys `known` accepts (those whose grants were read).
pub fn undeclared_grants(
    bucket: &BucketInfo,
    wanted: usize,
    desired: &Desired,
    known: impl Fn(&str) -> bool,
) -> Vec<Line> {
    let name = &desired.buckets[wanted].name;
    let granted = |key: &str| desired.grants.iter().any(|g| g.bucket.0 == wanted && desired.grant_key(g).id == key);
    bucket
        .keys
        .iter()
        .filter(|k| !k.permissions.is_empty() && known(&k.access_key_id))
        .filter(|k| !granted(&k.access_key_id))
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

    #[test]
    fn a_bucket_whose_record_lacks_its_own_name_gets_it_again() {
        let nameless = bucket(&[], None);
        let plan = plan_bucket(Some(&nameless), &[], &want(&[], None), false);
        assert_eq!(plan.add_aliases, ["cache"]);
        assert!(!plan.create);
        let named = bucket(&["cache"], None);
        assert!(plan_bucket(Some(&named), &[], &want(&[], None), false).add_aliases.is_empty());
    }

    fn bucket(aliases: &[&str], quotas: Option<Quotas>) -> BucketInfo {
        BucketInfo {
            id: "b".repeat(64),
            created: None,
            global_aliases: aliases.iter().map(|a| a.to_string()).collect(),
            quotas,
            ..BucketInfo::default()
        }
    }

    fn want(aliases: &[&str], quotas: Option<Quotas>) -> BucketWant {
        BucketWant {
            name: "cache".into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            quotas,
            website: None,
            lifecycle: None,
        }
    }

    #[test]
    fn a_declared_website_is_switched_on_or_corrected_and_an_undeclared_one_is_drift() {
        let site = WebsiteConfig { index_document: "index.html".into(), error_document: Some("404.html".into()) };
        let mut wanted = want(&[], None);
        wanted.website = Some(site.clone());
        let on = |config: &WebsiteConfig| WebsiteAccess { enabled: true, config: Some(config.clone()) };

        // Created, off, or serving other documents: one update switches it on as declared.
        let mut found = bucket(&["cache"], None);
        assert_eq!(plan_bucket(None, &[], &wanted, false).update.website_access, Some(on(&site)));
        assert_eq!(plan_bucket(Some(&found), &[], &wanted, false).update.website_access, Some(on(&site)));
        found.website_access = true;
        found.website_config = Some(WebsiteConfig { index_document: "home.html".into(), error_document: None });
        let fix = plan_bucket(Some(&found), &[], &wanted, false);
        assert_eq!(describe_update(&fix.update), "website: index.html, errors 404.html");
        // As declared: nothing to do.
        found.website_config = Some(site);
        assert!(plan_bucket(Some(&found), &[], &wanted, true).update.is_empty());
        // Not declared: never switched off; drift where the spec declares everything.
        assert!(plan_bucket(Some(&found), &[], &want(&[], None), false).drift.is_empty());
        let drift = plan_bucket(Some(&found), &[], &want(&[], None), true).drift;
        assert!(drift[0].contains("served as a website (index.html, errors 404.html)"), "{drift:?}");
        assert!(needs_own_record(&wanted) && !needs_own_record(&want(&[], None)));
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
        let plan = plan_bucket(Some(&bucket(&["cache"], None)), &[], &want(&["cache", "extra"], Some(q)), true);
        assert_eq!(plan.add_aliases, vec!["extra"]);
        assert_eq!(plan.update.quotas, Some(q));
        assert_eq!(
            plan_bucket(Some(&bucket(&["cache", "extra"], Some(q))), &[], &want(&["extra"], Some(q)), true),
            BucketPlan::default()
        );
        let fresh = plan_bucket(None, &[], &want(&["extra"], Some(q)), true);
        assert!(fresh.create);
        assert_eq!((fresh.add_aliases, fresh.update.quotas), (vec!["extra".to_string()], Some(q)));
    }

    #[test]
    fn an_alias_naming_another_bucket_is_a_conflict_not_a_move() {
        let elsewhere = [AliasElsewhere { alias: "extra".into(), bucket_id: "c".repeat(64) }];
        let plan = plan_bucket(Some(&bucket(&["cache"], None)), &elsewhere, &want(&["extra"], None), true);
        assert!(plan.add_aliases.is_empty());
        assert!(plan.conflicts[0].message.contains("alias extra already names another bucket"), "{plan:?}");
    }

    #[test]
    fn undeclared_quotas_are_drift_only_for_a_spec() {
        let q = Quotas { max_size: None, max_objects: Some(10) };
        let plan = plan_bucket(Some(&bucket(&["cache"], Some(q))), &[], &want(&[], None), true);
        assert!(plan.update.is_empty());
        assert!(plan.drift[0].contains("max objects 10"), "{:?}", plan.drift);
        assert!(plan_bucket(Some(&bucket(&["cache"], Some(q))), &[], &want(&[], None), false).drift.is_empty());
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
