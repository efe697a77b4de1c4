//! The README's exit-code table is the one in `src/exit.rs`, row by row:
//! scripts branch on these codes, and users read them in the README.

use garage_init::exit::TABLE;

/// Rows of the markdown table under `### Exit codes`: (code, meaning), backticks dropped.
fn readme_rows() -> Vec<(u8, String)> {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let section = readme.split("\n### Exit codes\n").nth(1).expect("README has an `### Exit codes` section");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the separator
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 2, "README row `{l}` should have two cells");
            (cells[0].parse().unwrap_or_else(|_| panic!("README row `{l}`: not a code")), cells[1].replace('`', ""))
        })
        .collect()
}

#[test]
fn readme_exit_codes_are_the_programs() {
    let program: Vec<(u8, String)> = TABLE.iter().map(|(c, m)| (c.as_u8(), m.replace('`', ""))).collect();
    let readme = readme_rows();
    for (i, (p, r)) in program.iter().zip(&readme).enumerate() {
        assert_eq!(p, r, "row {i} of the exit-code table: src/exit.rs (left) and README.md (right) differ");
    }
    assert_eq!(program.len(), readme.len(), "the README lists {} codes, the program {}", readme.len(), program.len());
}
