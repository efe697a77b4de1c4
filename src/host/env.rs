//! `garage-init env`: the connection settings a consumer needs, from the
//! same settings and defaults as `apply`. The one command that prints the
//! secret, because the user asked for it.

use serde_json::json;

use crate::cli::{EnvArgs, EnvFormat};
use crate::desired::LifecycleWant;
use crate::error::Error;
use crate::exit::Code;
use crate::host::HostEndpoints;
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
}

impl Connection {
    pub fn from_args(args: &EnvArgs) -> Result<Self, ConfigError> {
        let endpoints = HostEndpoints::from_args(&args.endpoints)?;
        let crate::config::Resources { bucket, key, region, lifecycle } = crate::config::resources(&args.resources)?;
        let cache_name = args.cache_name.trim().to_string();
        if cache_name.is_empty() || cache_name.chars().any(|c| c.is_whitespace() || c == ',' || c == '"') {
            return Err(ConfigError::new(
                "--cache-name (GARAGE_INIT_CACHE_NAME)",
                "must be a non-empty word without spaces, commas or quotes",
            ));
        }
        Ok(Self {
            registry: endpoints.registry.shown,
            s3_endpoint: endpoints.s3.url_text(),
            region,
            bucket,
            access_key_id: key.id,
            secret_access_key: key.secret.expose().to_string(),
            cache_name,
            lifecycle,
        })
    }

    /// BuildKit's `touch_refresh`: how often an export re-writes the blobs
    /// it uses onto themselves, so that only unused blobs age out under an
    /// expiry rule. Shorter than the expiry: a day, or half the expiry when
    /// objects expire after a single day. `None` when expiry is declared off.
    pub fn touch_refresh(&self) -> Option<&'static str> {
        match self.lifecycle.map(|l| l.expire_after_days) {
            Some(None) => None,
            Some(Some(1)) => Some("12h"),
            // Undeclared here: the stack may still expire objects (its default is 30 days).
            _ => Some("24h"),
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
        if export {
            attrs.push("mode=max".to_string());
            attrs.extend(self.touch_refresh().map(|t| format!("touch_refresh={t}")));
        }
        attrs.iter().map(|a| csv_field(a)).collect::<Vec<_>>().join(",")
    }

    pub fn render(&self, format: EnvFormat) -> String {
        match format {
            EnvFormat::Shell => {
                self.variables().iter().map(|(k, v)| format!("export {k}={}\n", shell_quote(v))).collect()
            }
            EnvFormat::Dotenv => self.variables().iter().map(|(k, v)| format!("{k}={}\n", dotenv_value(v))).collect(),
            EnvFormat::Buildkit => {
                format!("--export-cache {}\n--import-cache {}\n", self.buildkit_cache(true), self.buildkit_cache(false))
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
                    },
                    "lifecycle": self.lifecycle.map(|l| json!({
                        "expire_after_days": l.expire_after_days,
                        "abort_incomplete_uploads_after_days": l.abort_incomplete_uploads_after_days,
                    })),
                });
                serde_json::to_string_pretty(&value).expect("JSON values always serialize") + "\n"
            }
        }
    }
}

/// Runs `env`: prints the settings, or returns the error for the caller to print.
pub fn run(args: &EnvArgs) -> Result<Code, Error> {
    let connection = Connection::from_args(args)?;
    crate::out!("{}", connection.render(args.format));
    Ok(Code::Ok)
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

/// BuildKit reads the cache options as one CSV record: a field with a comma or a quote is quoted.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"']) { format!("\"{}\"", field.replace('"', "\"\"")) } else { field.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{HostEndpointArgs, ResourceArgs};

    fn args() -> EnvArgs {
        EnvArgs {
            endpoints: HostEndpointArgs {
                registry: "localhost:5050".into(),
                s3_endpoint: "http://localhost:3900".into(),
            },
            resources: ResourceArgs {
                bucket: "buildkit-cache".into(),
                key_name: "buildkit-key".into(),
                access_key_id: None,
                secret_access_key: None,
                secret_access_key_file: None,
                expire_after_days: None,
                abort_incomplete_uploads_after_days: None,
                s3_region: "garage".into(),
            },
            format: EnvFormat::Shell,
            cache_name: "buildkit".into(),
        }
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
    }

    #[test]
    fn blobs_in_use_are_touched_more_often_than_objects_expire() {
        use crate::validate::Days;
        let with = |expire: Option<u32>| {
            let mut a = args();
            a.resources.expire_after_days = Some(Days(expire));
            Connection::from_args(&a).unwrap()
        };
        assert_eq!(with(Some(30)).touch_refresh(), Some("24h"));
        assert_eq!(with(Some(2)).touch_refresh(), Some("24h"));
        assert_eq!(with(Some(1)).touch_refresh(), Some("12h"));
        assert_eq!(with(None).touch_refresh(), None);
        assert!(!with(None).buildkit_cache(true).contains("touch_refresh"));
        let json: serde_json::Value = serde_json::from_str(&with(Some(30)).render(EnvFormat::Json)).unwrap();
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
    fn cache_names_with_spaces_or_commas_are_refused() {
        for bad in ["", "a b", "a,b"] {
            let err = Connection::from_args(&EnvArgs { cache_name: bad.into(), ..args() }).unwrap_err();
            assert!(err.to_string().contains("--cache-name (GARAGE_INIT_CACHE_NAME)"), "{err}");
        }
    }
}
