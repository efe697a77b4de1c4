//! The Docker Engine API through bollard: the containers of one compose
//! project, and the last log lines of one container.
//!
//! `DOCKER_HOST` is honoured (default `unix:///var/run/docker.sock`), the API
//! version is negotiated (Docker 20.10 speaks 1.41), and every call has a
//! timeout. Container lists of API 1.41 carry no health, so each container
//! is inspected.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions, LogsOptions};
use futures_util::StreamExt;

/// How long one Docker API call may take.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
const NUMBER_LABEL: &str = "com.docker.compose.container-number";
const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No answer: no socket, refused, unsupported address.
    #[error("Docker not reachable at {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("Docker at {host} did not answer within {}s", DOCKER_TIMEOUT.as_secs())]
    Timeout { host: String },
    /// The engine answered with an error.
    #[error("Docker at {host} answered {status}: {message}")]
    Api { host: String, status: u16, message: String },
}

impl DockerError {
    fn from_bollard(e: BollardError, host: &str) -> Self {
        let host = host.to_string();
        match e {
            BollardError::DockerResponseServerError { status_code, message } => {
                Self::Api { host, status: status_code, message }
            }
            BollardError::RequestTimeoutError => Self::Timeout { host },
            BollardError::SocketNotFoundError(path) => {
                Self::Unreachable { host, reason: format!("the socket {path} does not exist") }
            }
            BollardError::UnsupportedURISchemeError { uri } => Self::Unreachable {
                host,
                reason: format!("`{uri}` is not a unix:// address, the only kind this build speaks"),
            },
            other => Self::Unreachable { host, reason: innermost(&other) },
        }
    }

    /// What to do next, naming where the address came from.
    pub fn hint(&self, host: &DockerHost) -> String {
        if host.from_env {
            "Is the Docker daemon running? DOCKER_HOST is set: check that it points at the daemon's socket.".into()
        } else {
            format!("Is the Docker daemon running? Set DOCKER_HOST if it listens elsewhere than {DEFAULT_HOST}.")
        }
    }
}

/// The innermost cause of an error, e.g. "Connection refused (os error 111)".
fn innermost(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Where the Docker engine is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerHost {
    pub address: String,
    /// Taken from `DOCKER_HOST` rather than the default.
    pub from_env: bool,
}

impl DockerHost {
    pub fn from_env() -> Self {
        match std::env::var("DOCKER_HOST") {
            Ok(address) if !address.trim().is_empty() => Self { address: address.trim().to_string(), from_env: true },
            _ => Self { address: DEFAULT_HOST.to_string(), from_env: false },
        }
    }

    /// `unix:///x.sock (DOCKER_HOST)` or `unix:///var/run/docker.sock`.
    pub fn shown(&self) -> String {
        if self.from_env { format!("{} (DOCKER_HOST)", self.address) } else { self.address.clone() }
    }
}

/// One container of a compose project, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub service: String,
    pub number: u32,
    /// `running`, `exited`, `restarting`, `created`, ...
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`; `None` without a healthcheck.
    pub health: Option<String>,
    /// Meaningful once the container has exited.
    pub exit_code: Option<i64>,
}

/// A connected, version-negotiated engine.
pub struct Engine {
    docker: Docker,
    pub host: DockerHost,
    /// `20.10.24`.
    pub version: String,
    /// `1.41`.
    pub api_version: String,
}

impl Engine {
    pub async fn connect(host: DockerHost) -> Result<Self, DockerError> {
        let shown = host.shown();
        // What `Docker::connect_with_defaults` does, with the address we show.
        let docker = Docker::connect_with_host(&host.address)
            .map_err(|e| DockerError::from_bollard(e, &shown))?
            .with_timeout(DOCKER_TIMEOUT);
        let docker = timed(&shown, docker.negotiate_version()).await?;
        let version = timed(&shown, docker.version()).await?;
        Ok(Self {
            docker,
            host,
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
        })
    }

    /// The project's containers, stopped ones included, without one-off
    /// `docker compose run` containers; by service, then number.
    pub async fn project_containers(&self, project: &str) -> Result<Vec<Container>, DockerError> {
        let shown = self.host.shown();
        let filters = HashMap::from([("label".to_string(), vec![format!("{PROJECT_LABEL}={project}")])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let summaries = timed(&shown, self.docker.list_containers(Some(options))).await?;
        let mut containers = Vec::new();
        for summary in summaries {
            let labels = summary.labels.unwrap_or_default();
            if labels.get(ONEOFF_LABEL).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                continue;
            }
            let Some(id) = summary.id else { continue };
            // API 1.41 lists no health: inspect. A container removed in between is skipped.
            let inspect = match timed(&shown, self.docker.inspect_container(&id, None::<InspectContainerOptions>)).await
            {
                Ok(inspect) => inspect,
                Err(DockerError::Api { status: 404, .. }) => continue,
                Err(e) => return Err(e),
            };
            let state = inspect.state.unwrap_or_default();
            let health =
                state.health.and_then(|h| h.status).map(|s| s.to_string()).filter(|s| !s.is_empty() && s != "none");
            let name = inspect.name.unwrap_or_default().trim_start_matches('/').to_string();
            containers.push(Container {
                id,
                name,
                service: labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
                number: labels.get(NUMBER_LABEL).and_then(|n| n.parse().ok()).unwrap_or(0),
                state: state.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                health,
                exit_code: state.exit_code,
            });
        }
        containers.sort_by(|a, b| (&a.service, a.number, &a.name).cmp(&(&b.service, b.number, &b.name)));
        Ok(containers)
    }

    /// The last `n` lines the container wrote, stdout and stderr interleaved.
    pub async fn last_log_lines(&self, id: &str, n: usize) -> Result<Vec<String>, DockerError> {
        let shown = self.host.shown();
        let options = LogsOptions { stdout: true, stderr: true, tail: n.to_string(), ..Default::default() };
        let collect = async {
            let mut stream = self.docker.logs(id, Some(options));
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(chunk?.as_ref());
            }
            Ok::<_, BollardError>(bytes)
        };
        let bytes = timed(&shown, collect).await?;
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        Ok(lines[lines.len().saturating_sub(n)..].to_vec())
    }
}

/// One Docker call within [`DOCKER_TIMEOUT`].
async fn timed<T>(host: &str, call: impl Future<Output = Result<T, BollardError>>) -> Result<T, DockerError> {
    match tokio::time::timeout(DOCKER_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| DockerError::from_bollard(e, host)),
        Err(_) => Err(DockerError::Timeout { host: host.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_unreachable_and_named() {
        let e = DockerError::from_bollard(BollardError::SocketNotFoundError("/nonexistent.sock".into()), "x");
        assert_eq!(e.to_string(), "Docker not reachable at x: the socket /nonexistent.sock does not exist");
        let env = DockerHost { address: "unix:///nonexistent.sock".into(), from_env: true };
        assert_eq!(env.shown(), "unix:///nonexistent.sock (DOCKER_HOST)");
        assert!(e.hint(&env).contains("DOCKER_HOST is set"));
        let default = DockerHost { address: DEFAULT_HOST.into(), from_env: false };
        assert!(e.hint(&default).contains("Set DOCKER_HOST"));
    }

    #[test]
    fn tcp_hosts_are_refused_with_a_reason() {
        let e = DockerError::from_bollard(BollardError::UnsupportedURISchemeError { uri: "tcp://h:2375".into() }, "x");
        assert!(e.to_string().contains("only kind this build speaks"), "{e}");
    }
}
