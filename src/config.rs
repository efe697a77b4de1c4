//! The settings of a run, assembled from the command line (and the spec
//! file) through the validators of [`crate::validate`]. Everything here is
//! checked before any network call; a bad value becomes a [`ConfigError`]
//! that names the flag and the variable.

use std::path::Path;
use std::time::Duration;

use url::Url;

use crate::cli::{AccessArgs, AdminTokenArgs, ApplyArgs, CacheLayoutArgs, LayoutArgs, ResourceArgs};
use crate::desired::{CacheLayout, Desired, KeyWant, LifecycleWant, RoleTemplate, check_expire_after_days};
use crate::secret::Secret;
use crate::validate::{
    ConfigError, parse_http_url, read_secret_file, validate_access_key_id, validate_admin_token, validate_bucket_name,
    validate_label, validate_secret_key,
};

/// Access key id used when none is given: fixed so that a re-created stack
/// keeps working credentials. For local development and CI only.
pub const DEFAULT_ACCESS_KEY_ID: &str = "GK6275696c646b69742d6b6579";
/// Secret of [`DEFAULT_ACCESS_KEY_ID`]. For local development and CI only.
pub const DEFAULT_SECRET_ACCESS_KEY: &str = "8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3";

/// Names a setting the way a user can set it.
fn setting(flag: &str, var: &str) -> String {
    format!("--{flag} ({var})")
}

#[derive(Debug, Clone)]
pub struct ApplyConfig {
    /// The coordinating node's admin API, unless the spec lists nodes.
    pub admin_url: Url,
    pub s3_url: Url,
    pub admin_token: Secret,
    pub region: String,
    pub desired: Desired,
    pub allow_layout_changes: bool,
    pub deadline: Duration,
    /// Requests in flight at once to each node's admin API, and to the S3 API.
    pub requests_per_node: usize,
}

impl ApplyConfig {
    pub fn from_args(args: &ApplyArgs) -> Result<Self, ConfigError> {
        let admin_url = parse_http_url(&args.admin_url, &setting("admin-url", "GARAGE_INIT_ADMIN_URL"))?;
        let s3_url = parse_http_url(&args.s3_url, &setting("s3-url", "GARAGE_INIT_S3_URL"))?;
        let admin_token = admin_token(&args.token)?;
        let Resources { access: Access { bucket, key, region }, lifecycle, cache_layout } = resources(&args.resources)?;
        let role = role_template(&args.layout)?;
        let mut desired = match &args.spec {
            // A spec that declares only the cluster keeps the flags' bucket and key.
            Some(path) => match crate::spec::load(path, &role)? {
                d if d.buckets.is_empty() && d.keys.is_empty() && d.grants.is_empty() => {
                    Desired { cluster: d.cluster, ..Desired::single(role, bucket, key, lifecycle) }
                }
                d => d,
            },
            None => Desired::single(role, bucket, key, lifecycle),
        };
        desired.set_cache_layout(&cache_layout);
        for key in &desired.keys {
            warn_if_public_secret(key, &s3_url);
        }
        Ok(Self {
            admin_url,
            s3_url,
            admin_token,
            region,
            desired,
            allow_layout_changes: args.allow_layout_changes,
            deadline: args.deadline,
            requests_per_node: args.requests_per_node,
        })
    }
}

/// The bucket, key and region: what every command that talks to Garage needs.
#[derive(Debug, Clone)]
pub struct Access {
    pub bucket: String,
    pub key: KeyWant,
    pub region: String,
}

/// What `apply` provides, and `env` describes: the bucket and key, its
/// lifecycle, and where BuildKit's cache is in it.
#[derive(Debug, Clone)]
pub struct Resources {
    pub access: Access,
    /// The bucket's lifecycle rules; `None` when neither lifecycle setting is given.
    pub lifecycle: Option<LifecycleWant>,
    /// Where BuildKit's cache keeps its objects in the bucket.
    pub cache_layout: CacheLayout,
}

/// Validates the bucket, key and region settings.
pub fn access(args: &AccessArgs) -> Result<Access, ConfigError> {
    let bucket_setting = setting("bucket", "GARAGE_INIT_BUCKET");
    validate_bucket_name(&args.bucket).map_err(|p| ConfigError::new(&bucket_setting, p))?;

    let id_setting = setting("access-key-id", "GARAGE_INIT_ACCESS_KEY_ID");
    let id = args.access_key_id.as_deref().unwrap_or(DEFAULT_ACCESS_KEY_ID).trim().to_string();
    validate_access_key_id(&id).map_err(|p| ConfigError::new(&id_setting, p))?;

    let secret = one_of(
        args.secret_access_key.as_deref(),
        args.secret_access_key_file.as_deref(),
        &setting("secret-access-key", "GARAGE_INIT_SECRET_ACCESS_KEY"),
        &setting("secret-access-key-file", "GARAGE_INIT_SECRET_ACCESS_KEY_FILE"),
    )?
    .unwrap_or_else(|| Given { value: Secret::new(DEFAULT_SECRET_ACCESS_KEY), setting: String::new() });
    validate_secret_key(secret.value.expose()).map_err(|p| ConfigError::new(&secret.setting, p))?;

    let name = args.key_name.trim().to_string();
    if name.is_empty() {
        return Err(ConfigError::new(setting("key-name", "GARAGE_INIT_KEY_NAME"), "must not be empty"));
    }
    let region = args.s3_region.trim().to_string();
    if region.is_empty() || region.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(ConfigError::new(
            setting("s3-region", "GARAGE_INIT_S3_REGION"),
            "must be a non-empty word without spaces or slashes, as s3_region in garage.toml",
        ));
    }
    let key = KeyWant { id, secret: secret.value, name };
    Ok(Access { bucket: args.bucket.clone(), key, region })
}

/// Validates the bucket, key, region, lifecycle and cache layout settings.
pub fn resources(args: &ResourceArgs) -> Result<Resources, ConfigError> {
    let access = access(&args.access)?;
    let cache_layout = cache_layout(&args.cache_layout)?;
    let (expire, abort) = (args.lifecycle.expire_after_days, args.lifecycle.abort_incomplete_uploads_after_days);
    let expire_after_days = expire.and_then(|d| d.0);
    check_expire_after_days(expire_after_days)
        .map_err(|p| ConfigError::new(setting("expire-after-days", "GARAGE_INIT_EXPIRE_AFTER_DAYS"), p))?;
    let lifecycle = match (expire, abort) {
        (None, None) => None,
        (_, abort) => Some(LifecycleWant {
            expire_after_days,
            abort_incomplete_uploads_after_days: abort.and_then(|d| d.0),
            layout: cache_layout.clone(),
        }),
    };
    Ok(Resources { access, lifecycle, cache_layout })
}

/// Warns, once per run, when the built-in development key is used with an S3
/// API that other machines may reach: its secret is public (it is in this
/// source), so anyone who reaches that address can use the bucket.
pub fn warn_if_public_secret(key: &KeyWant, s3: &Url) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if key.secret.expose() == DEFAULT_SECRET_ACCESS_KEY && !private_address(s3) {
        WARNED.call_once(|| {
            tracing::warn!(
                "the secret access key is garage-init's built-in development secret, which is public, and {}                  may be reachable from other machines: set GARAGE_INIT_SECRET_ACCESS_KEY_FILE (or                  GARAGE_INIT_SECRET_ACCESS_KEY) and GARAGE_INIT_ACCESS_KEY_ID to a key of your own",
                s3.host_str().unwrap_or_default()
            )
        });
    }
}

/// An address only this machine, or the compose network, reaches: loopback,
/// `localhost`, or a name of one label (a compose service such as `garage`).
fn private_address(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            name.eq_ignore_ascii_case("localhost") || name.ends_with(".localhost") || !name.contains('.')
        }
        None => true,
    }
}

/// Validates BuildKit's three prefixes. The manifests' and the blobs' must
/// not overlap: a lifecycle rule for one would also expire the other, and
/// `cache gc` would take manifests for blobs.
pub fn cache_layout(args: &CacheLayoutArgs) -> Result<CacheLayout, ConfigError> {
    let check = |value: &str, flag: &str, var: &str, may_be_empty: bool| -> Result<String, ConfigError> {
        let problem = if value.is_empty() && !may_be_empty {
            Some("must not be empty: BuildKit's manifests and blobs need prefixes of their own".to_string())
        } else if value.len() > 256 {
            Some("may have at most 256 characters".to_string())
        } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some(format!("`{value}` has a space or a control character, which an S3 key prefix here may not"))
        } else {
            None
        };
        match problem {
            Some(p) => Err(ConfigError::new(setting(flag, var), p)),
            None => Ok(value.to_string()),
        }
    };
    let prefix = check(args.cache_prefix.as_deref().unwrap_or(""), "cache-prefix", "GARAGE_INIT_CACHE_PREFIX", true)?;
    let manifests_setting = ("cache-manifests-prefix", "GARAGE_INIT_CACHE_MANIFESTS_PREFIX");
    let manifests_prefix = check(&args.cache_manifests_prefix, manifests_setting.0, manifests_setting.1, false)?;
    let blobs_prefix = check(&args.cache_blobs_prefix, "cache-blobs-prefix", "GARAGE_INIT_CACHE_BLOBS_PREFIX", false)?;
    if manifests_prefix.starts_with(&blobs_prefix) || blobs_prefix.starts_with(&manifests_prefix) {
        return Err(ConfigError::new(
            setting(manifests_setting.0, manifests_setting.1),
            format!(
                "`{manifests_prefix}` and the blobs' `{blobs_prefix}` overlap: each must not start with the other, \
                 or rules and `cache` commands meant for one would act on the other"
            ),
        ));
    }
    Ok(CacheLayout { prefix, manifests_prefix, blobs_prefix })
}

/// Reads the admin token from its flag, variable or file.
pub fn admin_token(args: &AdminTokenArgs) -> Result<Secret, ConfigError> {
    let inline = setting("admin-token", "GARAGE_INIT_ADMIN_TOKEN");
    let file = setting("admin-token-file", "GARAGE_INIT_ADMIN_TOKEN_FILE");
    let token = one_of(args.admin_token.as_deref(), args.admin_token_file.as_deref(), &inline, &file)?
        .ok_or_else(|| ConfigError::missing(&inline, format!("set it, or {file}, to Garage's admin_token")))?;
    validate_admin_token(token.value.expose()).map_err(|p| ConfigError::new(token.setting, p))?;
    Ok(token.value)
}

/// A secret, and the setting it came from (for messages).
struct Given {
    value: Secret,
    setting: String,
}

/// A secret given inline or in a file, not both.
fn one_of(
    inline: Option<&str>,
    file: Option<&Path>,
    inline_setting: &str,
    file_setting: &str,
) -> Result<Option<Given>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            Err(ConfigError::new(inline_setting, format!("give either {inline_setting} or {file_setting}, not both")))
        }
        (Some(v), None) => Ok(Some(Given { value: Secret::new(v.trim()), setting: inline_setting.to_string() })),
        (None, Some(path)) => {
            Ok(Some(Given { value: read_secret_file(path, file_setting)?, setting: file_setting.to_string() }))
        }
        (None, None) => Ok(None),
    }
}

fn role_template(args: &LayoutArgs) -> Result<RoleTemplate, ConfigError> {
    let zone = args.zone.trim().to_string();
    validate_label(&zone).map_err(|p| ConfigError::new(setting("zone", "GARAGE_INIT_ZONE"), p))?;
    let mut tags = Vec::new();
    for tag in &args.tags {
        let tag = tag.trim();
        if tag.is_empty() {
            continue;
        }
        validate_label(tag).map_err(|p| ConfigError::new(setting("tag", "GARAGE_INIT_TAGS"), p))?;
        tags.push(tag.to_string());
    }
    Ok(RoleTemplate { zone, capacity: args.capacity, tags })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_file_together_is_an_error() {
        let args = AdminTokenArgs { admin_token: Some("t".into()), admin_token_file: Some("/tmp/x".into()) };
        assert!(admin_token(&args).unwrap_err().problem.contains("not both"));
        let none = AdminTokenArgs { admin_token: None, admin_token_file: None };
        let missing = admin_token(&none).unwrap_err();
        assert!(missing.missing && missing.to_string().starts_with("missing --admin-token"), "{missing}");
    }

    #[test]
    fn cache_prefixes_must_not_overlap_or_be_empty() {
        let layout = |prefix: Option<&str>, manifests: &str, blobs: &str| {
            cache_layout(&CacheLayoutArgs {
                cache_prefix: prefix.map(Into::into),
                cache_manifests_prefix: manifests.into(),
                cache_blobs_prefix: blobs.into(),
            })
        };
        let ok = layout(Some("ci/"), "manifests/", "blobs/").unwrap();
        assert_eq!((ok.manifests(), ok.blobs()), ("ci/manifests/".to_string(), "ci/blobs/".to_string()));
        let err = layout(None, "cache/", "cache/blobs/").unwrap_err().to_string();
        assert!(err.contains("--cache-manifests-prefix") && err.contains("overlap"), "{err}");
        assert!(layout(None, "", "blobs/").unwrap_err().to_string().contains("must not be empty"));
        assert!(layout(None, "manifests/", "b lobs/").unwrap_err().to_string().contains("--cache-blobs-prefix"));
        assert!(layout(Some(""), "manifests/", "blobs/").is_ok());
    }

    #[test]
    fn the_public_secret_is_fine_only_where_other_machines_cannot_reach() {
        let private = |u: &str| private_address(&Url::parse(u).unwrap());
        for local in ["http://localhost:3900", "http://127.0.0.1:3900", "http://[::1]:3900", "http://garage:3900"] {
            assert!(private(local), "{local}");
        }
        for shared in ["http://10.0.0.5:3900", "http://s3.example.com", "http://garage.lan:3900", "http://[fd00::1]"] {
            assert!(!private(shared), "{shared}");
        }
    }
}
