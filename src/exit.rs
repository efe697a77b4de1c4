//! Exit codes are an interface: compose's `service_completed_successfully`
//! waits for 0, scripts branch on the others. One function maps errors to them.

use std::process::ExitCode;

/// Every exit code garage-init uses. The README and `--help` list the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Converged (or: the check passed, nothing to do).
    Ok = 0,
    /// Anything not covered below: an unexpected answer from Garage, a layout Garage cannot compute.
    Failure = 1,
    /// Invalid input: a flag, variable, file or spec; nothing was sent to Garage.
    Config = 2,
    /// Garage did not answer in time: unreachable, or the deadline passed.
    Unreachable = 3,
    /// Garage rejected the admin token.
    Auth = 4,
    /// Garage holds something that contradicts the wanted state and garage-init will not overwrite it.
    Conflict = 5,
    /// The access key could not write, read back and delete an object through S3.
    Verify = 6,
    /// `check`: Garage answers but is not initialized (no layout, bucket or key, or the key is refused).
    NotInitialized = 7,
    /// `status`: a service of the compose project is missing, stopped or unhealthy, or garage-init
    /// has not exited 0.
    NotReady = 8,
    /// `status`: the Docker engine did not answer; the probes of `check` were reported instead.
    DockerUnreachable = 9,
    /// `plan`: apply would change something.
    PlanChanges = 10,
    /// `plan`: nothing for apply to do, but Garage differs from the spec where apply leaves it alone.
    PlanDrift = 11,
    /// Interrupted by SIGINT or SIGTERM.
    Interrupted = 130,
}

impl Code {
    /// Every code, in table order.
    pub const ALL: [Code; 13] = [
        Code::Ok,
        Code::Failure,
        Code::Config,
        Code::Unreachable,
        Code::Auth,
        Code::Conflict,
        Code::Verify,
        Code::NotInitialized,
        Code::NotReady,
        Code::DockerUnreachable,
        Code::PlanChanges,
        Code::PlanDrift,
        Code::Interrupted,
    ];

    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The code a process exited with, if it is one of garage-init's.
    pub fn from_exit_status(status: i64) -> Option<Code> {
        Self::ALL.into_iter().find(|c| i64::from(c.as_u8()) == status)
    }

    /// What the code means, as the help table says it (without the number).
    pub fn meaning(self) -> &'static str {
        let number = self.as_u8().to_string();
        EXIT_CODES_HELP
            .lines()
            .find_map(|line| {
                let line = line.trim_start();
                let rest = line.strip_prefix(number.as_str())?;
                rest.starts_with(' ').then(|| rest.trim_start())
            })
            .unwrap_or("")
    }
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code.as_u8())
    }
}

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    converged: the layout, key, bucket and grant are in place and the key can write
  1    other failure: an unexpected answer from Garage, or a layout Garage cannot compute
  2    invalid input (flag, variable or file); nothing was sent to Garage
  3    Garage unreachable, or the deadline passed while waiting for it
  4    Garage rejected the admin token
  5    conflict: Garage holds a key or layout that garage-init will not overwrite
  6    S3 check failed: the key could not write, read back and delete an object
  7    check: Garage answers but is not initialized (layout, bucket or key missing, or the key is refused)
  8    status: a service is missing, stopped or unhealthy, or garage-init has not exited 0
  9    status: Docker did not answer; the network probes of `check` were reported instead
  10   plan: apply would make changes
  11   plan: nothing for apply to do, but Garage differs from the spec where apply leaves it (drift)
  130  interrupted (SIGINT or SIGTERM)";

/// `garage-init plan`.
pub const PLAN_EXIT_CODES_HELP: &str = "\
Exit codes:
  0    nothing to do: Garage matches the wanted state
  1    other failure: an unexpected answer from Garage
  2    invalid input (flag, variable, file or spec); nothing was sent to Garage
  3    Garage unreachable, or the deadline passed while waiting for it
  4    Garage rejected the admin token
  5    conflict: apply would stop on a key or alias it will not overwrite
  10   apply would make changes (listed)
  11   nothing for apply to do, but Garage differs from the spec where apply leaves it (drift, listed)";

/// `garage-init check`.
pub const CHECK_EXIT_CODES_HELP: &str = "\
Exit codes:
  0    ready: the registry answers, and the key can write to the bucket
  1    other failure: an unexpected answer (is the address a registry, is it Garage's S3 port?)
  2    invalid input (flag, variable or file); nothing was sent
  3    the registry or Garage is not reachable (start them: docker compose up -d)
  7    Garage answers but is not initialized (run: docker compose run --rm garage-init)";

/// `garage-init env`.
pub const ENV_EXIT_CODES_HELP: &str = "\
Exit codes:
  0    printed
  2    invalid input (flag, variable or file); nothing was printed";

/// `garage-init status`.
pub const STATUS_EXIT_CODES_HELP: &str = "\
Exit codes:
  0    every service runs (healthy, where it has a healthcheck) and garage-init exited 0
  2    invalid input (flag, variable or file)
  8    not ready: no containers, a service stopped, restarting or unhealthy, or garage-init
       still running or exited non-zero
  9    Docker did not answer; the network probes of `check` were reported instead";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_table_matches_the_codes() {
        for (code, word) in [
            (Code::Ok, "converged"),
            (Code::Failure, "other failure"),
            (Code::Config, "invalid input"),
            (Code::Unreachable, "unreachable"),
            (Code::Auth, "admin token"),
            (Code::Conflict, "conflict"),
            (Code::Verify, "S3 check failed"),
            (Code::NotInitialized, "not initialized"),
            (Code::NotReady, "status"),
            (Code::DockerUnreachable, "Docker did not answer"),
            (Code::PlanChanges, "apply would make changes"),
            (Code::PlanDrift, "drift"),
            (Code::Interrupted, "interrupted"),
        ] {
            let line = EXIT_CODES_HELP
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{} ", code.as_u8())))
                .unwrap_or_else(|| panic!("no help line for exit code {}", code.as_u8()));
            assert!(line.contains(word), "help line `{line}` should mention `{word}`");
        }
    }

    #[test]
    fn every_code_has_a_meaning_and_the_table_no_other_code() {
        for code in Code::ALL {
            assert!(!code.meaning().is_empty(), "exit code {} has no line in EXIT_CODES_HELP", code.as_u8());
            assert_eq!(Code::from_exit_status(i64::from(code.as_u8())), Some(code));
        }
        let numbered = EXIT_CODES_HELP.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()));
        assert_eq!(numbered.count(), Code::ALL.len());
        assert_eq!(Code::Auth.meaning(), "Garage rejected the admin token");
        assert_eq!(Code::from_exit_status(42), None);
        assert_eq!(Code::from_exit_status(-1), None);
    }

    #[test]
    fn command_tables_agree_with_the_main_table() {
        // Each command's table lists a subset of the codes, and only codes that exist.
        for table in [CHECK_EXIT_CODES_HELP, ENV_EXIT_CODES_HELP, STATUS_EXIT_CODES_HELP, PLAN_EXIT_CODES_HELP] {
            for line in table.lines().skip(1) {
                let Some(number) = line.split_whitespace().next().and_then(|n| n.parse::<i64>().ok()) else {
                    continue; // a continuation line
                };
                assert!(Code::from_exit_status(number).is_some(), "unknown exit code in `{line}`");
            }
        }
        for (table, code) in [
            (CHECK_EXIT_CODES_HELP, Code::Unreachable),
            (CHECK_EXIT_CODES_HELP, Code::NotInitialized),
            (STATUS_EXIT_CODES_HELP, Code::NotReady),
            (STATUS_EXIT_CODES_HELP, Code::DockerUnreachable),
            (PLAN_EXIT_CODES_HELP, Code::PlanChanges),
            (PLAN_EXIT_CODES_HELP, Code::PlanDrift),
        ] {
            assert!(table.lines().any(|l| l.trim_start().starts_with(&format!("{} ", code.as_u8()))));
        }
    }
}
