//! Sets GARAGE_INIT_VERSION, what `--version` prints: the crate's version, and
//! the commit it was built from when known (GARAGE_INIT_COMMIT, as the
//! Dockerfile passes it, or the git checkout being built).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GARAGE_INIT_COMMIT");
    let version = env!("CARGO_PKG_VERSION");
    let commit = std::env::var("GARAGE_INIT_COMMIT").ok().filter(|c| !c.trim().is_empty()).or_else(git_commit);
    let line = match commit {
        Some(c) => format!("{version} (commit {})", &c.trim()[..c.trim().len().min(12)]),
        None => version.to_string(),
    };
    println!("cargo:rustc-env=GARAGE_INIT_VERSION={line}");
}

/// HEAD's commit, when building inside a git checkout with git installed. The
/// build script runs again when HEAD or the branch it names moves.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed={}", git_dir.join(branch).display());
        println!("cargo:rerun-if-changed={}", git_dir.join("packed-refs").display());
    }
    git(&["rev-parse", "HEAD"]).filter(|c| c.len() >= 12)
}
