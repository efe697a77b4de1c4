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
    /// Interrupted by SIGINT or SIGTERM.
    Interrupted = 130,
}

impl Code {
    pub fn as_u8(self) -> u8 {
        self as u8
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
  130  interrupted (SIGINT or SIGTERM)";

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
            (Code::Interrupted, "interrupted"),
        ] {
            let line = EXIT_CODES_HELP
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{} ", code.as_u8())))
                .unwrap_or_else(|| panic!("no help line for exit code {}", code.as_u8()));
            assert!(line.contains(word), "help line `{line}` should mention `{word}`");
        }
    }
}
