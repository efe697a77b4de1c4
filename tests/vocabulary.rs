//! One vocabulary across commands: the flag names every command shares, the
//! former names that keep working, flags a command does not use refused, the
//! JSON format version, `-q`/`-v`, `--version`, and the warning about the
//! public built-in secret. Nothing here needs a server: these are the
//! commands that answer (or refuse) before any request.

use std::process::{Command, Output};

fn garage_init(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_garage-init")).args(args).env_clear().output().expect("run garage-init")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn host_commands_take_apply_s_url_flags_and_still_the_former_names() {
    let new = garage_init(&["env", "--format", "json", "--s3-url", "http://127.0.0.1:9000"]);
    let old = garage_init(&["env", "--format", "json", "--s3-endpoint", "http://127.0.0.1:9000"]);
    for out in [&new, &old] {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(json(out)["s3_endpoint"], "http://127.0.0.1:9000");
    }
    // A bad value is named by the flag's one name, whichever was typed.
    let bad = garage_init(&["check", "--admin-endpoint", "ftp://localhost:3903"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("--admin-url (GARAGE_INIT_ADMIN_ENDPOINT)"), "{}", text(&bad.stderr));
    let bad = garage_init(&["cache", "stats", "--s3-endpoint", "ftp://localhost:3900"]);
    assert!(text(&bad.stderr).contains("--s3-url (GARAGE_INIT_S3_ENDPOINT)"), "{}", text(&bad.stderr));
}

/// `apply` and `plan` print their error as one JSON object with `--format
/// json`, and with the former `--log-format json`. Like every option of a
/// command, they follow the command's name (`garage-init` alone is `apply`).
#[test]
fn apply_and_plan_take_format_and_still_log_format() {
    for args in [
        &["plan", "--format", "json"][..],
        &["apply", "--format", "json"],
        &["--format", "json"],
        &["--log-format", "json"],
        &["plan", "--log-format", "json"],
    ] {
        // No admin token: the run stops before any request.
        let out = garage_init(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        let line = json(&out);
        assert_eq!(line["format_version"], 1, "{args:?}: {line}");
        assert_eq!(line["exit_code"], 2, "{args:?}: {line}");
        assert!(line["message"].as_str().unwrap_or_default().contains("--admin-token"), "{args:?}: {line}");
    }
    let out = garage_init(&["plan"]);
    assert!(out.stdout.is_empty() && text(&out.stderr).starts_with("Error: missing --admin-token"), "{out:?}");
}

#[test]
fn commands_refuse_flags_they_do_not_use() {
    for args in [
        &["check", "--expire-after-days", "30"][..],
        &["status", "--abort-incomplete-uploads-after-days", "1"],
        &["check", "--cache-prefix", "ci/"],
        &["cache", "stats", "--expire-after-days", "30"],
        &["env", "--admin-url", "http://localhost:3903"],
    ] {
        let out = garage_init(args);
        assert_eq!(out.status.code(), Some(2), "{args:?} was accepted");
        assert!(text(&out.stderr).contains("unexpected argument"), "{args:?}: {}", text(&out.stderr));
    }
    // `env` prints BuildKit's touch_refresh from the expiry, so it takes it.
    let out = garage_init(&["env", "--format", "json", "--expire-after-days", "30"]);
    assert_eq!(json(&out)["lifecycle"]["expire_after_days"], 30, "{}", text(&out.stderr));
}

#[test]
fn every_json_document_has_a_format_version() {
    let out = garage_init(&["env", "--format", "json"]);
    assert_eq!(json(&out)["format_version"], 1);
}

#[test]
fn quiet_and_verbose_are_on_every_command_and_exclusive() {
    for args in [&["env", "-q"][..], &["env", "-vv"], &["env", "--format", "dotenv", "-v"]] {
        let out = garage_init(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
        // What the command is asked for is printed whatever the verbosity.
        assert!(text(&out.stdout).contains("AWS_ACCESS_KEY_ID"), "{args:?}: {}", text(&out.stdout));
    }
    for command in ["check", "status", "plan", "apply"] {
        let out = garage_init(&[command, "-v", "--help"]);
        assert!(text(&out.stdout).contains("-q, --quiet") && text(&out.stdout).contains("-v, --verbose..."));
    }
    let out = garage_init(&["env", "-q", "-v"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot be used with"), "{}", text(&out.stderr));
}

#[test]
fn version_names_the_commit_when_built_from_a_checkout() {
    let out = garage_init(&["--version"]);
    let version = text(&out.stdout);
    assert!(version.starts_with(&format!("garage-init {}", env!("CARGO_PKG_VERSION"))), "{version}");
    let head = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(env!("CARGO_MANIFEST_DIR")).output();
    match head {
        Ok(h) if h.status.success() => {
            let commit = text(&h.stdout);
            assert!(version.contains(&format!("(commit {})", &commit.trim()[..12])), "{version} vs HEAD {commit}");
        }
        // Built outside a checkout (a source archive): the version alone.
        _ => assert_eq!(version.trim(), format!("garage-init {}", env!("CARGO_PKG_VERSION"))),
    }
}

#[test]
fn the_public_built_in_secret_is_named_once_where_other_machines_may_reach() {
    const SECRET: &str = "8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3";
    let shared = garage_init(&["env", "--s3-url", "http://10.20.30.40:3900"]);
    let warning = text(&shared.stderr);
    assert_eq!(shared.status.code(), Some(0), "{warning}");
    assert_eq!(warning.matches("public").count(), 1, "{warning}");
    assert!(warning.contains("GARAGE_INIT_SECRET_ACCESS_KEY_FILE") && warning.contains("10.20.30.40"), "{warning}");
    assert!(!warning.contains(SECRET), "the warning shows the secret: {warning}");

    for quiet in [
        &["env"][..],
        &["env", "--s3-url", "http://127.0.0.1:3900"],
        &["env", "--seen-from", "compose-network"],
        &["env", "--s3-url", "http://10.20.30.40:3900", "--secret-access-key", &"ab".repeat(32)],
    ] {
        let out = garage_init(quiet);
        assert!(!text(&out.stderr).contains("public"), "{quiet:?}: {}", text(&out.stderr));
    }
}
