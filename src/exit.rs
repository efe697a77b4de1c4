//! Exit codes are an interface: compose's `service_completed_successfully`
//! waits for 0, scripts branch on the others. One function maps errors to them.

use std::process::ExitCode;

/// Every exit code garage-init uses. docs/apply.md and `--help` list the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Converged (or: the check passed, nothing to do).
    Ok = 0,
    /// Anything not covered below: Garage's storage failing, an unexpected answer from Garage, a
    /// layout Garage cannot compute.
    Failure = 1,
    /// Invalid input: a flag, variable, file or spec; nothing was sent to Garage.
    Config = 2,
    /// Garage did not answer in time: unreachable, or the deadline passed.
    Unreachable = 3,
    /// Garage rejected the admin token.
    Auth = 4,
    /// Garage holds something that contradicts the wanted state and garage-init will not overwrite it,
    /// or another writer changed what this run wrote before it was read back.
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
    /// `cache`: a manifest lists a blob the bucket lacks (or cannot be read): a build importing it fails.
    CacheBroken = 12,
    /// Interrupted by SIGINT or SIGTERM.
    Interrupted = 130,
}

impl Code {
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The code a process exited with, if it is one of garage-init's.
    pub fn from_exit_status(status: i64) -> Option<Code> {
        TABLE.iter().map(|(c, _)| *c).find(|c| i64::from(c.as_u8()) == status)
    }

    /// What the code means: its row of [`TABLE`].
    pub fn meaning(self) -> &'static str {
        TABLE.iter().find(|(c, _)| *c == self).map(|(_, m)| *m).expect("every code has a row")
    }
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code.as_u8())
    }
}

/// The one table of exit codes: `--help` renders it (whole for `apply`, a
/// subset for each other command), docs/apply.md lists it (a test compares
/// them), and `status` explains a garage-init container's exit code with it.
pub const TABLE: [(Code, &str); 14] = [
    (Code::Ok, "converged: the layout, key, bucket and grant are in place and the key can write"),
    (
        Code::Failure,
        "other failure: Garage's storage failing (a full disk, an I/O error), an unexpected answer from Garage, \
         or a layout Garage cannot compute",
    ),
    (Code::Config, "invalid input (flag, variable or file); nothing was sent to Garage"),
    (Code::Unreachable, "Garage unreachable, or the deadline passed while waiting for it"),
    (Code::Auth, "Garage rejected the admin token"),
    (
        Code::Conflict,
        "conflict: Garage holds a key, alias or layout that garage-init will not overwrite, or another writer changed rules this run wrote",
    ),
    (
        Code::Verify,
        "S3 refused the key: it could not write, read back and delete an object, or set the bucket's lifecycle rules",
    ),
    (
        Code::NotInitialized,
        "check: Garage answers but is not initialized (layout, bucket or key missing, or the key is refused)",
    ),
    (Code::NotReady, "status: a service is missing, stopped or unhealthy, or garage-init has not exited 0"),
    (Code::DockerUnreachable, "status: Docker did not answer; the network probes of `check` were reported instead"),
    (Code::PlanChanges, "plan: apply would make changes"),
    (Code::PlanDrift, "plan: nothing for apply to do, but Garage differs from the spec where apply leaves it (drift)"),
    (
        Code::CacheBroken,
        "cache: a manifest lists a blob the bucket lacks, or cannot be read: a build importing it fails",
    ),
    (Code::Interrupted, "interrupted (SIGINT or SIGTERM)"),
];

/// A command's own help table: which codes it uses, and where its wording
/// differs from [`TABLE`]'s, its own.
type CommandCodes = &'static [(Code, Option<&'static str>)];

/// The commands whose `--help` lists exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum For {
    Apply,
    Plan,
    Check,
    Env,
    Status,
    Cache,
}

impl For {
    pub const ALL: [For; 6] = [For::Apply, For::Plan, For::Check, For::Env, For::Status, For::Cache];

    fn codes(self) -> CommandCodes {
        match self {
            For::Apply => &[],
            For::Plan => &[
                (Code::Ok, Some("nothing to do: Garage matches the wanted state")),
                (Code::Failure, Some("other failure: an unexpected answer from Garage")),
                (Code::Config, Some("invalid input (flag, variable, file or spec); nothing was sent to Garage")),
                (Code::Unreachable, None),
                (Code::Auth, None),
                (
                    Code::Conflict,
                    Some("conflict: apply would stop on a key, alias or layout role it will not overwrite"),
                ),
                (Code::PlanChanges, Some("apply would make changes (listed)")),
                (
                    Code::PlanDrift,
                    Some(
                        "nothing for apply to do, but Garage differs from the spec where apply leaves it (drift, listed)",
                    ),
                ),
            ],
            For::Check => &[
                (Code::Ok, Some("ready: the registry answers, and the key can write to the bucket")),
                (
                    Code::Failure,
                    Some("other failure: an unexpected answer (is the address a registry, is it Garage's S3 port?)"),
                ),
                (Code::Config, Some("invalid input (flag, variable or file); nothing was sent")),
                (Code::Unreachable, Some("the registry or Garage is not reachable (start them: docker compose up -d)")),
                (
                    Code::NotInitialized,
                    Some("Garage answers but is not initialized (run: docker compose run --rm garage-init)"),
                ),
            ],
            For::Env => &[
                (Code::Ok, Some("printed")),
                (Code::Config, Some("invalid input (flag, variable or file); nothing was printed")),
            ],
            For::Status => &[
                (Code::Ok, Some("every service runs (healthy, where it has a healthcheck) and garage-init exited 0")),
                (Code::Config, Some("invalid input (flag, variable or file)")),
                (
                    Code::NotReady,
                    Some(
                        "not ready: no containers, a service stopped, restarting or unhealthy, or garage-init \
                         still running or exited non-zero",
                    ),
                ),
                (
                    Code::DockerUnreachable,
                    Some("Docker did not answer; the network probes of `check` were reported instead"),
                ),
            ],
            For::Cache => &[
                (
                    Code::Ok,
                    Some("done: every manifest is whole (verify, repair), or the stats or gc's list were printed"),
                ),
                (
                    Code::Failure,
                    Some("other failure: an unexpected answer from Garage's S3 API, or gc could not delete a blob"),
                ),
                (Code::Config, Some("invalid input (flag, variable or file); nothing was sent")),
                (Code::Unreachable, Some("Garage's S3 API is not reachable (start it: docker compose up -d)")),
                (Code::Verify, Some("S3 refused the key: it may not list, read or delete in the bucket")),
                (Code::NotInitialized, Some("the bucket does not exist (run: docker compose run --rm garage-init)")),
                (
                    Code::CacheBroken,
                    Some(
                        "a manifest lists a blob the bucket lacks, or cannot be read (verify; repair without \
                         --yes; gc, which then deletes nothing)",
                    ),
                ),
            ],
        }
    }

    /// The rows of this command's table.
    pub fn rows(self) -> Vec<(Code, &'static str)> {
        match self.codes() {
            [] => TABLE.to_vec(),
            codes => codes.iter().map(|(c, text)| (*c, text.unwrap_or_else(|| c.meaning()))).collect(),
        }
    }
}

/// Help lines are wrapped at this width; continuation lines are indented under the text.
const HELP_WIDTH: usize = 100;

/// `Exit codes:` and one aligned row per code, for `after_long_help`.
pub fn help(command: For) -> String {
    let mut out = String::from("Exit codes:");
    for (code, text) in command.rows() {
        let mut line = format!("\n  {:<5}", code.as_u8());
        let mut width = line.len() - 1;
        for word in text.split_whitespace() {
            if width + 1 + word.len() > HELP_WIDTH && width > 7 {
                line.push_str("\n       ");
                width = 7;
            } else if width > 7 {
                line.push(' ');
                width += 1;
            }
            line.push_str(word);
            width += word.len();
        }
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_row_and_the_table_no_other_code() {
        for (code, meaning) in TABLE {
            assert_eq!(TABLE.iter().filter(|(c, _)| *c == code).count(), 1, "exit code {}", code.as_u8());
            assert!(!meaning.is_empty() && code.meaning() == meaning);
            assert_eq!(Code::from_exit_status(i64::from(code.as_u8())), Some(code));
        }
        // A variant without a row would have no meaning to print: the last one has its row.
        assert_eq!(Code::Interrupted.meaning(), "interrupted (SIGINT or SIGTERM)");
        assert_eq!(Code::Auth.meaning(), "Garage rejected the admin token");
        assert_eq!(Code::from_exit_status(42), None);
        assert_eq!(Code::from_exit_status(-1), None);
    }

    #[test]
    fn help_renders_the_table_aligned_and_wrapped() {
        let help = help(For::Apply);
        assert!(help.starts_with("Exit codes:\n  0    converged: "), "{help}");
        assert!(help.contains("\n  130  interrupted (SIGINT or SIGTERM)"), "{help}");
        assert!(help.lines().all(|l| l.len() <= HELP_WIDTH), "{help}");
        let numbered = help.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()));
        assert_eq!(numbered.count(), TABLE.len());
        // A wrapped row continues under its text.
        let status = super::help(For::Status);
        let continued = status.lines().find(|l| l.starts_with("       ")).expect("the long row of 8 wraps");
        assert!(continued.trim_start().starts_with(|c: char| c.is_ascii_lowercase()), "{status}");
    }

    #[test]
    fn each_command_lists_its_own_codes() {
        let codes = |f: For| f.rows().into_iter().map(|(c, _)| c).collect::<Vec<_>>();
        assert_eq!(codes(For::Apply), TABLE.map(|(c, _)| c).to_vec());
        assert!(codes(For::Plan).contains(&Code::PlanChanges) && codes(For::Plan).contains(&Code::PlanDrift));
        assert!(codes(For::Check).contains(&Code::NotInitialized) && !codes(For::Check).contains(&Code::Verify));
        assert_eq!(codes(For::Env), vec![Code::Ok, Code::Config]);
        assert!(codes(For::Status).contains(&Code::DockerUnreachable));
        // A command's own wording, where it has one; the table's elsewhere.
        assert_eq!(For::Plan.rows()[4], (Code::Auth, Code::Auth.meaning()));
        assert_eq!(For::Env.rows()[0].1, "printed");
    }
}
