//! What a run tells its user: one line per resource, then a final line.
//! Text goes to stdout for people; with `--format json` every line is a
//! JSON object (through `tracing`, target `garage_init::report`).

use std::fmt;
use std::io::Write;
use std::time::Duration;

use crate::cli::LogFormat;
use crate::output::JSON_FORMAT_VERSION;

/// The tracing target of report events. Logging setup always enables it, so
/// that `RUST_LOG=warn` quiets diagnostics but never the report.
pub const TARGET: &str = "garage_init::report";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    /// For the S3 check: it ran and succeeded.
    Passed,
    /// Garage differs from the wanted state in a way garage-init leaves alone.
    Drift,
    /// Worth attention, but no reason to fail (a listed node is down but holds its role).
    Warning,
    /// `plan`: apply would create this.
    ToCreate,
    /// `plan`: apply would change this.
    ToUpdate,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Passed => "passed",
            Self::Drift => "drift",
            Self::Warning => "warning",
            Self::ToCreate => "create",
            Self::ToUpdate => "update",
        })
    }
}

/// One resource's outcome: `bucket created buildkit-cache (id …)`.
#[derive(Debug, Clone)]
pub struct Line {
    pub resource: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

impl Line {
    pub fn new(resource: &'static str, outcome: Outcome, detail: impl Into<String>) -> Self {
        Self { resource, outcome, detail: detail.into() }
    }
}

/// What a plan would do: changes (created or updated), and drift left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanCounts {
    pub changes: usize,
    pub drift: usize,
}

#[derive(Debug)]
pub struct Reporter {
    format: LogFormat,
    /// `-q`: only drift and warnings are printed, and the closing line.
    quiet: bool,
    lines: Vec<Line>,
}

impl Reporter {
    pub fn new(format: LogFormat, quiet: bool) -> Self {
        Self { format, quiet, lines: Vec::new() }
    }

    /// Prints one resource's outcome as soon as it is known.
    pub fn record(&mut self, line: Line) {
        let worth_noting = matches!(line.outcome, Outcome::Drift | Outcome::Warning);
        if self.quiet && !worth_noting {
            self.lines.push(line);
            return;
        }
        match self.format {
            LogFormat::Text => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{:<9} {:<10} {}", line.resource, line.outcome.to_string(), line.detail);
            }
            LogFormat::Json => tracing::info!(
                target: TARGET,
                format_version = JSON_FORMAT_VERSION,
                resource = %line.resource,
                outcome = %line.outcome,
                detail = %line.detail,
                "{} {}", line.resource, line.outcome
            ),
        }
        self.lines.push(line);
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.lines.iter().filter(|l| l.outcome == outcome).count()
    }

    /// The closing line of `apply`: how long, what changed, and what it cost
    /// (admin requests sent; changes Garage made: one per created or updated line).
    pub fn finish(&self, elapsed: Duration, requests: u32) {
        let (created, updated) = (self.count(Outcome::Created), self.count(Outcome::Updated));
        let changes_made = created + updated;
        let mut changes = if created + updated == 0 {
            "nothing changed".to_string()
        } else {
            format!("{created} created, {updated} updated, {} unchanged", self.count(Outcome::Unchanged))
        };
        let drift = self.count(Outcome::Drift);
        if drift > 0 {
            changes.push_str(&format!(", {drift} drift left as is"));
        }
        let warnings = self.count(Outcome::Warning);
        if warnings > 0 {
            changes.push_str(&format!(", {warnings} warning{}", if warnings == 1 { "" } else { "s" }));
        }
        let ms = elapsed.as_millis() as u64;
        match self.format {
            LogFormat::Text => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "garage-init: converged in {ms} ms: {changes} ({requests} admin requests, {changes_made} changes)"
                );
            }
            LogFormat::Json => tracing::info!(
                target: TARGET,
                format_version = JSON_FORMAT_VERSION,
                elapsed_ms = ms,
                created,
                updated,
                unchanged = self.count(Outcome::Unchanged),
                drift,
                admin_requests = requests,
                changes = changes_made,
                "converged"
            ),
        }
    }

    /// The closing line of `plan`; returns what it counted.
    pub fn finish_plan(&self) -> PlanCounts {
        let (create, update) = (self.count(Outcome::ToCreate), self.count(Outcome::ToUpdate));
        let drift = self.count(Outcome::Drift);
        let summary = match (create + update, drift) {
            (0, 0) => "nothing to do".to_string(),
            (0, d) => format!("nothing to do; {d} drift that apply leaves as is"),
            (_, d) => format!(
                "{create} to create, {update} to update, {d} drift; run `garage-init apply` to make the changes"
            ),
        };
        match self.format {
            LogFormat::Text => {
                let _ = writeln!(std::io::stdout().lock(), "garage-init plan: {summary}");
            }
            LogFormat::Json => {
                tracing::info!(target: TARGET, format_version = JSON_FORMAT_VERSION, to_create = create, to_update = update, drift, "plan: {summary}")
            }
        }
        PlanCounts { changes: create + update, drift }
    }
}

/// Bytes for people: `100.0 GB`, `1.0 GB`, `2048 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 4] =
        [("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000)];
    for (unit, size) in UNITS {
        if n >= size {
            return format!("{:.1} {unit}", n as f64 / size as f64);
        }
    }
    format!("{n} B")
}

/// The first 16 hex digits of a node or bucket id, as `garage status` shows them.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(16)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(1_000_000_000), "1.0 GB");
        assert_eq!(human_bytes(250_790_436_864), "250.8 GB");
        assert_eq!(human_bytes(2048), "2.0 KB");
        assert_eq!(human_bytes(999), "999 B");
    }
}
