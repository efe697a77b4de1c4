//! # garage-init
//!
//! Bootstraps a Garage 2.x object store over its admin API: node layout,
//! bucket, access key and grants, then proves with a signed S3 write that the
//! key works. Idempotent: a second run observes, finds nothing to do, and
//! changes nothing.
//!
//! # Layout
//!
//! - [`cli`]: flags and environment variables (clap), parsed only.
//! - [`validate`]: the validators of every value, and [`validate::ConfigError`],
//!   which names the setting a bad value came from. A leaf: it uses nothing
//!   of the crate but [`secret`].
//! - [`desired`]: the wanted state (cluster, buckets, keys, grants): domain
//!   types only.
//! - [`spec`]: the spec file (YAML) into a [`desired::Desired`].
//! - [`config`]: assembles a run's settings from the flags and the spec.
//!
//!   These settings modules depend on each other one way, with no cycle
//!   (a test below holds the source to this list):
//!   `config` → `cli`, `spec`, `desired`, `validate`, `secret`;
//!   `spec` → `desired`, `validate`, `secret`, `admin::types`;
//!   `cli` → `validate`, `exit`;
//!   `desired` → `secret`, `admin::types`;
//!   `validate` → `secret`.
//! - [`http`]: the one HTTP client shape, and capped reads of every answer.
//! - [`admin`]: the admin API v2 client: typed requests, answers and errors.
//! - [`converge`]: the level-triggered loop: `observe` (every read), `plan`
//!   (a pure function of wanted and observed state), `execute` (every write),
//!   `policy` (what each failure means: look again, try again, or stop),
//!   `wording` (report lines and step names), and the per-resource
//!   decisions `layout`, `key`, `bucket`, `lifecycle`.
//! - [`s3`]: the S3 client: the PUT/GET/DELETE proof, and a bucket's
//!   lifecycle rules.
//! - [`host`]: the host-side commands for the stack's consumers: `check`
//!   (are the registry and Garage up and initialized), `env` (connection
//!   settings), `status` (the compose project's containers, via Docker),
//!   `cache` (BuildKit's cache in the bucket: stats, verify, repair, gc).
//!   Each returns a [`host::HostOutcome`]; [`host::finish`] prints it.
//! - [`manual`]: shell completions and the man page, generated from [`cli`].
//! - [`wait`]: the overall deadline and the backoff between attempts.
//! - [`report`]: one line per resource, text or JSON.
//! - [`output`]: every write to stdout and stderr, the `Error:` block, and
//!   the `format_version` of every JSON object.
//! - [`error`], [`exit`]: what can go wrong, and the exit code of each.
//! - [`secret`]: a string that never prints.

pub mod admin;
pub mod cli;
pub mod config;
pub mod converge;
pub mod desired;
pub mod error;
pub mod exit;
pub mod host;
pub mod http;
pub mod manual;
pub mod output;
pub mod report;
pub mod s3;
pub mod secret;
pub mod spec;
pub mod validate;
pub mod wait;

use std::sync::{Arc, OnceLock};

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat, Verbosity};
use crate::config::ApplyConfig;
use crate::error::Error;
use crate::exit::Code;
use crate::report::Reporter;

/// Runs the command line to completion and prints the outcome; returns the exit code.
/// SIGINT and SIGTERM end the process from their own thread ([`exit_on_stop_signals`]).
pub async fn run(cli: Cli) -> Code {
    let (format, quiet) = (cli.output_format(), cli.verbosity().quiet());
    let result = match cli.command {
        None => apply(&cli.apply, Reporter::new(format, quiet)).await,
        Some(Command::Apply(args)) => apply(&args, Reporter::new(format, quiet)).await,
        Some(Command::Plan(args)) => plan(&args, Reporter::new(format, quiet)).await,
        Some(Command::Check(args)) => host::check::run(&args).await.map(host::finish),
        Some(Command::Env(args)) => host::env::run(&args).map(host::finish),
        Some(Command::Status(args)) => host::status::run(&args).await.map(host::finish),
        Some(Command::Cache(args)) => host::cache::run(&args).await.map(host::finish),
        Some(Command::Completions { shell }) => Ok(manual::completions(shell)),
        Some(Command::Man) => Ok(manual::man()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            print_error(&e, format);
            e.code()
        }
    }
}

async fn apply(args: &cli::ApplyArgs, mut reporter: Reporter) -> Result<Code, Error> {
    let cfg = ApplyConfig::from_args(args)?;
    converge::apply(&cfg, &mut reporter).await.map(|()| Code::Ok)
}

async fn plan(args: &cli::ApplyArgs, mut reporter: Reporter) -> Result<Code, Error> {
    use converge::Verdict;
    let cfg = ApplyConfig::from_args(args)?;
    let verdict = converge::preview(&cfg, &mut reporter).await?;
    Ok(match verdict {
        Verdict::NothingToDo => Code::Ok,
        Verdict::Changes => Code::PlanChanges,
        Verdict::DriftOnly => Code::PlanDrift,
    })
}

/// Ends the process with [`Code::Interrupted`] on SIGINT or SIGTERM, whatever
/// the run is doing: a thread of its own waits for the signals, so that no
/// call that blocks the run's thread (a file read, a name lookup) can keep
/// them waiting. As PID 1 in a container, a process that does not handle
/// SIGTERM ignores it, and `docker compose down` would wait 10 s.
///
/// Returns once both signals are handled, so that it can be called before
/// anything else runs. `format` says how to report the interruption; until
/// it is set, as text.
pub fn exit_on_stop_signals(format: Arc<OnceLock<LogFormat>>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // A signal that arrives before the handlers are in place waits for them
    // rather than ending the process with the default action.
    let _held = HeldSignals::hold();
    let (ready, listening) = std::sync::mpsc::channel();
    let waiter = move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
            Ok(runtime) => runtime,
            Err(e) => return drop(ready.send(Err(e))),
        };
        let stopped = runtime.block_on(async {
            let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                (Ok(term), Ok(int)) => (term, int),
                (Err(e), _) | (_, Err(e)) => {
                    let _ = ready.send(Err(e));
                    return false;
                }
            };
            let _ = ready.send(Ok(()));
            tokio::select! {
                _ = term.recv() => true,
                _ = int.recv() => true,
            }
        });
        if !stopped {
            return;
        }
        print_error(&Error::Interrupted, format.get().copied().unwrap_or(LogFormat::Text));
        std::process::exit(Code::Interrupted.as_u8().into());
    };
    std::thread::Builder::new().name("stop-signals".into()).spawn(waiter)?;
    listening.recv().unwrap_or_else(|_| Err(std::io::Error::other("the signal thread ended")))
}

/// SIGINT and SIGTERM blocked on the calling thread (and on threads it
/// starts) until dropped, when they are unblocked and a signal that arrived
/// in between is delivered. Unblocked even when the process started with
/// them blocked (a shell can pass on a mask with a SIGTERM pending in it):
/// handled, they end the run.
struct HeldSignals {
    stop: libc::sigset_t,
}

impl HeldSignals {
    fn hold() -> Option<Self> {
        // SAFETY: the set is plain data, initialised by sigemptyset before
        // it is read; pthread_sigmask changes only this thread's mask.
        unsafe {
            let mut stop: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut stop);
            libc::sigaddset(&mut stop, libc::SIGINT);
            libc::sigaddset(&mut stop, libc::SIGTERM);
            (libc::pthread_sigmask(libc::SIG_BLOCK, &stop, std::ptr::null_mut()) == 0).then_some(Self { stop })
        }
    }
}

impl Drop for HeldSignals {
    fn drop(&mut self) {
        // SAFETY: `stop` was initialised in `hold`.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &self.stop, std::ptr::null_mut()) };
    }
}

/// `Error: <what went wrong>` and a hint line, on stderr; or one JSON object on stdout.
pub fn print_error(e: &Error, format: LogFormat) {
    let hint = e.hint();
    match format {
        LogFormat::Text => output::error_block(e, hint.as_deref()),
        LogFormat::Json => tracing::error!(
            target: report::TARGET,
            format_version = output::JSON_FORMAT_VERSION,
            exit_code = e.code().as_u8(),
            hint = hint.as_deref().unwrap_or(""),
            "{e}"
        ),
    }
}

/// Diagnostics follow `-q`/`-v` (default: info for garage-init, warnings
/// from libraries), then `RUST_LOG`'s directives on top; report lines are
/// always on.
pub fn init_logging(format: LogFormat, verbosity: Verbosity) {
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let filter = match (verbosity, rust_log) {
        // RUST_LOG alone says everything, as it always has.
        (Verbosity::Level(0), Some(rust_log)) => EnvFilter::new(rust_log),
        // Its directives come after the flags', so that where both name a
        // target, RUST_LOG's level is kept. One it cannot read is skipped.
        (_, rust_log) => rust_log
            .unwrap_or_default()
            .split(',')
            .filter_map(|d| d.trim().parse().ok())
            .fold(EnvFilter::new(log_directives(verbosity)), EnvFilter::add_directive),
    };
    let filter = filter.add_directive(format!("{}=info", report::TARGET).parse().expect("static directive"));
    // A closed stderr or stdout must not change the exit code (see `output`):
    // tracing's own complaint about a failed write would go to a closed stderr.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).log_internal_errors(false);
    match format {
        LogFormat::Text => {
            use std::io::IsTerminal;
            builder
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
                .with_target(false)
                .init();
        }
        LogFormat::Json => builder.json().flatten_event(true).with_writer(std::io::stdout).init(),
    }
}

/// The diagnostics `-q` and `-v` ask for, as `RUST_LOG` would say it.
fn log_directives(verbosity: Verbosity) -> &'static str {
    match verbosity {
        Verbosity::Quiet => "error",
        Verbosity::Level(0) => "warn,garage_init=info",
        Verbosity::Level(1) => "warn,garage_init=debug",
        Verbosity::Level(2) => "info,garage_init=trace",
        Verbosity::Level(_) => "trace",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn each_v_says_more_and_q_says_least() {
        use super::{Verbosity, log_directives};
        let levels: Vec<_> = [Verbosity::Quiet, Verbosity::Level(0), Verbosity::Level(1), Verbosity::Level(2)]
            .into_iter()
            .map(log_directives)
            .collect();
        assert_eq!(levels, ["error", "warn,garage_init=info", "warn,garage_init=debug", "info,garage_init=trace"]);
        assert_eq!(log_directives(Verbosity::Level(7)), "trace");
    }

    /// The modules of the crate that a source file names (`crate::x`, or
    /// `crate::admin::types`), outside comments and its tests.
    fn crate_paths(source: &str) -> BTreeSet<String> {
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        let mut found = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let path: String =
                    rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
                let mut parts = path.split("::");
                let module = parts.next().unwrap_or_default();
                found.insert(match (module, parts.next()) {
                    ("admin", Some("types")) => "admin::types".to_string(),
                    _ => module.to_string(),
                });
            }
        }
        found
    }

    #[test]
    fn settings_modules_depend_one_way_as_the_layout_map_says() {
        for (file, source, expected) in [
            ("config", include_str!("config.rs"), &["cli", "desired", "secret", "spec", "validate"][..]),
            ("spec", include_str!("spec.rs"), &["admin::types", "desired", "secret", "validate"]),
            ("cli", include_str!("cli.rs"), &["exit", "validate"]),
            ("desired", include_str!("desired.rs"), &["admin::types", "secret"]),
            ("validate", include_str!("validate.rs"), &["secret"]),
        ] {
            let expected: BTreeSet<String> = expected.iter().map(|m| m.to_string()).collect();
            assert_eq!(crate_paths(source), expected, "src/{file}.rs: update the `//! # Layout` map in lib.rs too");
        }
    }

    /// The sibling modules a file of `converge/` names (`super::x`), outside comments and its tests.
    fn sibling_paths(source: &str) -> BTreeSet<String> {
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        code.lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .flat_map(|line| line.match_indices("super::").map(move |(i, _)| &line[i + "super::".len()..]))
            .map(|rest| rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
            .collect()
    }

    /// Within `converge/`, each module depends only on the ones before it in
    /// this list: the per-resource rules on none, then observation, the plan,
    /// execution, and the error policy that judges all of them.
    #[test]
    fn converge_modules_depend_one_way_without_a_circle() {
        let modules = [
            ("bucket", include_str!("converge/bucket.rs"), &[][..]),
            ("key", include_str!("converge/key.rs"), &[]),
            ("layout", include_str!("converge/layout.rs"), &[]),
            ("lifecycle", include_str!("converge/lifecycle.rs"), &[]),
            ("observe", include_str!("converge/observe.rs"), &["bucket", "layout", "lifecycle"]),
            ("plan", include_str!("converge/plan.rs"), &["bucket", "key", "layout", "lifecycle", "observe"]),
            ("wording", include_str!("converge/wording.rs"), &["bucket", "layout", "lifecycle", "observe", "plan"]),
            ("execute", include_str!("converge/execute.rs"), &["layout", "lifecycle", "observe", "plan"]),
            ("policy", include_str!("converge/policy.rs"), &["execute", "key", "lifecycle", "observe", "plan"]),
        ];
        for (i, (file, source, expected)) in modules.iter().enumerate() {
            let expected: BTreeSet<String> = expected.iter().map(|m| m.to_string()).collect();
            assert_eq!(sibling_paths(source), expected, "src/converge/{file}.rs");
            let earlier: Vec<&str> = modules[..i].iter().map(|m| m.0).collect();
            assert!(expected.iter().all(|m| earlier.contains(&m.as_str())), "{file} depends on a later module");
        }
    }
}
