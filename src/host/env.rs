//! `garage-init env`: the connection settings a consumer needs, from the
//! same settings and defaults as `apply`. The one command that prints the
//! secret, because the user asked for it.

use std::io::Write;
use std::path::PathBuf;

use serde_json::json;

use crate::cli::{BuildkitClient, EnvArgs, EnvFormat, SeenFrom};
use crate::desired::{CacheLayout, LifecycleWant, TOUCH_REFRESH_HOURS};
use crate::error::Error;
use crate::exit::Code;
use crate::host::{HostEndpoints, HostOutcome, Rendered};
use crate::validate::ConfigError;

/// Everything `env` prints.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `localhost:5050`: the prefix of image references.
    pub registry: String,
    /// `http://localhost:3900`.
    pub s3_endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    /// Printed on purpose: `env` exists to hand it over.
    pub secret_access_key: String,
    pub cache_name: String,
    /// The bucket's lifecycle as declared; `None`: not managed.
    pub lifecycle: Option<LifecycleWant>,
    /// BuildKit's `prefix`, `manifests_prefix` and `blobs_prefix`: the ones the lifecycle rules use.
    pub cache_layout: CacheLayout,
    /// Whose cache flags the `buildkit` format prints.
    pub client: BuildkitClient,
}

/// The stack's addresses inside its compose network: the services' names and container ports.
pub const COMPOSE_S3_ENDPOINT: &str = "http://garage:3900";
pub const COMPOSE_REGISTRY: &str = "registry:5000";

impl Connection {
    pub fn from_args(args: &EnvArgs) -> Result<Self, ConfigError> {
        let endpoints = HostEndpoints::from_args(&args.endpoints)?;
        let crate::config::Resources { access: crate::config::Access { bucket, key, region }, lifecycle, cache_layout } =
            crate::config::resources(&args.resources)?;
        let cache_name = args.cache_name.trim().to_string();
        if cache_name.is_empty() || cache_name.chars().any(|c| c.is_whitespace() || c == ',' || c == '"') {
            return Err(ConfigError::new(
                "--cache-name (GARAGE_INIT_CACHE_NAME)",
                "must be a non-empty word without spaces, commas or quotes",
            ));
        }
        if args.seen_from == SeenFrom::Host {
            crate::config::warn_if_public_secret(&key, &endpoints.s3.url);
        }
        let (registry, s3_endpoint) = match args.seen_from {
            SeenFrom::Host => (endpoints.registry.shown, endpoints.s3.url_text()),
            SeenFrom::ComposeNetwork => (COMPOSE_REGISTRY.to_string(), COMPOSE_S3_ENDPOINT.to_string()),
        };
        Ok(Self {
            registry,
            s3_endpoint,
            region,
            bucket,
            access_key_id: key.id,
            secret_access_key: key.secret.expose().to_string(),
            cache_name,
            lifecycle,
            cache_layout,
            client: args.buildkit_client,
        })
    }

    /// BuildKit's `touch_refresh`: how often an export re-writes the blobs
    /// it uses onto themselves, so that only unused blobs age out under an
    /// expiry rule. The manifests' rule expires them this much (and a day)
    /// before blobs: [`crate::desired::MANIFEST_MARGIN_DAYS`] is derived from
    /// the same value. `None` when expiry is declared off.
    pub fn touch_refresh(&self) -> Option<String> {
        match self.lifecycle.as_ref().map(|l| l.expire_after_days) {
            Some(None) => None,
            // Undeclared here: the stack may still expire objects (its default is 30 days).
            _ => Some(format!("{TOUCH_REFRESH_HOURS}h")),
        }
    }

    /// The variables of the `shell` and `dotenv` formats, in order.
    pub fn variables(&self) -> [(&'static str, &str); 7] {
        [
            ("REGISTRY_ADDR", &self.registry),
            ("AWS_ENDPOINT_URL", &self.s3_endpoint),
            ("AWS_REGION", &self.region),
            ("AWS_DEFAULT_REGION", &self.region),
            ("AWS_ACCESS_KEY_ID", &self.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &self.secret_access_key),
            ("GARAGE_BUCKET", &self.bucket),
        ]
    }

    /// BuildKit's `--import-cache` value (`type=s3,...`); with `export`, the
    /// `--export-cache` value, which adds `mode=max` (cache every layer).
    pub fn buildkit_cache(&self, export: bool) -> String {
        let mut attrs = vec![
            "type=s3".to_string(),
            format!("endpoint_url={}", self.s3_endpoint),
            format!("bucket={}", self.bucket),
            format!("region={}", self.region),
            format!("access_key_id={}", self.access_key_id),
            format!("secret_access_key={}", self.secret_access_key),
            "use_path_style=true".to_string(),
            format!("name={}", self.cache_name),
        ];
        let layout = &self.cache_layout;
        if !layout.prefix.is_empty() {
            attrs.push(format!("prefix={}", layout.prefix));
        }
        attrs.push(format!("manifests_prefix={}", layout.manifests_prefix));
        attrs.push(format!("blobs_prefix={}", layout.blobs_prefix));
        if export {
            attrs.push("mode=max".to_string());
            attrs.extend(self.touch_refresh().map(|t| format!("touch_refresh={t}")));
        }
        attrs.iter().map(|a| csv_field(a)).collect::<Vec<_>>().join(",")
    }

    /// What `format` prints; for `github`, what goes to the `GITHUB_ENV` file
    /// (the mask goes to stdout: [`Connection::github_mask`]).
    pub fn render(&self, format: EnvFormat) -> String {
        match format {
            EnvFormat::Shell => {
                self.variables().iter().map(|(k, v)| format!("export {k}={}\n", shell_quote(v))).collect()
            }
            EnvFormat::Dotenv => self.variables().iter().map(|(k, v)| format!("{k}={}\n", dotenv_value(v))).collect(),
            EnvFormat::Github => self.variables().iter().map(|(k, v)| github_env_line(k, v)).collect(),
            EnvFormat::Buildkit => {
                let (export, import) = match self.client {
                    BuildkitClient::Buildctl => ("--export-cache", "--import-cache"),
                    BuildkitClient::Buildx => ("--cache-to", "--cache-from"),
                };
                format!("{export} {}\n{import} {}\n", self.buildkit_cache(true), self.buildkit_cache(false))
            }
            EnvFormat::Json => {
                let value = json!({
                    "registry": self.registry,
                    "s3_endpoint": self.s3_endpoint,
                    "region": self.region,
                    "bucket": self.bucket,
                    "access_key_id": self.access_key_id,
                    "secret_access_key": self.secret_access_key,
                    "buildkit": {
                        "cache_name": self.cache_name,
                        "export_cache": self.buildkit_cache(true),
                        "import_cache": self.buildkit_cache(false),
                        "touch_refresh": self.touch_refresh(),
                        "prefix": self.cache_layout.prefix,
                        "manifests_prefix": self.cache_layout.manifests_prefix,
                        "blobs_prefix": self.cache_layout.blobs_prefix,
                    },
                    "lifecycle": self.lifecycle.as_ref().map(|l| json!({
                        "expire_after_days": l.expire_after_days,
                        "manifests_expire_after_days": l.manifests_expire_after_days(),
                        "abort_incomplete_uploads_after_days": l.abort_incomplete_uploads_after_days,
                    })),
                });
                crate::output::json_document(value) + "\n"
            }
        }
    }
}

impl Connection {
    /// The workflow command that makes GitHub Actions mask the secret in every later log line.
    pub fn github_mask(&self) -> String {
        let escaped = self.secret_access_key.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
        format!("::add-mask::{escaped}\n")
    }
}

/// Runs `env`: the settings, for [`crate::host::finish`] to print, or the
/// error for the caller to print.
pub fn run(args: &EnvArgs) -> Result<HostOutcome, Error> {
    let connection = Connection::from_args(args)?;
    let output = match args.format {
        EnvFormat::Github => to_github_env(&connection, std::env::var_os("GITHUB_ENV").map(PathBuf::from))?,
        format => connection.render(format),
    };
    Ok(HostOutcome::done(Code::Ok, Rendered::Text(output)))
}

/// `--format github`: the mask on stdout, where the runner reads workflow
/// commands, and the variables appended to the file `GITHUB_ENV` names, which
/// the runner loads into the job's later steps. A mask line in that file
/// would be a format error, and the variables on stdout would do nothing.
/// Returns the mask, for stdout.
fn to_github_env(connection: &Connection, path: Option<PathBuf>) -> Result<String, ConfigError> {
    let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
        return Err(ConfigError::missing(
            "GITHUB_ENV",
            "`--format github` appends the variables to the file GitHub Actions names in GITHUB_ENV, \
             and it is not set: run it in a workflow step, or use `--format dotenv` for the same KEY=value lines",
        ));
    };
    let cannot =
        |e: std::io::Error| ConfigError::new("GITHUB_ENV", format!("cannot append to {}: {e}", path.display()));
    // The runner creates the file: a missing one means GITHUB_ENV is not the runner's.
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).map_err(cannot)?;
    file.write_all(connection.render(EnvFormat::Github).as_bytes()).map_err(cannot)?;
    let names: Vec<&str> = connection.variables().iter().map(|(k, _)| *k).collect();
    crate::errln!("garage-init: {} set for the job's next steps (GITHUB_ENV); the secret is masked", names.join(", "));
    Ok(connection.github_mask())
}

/// A POSIX shell word that stands for exactly `value`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A dotenv value as Compose and python-dotenv read it: bare when plain,
/// else single-quoted (literal), else double-quoted with escapes.
fn dotenv_value(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:@+,=".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        value.to_string()
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        let escaped = value.replace('\\', r"\\").replace('"', "\\\"").replace('$', r"\$");
        format!("\"{escaped}\"")
    }
}

/// A line of GitHub's environment file: `KEY=value`, or for a value with a
/// line break, `KEY<<DELIMITER`, the value, and the delimiter alone on a line.
fn github_env_line(key: &str, value: &str) -> String {
    if !value.contains(['\n', '\r']) {
        return format!("{key}={value}\n");
    }
    let delimiter = std::iter::repeat_with(|| format!("ghadelimiter_{:016x}", fastrand::u64(..)))
        .find(|d| !value.contains(d.as_str()))
        .expect("an endless iterator");
    format!("{key}<<{delimiter}\n{value}\n{delimiter}\n")
}

/// BuildKit reads the cache options as one CSV record: a field with a comma or a quote is quoted.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"']) { format!("\"{}\"", field.replace('"', "\"\"")) } else { field.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `env` with every default, as the command line gives them.
    fn args() -> EnvArgs {
        use clap::Parser;
        match crate::cli::Cli::parse_from(["garage-init", "env"]).command {
            Some(crate::cli::Command::Env(args)) => args,
            other => unreachable!("`env` parses as {other:?}"),
        }
    }

    /// One record of Go's encoding/csv, as BuildKit splits a cache option's
    /// value (`type=s3,endpoint_url=…`): fields, quoted ones unquoted.
    fn csv_record(record: &str) -> Vec<String> {
        let (mut fields, mut field, mut quoted, mut chars) =
            (Vec::new(), String::new(), false, record.chars().peekable());
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(std::mem::take(&mut field)),
                (c, _) => field.push(c),
            }
        }
        assert!(!quoted, "unterminated quote in {record}");
        fields.push(field);
        fields
    }

    /// The option keys BuildKit's S3 cache reads (cache/remotecache/s3/s3.go), and the generic
    /// `type`, `mode` and `ignore-error`.
    const BUILDKIT_S3_KEYS: &[&str] = &[
        "type",
        "mode",
        "ignore-error",
        "bucket",
        "region",
        "prefix",
        "manifests_prefix",
        "blobs_prefix",
        "name",
        "touch_refresh",
        "endpoint_url",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "use_path_style",
    ];

    /// The printed `buildkit` format as BuildKit would read it: per flag, its key=value pairs.
    fn as_buildkit_reads(printed: &str) -> Vec<(String, Vec<(String, String)>)> {
        printed
            .lines()
            .map(|line| {
                let (flag, value) = line.split_once(' ').expect("`--flag value`");
                let pairs = csv_record(value)
                    .into_iter()
                    .map(|f| {
                        let (k, v) = f.split_once('=').unwrap_or_else(|| panic!("field {f:?} is not key=value"));
                        assert!(BUILDKIT_S3_KEYS.contains(&k), "{k} is not an option of BuildKit's S3 cache");
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                (flag.to_string(), pairs)
            })
            .collect()
    }

    #[test]
    fn buildkit_options_parse_as_buildkit_reads_them_from_each_point_of_view_and_client() {
        for (seen_from, client, endpoint, flags) in [
            (SeenFrom::Host, BuildkitClient::Buildctl, "http://localhost:3900", ["--export-cache", "--import-cache"]),
            (SeenFrom::ComposeNetwork, BuildkitClient::Buildx, "http://garage:3900", ["--cache-to", "--cache-from"]),
        ] {
            let mut a = args();
            (a.seen_from, a.buildkit_client) = (seen_from, client);
            a.resources.lifecycle.expire_after_days = Some(crate::validate::Days(Some(30)));
            let c = Connection::from_args(&a).unwrap();
            let reads = as_buildkit_reads(&c.render(EnvFormat::Buildkit));
            assert_eq!(reads.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), flags);
            for (flag, pairs) in &reads {
                let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
                assert_eq!(get("type"), Some("s3"), "{flag}");
                assert_eq!(get("endpoint_url"), Some(endpoint), "{flag}");
                assert_eq!(get("use_path_style"), Some("true"), "{flag}: Garage serves path-style only here");
                assert_eq!(get("secret_access_key"), Some(crate::config::DEFAULT_SECRET_ACCESS_KEY), "{flag}");
                if flag == flags[0] {
                    assert_eq!(get("mode"), Some("max"));
                    // A Go duration BuildKit parses (one that does not parse silently becomes 24h).
                    assert_eq!(get("touch_refresh"), Some("24h"));
                }
            }
        }
        let mut a = args();
        a.seen_from = SeenFrom::ComposeNetwork;
        assert_eq!(Connection::from_args(&a).unwrap().registry, "registry:5000");
    }

    #[test]
    fn a_field_with_a_comma_reaches_buildkit_whole() {
        let mut a = args();
        a.resources.cache_layout.cache_prefix = Some("team,a/".into());
        let c = Connection::from_args(&a).unwrap();
        let reads = as_buildkit_reads(&c.render(EnvFormat::Buildkit));
        assert!(reads[1].1.contains(&("prefix".to_string(), "team,a/".to_string())), "{reads:?}");
    }

    #[test]
    fn defaults_are_the_ones_apply_uses() {
        let c = Connection::from_args(&args()).unwrap();
        assert_eq!(c.access_key_id, crate::config::DEFAULT_ACCESS_KEY_ID);
        assert_eq!(c.secret_access_key, crate::config::DEFAULT_SECRET_ACCESS_KEY);
        assert_eq!((c.registry.as_str(), c.s3_endpoint.as_str()), ("localhost:5050", "http://localhost:3900"));
        let shell = c.render(EnvFormat::Shell);
        assert!(shell.starts_with("export REGISTRY_ADDR='localhost:5050'\nexport AWS_ENDPOINT_URL="), "{shell}");
    }

    #[test]
    fn buildkit_options_differ_only_by_mode_max_and_touch_refresh() {
        let c = Connection::from_args(&args()).unwrap();
        let export = c.buildkit_cache(true);
        assert_eq!(export, format!("{},mode=max,touch_refresh=24h", c.buildkit_cache(false)));
        assert!(export.starts_with("type=s3,endpoint_url=http://localhost:3900,bucket=buildkit-cache,region=garage,"));
        assert!(export.contains(",name=buildkit,manifests_prefix=manifests/,blobs_prefix=blobs/,"), "{export}");
    }

    #[test]
    fn the_cache_layout_is_the_one_the_rules_use() {
        let mut a = args();
        a.resources.cache_layout.cache_prefix = Some("ci/".into());
        a.resources.lifecycle.expire_after_days = Some(crate::validate::Days(Some(30)));
        let c = Connection::from_args(&a).unwrap();
        let import = c.buildkit_cache(false);
        assert!(
            import.ends_with(",name=buildkit,prefix=ci/,manifests_prefix=manifests/,blobs_prefix=blobs/"),
            "{import}"
        );
        let json: serde_json::Value = serde_json::from_str(&c.render(EnvFormat::Json)).unwrap();
        assert_eq!(json["buildkit"]["prefix"], "ci/");
        assert_eq!(json["lifecycle"]["manifests_expire_after_days"], 28);
        let rules = crate::converge::lifecycle::wanted_rules(c.lifecycle.as_ref().unwrap());
        let prefixes: Vec<_> = rules.iter().filter_map(|r| r.prefix.as_deref()).collect();
        assert_eq!(prefixes, ["ci/manifests/", "ci/blobs/"]);
    }

    #[test]
    fn blobs_in_use_are_touched_more_often_than_manifests_expire_before_them() {
        use crate::validate::Days;
        let with = |expire: Option<u32>| {
            let mut a = args();
            a.resources.lifecycle.expire_after_days = Some(Days(expire));
            Connection::from_args(&a)
        };
        assert_eq!(with(Some(30)).unwrap().touch_refresh().as_deref(), Some("24h"));
        assert_eq!(with(Some(3)).unwrap().touch_refresh().as_deref(), Some("24h"));
        for too_short in [1, 2] {
            let err = with(Some(too_short)).unwrap_err().to_string();
            assert!(err.contains("--expire-after-days") && err.contains("smallest value that works is 3"), "{err}");
        }
        assert_eq!(with(None).unwrap().touch_refresh(), None);
        assert!(!with(None).unwrap().buildkit_cache(true).contains("touch_refresh"));
        let json: serde_json::Value = serde_json::from_str(&with(Some(30)).unwrap().render(EnvFormat::Json)).unwrap();
        assert_eq!(json["buildkit"]["touch_refresh"], "24h");
        assert_eq!(json["lifecycle"]["expire_after_days"], 30);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(dotenv_value("http://localhost:3900"), "http://localhost:3900");
        assert_eq!(dotenv_value("a b"), "'a b'");
        assert_eq!(dotenv_value("it's $x"), r#""it's \$x""#);
        assert_eq!(csv_field("region=a,b"), r#""region=a,b""#);
        assert_eq!(csv_field("bucket=b"), "bucket=b");
    }

    #[test]
    fn github_values_with_line_breaks_use_a_delimiter_absent_from_the_value() {
        assert_eq!(github_env_line("AWS_REGION", "garage"), "AWS_REGION=garage\n");
        let line = github_env_line("K", "a\nb");
        let (head, rest) = line.split_once('\n').unwrap();
        let delimiter = head.strip_prefix("K<<ghadelimiter_").map(|d| format!("ghadelimiter_{d}")).unwrap();
        assert_eq!(rest, format!("a\nb\n{delimiter}\n"));
    }

    #[test]
    fn github_mask_escapes_as_a_workflow_command() {
        let c = Connection { secret_access_key: "a%b\nc".into(), ..Connection::from_args(&args()).unwrap() };
        assert_eq!(c.github_mask(), "::add-mask::a%25b%0Ac\n");
    }

    #[test]
    fn cache_names_with_spaces_or_commas_are_refused() {
        for bad in ["", "a b", "a,b"] {
            let err = Connection::from_args(&EnvArgs { cache_name: bad.into(), ..args() }).unwrap_err();
            assert!(err.to_string().contains("--cache-name (GARAGE_INIT_CACHE_NAME)"), "{err}");
        }
    }
}
