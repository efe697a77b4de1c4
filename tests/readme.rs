//! The exit-code table in `docs/apply.md` is the one in `src/exit.rs`, row
//! by row: scripts branch on these codes, and users read them there.

use garage_init::exit::TABLE;

/// Rows of the markdown table under `### Exit codes`: (code, meaning), backticks dropped.
fn readme_rows() -> Vec<(u8, String)> {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/apply.md"));
    let section = readme.split("\n### Exit codes\n").nth(1).expect("docs/apply.md has an `### Exit codes` section");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the separator
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 2, "docs/apply.md row `{l}` should have two cells");
            (
                cells[0].parse().unwrap_or_else(|_| panic!("docs/apply.md row `{l}`: not a code")),
                cells[1].replace('`', ""),
            )
        })
        .collect()
}

#[test]
fn readme_exit_codes_are_the_programs() {
    let program: Vec<(u8, String)> = TABLE.iter().map(|(c, m)| (c.as_u8(), m.replace('`', ""))).collect();
    let readme = readme_rows();
    for (i, (p, r)) in program.iter().zip(&readme).enumerate() {
        assert_eq!(p, r, "row {i} of the exit-code table: src/exit.rs (left) and docs/apply.md (right) differ");
    }
    assert_eq!(
        program.len(),
        readme.len(),
        "docs/apply.md lists {} codes, the program {}",
        readme.len(),
        program.len()
    );
}

/// `${NAME:-default}`, `${NAME:+…}` and `${NAME}` references of a compose file: (name, default).
fn compose_variables(text: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let after = &rest[name.len()..];
        let default = after.strip_prefix(":-").map(|d| d[..d.find('}').unwrap()].to_string());
        if !name.is_empty() && name != "VAR" {
            found.push((name, default));
        }
    }
    found
}

#[test]
fn env_example_lists_every_variable_compose_reads_with_its_default() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/.env.example")).expect(".env.example exists");
    // Lines `#NAME=value` or `NAME=value`.
    let listed: Vec<(&str, &str)> =
        example.lines().filter_map(|l| l.trim_start_matches('#').split_once('=')).map(|(n, v)| (n.trim(), v)).collect();
    for file in ["compose.yaml", "compose.cluster.yaml"] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let refs = compose_variables(&text);
        for (name, default) in &refs {
            let Some((_, value)) = listed.iter().find(|(n, _)| n == name) else {
                panic!("{file} reads {name}, which .env.example does not list");
            };
            // A default is the variable's own only where every reference gives the same one
            // (compose.yaml's `${X:+…}${X:-…}` switches give markers, not defaults).
            let defaults: Vec<&Option<String>> = refs.iter().filter(|(n, _)| n == name).map(|(_, d)| d).collect();
            if let Some(default) = default
                && defaults.iter().all(|d| d.as_ref() == Some(default))
            {
                assert_eq!(value, default, "{name}: .env.example and {file} give different defaults");
            }
        }
    }
}
