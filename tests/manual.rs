//! `completions` and `man`, checked with the tools that read them: bash
//! parses the completion script, groff renders the man page.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::closed_pipe;

fn garage_init(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_garage-init")).args(args).env_clear().output().expect("run garage-init")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn bash_completion_parses_and_completes_the_subcommands() {
    let out = garage_init(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("garage-init.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", text(&check.stderr));
    // Loaded into a shell, it completes `garage-init pl` to `plan`.
    let complete = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$0"; COMP_WORDS=(garage-init pl); COMP_CWORD=1; _garage__init garage-init pl garage-init; echo "${COMPREPLY[@]}""#)
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(text(&complete.stdout).trim(), "plan", "{}", text(&complete.stderr));
    let script = text(&out.stdout);
    for sub in ["apply", "plan", "check", "env", "status", "completions", "man"] {
        assert!(script.contains(sub), "bash completion lacks `{sub}`");
    }
}

#[test]
fn every_shell_gets_a_script_naming_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = garage_init(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("apply") && text(&out.stdout).contains("plan"), "{shell}");
    }
}

#[test]
fn completions_for_an_unknown_shell_exit_2_listing_the_shells() {
    let out = garage_init(&["completions", "nosuchshell"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("invalid value 'nosuchshell'"), "{stderr}");
    assert!(stderr.contains("[possible values: bash, elvish, fish, powershell, zsh]"), "{stderr}");
}

#[test]
fn man_page_renders_with_the_subcommands_and_exit_codes() {
    let page = garage_init(&["man"]);
    assert_eq!(page.status.code(), Some(0), "{}", text(&page.stderr));
    let roff = text(&page.stdout);
    assert!(roff.contains(".TH garage-init 1") && roff.contains(".SH \"EXIT STATUS\""), "{roff}");
    let Ok(mut groff) = Command::new("groff")
        // -P-cbou: plain text, no bold or underline (escape sequences or overstrikes) between the letters.
        .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("groff is not installed: only the roff source was checked");
        return;
    };
    groff.stdin.take().unwrap().write_all(&page.stdout).unwrap();
    let rendered = groff.wait_with_output().unwrap();
    assert!(rendered.status.success() && rendered.stderr.is_empty(), "groff: {}", text(&rendered.stderr));
    let shown = text(&rendered.stdout);
    for word in ["EXIT STATUS", "130", "interrupted (SIGINT or SIGTERM)", "garage-init-apply", "garage-init-man"] {
        assert!(shown.contains(word), "the rendered page lacks `{word}`:\n{shown}");
    }
}

#[test]
fn a_closed_stdout_keeps_exit_code_0() {
    for args in [&["man"][..], &["completions", "bash"]] {
        let status = Command::new(env!("CARGO_BIN_EXE_garage-init"))
            .args(args)
            .env_clear()
            .stdout(closed_pipe())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(0), "garage-init {args:?} into a closed pipe");
    }
}
