//! `completions` and `man`: shell completions and a roff man page, generated
//! from the clap definitions in [`crate::cli`], so they cannot drift from
//! `--help`. Both go through [`crate::output`]: `garage-init man | head -1`
//! keeps the exit code.

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;

use crate::cli::Cli;
use crate::exit::{Code, TABLE};

const NAME: &str = "garage-init";

/// The completion script for `shell`, on stdout.
pub fn completions(shell: Shell) -> Code {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), NAME, &mut script);
    crate::out!("{}", String::from_utf8_lossy(&script));
    Code::Ok
}

/// The man page (section 1), on stdout: clap's sections, then the exit codes.
pub fn man() -> Code {
    crate::out!("{}", man_page());
    Code::Ok
}

fn man_page() -> String {
    // clap's own rendering of `after_long_help` (the exit codes) would run
    // the table's rows into one paragraph: EXIT STATUS below is a real list.
    let man = Man::new(Cli::command().after_long_help(None::<&str>));
    let mut page = Vec::new();
    let render = |page: &mut Vec<u8>, section: fn(&Man, &mut dyn std::io::Write) -> std::io::Result<()>| {
        section(&man, page).expect("writing to a Vec cannot fail");
    };
    for section in [
        Man::render_title,
        Man::render_name_section,
        Man::render_synopsis_section,
        Man::render_description_section,
        Man::render_options_section,
        Man::render_subcommands_section,
    ] {
        render(&mut page, section);
    }
    page.extend_from_slice(
        b".PP\nThere is one page: each command's own options and exit codes are in \\fBgarage\\-init\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR.\n",
    );
    page.extend_from_slice(b".SH \"EXIT STATUS\"\n");
    for (code, meaning) in TABLE {
        page.extend_from_slice(format!(".TP\n\\fB{}\\fR\n{}\n", code.as_u8(), roff_text(meaning)).as_bytes());
    }
    render(&mut page, Man::render_version_section);
    String::from_utf8_lossy(&page).into_owned()
}

/// A line of running text for roff: backslashes escaped, and no line that
/// starts as a request (`.` or `'`).
fn roff_text(text: &str) -> String {
    let text = text.replace('\\', "\\e");
    if text.starts_with(['.', '\'']) { format!("\\&{text}") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_requests_are_escaped() {
        assert_eq!(roff_text(".not a request"), "\\&.not a request");
        assert_eq!(roff_text("'quoted"), "\\&'quoted");
        assert_eq!(roff_text("a\\b"), "a\\eb");
    }
}
