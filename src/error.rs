//! The errors a run can end with, each with its exit code and a hint that
//! names the next thing to try.

use std::time::Duration;

use crate::admin::AdminError;
use crate::exit::Code;
use crate::validate::ConfigError;
use crate::wait::Pending;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("Garage's admin API at {url} rejected the admin token ({status} {code})")]
    Auth { url: String, status: u16, code: String },

    /// The deadline passed: the steps it left unfinished, and the requests
    /// it cut off ("GetClusterStatus at http://garage:3903 (sent 2.9s earlier)").
    #[error("gave up after {}: {}{}", secs(*.deadline), unfinished(.pending, .in_flight), awaited(.in_flight))]
    Deadline { deadline: Duration, pending: Vec<Pending>, in_flight: Vec<String> },

    /// Garage answers, and its answer says that its own storage fails.
    #[error("Garage's storage is failing (a full disk, or an I/O error): {answer}")]
    Storage { answer: String },

    #[error("{message}")]
    Conflict { message: String, hint: String },

    #[error("S3 check against {url} failed: {reason}")]
    Verify { url: String, reason: String, hint: String },

    #[error("lifecycle rules of bucket {bucket}, through the S3 API at {url}: {reason}")]
    Lifecycle { bucket: String, url: String, reason: String, hint: String },

    #[error("layout: Garage refused the layout: {message}")]
    Layout { message: String },

    #[error("{0}")]
    Admin(AdminError),

    #[error("interrupted")]
    Interrupted,
}

/// "X was not ready; last error: E" for one step; every step with its last error for more.
fn unfinished(pending: &[Pending], in_flight: &[String]) -> String {
    let last = |p: &Pending| p.last_error.clone().unwrap_or_else(|| "none yet".into());
    match pending {
        [] if in_flight.is_empty() => "the run had not finished".into(),
        [] => "a request had no answer yet".into(),
        [one] => format!("{} was not ready; last error: {}", one.step, last(one)),
        many => {
            let each: Vec<String> = many
                .iter()
                .map(|p| match &p.last_error {
                    Some(e) => format!("{} (last error: {e})", p.step),
                    None => format!("{} (not attempted yet)", p.step),
                })
                .collect();
            format!("{} steps unfinished: {}", many.len(), each.join("; "))
        }
    }
}

/// "; no answer yet to R1, R2": the requests the deadline cut off.
fn awaited(in_flight: &[String]) -> String {
    if in_flight.is_empty() { String::new() } else { format!("; no answer yet to {}", in_flight.join(", ")) }
}

/// Words in Garage's answers that say its own storage fails: its database's
/// errors (`DB error: LMDB: …`), and the operating system's for a full or
/// failing disk. Garage passes them on inside a 500 or 503.
const STORAGE_ERRORS: [&str; 5] =
    ["DB error", "No space left on device", "Input/output error", "Read-only file system", "Disk quota exceeded"];

/// Whether an error message of Garage's says that its storage fails.
pub fn storage_failure(message: &str) -> bool {
    STORAGE_ERRORS.iter().any(|e| message.contains(e))
}

/// What to do about Garage's storage failing.
pub const STORAGE_HINT: &str = "Free space on the volumes of Garage's metadata_dir and data_dir, or replace the \
    failing disk (`docker compose logs garage` shows the error), then run garage-init again.";

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{:.1}s", d.as_secs_f64()) }
}

/// Something Garage holds that contradicts the wanted state and that
/// garage-init will not overwrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub message: String,
    pub hint: String,
}

impl From<Conflict> for Error {
    fn from(c: Conflict) -> Self {
        Error::Conflict { message: c.message, hint: c.hint }
    }
}

impl Error {
    pub fn code(&self) -> Code {
        match self {
            Self::Config(_) => Code::Config,
            Self::Auth { .. } => Code::Auth,
            Self::Deadline { .. } => Code::Unreachable,
            Self::Storage { .. } => Code::Failure,
            Self::Conflict { .. } => Code::Conflict,
            Self::Verify { .. } | Self::Lifecycle { .. } => Code::Verify,
            Self::Layout { .. } | Self::Admin(_) => Code::Failure,
            Self::Interrupted => Code::Interrupted,
        }
    }

    /// What to do next, in a sentence that names a command or a setting.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Config(e) if e.setting.starts_with("spec ") => {
                Some("Fix the spec and run again; docs/cluster.md has the format.".into())
            }
            Self::Config(_) => Some("Fix the setting and run again; see `garage-init --help`.".into()),
            Self::Auth { .. } => Some(
                "Compare the token (--admin-token, GARAGE_INIT_ADMIN_TOKEN or GARAGE_INIT_ADMIN_TOKEN_FILE) \
                 with admin_token in Garage's config or its GARAGE_ADMIN_TOKEN variable."
                    .into(),
            ),
            Self::Deadline { pending, .. }
                if pending.iter().filter_map(|p| p.last_error.as_deref()).any(storage_failure) =>
            {
                Some(STORAGE_HINT.into())
            }
            Self::Storage { .. } => Some(STORAGE_HINT.into()),
            Self::Deadline { .. } => Some(
                "Is Garage running and is the URL right? Check `docker compose ps garage` and \
                 `docker compose logs garage`, or give more time with --deadline."
                    .into(),
            ),
            Self::Conflict { hint, .. } | Self::Verify { hint, .. } | Self::Lifecycle { hint, .. } => {
                Some(hint.clone())
            }
            Self::Layout { .. } => Some(
                "Start every node of the cluster, or check replication_factor in garage.toml; \
                 `docker compose exec garage /garage status` shows the nodes and the layout."
                    .into(),
            ),
            Self::Admin(e) if e.is_foreign() => Some(
                "Point --admin-url (GARAGE_INIT_ADMIN_URL) at Garage's admin API: [admin] api_bind_addr in \
                 garage.toml, port 3903 by default; `docker compose port garage 3903` shows it from the host."
                    .into(),
            ),
            Self::Admin(_) => Some(
                "Run again with RUST_LOG=debug to see each request; `docker compose logs garage` shows Garage's side."
                    .into(),
            ),
            Self::Interrupted => None,
        }
    }

    /// An admin error that reached the top of a step: authentication
    /// failures get their own class, everything else is unexpected.
    pub fn from_admin(e: AdminError, url: &url::Url) -> Self {
        match e {
            AdminError::Api { status, code, .. } if status == 403 => Self::Auth { url: display_url(url), status, code },
            other => Self::Admin(other),
        }
    }
}

/// `http://garage:3903` rather than `http://garage:3903/`.
pub fn display_url(url: &url::Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_class_has_its_own_code() {
        let url: url::Url = "http://garage:3903".parse().unwrap();
        let auth = Error::from_admin(
            AdminError::Api {
                endpoint: "GetClusterStatus",
                at: "http://garage:3903".into(),
                status: 403,
                code: "AccessDenied".into(),
                message: "x".into(),
            },
            &url,
        );
        assert_eq!(auth.code(), Code::Auth);
        assert!(auth.to_string().contains("http://garage:3903 rejected"));
        assert!(auth.hint().unwrap().contains("admin_token"));

        let other = Error::from_admin(
            AdminError::Api {
                endpoint: "CreateBucket",
                at: "http://garage:3903".into(),
                status: 400,
                code: "InvalidRequest".into(),
                message: "x".into(),
            },
            &url,
        );
        assert_eq!(other.code(), Code::Failure);
        assert!(other.hint().unwrap().contains("docker compose logs garage"), "every failure names a next step");

        let pending = |step: &str, e: Option<&str>| Pending { step: step.into(), last_error: e.map(Into::into) };
        let deadline = Error::Deadline {
            deadline: Duration::from_secs(3),
            pending: vec![pending("Garage's admin API at http://garage:3903", Some("Connection refused"))],
            in_flight: vec![],
        };
        assert_eq!(deadline.code(), Code::Unreachable);
        assert_eq!(
            deadline.to_string(),
            "gave up after 3s: Garage's admin API at http://garage:3903 was not ready; last error: Connection refused"
        );
        let several = Error::Deadline {
            deadline: Duration::from_millis(2500),
            pending: vec![pending("cluster readiness", Some("Quorum is not available")), pending("key GK1", None)],
            in_flight: vec![],
        };
        assert_eq!(
            several.to_string(),
            "gave up after 2.5s: 2 steps unfinished: cluster readiness (last error: Quorum is not available); \
             key GK1 (not attempted yet)"
        );
        let cut_off = Error::Deadline {
            deadline: Duration::from_secs(3),
            pending: vec![pending("Garage's admin API at http://garage:3903", None)],
            in_flight: vec!["GetClusterStatus at http://garage:3903 (sent 3.0s earlier)".into()],
        };
        assert_eq!(
            cut_off.to_string(),
            "gave up after 3s: Garage's admin API at http://garage:3903 was not ready; last error: none yet; \
             no answer yet to GetClusterStatus at http://garage:3903 (sent 3.0s earlier)"
        );
    }

    #[test]
    fn garages_own_storage_failing_is_said_as_such() {
        let full = "Internal error: Could not reach quorum of 1 (sets=Some(1)). 0 of 1 request succeeded, others \
                    returned errors: [\"9d16: DB error: LMDB: No space left on device (os error 28)\"]";
        assert!(storage_failure(full));
        assert!(!storage_failure("Internal error: Could not reach quorum of 2. 1 of 3 request succeeded: Timeout"));
        let deadline = Error::Deadline {
            deadline: Duration::from_secs(3),
            pending: vec![Pending { step: "S3 check".into(), last_error: Some(full.into()) }],
            in_flight: vec![],
        };
        assert!(deadline.hint().unwrap().starts_with("Free space"), "{:?}", deadline.hint());
        let storage = Error::Storage { answer: format!("S3 PUT at http://garage:3900 answered 503: {full}") };
        assert_eq!(storage.code(), Code::Failure);
        assert!(storage.to_string().starts_with("Garage's storage is failing (a full disk, or an I/O error): S3 PUT"));
    }
}
