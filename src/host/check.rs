//! `garage-init check`: from the host, is the stack usable?
//!
//! Three probes, run concurrently:
//! - the registry: `GET /v2/` answers (200, or 401 from a registry with auth);
//! - Garage: with the access key, a signed PUT, GET and DELETE of a probe
//!   object in the bucket, which is what BuildKit's cache needs (write);
//! - Garage's admin port: the unauthenticated `/health`, which answers 503
//!   until a layout exists. It only explains a failed Garage probe; it never
//!   decides the exit code alone (a host may not publish the admin port).
//!
//! A service that does not answer is "unreachable" (exit 3); a Garage that
//! answers but lacks the layout, bucket or key, or refuses the key, is "not
//! initialized" (exit 7).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::admin::AdminClient;
use crate::cli::{CheckArgs, OutputFormat};
use crate::converge::lifecycle::{Rule, describe_all};
use crate::error::Error;
use crate::exit::Code;
use crate::host::{HostOutcome, ProbeConfig, Problem, Rendered};
use crate::http::{NoAnswer, ReadError, human_limit, read_capped};
use crate::report::human_bytes;
use crate::s3::{Probed, Refusal, S3Client, S3Code, S3Error, probe_once};
use crate::wait::Waiter;

/// How long one probe request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest time given to a probe, even when `--wait` has run out.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(500);

/// The hint of an unreachable service, word for word the design's.
pub const START_HINT: &str = "Run 'docker compose up -d' to start infrastructure services.";
/// The hint of a Garage that is not initialized.
pub const INIT_HINT: &str = "Run 'docker compose run --rm garage-init' to initialize it.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ready,
    /// No HTTP answer: refused, reset, timed out, name not resolved.
    Unreachable,
    /// Garage answers, but without the layout, bucket or key the stack needs.
    NotInitialized,
    /// An answer that makes no sense for this service.
    Failed,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Unreachable => "unreachable",
            Self::NotInitialized => "not initialized",
            Self::Failed => "failed",
        }
    }

    fn json(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Unreachable => "unreachable",
            Self::NotInitialized => "not_initialized",
            Self::Failed => "failed",
        }
    }
}

/// One service's result.
#[derive(Debug, Clone)]
pub struct Probe {
    pub address: String,
    pub state: State,
    /// What was seen: `GET /v2/ answered 200`, `Connection refused`, ...
    pub detail: String,
    /// For `Failed`: what to check.
    pub hint: Option<String>,
}

impl Probe {
    fn new(address: &str, state: State, detail: impl Into<String>) -> Self {
        Self { address: address.to_string(), state, detail: detail.into(), hint: None }
    }

    fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn to_json(&self) -> Value {
        json!({ "address": self.address, "state": self.state.json(), "detail": self.detail })
    }
}

/// What one round of probes found.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub registry: Probe,
    pub garage: Probe,
    pub admin: Probe,
    pub bucket: String,
    pub access_key_id: String,
    pub key_name: String,
    /// Read once Garage's probe passed.
    pub cache: Option<CacheInfo>,
    /// Other keys that carry the key's name: read once Garage's probe
    /// passed, and only with the admin token.
    pub namesakes: Option<Result<Vec<String>, String>>,
}

/// The cache bucket at a glance: its lifecycle rules (read through S3 with
/// the key) and its size (from the admin API, when a token is given).
#[derive(Debug, Clone)]
pub struct CacheInfo {
    pub bucket: String,
    /// The rules, or why they could not be read.
    pub lifecycle: Result<Vec<Rule>, String>,
    /// Objects and bytes, or why they could not be read.
    pub usage: Result<Usage, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub objects: i64,
    pub bytes: i64,
}

impl CacheInfo {
    /// `buildkit-cache: 12 objects, 3.4 MB; rule "…" expires objects after 30 days`.
    pub fn text(&self) -> String {
        let usage = match &self.usage {
            Ok(u) => format!("{} objects, {}", u.objects, human_bytes(u.bytes.max(0) as u64)),
            Err(why) => format!("size unknown ({why})"),
        };
        let rules = match &self.lifecycle {
            Ok(rules) if rules.is_empty() => "no lifecycle rules".to_string(),
            Ok(rules) => format!("lifecycle: {}", describe_all(rules).join("; ")),
            Err(why) => format!("lifecycle unknown ({why})"),
        };
        format!("{}: {usage}; {rules}", self.bucket)
    }

    pub fn to_json(&self) -> Value {
        let rules = self.lifecycle.as_ref().ok().map(|rules| {
            rules
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "enabled": r.enabled,
                        "filtered": r.filtered,
                        "expire_after_days": r.expire_days,
                        "expire_on": r.expire_date,
                        "abort_incomplete_uploads_after_days": r.abort_days,
                    })
                })
                .collect::<Vec<_>>()
        });
        json!({
            "bucket": self.bucket,
            "objects": self.usage.as_ref().ok().map(|u| u.objects),
            "bytes": self.usage.as_ref().ok().map(|u| u.bytes),
            "size_error": self.usage.as_ref().err(),
            "lifecycle": rules,
            "lifecycle_error": self.lifecycle.as_ref().err(),
        })
    }
}

/// Reads the cache bucket's rules and size, each within `limit`.
pub async fn cache_info(http: &reqwest::Client, cfg: &ProbeConfig, limit: Duration) -> CacheInfo {
    let timed_out = |_| "timed out".to_string();
    let lifecycle = async {
        let s3 = S3Client::with_client(
            http.clone(),
            &cfg.endpoints.s3.url,
            &cfg.region,
            crate::validate::DEFAULT_REQUESTS_PER_NODE,
        );
        let read = tokio::time::timeout(limit, s3.lifecycle(&cfg.bucket, &cfg.key)).await.map_err(timed_out)?;
        read.map_err(|f| f.to_string())
    };
    let usage = async {
        let Some(token) = &cfg.admin_token else {
            return Err("give the admin token, GARAGE_INIT_ADMIN_TOKEN_FILE, to read it".to_string());
        };
        let client = AdminClient::new(cfg.admin.url.clone(), token, crate::validate::DEFAULT_REQUESTS_PER_NODE)
            .map_err(|e| e.to_string())?;
        let read = tokio::time::timeout(limit, client.bucket_by_alias(&cfg.bucket)).await.map_err(timed_out)?;
        match read.map_err(|e| e.to_string())? {
            Some(b) => Ok(Usage { objects: b.objects, bytes: b.bytes }),
            None => Err(format!("the admin API knows no bucket {}", cfg.bucket)),
        }
    };
    let (lifecycle, usage) = tokio::join!(lifecycle, usage);
    CacheInfo { bucket: cfg.bucket.clone(), lifecycle, usage }
}

/// The ids of other keys named like the key (Garage allows two keys one
/// name; garage-init never deletes either). `None` without the admin token.
pub async fn namesakes(cfg: &ProbeConfig, limit: Duration) -> Option<Result<Vec<String>, String>> {
    let token = cfg.admin_token.as_ref()?;
    let read = async {
        let client = AdminClient::new(cfg.admin.url.clone(), token, crate::validate::DEFAULT_REQUESTS_PER_NODE)
            .map_err(|e| e.to_string())?;
        let keys = tokio::time::timeout(limit, client.list_keys()).await.map_err(|_| "timed out".to_string())?;
        let keys = keys.map_err(|e| e.to_string())?;
        Ok(keys.into_iter().filter(|k| k.name == cfg.key.name && k.id != cfg.key.id).map(|k| k.id).collect())
    };
    Some(read.await)
}

impl ProbeReport {
    /// Unreachable before not initialized before anything else: start the
    /// services first, then initialize them.
    pub fn code(&self) -> Code {
        let states = [self.registry.state, self.garage.state];
        if states.contains(&State::Unreachable) {
            Code::Unreachable
        } else if states.contains(&State::NotInitialized) {
            Code::NotInitialized
        } else if states.contains(&State::Failed) {
            Code::Failure
        } else {
            Code::Ok
        }
    }

    /// One block per service that is not ready, the registry first.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (name, probe) in [("Registry", &self.registry), ("Garage", &self.garage)] {
            let (message, hint) = match probe.state {
                State::Ready => continue,
                State::Unreachable => (format!("{name} not reachable at {}", probe.address), START_HINT.to_string()),
                State::NotInitialized => {
                    (format!("{name} at {} is not initialized: {}", probe.address, probe.detail), INIT_HINT.to_string())
                }
                State::Failed => (
                    format!("{name} at {}: {}", probe.address, probe.detail),
                    probe.hint.clone().unwrap_or_else(|| format!("Is {} the {name}'s address?", probe.address)),
                ),
            };
            problems.push(Problem::new(message, hint));
        }
        problems
    }

    /// One line for the wait's progress messages.
    fn summary(&self) -> String {
        [("registry", &self.registry), ("garage", &self.garage)]
            .iter()
            .filter(|(_, p)| p.state != State::Ready)
            .map(|(name, p)| format!("{name} {}: {}", p.state.word(), p.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `registry  ready  localhost:5050: GET /v2/ answered 200`, one line per service.
    pub fn text_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = [("registry", &self.registry), ("garage", &self.garage), ("admin", &self.admin)]
            .iter()
            .map(|(name, p)| format!("{name:<9} {:<16} {}: {}", p.state.word(), p.address, p.detail))
            .collect();
        lines.extend(self.cache.as_ref().map(|c| format!("{:<9} {}", "cache", c.text())));
        if let Some(Ok(others)) = &self.namesakes
            && !others.is_empty()
        {
            lines.push(format!(
                "{:<9} {:<16} {} shares its name \"{}\" with {}",
                "key",
                "warning",
                self.access_key_id,
                self.key_name,
                others.join(", ")
            ));
        }
        lines
    }

    pub fn to_json(&self) -> Value {
        let code = self.code();
        let mut garage = self.garage.to_json();
        garage["bucket"] = json!(self.bucket);
        garage["access_key_id"] = json!(self.access_key_id);
        // Other keys with the key's name: null when not read (no admin token).
        garage["key_name_shared_with"] = match &self.namesakes {
            Some(Ok(others)) => json!(others),
            _ => Value::Null,
        };
        if let Some(Err(why)) = &self.namesakes {
            garage["key_name_error"] = json!(why);
        }
        let mut admin = self.admin.to_json();
        // Only explains the Garage probe; never decides the exit code.
        admin["required"] = json!(false);
        json!({
            "ready": code == Code::Ok,
            "exit_code": code.as_u8(),
            "services": { "registry": self.registry.to_json(), "garage": garage, "admin": admin },
            "cache": self.cache.as_ref().map(CacheInfo::to_json),
            "errors": self.problems().iter().map(Problem::to_json).collect::<Vec<_>>(),
        })
    }

    /// The probe lines (text) or the JSON object, the error blocks, and the exit code.
    pub fn outcome(&self, format: OutputFormat) -> HostOutcome {
        let output = match format {
            OutputFormat::Text => Rendered::Text(self.text_lines().iter().map(|line| format!("{line}\n")).collect()),
            OutputFormat::Json => Rendered::Document(self.to_json()),
        };
        HostOutcome { code: self.code(), output, problems: self.problems() }
    }
}

/// Runs `check` and returns its outcome for [`crate::host::finish`] to
/// print. Invalid settings are an error, printed by the caller like every command's.
pub async fn run(args: &CheckArgs) -> Result<HostOutcome, Error> {
    let cfg = ProbeConfig::from_args(&args.probes)?;
    let report = probe_until_ready(&cfg, args.wait).await;
    Ok(report.outcome(args.format))
}

/// Probes once, or with `wait`, again until everything is ready or the time is up.
pub async fn probe_until_ready(cfg: &ProbeConfig, wait: Option<Duration>) -> ProbeReport {
    // Every probe is bounded by its own `limit`; the shared client adds the connect timeout.
    let http = crate::http::client(reqwest::header::HeaderMap::new(), crate::validate::DEFAULT_REQUESTS_PER_NODE)
        .unwrap_or_default();
    let deadline = wait.map(|w| Instant::now() + w);
    let mut waiter = Waiter::new("the registry and Garage");
    loop {
        let limit = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).clamp(MIN_REQUEST_TIME, REQUEST_TIMEOUT),
            None => REQUEST_TIMEOUT,
        };
        let report = probe(&http, cfg, limit).await;
        match deadline {
            Some(d) if report.code() != Code::Ok && Instant::now() < d => waiter.pause(&report.summary()).await,
            _ => return report,
        }
    }
}

/// One round: the three probes concurrently, each within `limit`.
pub async fn probe(http: &reqwest::Client, cfg: &ProbeConfig, limit: Duration) -> ProbeReport {
    let (registry, garage, health) =
        tokio::join!(probe_registry(http, cfg, limit), probe_garage(http, cfg, limit), probe_admin(http, cfg, limit));
    let admin = admin_probe(&cfg.admin.shown, &health);
    let garage = classify_garage(cfg, garage, &health);
    let (cache, namesakes) = match garage.state {
        State::Ready => {
            let (cache, namesakes) = tokio::join!(cache_info(http, cfg, limit), namesakes(cfg, limit));
            (Some(cache), namesakes)
        }
        _ => (None, None),
    };
    ProbeReport {
        registry,
        garage,
        admin,
        bucket: cfg.bucket.clone(),
        access_key_id: cfg.key.id.clone(),
        key_name: cfg.key.name.clone(),
        cache,
        namesakes,
    }
}

async fn probe_registry(http: &reqwest::Client, cfg: &ProbeConfig, limit: Duration) -> Probe {
    let endpoint = &cfg.endpoints.registry;
    let url = endpoint.url.join("v2/").expect("a static path");
    let answer = tokio::time::timeout(limit, http.get(url).send()).await;
    match answer {
        Err(_) => Probe::new(&endpoint.shown, State::Unreachable, "timed out"),
        Ok(Err(e)) => Probe::new(&endpoint.shown, State::Unreachable, NoAnswer::from_reqwest(&e).reason),
        Ok(Ok(response)) => {
            let status = response.status();
            let said = format!("GET /v2/ answered {}", status_text(status));
            if status == reqwest::StatusCode::OK || status == reqwest::StatusCode::UNAUTHORIZED {
                Probe::new(&endpoint.shown, State::Ready, said)
            } else {
                Probe::new(&endpoint.shown, State::Failed, format!("{said}, which a container registry does not"))
                    .with_hint("Check --registry (GARAGE_INIT_REGISTRY): it should be the registry's host:port.")
            }
        }
    }
}

/// What the admin port's `/health` said.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    /// 200: the first line of the answer ("Garage is fully operational").
    Available(String),
    /// 503: no layout yet, or too few storage nodes up.
    Unavailable,
    Unreachable(String),
    Other(String),
}

/// `/health` answers one line; a longer answer is not Garage's.
const HEALTH_BODY_LIMIT: usize = 64 << 10;

async fn probe_admin(http: &reqwest::Client, cfg: &ProbeConfig, limit: Duration) -> Health {
    let url = cfg.admin.url.join("health").expect("a static path");
    let answer = async {
        let response = match http.get(url).send().await {
            Ok(response) => response,
            Err(e) => return Health::Unreachable(NoAnswer::from_reqwest(&e).reason),
        };
        let status = response.status();
        // One line of text from Garage; anything longer is not read past the cap.
        let text = match read_capped(response, HEALTH_BODY_LIMIT).await {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(ReadError::NoAnswer(n)) => return Health::Unreachable(n.reason),
            Err(ReadError::TooLarge { limit }) => {
                return Health::Other(format!(
                    "GET /health answered {} with more than {}, which Garage's admin API does not",
                    status_text(status),
                    human_limit(limit)
                ));
            }
        };
        match status {
            reqwest::StatusCode::OK => Health::Available(text.lines().next().unwrap_or("").trim().into()),
            reqwest::StatusCode::SERVICE_UNAVAILABLE => Health::Unavailable,
            _ => Health::Other(format!("GET /health answered {}", status_text(status))),
        }
    };
    tokio::time::timeout(limit, answer).await.unwrap_or_else(|_| Health::Unreachable("timed out".into()))
}

fn admin_probe(address: &str, health: &Health) -> Probe {
    match health {
        Health::Available(line) => Probe::new(address, State::Ready, format!("/health: {line}")),
        Health::Unavailable => Probe::new(
            address,
            State::NotInitialized,
            "/health answered 503: no cluster layout yet, or too few storage nodes up",
        ),
        Health::Unreachable(reason) => Probe::new(address, State::Unreachable, reason.clone()),
        Health::Other(said) => Probe::new(address, State::Failed, said.clone()),
    }
}

async fn probe_garage(http: &reqwest::Client, cfg: &ProbeConfig, limit: Duration) -> Result<Probed, S3Error> {
    let attempt = probe_once(http, &cfg.endpoints.s3.url, &cfg.region, &cfg.bucket, &cfg.key);
    tokio::time::timeout(limit, attempt).await.unwrap_or_else(|_| Err(S3Error::Transport("timed out".into())))
}

/// Turns the S3 round trip's outcome, and what `/health` said, into the Garage probe.
fn classify_garage(cfg: &ProbeConfig, result: Result<Probed, S3Error>, health: &Health) -> Probe {
    let address = &cfg.endpoints.s3.shown;
    let (bucket, id, region) = (&cfg.bucket, &cfg.key.id, &cfg.region);
    let failure = match result {
        Ok(Probed { object, took }) => {
            let detail = format!("PUT, GET, DELETE of {object} in bucket {bucket} as {id} ({} ms)", took.as_millis());
            return Probe::new(address, State::Ready, detail);
        }
        Err(f) => f,
    };
    // /health's 503 names the cause behind a missing key or bucket: no layout yet.
    let layout = if *health == Health::Unavailable { "; Garage has no cluster layout yet" } else { "" };
    let not_initialized =
        |what: String| Probe::new(address, State::NotInitialized, format!("{what}{layout} ({failure})"));
    match &failure {
        S3Error::Transport(reason) => Probe::new(address, State::Unreachable, reason.clone()),
        f if f.storage_failure() => Probe::new(address, State::Failed, format!("Garage's storage is failing ({f})"))
            .with_hint(crate::error::STORAGE_HINT),
        S3Error::Status { code, status, .. } => match (code, failure.refusal()) {
            (Some(S3Code::NoSuchBucket), _) => not_initialized(format!("bucket {bucket} does not exist")),
            (_, Some(Refusal::UnknownKey)) => not_initialized(format!("access key {id} does not exist")),
            (_, Some(Refusal::WrongSecret)) => {
                not_initialized(format!("Garage holds another secret for access key {id}"))
            }
            (_, Some(Refusal::NotAllowed)) => {
                not_initialized(format!("access key {id} may not write to bucket {bucket}"))
            }
            (Some(S3Code::AuthorizationHeaderMalformed), _) => {
                Probe::new(address, State::Failed, format!("the region {region} is not Garage's ({failure})"))
                    .with_hint(
                        "Check --s3-region (GARAGE_INIT_S3_REGION): it must match s3_api.s3_region in garage.toml.",
                    )
            }
            _ if *status >= 500 && *health == Health::Unavailable => Probe::new(
                address,
                State::NotInitialized,
                format!("Garage has no cluster layout yet, or too few storage nodes up ({failure})"),
            ),
            _ => Probe::new(address, State::Failed, failure.to_string()).with_hint(
                "Check --s3-url (GARAGE_INIT_S3_ENDPOINT): it should be Garage's S3 port; \
                 `docker compose logs garage` shows Garage's side.",
            ),
        },
        S3Error::Mismatch { .. }
        | S3Error::Setup(_)
        | S3Error::TooLarge { .. }
        | S3Error::NotOwner { .. }
        | S3Error::Unreadable { .. } => Probe::new(address, State::Failed, failure.to_string())
            .with_hint("Check --s3-url (GARAGE_INIT_S3_ENDPOINT): it should be Garage's S3 port."),
    }
}

/// `200 OK`, `404 Not Found`.
fn status_text(status: reqwest::StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(registry: State, garage: State) -> ProbeReport {
        ProbeReport {
            registry: Probe::new("localhost:5050", registry, "r"),
            garage: Probe::new("localhost:3900", garage, "g"),
            admin: Probe::new("localhost:3903", State::Unreachable, "a"),
            bucket: "buildkit-cache".into(),
            access_key_id: "GK0".into(),
            key_name: "buildkit-key".into(),
            cache: None,
            namesakes: None,
        }
    }

    #[test]
    fn unreachable_wins_over_not_initialized_and_admin_never_decides() {
        assert_eq!(report(State::Ready, State::Ready).code(), Code::Ok);
        assert_eq!(report(State::Unreachable, State::NotInitialized).code(), Code::Unreachable);
        assert_eq!(report(State::Ready, State::NotInitialized).code(), Code::NotInitialized);
        assert_eq!(report(State::Failed, State::Ready).code(), Code::Failure);
    }

    #[test]
    fn each_unreachable_service_gets_the_designs_two_lines() {
        let problems = report(State::Unreachable, State::Unreachable).problems();
        assert_eq!(
            problems,
            vec![
                Problem { message: "Registry not reachable at localhost:5050".into(), hint: START_HINT.into() },
                Problem { message: "Garage not reachable at localhost:3900".into(), hint: START_HINT.into() },
            ]
        );
        let json = report(State::Ready, State::NotInitialized).to_json();
        assert_eq!(json["exit_code"], 7);
        assert_eq!(json["services"]["garage"]["state"], "not_initialized");
        assert!(json["errors"][0]["hint"].as_str().unwrap().contains("docker compose run --rm garage-init"));
    }

    fn cfg() -> ProbeConfig {
        use clap::Parser;
        match crate::cli::Cli::parse_from(["garage-init", "check"]).command {
            Some(crate::cli::Command::Check(args)) => ProbeConfig::from_args(&args.probes).unwrap(),
            other => unreachable!("`check` parses as {other:?}"),
        }
    }

    fn s3_error(status: u16, code: &str, message: &str) -> Result<Probed, S3Error> {
        Err(S3Error::Status {
            op: "PUT",
            status,
            code: Some(S3Code::parse(code)),
            message: message.into(),
            redirected: None,
        })
    }

    #[test]
    fn s3_answers_say_what_is_missing() {
        let cfg = cfg();
        let ok = Health::Available("Garage is fully operational".into());
        let p = classify_garage(&cfg, s3_error(404, "NoSuchBucket", "Bucket not found"), &ok);
        assert_eq!(p.state, State::NotInitialized);
        assert!(p.detail.starts_with("bucket buildkit-cache does not exist (PUT answered 404 NoSuchBucket"), "{p:?}");

        let p = classify_garage(&cfg, s3_error(403, "AccessDenied", "Forbidden: No such key: GK"), &ok);
        assert!(p.detail.starts_with("access key GK6275696c646b69742d6b6579 does not exist"), "{p:?}");

        let p = classify_garage(&cfg, s3_error(403, "SignatureDoesNotMatch", ""), &ok);
        assert_eq!(p.state, State::NotInitialized);
        let p = classify_garage(&cfg, s3_error(403, "AccessDenied", "Forbidden: Invalid signature"), &ok);
        assert!(p.detail.starts_with("Garage holds another secret for access key GK"), "{p:?}");
        let p = classify_garage(&cfg, s3_error(403, "AccessDenied", "Forbidden: Operation is not allowed"), &ok);
        assert!(p.detail.starts_with("access key GK6275696c646b69742d6b6579 may not write"), "{p:?}");
        let p = classify_garage(&cfg, s3_error(400, "AuthorizationHeaderMalformed", "unexpected scope"), &ok);
        assert_eq!(p.state, State::Failed);
        assert!(p.hint.unwrap().contains("--s3-region"));

        let p = classify_garage(&cfg, s3_error(503, "ServiceUnavailable", ""), &Health::Unavailable);
        assert_eq!(p.state, State::NotInitialized);
        assert!(p.detail.contains("no cluster layout"), "{p:?}");
        let p = classify_garage(&cfg, s3_error(503, "ServiceUnavailable", ""), &ok);
        assert_eq!(p.state, State::Failed);
        let full = "Internal error: Could not reach quorum of 1. 0 of 1 request succeeded, others returned errors: \
                    [\"9d16: DB error: LMDB: No space left on device (os error 28)\"]";
        let p = classify_garage(&cfg, s3_error(503, "ServiceUnavailable", full), &ok);
        assert_eq!(p.state, State::Failed);
        assert!(p.detail.starts_with("Garage's storage is failing (PUT answered 503 ServiceUnavailable"), "{p:?}");
        assert!(p.hint.unwrap().starts_with("Free space"));

        let p = classify_garage(&cfg, Err(S3Error::Transport("Connection refused".into())), &Health::Unavailable);
        assert_eq!((p.state, p.detail.as_str()), (State::Unreachable, "Connection refused"));
    }
}
