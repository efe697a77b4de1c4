//! The host-side commands: what a consumer of the stack (the image-manager
//! CLI, a CI script, BuildKit) runs on the host to connect to it.
//!
//! - [`check`]: are the registry and Garage reachable, and is Garage
//!   initialized (the bucket exists and the key can write to it)?
//! - [`env`](mod@env): the connection settings, in shell, dotenv, JSON or BuildKit form.
//! - [`status`]: the compose project's containers through the Docker Engine
//!   API ([`docker`]), with the probes of `check` as a fallback.
//! - [`cache`]: BuildKit's S3 cache in the bucket: `stats`, `verify`,
//!   `repair` (broken manifests) and `gc` (blobs no manifest lists).
//!
//! Their addresses are the services as seen from the host (`localhost:5050`,
//! `http://localhost:3900`, `http://localhost:3903`): settings of their own,
//! so that `apply`'s container-side URLs never leak into them.

pub mod cache;
pub mod check;
pub mod docker;
pub mod env;
pub mod status;

use url::Url;

use crate::cli::{HostEndpointArgs, HostS3Args, ProbeArgs};
use crate::desired::KeyWant;
use crate::exit::Code;
use crate::validate::{ConfigError, parse_http_url};

/// A service address: the URL requests go to, and the form messages show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: Url,
    /// `localhost:3900`: host and port, without the scheme.
    pub shown: String,
}

impl Endpoint {
    /// Garage's S3 API from `--s3-url`, as every host command reads it.
    fn s3(args: &HostS3Args) -> Result<Self, ConfigError> {
        Self::parse(&args.s3_url, "--s3-url (GARAGE_INIT_S3_ENDPOINT)")
    }

    fn parse(text: &str, setting: &str) -> Result<Self, ConfigError> {
        let url = parse_http_url(text, setting)?;
        let mut shown = authority(&url);
        let path = url.path().trim_end_matches('/');
        shown.push_str(path);
        Ok(Self { url, shown })
    }

    /// The URL without a trailing slash: `http://localhost:3900`.
    pub fn url_text(&self) -> String {
        crate::error::display_url(&self.url)
    }
}

/// `host[:port]` of a URL, IPv6 hosts in brackets.
fn authority(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(host) => host.to_string(),
        None => String::new(),
    };
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// The registry and S3 endpoints, validated.
#[derive(Debug, Clone)]
pub struct HostEndpoints {
    /// `localhost:5050`: what image references start with.
    pub registry: Endpoint,
    pub s3: Endpoint,
}

impl HostEndpoints {
    pub fn from_args(args: &HostEndpointArgs) -> Result<Self, ConfigError> {
        let registry_setting = "--registry (GARAGE_INIT_REGISTRY)";
        let registry = Endpoint::parse(&args.registry, registry_setting)?;
        if registry.url.path() != "/" {
            return Err(ConfigError::new(
                registry_setting,
                format!("`{}` has a path; a registry address is host:port, e.g. localhost:5050", args.registry.trim()),
            ));
        }
        Ok(Self { registry, s3: Endpoint::s3(&args.s3)? })
    }
}

/// Everything the probes need, validated before any request.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub endpoints: HostEndpoints,
    pub admin: Endpoint,
    pub bucket: String,
    pub key: KeyWant,
    pub region: String,
    /// Given: the bucket's size is read from the admin API.
    pub admin_token: Option<crate::secret::Secret>,
}

impl ProbeConfig {
    pub fn from_args(args: &ProbeArgs) -> Result<Self, ConfigError> {
        let endpoints = HostEndpoints::from_args(&args.endpoints)?;
        let admin = Endpoint::parse(&args.admin_url, "--admin-url (GARAGE_INIT_ADMIN_ENDPOINT)")?;
        let crate::config::Access { bucket, key, region } = crate::config::access(&args.access)?;
        crate::config::warn_if_public_secret(&key, &endpoints.s3.url);
        let given = args.token.admin_token.is_some() || args.token.admin_token_file.is_some();
        let admin_token = if given { Some(crate::config::admin_token(&args.token)?) } else { None };
        Ok(Self { endpoints, admin, bucket, key, region, admin_token })
    }
}

/// An error block: `Error: <message>` and a line that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub hint: String,
}

impl Problem {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { message: message.into(), hint: hint.into() }
    }

    /// `{"message", "hint"}`: an entry of a JSON object's `errors`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "message": self.message, "hint": self.hint })
    }
}

/// What a host command leaves for stdout when it ends, in its format.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    /// Nothing (more): the command printed as it went, or has nothing to say.
    Nothing,
    /// Text, printed as it is.
    Text(String),
    /// One JSON object, indented for people.
    Document(serde_json::Value),
    /// One JSON object on one line (`cache gc`'s lines, a stopped `cache`).
    Line(serde_json::Value),
}

/// How a host command ended: what is left to print on stdout, the problems
/// it reports, and its exit code. [`finish`] prints it; the commands
/// themselves never print an `Error:` block or choose how the process exits.
#[derive(Debug, Clone, PartialEq)]
pub struct HostOutcome {
    pub code: Code,
    pub output: Rendered,
    /// Each printed on stderr as an `Error:` block, after the output, in
    /// either format (JSON objects carry them too, in their own fields).
    pub problems: Vec<Problem>,
}

impl HostOutcome {
    /// Done: `output`, exit code `code`, and no problem to report.
    pub fn done(code: Code, output: Rendered) -> Self {
        Self { code, output, problems: Vec::new() }
    }

    /// Stopped before there was a result: the problem alone, and with
    /// `json`, the problem as one JSON line too (`{"error", "hint", "exit_code"}`).
    pub fn stopped(code: Code, problem: Problem, json: bool) -> Self {
        let output = if json {
            Rendered::Line(
                serde_json::json!({ "error": problem.message, "hint": problem.hint, "exit_code": code.as_u8() }),
            )
        } else {
            Rendered::Nothing
        };
        Self { code, output, problems: vec![problem] }
    }
}

/// The one exit path of the host commands: prints the outcome's output on
/// stdout (JSON through [`crate::output`], which adds `format_version`), then
/// each problem as an `Error:` block on stderr; returns the exit code.
pub fn finish(outcome: HostOutcome) -> Code {
    match outcome.output {
        Rendered::Nothing => {}
        Rendered::Text(text) => crate::out!("{text}"),
        Rendered::Document(value) => crate::outln!("{}", crate::output::json_document(value)),
        Rendered::Line(value) => crate::outln!("{}", crate::output::json_line(value)),
    }
    for p in &outcome.problems {
        crate::output::error_block(&p.message, Some(&p.hint));
    }
    outcome.code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(registry: &str, s3: &str) -> Result<HostEndpoints, ConfigError> {
        HostEndpoints::from_args(&HostEndpointArgs { registry: registry.into(), s3: HostS3Args { s3_url: s3.into() } })
    }

    #[test]
    fn addresses_are_shown_as_host_and_port() {
        let e = endpoints("localhost:5050", "http://localhost:3900").unwrap();
        assert_eq!(e.registry.shown, "localhost:5050");
        assert_eq!(e.s3.shown, "localhost:3900");
        assert_eq!(e.s3.url_text(), "http://localhost:3900");

        let e = endpoints("http://127.0.0.1:5050/", "127.0.0.1:3900").unwrap();
        assert_eq!(e.registry.shown, "127.0.0.1:5050");
        assert_eq!(e.s3.url_text(), "http://127.0.0.1:3900");

        let e = endpoints("[::1]:5050", "http://[::1]:3900/garage").unwrap();
        assert_eq!(e.registry.shown, "[::1]:5050");
        assert_eq!(e.s3.shown, "[::1]:3900/garage");
    }

    #[test]
    fn a_stopped_command_reports_its_problem_on_stderr_and_in_json_as_one_line() {
        let problem = Problem::new("Garage not reachable at localhost:3900: refused", "Start it.");
        let text = HostOutcome::stopped(Code::Unreachable, problem.clone(), false);
        assert_eq!(
            (text.code, &text.output, &text.problems),
            (Code::Unreachable, &Rendered::Nothing, &vec![problem.clone()])
        );
        let json = HostOutcome::stopped(Code::Unreachable, problem.clone(), true);
        let line = serde_json::json!({ "error": problem.message, "hint": problem.hint, "exit_code": 3 });
        assert_eq!((json.output, json.problems), (Rendered::Line(line), vec![problem]));
    }

    #[test]
    fn bad_addresses_name_their_setting() {
        let err = endpoints("localhost:5050/v2", "http://localhost:3900").unwrap_err();
        assert!(err.to_string().contains("--registry (GARAGE_INIT_REGISTRY)"), "{err}");
        let err = endpoints("localhost:5050", "https://localhost:3900").unwrap_err();
        assert!(err.to_string().contains("--s3-url (GARAGE_INIT_S3_ENDPOINT)"), "{err}");
    }
}
