//! `garage-init status`: the compose project's containers, through the
//! Docker Engine API. For a garage-init container that exited non-zero: its
//! exit code, what the code means, and its last log lines. When Docker does
//! not answer: say so, then report the probes of `check` instead.

use serde_json::{Value, json};

use crate::cli::{OutputFormat, StatusArgs};
use crate::error::Error;
use crate::exit::Code;
use crate::host::check::{CacheInfo, ProbeReport, cache_info, probe_until_ready};
use crate::host::docker::{Container, DockerError, DockerHost, Engine, PROJECT_LABEL};
use crate::host::{HostOutcome, ProbeConfig, Problem, Rendered};
use crate::validate::ConfigError;

/// The one-shot service: ready once it has exited 0.
pub const INIT_SERVICE: &str = "garage-init";
/// Log lines shown for a failed garage-init.
pub const LOG_LINES: usize = 10;

const PROJECT_SETTING: &str = "--project (COMPOSE_PROJECT_NAME)";

/// One container, judged.
#[derive(Debug, Clone)]
pub struct ServiceStatus {
    pub container: Container,
    pub ready: bool,
    /// Why it is not ready: `exited with code 4`, `unhealthy`, ...
    pub problem: Option<String>,
    /// For a garage-init that exited non-zero: what its exit code means.
    pub meaning: Option<String>,
    /// For a garage-init that exited non-zero: its last log lines.
    pub logs: Vec<String>,
}

/// Judges one container: long-running services must run (and be healthy
/// where they have a healthcheck); garage-init must have exited 0.
pub fn judge(container: Container) -> ServiceStatus {
    let c = &container;
    let problem = if c.service == INIT_SERVICE {
        match (c.state.as_str(), c.exit_code) {
            ("exited", Some(0)) => None,
            ("exited", Some(code)) => Some(format!("exited with code {code}")),
            ("running", _) => Some("still running".to_string()),
            (state, _) => Some(format!("is {state}")),
        }
    } else {
        match (c.state.as_str(), c.health.as_deref()) {
            ("running", None | Some("healthy")) => None,
            ("running", Some(health)) => Some(format!("is {health}")),
            ("exited", _) => Some(format!("exited with code {}", c.exit_code.unwrap_or(-1))),
            (state, _) => Some(format!("is {state}, not running")),
        }
    };
    let meaning = match (c.service == INIT_SERVICE, c.state.as_str(), c.exit_code) {
        (true, "exited", Some(code)) if code != 0 => Some(exit_meaning(code)),
        _ => None,
    };
    ServiceStatus { ready: problem.is_none(), problem, meaning, logs: Vec::new(), container }
}

/// What garage-init's exit code means, from the exit code table.
pub fn exit_meaning(code: i64) -> String {
    match Code::from_exit_status(code) {
        Some(c) => c.meaning().to_string(),
        None if code > 128 => format!("killed by signal {}", code - 128),
        None => "not an exit code of garage-init".to_string(),
    }
}

/// Compose's project name for a directory: lowercase, only `a-z 0-9 _ -`,
/// leading `_` and `-` dropped (compose-go's `NormalizeProjectName`).
pub fn normalize_project_name(dir_name: &str) -> String {
    let kept: String = dir_name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

/// The given name (which Compose would accept as is), else the current directory's.
pub fn project_name(given: Option<&str>) -> Result<String, ConfigError> {
    if let Some(name) = given.map(str::trim).filter(|n| !n.is_empty()) {
        if normalize_project_name(name) != name {
            return Err(ConfigError::new(
                PROJECT_SETTING,
                format!(
                    "`{name}`: a compose project name has only lowercase letters, digits, `_` and `-`, \
                     and starts with a letter or digit"
                ),
            ));
        }
        return Ok(name.to_string());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| ConfigError::missing(PROJECT_SETTING, format!("cannot read the current directory: {e}")))?;
    let dir = cwd.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = normalize_project_name(&dir);
    if name.is_empty() {
        return Err(ConfigError::missing(
            PROJECT_SETTING,
            format!("the current directory `{}` gives no compose project name; name the project", cwd.display()),
        ));
    }
    Ok(name)
}

/// What `status` found.
#[derive(Debug)]
pub enum Seen {
    /// Docker answered: the project's containers.
    Containers { engine: EngineInfo, services: Vec<ServiceStatus> },
    /// Docker did not answer: why, and what the probes found instead.
    NoDocker { error: String, hint: String, probes: Box<ProbeReport> },
}

#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub host: String,
    pub version: String,
    pub api_version: String,
}

/// The whole result of one `status` run.
#[derive(Debug)]
pub struct StackStatus {
    pub project: String,
    pub seen: Seen,
    /// The cache bucket's rules and size (with Docker; without, the probes carry them).
    pub cache: Option<CacheInfo>,
}

impl StackStatus {
    pub fn code(&self) -> Code {
        match &self.seen {
            Seen::NoDocker { .. } => Code::DockerUnreachable,
            Seen::Containers { services, .. } if !services.is_empty() && services.iter().all(|s| s.ready) => Code::Ok,
            Seen::Containers { .. } => Code::NotReady,
        }
    }

    /// What stderr says when the stack is not ready.
    fn problem(&self) -> Option<Problem> {
        let Seen::Containers { services, .. } = &self.seen else { return None };
        let project = &self.project;
        if services.is_empty() {
            return Some(Problem::new(
                format!("compose project {project} has no containers (label {PROJECT_LABEL}={project})"),
                "Run 'docker compose up -d' in the project's directory, or name the project with --project (-p).",
            ));
        }
        let not_ready: Vec<String> =
            services.iter().filter_map(|s| Some(format!("{} {}", s.container.service, s.problem.as_ref()?))).collect();
        if not_ready.is_empty() {
            return None;
        }
        let init_failed = services.iter().any(|s| s.meaning.is_some());
        let hint = if init_failed {
            "Fix what garage-init reports, then run 'docker compose up -d' again \
             ('docker compose logs garage-init' shows its whole log)."
        } else {
            "Run 'docker compose up -d' to start the services; 'docker compose logs SERVICE' shows why one stopped."
        };
        Some(Problem::new(format!("compose project {project} is not ready: {}", not_ready.join(", ")), hint))
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        match &self.seen {
            Seen::NoDocker { probes, .. } => {
                out.push_str("Docker did not answer; the network probes of 'garage-init check' instead:\n");
                for line in probes.text_lines() {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
            Seen::Containers { engine, services } => {
                out.push_str(&format!(
                    "Compose project {} (Docker {}, API {}, at {})\n",
                    self.project, engine.version, engine.api_version, engine.host
                ));
                if !services.is_empty() {
                    out.push('\n');
                    out.push_str(&table(services));
                }
                for s in services.iter().filter(|s| s.meaning.is_some()) {
                    let code = s.container.exit_code.unwrap_or(-1);
                    out.push_str(&format!(
                        "\n{} exited with code {code}: {}\n",
                        s.container.service,
                        s.meaning.as_deref().unwrap_or("")
                    ));
                    if !s.logs.is_empty() {
                        out.push_str(&format!("Last {} log lines of {}:\n", s.logs.len(), s.container.name));
                        for line in &s.logs {
                            out.push_str(&format!("  {line}\n"));
                        }
                    }
                }
                if let Some(cache) = &self.cache {
                    out.push_str(&format!("\nCache: {}\n", cache.text()));
                }
                if self.code() == Code::Ok {
                    out.push_str("\nReady: every service runs and garage-init exited 0.\n");
                }
            }
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let code = self.code();
        let (docker, services, probes) = match &self.seen {
            Seen::Containers { engine, services } => (
                json!({
                    "host": engine.host,
                    "reachable": true,
                    "version": engine.version,
                    "api_version": engine.api_version,
                }),
                services.iter().map(service_json).collect::<Vec<_>>(),
                Value::Null,
            ),
            Seen::NoDocker { error, probes, .. } => {
                let host = DockerHost::from_env();
                (json!({ "host": host.address, "reachable": false, "error": error }), Vec::new(), probes.to_json())
            }
        };
        // Without Docker, the probes' own problems are in `probes.errors`.
        let errors: Vec<Value> = match &self.seen {
            Seen::NoDocker { error, hint, .. } => vec![Problem::new(error, hint).to_json()],
            Seen::Containers { .. } => self.problem().as_ref().map(Problem::to_json).into_iter().collect(),
        };
        json!({
            "project": self.project,
            "ready": code == Code::Ok,
            "exit_code": code.as_u8(),
            "docker": docker,
            "services": services,
            "probes": probes,
            "cache": self.cache.as_ref().map(CacheInfo::to_json),
            "errors": errors,
        })
    }

    /// The text or the JSON object, the error blocks, and the exit code.
    /// Without Docker: Docker's block first, then those of the probes.
    pub fn outcome(&self, format: OutputFormat) -> HostOutcome {
        let output = match format {
            OutputFormat::Text => Rendered::Text(self.text()),
            OutputFormat::Json => Rendered::Document(self.to_json()),
        };
        let problems = match &self.seen {
            Seen::NoDocker { error, hint, probes } => {
                std::iter::once(Problem::new(error, hint)).chain(probes.problems()).collect()
            }
            Seen::Containers { .. } => self.problem().into_iter().collect(),
        };
        HostOutcome { code: self.code(), output, problems }
    }
}

fn service_json(s: &ServiceStatus) -> Value {
    let c = &s.container;
    json!({
        "service": c.service,
        "container": c.name,
        "state": c.state,
        "health": c.health,
        "exit_code": if c.state == "exited" { json!(c.exit_code) } else { Value::Null },
        "ready": s.ready,
        "problem": s.problem,
        "exit_meaning": s.meaning,
        "logs": s.logs,
    })
}

/// `SERVICE  CONTAINER  STATE  HEALTH  EXIT`, columns as wide as their widest cell.
fn table(services: &[ServiceStatus]) -> String {
    let header = ["SERVICE", "CONTAINER", "STATE", "HEALTH", "EXIT"].map(String::from);
    let rows: Vec<[String; 5]> = services
        .iter()
        .map(|s| {
            let c = &s.container;
            let exit = match (c.state.as_str(), c.exit_code) {
                ("exited" | "dead", Some(code)) => code.to_string(),
                _ => "-".into(),
            };
            [c.service.clone(), c.name.clone(), c.state.clone(), c.health.clone().unwrap_or_else(|| "-".into()), exit]
        })
        .collect();
    let widths: Vec<usize> =
        (0..5).map(|i| rows.iter().chain([&header]).map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in [&header].into_iter().chain(rows.iter()) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Runs `status` and returns its outcome for [`crate::host::finish`] to
/// print. Invalid settings are an error, printed by the caller like every command's.
pub async fn run(args: &StatusArgs) -> Result<HostOutcome, Error> {
    let project = project_name(args.project.as_deref())?;
    let probes = ProbeConfig::from_args(&args.probes)?;
    Ok(stack_status(project, &probes).await.outcome(args.format))
}

/// How long reading the cache bucket's rules and size may take.
const CACHE_READ_TIME: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn stack_status(project: String, probes: &ProbeConfig) -> StackStatus {
    let host = DockerHost::from_env();
    match containers(&host, &project).await {
        Ok(seen) => {
            // Without Docker, the probes below read the cache themselves.
            let http =
                crate::http::client(reqwest::header::HeaderMap::new(), crate::validate::DEFAULT_REQUESTS_PER_NODE)
                    .unwrap_or_default();
            let cache = cache_info(&http, probes, CACHE_READ_TIME).await;
            StackStatus { project, seen, cache: Some(cache) }
        }
        Err(e) => {
            let hint = e.hint(&host);
            let report = probe_until_ready(probes, None).await;
            let seen = Seen::NoDocker { error: e.to_string(), hint, probes: Box::new(report) };
            StackStatus { project, seen, cache: None }
        }
    }
}

async fn containers(host: &DockerHost, project: &str) -> Result<Seen, DockerError> {
    let engine = Engine::connect(host.clone()).await?;
    let mut services: Vec<ServiceStatus> = engine.project_containers(project).await?.into_iter().map(judge).collect();
    for s in services.iter_mut().filter(|s| s.meaning.is_some()) {
        s.logs = match engine.last_log_lines(&s.container.id, LOG_LINES).await {
            Ok(lines) => lines,
            Err(e) => vec![format!("(logs not available: {e})")],
        };
    }
    let info = EngineInfo {
        host: engine.host.shown(),
        version: engine.version.clone(),
        api_version: engine.api_version.clone(),
    };
    Ok(Seen::Containers { engine: info, services })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(service: &str, state: &str, health: Option<&str>, exit_code: Option<i64>) -> Container {
        Container {
            id: format!("id-{service}"),
            name: format!("p-{service}-1"),
            service: service.into(),
            number: 1,
            state: state.into(),
            health: health.map(String::from),
            exit_code,
        }
    }

    #[test]
    fn project_names_are_normalised_as_compose_does() {
        assert_eq!(normalize_project_name("My Project.v2"), "myprojectv2");
        assert_eq!(normalize_project_name("__-garage_init"), "garage_init");
        assert_eq!(normalize_project_name("Ünïcode"), "ncode");
        assert_eq!(normalize_project_name("..."), "");
        assert_eq!(project_name(Some("gi-e2e-x")).unwrap(), "gi-e2e-x");
        assert!(project_name(Some("Bad Name")).unwrap_err().to_string().contains("--project (COMPOSE_PROJECT_NAME)"));
    }

    #[test]
    fn garage_init_must_have_exited_zero_and_the_others_must_run() {
        assert!(judge(container("garage-init", "exited", None, Some(0))).ready);
        let failed = judge(container("garage-init", "exited", None, Some(4)));
        assert!(!failed.ready);
        assert_eq!(failed.meaning.as_deref(), Some("Garage rejected the admin token"));
        assert_eq!(failed.problem.as_deref(), Some("exited with code 4"));
        assert!(!judge(container("garage-init", "running", None, Some(0))).ready);

        assert!(judge(container("garage", "running", Some("healthy"), Some(0))).ready);
        assert!(judge(container("registry-ui", "running", None, Some(0))).ready);
        assert!(!judge(container("garage", "running", Some("starting"), Some(0))).ready);
        assert!(!judge(container("registry", "created", None, Some(0))).ready);
        assert!(!judge(container("garage", "exited", None, Some(137))).ready);
        assert_eq!(exit_meaning(137), "killed by signal 9");
        assert_eq!(exit_meaning(42), "not an exit code of garage-init");
    }

    #[test]
    fn no_containers_is_not_ready_and_says_how_to_start() {
        let status = StackStatus {
            project: "p".into(),
            seen: Seen::Containers {
                engine: EngineInfo { host: "h".into(), version: "v".into(), api_version: "1.41".into() },
                services: Vec::new(),
            },
            cache: None,
        };
        assert_eq!(status.code(), Code::NotReady);
        let Problem { message, hint } = status.problem().unwrap();
        assert!(message.contains("has no containers") && hint.contains("docker compose up -d"), "{message} {hint}");
        let outcome = status.outcome(OutputFormat::Json);
        assert_eq!((outcome.code, outcome.problems.len()), (Code::NotReady, 1));
        let Rendered::Document(json) = outcome.output else { panic!("{outcome:?}") };
        assert_eq!(json["errors"][0]["message"], message.as_str());
    }

    #[test]
    fn the_table_lines_up() {
        let services = vec![
            judge(container("garage", "running", Some("healthy"), Some(0))),
            judge(container("garage-init", "exited", None, Some(0))),
        ];
        let t = table(&services);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "SERVICE      CONTAINER        STATE    HEALTH   EXIT");
        assert_eq!(lines[1], "garage       p-garage-1       running  healthy  -");
        assert_eq!(lines[2], "garage-init  p-garage-init-1  exited   -        0");
    }
}
