//! Validated settings. Everything here is checked before any network call;
//! a bad value becomes a [`ConfigError`] that names the flag and the variable.

use std::path::Path;
use std::time::Duration;

use url::Url;

use crate::cli::{AdminTokenArgs, ApplyArgs, LayoutArgs, ResourceArgs};
use crate::desired::Desired;
use crate::secret::Secret;

/// Access key id used when none is given: fixed so that a re-created stack
/// keeps working credentials. For local development and CI only.
pub const DEFAULT_ACCESS_KEY_ID: &str = "GK6275696c646b69742d6b6579";
/// Secret of [`DEFAULT_ACCESS_KEY_ID`]. For local development and CI only.
pub const DEFAULT_SECRET_ACCESS_KEY: &str = "8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3";

/// Secret files larger than this are refused: a token is a line, not a file dump.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("{} {setting}: {problem}", if *.missing { "missing" } else { "invalid" })]
pub struct ConfigError {
    /// The flag and variable, e.g. `--bucket (GARAGE_INIT_BUCKET)`.
    pub setting: String,
    pub problem: String,
    /// Not given at all, rather than given wrong.
    pub missing: bool,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { setting: setting.into(), problem: problem.into(), missing: false }
    }

    pub fn missing(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { missing: true, ..Self::new(setting, problem) }
    }
}

/// Names a setting the way a user can set it.
fn setting(flag: &str, var: &str) -> String {
    format!("--{flag} ({var})")
}

/// The access key garage-init imports and checks.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub id: String,
    pub secret: Secret,
    pub name: String,
}

/// Role given to a node that has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleTemplate {
    pub zone: String,
    /// `None`: take the node's data partition size.
    pub capacity: Option<u64>,
    pub tags: Vec<String>,
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
}

impl ApplyConfig {
    pub fn from_args(args: &ApplyArgs) -> Result<Self, ConfigError> {
        let admin_url = parse_http_url(&args.admin_url, &setting("admin-url", "GARAGE_INIT_ADMIN_URL"))?;
        let s3_url = parse_http_url(&args.s3_url, &setting("s3-url", "GARAGE_INIT_S3_URL"))?;
        let admin_token = admin_token(&args.token)?;
        let (bucket, key, region) = resources(&args.resources)?;
        let role = role_template(&args.layout)?;
        let desired = match &args.spec {
            // A spec that declares only the cluster keeps the flags' bucket and key.
            Some(path) => match crate::spec::load(path, &role)? {
                d if d.buckets.is_empty() && d.keys.is_empty() && d.grants.is_empty() => {
                    Desired { cluster: d.cluster, ..Desired::single(role, bucket, key) }
                }
                d => d,
            },
            None => Desired::single(role, bucket, key),
        };
        Ok(Self {
            admin_url,
            s3_url,
            admin_token,
            region,
            desired,
            allow_layout_changes: args.allow_layout_changes,
            deadline: args.deadline,
        })
    }
}

/// Validates the bucket, key and region settings shared by every command.
pub fn resources(args: &ResourceArgs) -> Result<(String, KeyConfig, String), ConfigError> {
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
    .unwrap_or_else(|| (Secret::new(DEFAULT_SECRET_ACCESS_KEY), String::new()));
    validate_secret_key(secret.0.expose()).map_err(|p| ConfigError::new(&secret.1, p))?;

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
    Ok((args.bucket.clone(), KeyConfig { id, secret: secret.0, name }, region))
}

/// Reads the admin token from its flag, variable or file.
pub fn admin_token(args: &AdminTokenArgs) -> Result<Secret, ConfigError> {
    let inline = setting("admin-token", "GARAGE_INIT_ADMIN_TOKEN");
    let file = setting("admin-token-file", "GARAGE_INIT_ADMIN_TOKEN_FILE");
    let (token, source) = one_of(args.admin_token.as_deref(), args.admin_token_file.as_deref(), &inline, &file)?
        .ok_or_else(|| ConfigError::missing(&inline, format!("set it, or {file}, to Garage's admin_token")))?;
    validate_admin_token(token.expose()).map_err(|p| ConfigError::new(source, p))?;
    Ok(token)
}

/// A secret given inline or in a file, not both. Returns the value and the setting it came from.
fn one_of(
    inline: Option<&str>,
    file: Option<&Path>,
    inline_setting: &str,
    file_setting: &str,
) -> Result<Option<(Secret, String)>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            Err(ConfigError::new(inline_setting, format!("give either {inline_setting} or {file_setting}, not both")))
        }
        (Some(v), None) => Ok(Some((Secret::new(v.trim()), inline_setting.to_string()))),
        (None, Some(path)) => Ok(Some((read_secret_file(path, file_setting)?, file_setting.to_string()))),
        (None, None) => Ok(None),
    }
}

/// Reads a secret file, trimmed. Missing, unreadable, oversized or empty files are errors.
pub fn read_secret_file(path: &Path, setting: &str) -> Result<Secret, ConfigError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| ConfigError::new(setting, format!("cannot read {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(ConfigError::new(setting, format!("{shown} is not a regular file")));
    }
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(ConfigError::new(
            setting,
            format!(
                "{shown} is {} bytes; a secret file holds one line (at most {MAX_SECRET_FILE_BYTES} bytes)",
                meta.len()
            ),
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new(setting, format!("cannot read {shown}: {e}")))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(ConfigError::new(setting, format!("{shown} is empty")));
    }
    Ok(Secret::new(value))
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

/// Zones and tags: short printable words.
pub fn validate_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 64 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{s}` must be at most 64 characters with no spaces"));
    }
    Ok(())
}

/// An `http://host[:port]` URL. garage-init is built without TLS so that it
/// runs from a scratch image with no CA bundle; Garage in compose speaks HTTP.
pub fn parse_http_url(text: &str, setting: &str) -> Result<Url, ConfigError> {
    let text = text.trim();
    let with_scheme = if text.contains("://") { text.to_string() } else { format!("http://{text}") };
    let url = Url::parse(&with_scheme).map_err(|e| ConfigError::new(setting, format!("`{text}` is not a URL: {e}")))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(ConfigError::new(
                setting,
                format!(
                    "`{text}` uses https, which this build does not speak: use http:// (Garage's ports are plain HTTP)"
                ),
            ));
        }
        other => {
            return Err(ConfigError::new(setting, format!("`{text}` has scheme {other}; use http://")));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(setting, format!("`{text}` has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(setting, "credentials in the URL are not supported; use the token settings"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(setting, format!("`{text}` must not have a query or fragment")));
    }
    Ok(url)
}

/// Garage's key id format: `GK` and 24 hex digits.
pub fn validate_access_key_id(id: &str) -> Result<(), String> {
    let Some(hex) = id.strip_prefix("GK") else {
        return Err(format!("`{id}` must start with GK (Garage key ids are GK and 24 hex digits)"));
    };
    if hex.len() != 24 {
        return Err(format!("`{id}` has {} characters; a Garage key id is GK and 24 hex digits (26 in all)", id.len()));
    }
    if let Some(c) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("`{id}` contains `{c}`; after GK only hex digits 0-9, a-f are allowed"));
    }
    Ok(())
}

/// Garage's secret format: 64 hex digits. The value itself is never echoed.
pub fn validate_secret_key(secret: &str) -> Result<(), String> {
    if secret.len() != 64 {
        return Err(format!(
            "the secret has {} characters; Garage needs exactly 64 hex digits",
            secret.chars().count()
        ));
    }
    if !secret.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("the secret must be 64 hex digits (0-9, a-f); it contains other characters".into());
    }
    Ok(())
}

/// The token goes into `Authorization: Bearer <token>` exactly. Garage 2.1
/// aborts on some malformed bearer headers, so anything but visible ASCII is
/// refused here, before it can reach the server.
pub fn validate_admin_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the admin token is empty".into());
    }
    if token.chars().any(|c| c.is_whitespace()) {
        return Err("the admin token contains whitespace inside it; Garage tokens are one word".into());
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("the admin token must be printable ASCII".into());
    }
    Ok(())
}

/// Garage's bucket name rules (S3's, plus `-s3alias` and punycode).
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    let n = name.len();
    if !(3..=63).contains(&n) {
        return Err(format!("`{name}` has {n} characters; bucket names have 3 to 63"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-')) {
        return Err(format!("`{name}` contains `{c}`; only lowercase letters, digits, `.` and `-` are allowed"));
    }
    if name.starts_with(['.', '-']) || name.ends_with(['.', '-']) {
        return Err(format!("`{name}` must start and end with a letter or digit"));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("`{name}` looks like an IP address, which S3 forbids as a bucket name"));
    }
    if name.ends_with("-s3alias") {
        return Err(format!("`{name}` ends with -s3alias, which Garage reserves"));
    }
    if name.starts_with("xn--") || name.contains(".xn--") {
        return Err(format!("`{name}` is punycode (xn--), which Garage refuses by default"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids() {
        assert!(validate_access_key_id(DEFAULT_ACCESS_KEY_ID).is_ok());
        assert!(validate_access_key_id("GK0123456789ABCDEF01234567").is_ok());
        assert!(validate_access_key_id("XK0123456789abcdef01234567").unwrap_err().contains("start with GK"));
        assert!(validate_access_key_id("GK0123").unwrap_err().contains("26 in all"));
        assert!(validate_access_key_id("GK0123456789abcdef0123456z").unwrap_err().contains("`z`"));
    }

    #[test]
    fn secrets_are_checked_without_being_echoed() {
        assert!(validate_secret_key(DEFAULT_SECRET_ACCESS_KEY).is_ok());
        let bad = "zz".repeat(32);
        let err = validate_secret_key(&bad).unwrap_err();
        assert!(!err.contains(&bad));
        let short = validate_secret_key("abc123").unwrap_err();
        assert!(short.contains("6 characters") && !short.contains("abc123"));
    }

    #[test]
    fn bucket_names() {
        for ok in ["buildkit-cache", "a.b-c", "abc", "0ab"] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ab", "3 to 63"),
            ("Buildkit", "`B`"),
            ("-abc", "start and end"),
            ("abc.", "start and end"),
            ("192.168.1.1", "IP address"),
            ("cache-s3alias", "-s3alias"),
            ("xn--abc", "punycode"),
            ("a_b_c", "`_`"),
        ] {
            let err = validate_bucket_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(validate_bucket_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn admin_tokens() {
        assert!(validate_admin_token("s3cr3t-token_with.dots").is_ok());
        assert!(validate_admin_token("two words").is_err());
        assert!(validate_admin_token("tab\there").is_err());
        assert!(validate_admin_token("caf\u{e9}").is_err());
        assert!(validate_admin_token("").is_err());
    }

    #[test]
    fn urls() {
        let s = "--admin-url (X)";
        assert_eq!(parse_http_url("http://garage:3903", s).unwrap().as_str(), "http://garage:3903/");
        assert_eq!(parse_http_url("localhost:3903", s).unwrap().as_str(), "http://localhost:3903/");
        assert!(parse_http_url("https://garage:3903", s).unwrap_err().problem.contains("https"));
        assert!(parse_http_url("ftp://garage", s).is_err());
        assert!(parse_http_url("http://u:p@garage:3903", s).is_err());
        assert!(parse_http_url("http://garage:3903/?x=1", s).is_err());
        assert!(parse_http_url("http://", s).is_err());
    }

    #[test]
    fn secret_files_are_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("token");
        std::fs::write(&good, "  tok3n\n").unwrap();
        assert_eq!(read_secret_file(&good, "--x").unwrap().expose(), "tok3n");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n \n").unwrap();
        assert!(read_secret_file(&empty, "--x").unwrap_err().problem.contains("is empty"));

        let missing = dir.path().join("missing");
        assert!(read_secret_file(&missing, "--x").unwrap_err().problem.contains("cannot read"));

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 70_000]).unwrap();
        assert!(read_secret_file(&big, "--x").unwrap_err().problem.contains("one line"));
    }

    #[test]
    fn inline_and_file_together_is_an_error() {
        let args = AdminTokenArgs { admin_token: Some("t".into()), admin_token_file: Some("/tmp/x".into()) };
        assert!(admin_token(&args).unwrap_err().problem.contains("not both"));
        let none = AdminTokenArgs { admin_token: None, admin_token_file: None };
        let missing = admin_token(&none).unwrap_err();
        assert!(missing.missing && missing.to_string().starts_with("missing --admin-token"), "{missing}");
    }
}
