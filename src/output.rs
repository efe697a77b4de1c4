//! The one place that writes to stdout and stderr. Scripts pipe garage-init
//! into `head`, `grep -q` and the like, which close the pipe early; a write
//! to a closed pipe fails with `EPIPE` (Rust ignores `SIGPIPE`), and the
//! `print!` macros panic on that, which the release build turns into an
//! abort with exit code 134. Here a failed write is ignored: what the
//! reader no longer wants is lost, the exit code is not.

use std::fmt::Arguments;
use std::io::Write;

/// Writes to stdout; a failed write is ignored.
pub fn stdout(text: Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(text);
    let _ = out.flush();
}

/// Writes to stderr; a failed write is ignored.
pub fn stderr(text: Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(text);
}

/// `println!` that never panics.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that never panics.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::stdout(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `Error: <message>` and, when there is one, a line that says what to do
/// next, on stderr: the one shape of every error garage-init prints as text.
pub fn error_block(message: &dyn std::fmt::Display, hint: Option<&str>) {
    match hint {
        Some(hint) => stderr(format_args!("Error: {message}\n{hint}\n")),
        None => stderr(format_args!("Error: {message}\n")),
    }
}

/// The version of the JSON that garage-init prints: every object on stdout has
/// it as `format_version`. Raised when a field is removed or changes meaning;
/// new fields may appear without it.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// `value` with its `format_version`, as one line.
pub fn json_line(value: serde_json::Value) -> String {
    versioned(value).to_string()
}

/// `value` with its `format_version`, indented for people.
pub fn json_document(value: serde_json::Value) -> String {
    serde_json::to_string_pretty(&versioned(value)).expect("JSON values always serialize")
}

fn versioned(mut value: serde_json::Value) -> serde_json::Value {
    if let serde_json::Value::Object(fields) = &mut value {
        fields.insert("format_version".into(), JSON_FORMAT_VERSION.into());
    }
    value
}
