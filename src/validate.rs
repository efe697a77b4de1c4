//! Validators of every value garage-init accepts, and the error that names
//! the setting a bad value came from. A leaf module: it depends on nothing
//! else in the crate but [`crate::secret`], so the settings, the spec file
//! and the CLI can all use it.

use std::path::Path;
use std::time::Duration;

use url::Url;

use crate::secret::Secret;

/// Secret files larger than this are refused: a token is a line, not a file dump.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("{} {setting}: {problem}", if *.missing { "missing" } else { "invalid" })]
pub struct ConfigError {
    /// The flag and variable, e.g. `--bucket (GARAGE_INIT_BUCKET)`.
    pub setting: String,
    pub problem: String,
    /// Not given at all, rather than given wrong.
    pub missing: bool,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { setting: setting.into(), problem: problem.into(), missing: false }
    }

    pub fn missing(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { missing: true, ..Self::new(setting, problem) }
    }
}

/// Reads a secret file, trimmed. Missing, unreadable, oversized or empty files are errors.
pub fn read_secret_file(path: &Path, setting: &str) -> Result<Secret, ConfigError> {
    let shown = path.display();
    let text = read_small_file(path, MAX_SECRET_FILE_BYTES).map_err(|e| {
        let problem = match e {
            SmallFileError::TooLarge { limit } => {
                format!("{shown} has more than {limit} bytes; a secret file holds one line")
            }
            SmallFileError::Unreadable(e) => format!("cannot read {shown}: {e}"),
            SmallFileError::NotRegular { what } => format!("{shown} is {what}, not a regular file"),
            SmallFileError::NotText => format!("{shown} is not UTF-8 text"),
        };
        ConfigError::new(setting, problem)
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(ConfigError::new(setting, format!("{shown} is empty")));
    }
    Ok(Secret::new(value))
}

/// Why a small file (a spec, a secret) could not be read.
#[derive(Debug)]
pub enum SmallFileError {
    Unreadable(std::io::Error),
    /// A directory, pipe, socket or device: `what` says which.
    NotRegular {
        what: &'static str,
    },
    TooLarge {
        limit: u64,
    },
    NotText,
}

impl std::fmt::Display for SmallFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreadable(e) => write!(f, "cannot read it: {e}"),
            Self::NotRegular { what } => write!(f, "it is {what}, not a regular file"),
            Self::TooLarge { limit } => write!(f, "it has more than {limit} bytes"),
            Self::NotText => f.write_str("it is not UTF-8 text"),
        }
    }
}

/// Reads a regular file of at most `limit` bytes, whatever its metadata
/// says, without ever waiting on it.
///
/// The path is opened once, with `O_NONBLOCK`, and the descriptor that open
/// returned is what is checked and read: a path swapped for a named pipe
/// after the first look is opened without waiting for a writer (a blocking
/// open of a FIFO waits forever) and refused, as are directories, sockets
/// and devices (a device's size reads 0 and `/dev/zero` never ends).
/// `O_NOCTTY`: a terminal swapped in does not become the process's. A
/// symbolic link at the path is followed: Kubernetes mounts secrets as
/// links into a `..data` directory; what it leads to is checked the same.
/// At most `limit + 1` bytes are read, so a file that grows while it is
/// read is refused too.
pub fn read_small_file(path: &Path, limit: u64) -> Result<String, SmallFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // A first look, so that a device is refused without being opened.
    regular(std::fs::metadata(path).map_err(SmallFileError::Unreadable)?.file_type())?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(SmallFileError::Unreadable)?;
    // What was opened, which may not be what the first look saw.
    regular(file.metadata().map_err(SmallFileError::Unreadable)?.file_type())?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(SmallFileError::Unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(SmallFileError::TooLarge { limit });
    }
    String::from_utf8(bytes).map_err(|_| SmallFileError::NotText)
}

/// Refuses anything but a regular file, saying what it is.
fn regular(kind: std::fs::FileType) -> Result<(), SmallFileError> {
    use std::os::unix::fs::FileTypeExt;
    let what = match kind {
        k if k.is_file() => return Ok(()),
        k if k.is_dir() => "a directory",
        k if k.is_fifo() => "a named pipe (FIFO)",
        k if k.is_socket() => "a socket",
        k if k.is_char_device() || k.is_block_device() => "a device",
        _ => "a special file",
    };
    Err(SmallFileError::NotRegular { what })
}

/// Zones and tags: short printable words.
pub fn validate_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 64 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{s}` must be at most 64 characters with no spaces"));
    }
    Ok(())
}

/// An `http://host[:port]` URL. garage-init is built without TLS so that it
/// runs from a scratch image with no CA bundle; Garage in compose speaks HTTP.
/// A URL with a user name or password in it is refused before anything else
/// is said about it, so that no message repeats the password.
pub fn parse_http_url(text: &str, setting: &str) -> Result<Url, ConfigError> {
    let text = text.trim();
    let with_scheme = if text.contains("://") { text.to_string() } else { format!("http://{text}") };
    if has_credentials(text) {
        return Err(ConfigError::new(
            setting,
            "the URL has a user name or password in it (before an `@`), which garage-init neither sends nor \
             repeats; remove it (Garage's admin API takes the admin token, its S3 API the access key)",
        ));
    }
    let url = Url::parse(&with_scheme).map_err(|e| ConfigError::new(setting, format!("`{text}` is not a URL: {e}")))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(ConfigError::new(
                setting,
                format!(
                    "`{text}` uses https, which this build does not speak: use http:// (Garage's ports are plain HTTP)"
                ),
            ));
        }
        other => {
            return Err(ConfigError::new(setting, format!("`{text}` has scheme {other}; use http://")));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(setting, format!("`{text}` has no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(setting, format!("`{text}` must not have a query or fragment")));
    }
    Ok(url)
}

/// Whether a URL's authority (what follows `scheme:` and its slashes, up to
/// the path) has a user part: found without parsing the URL, so that a URL
/// that is wrong in other ways too is still refused for this first.
/// Backslashes count as slashes, as URL parsers treat them for http.
fn has_credentials(url: &str) -> bool {
    let after_scheme = match url.split_once(':') {
        Some((scheme, rest))
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            rest
        }
        _ => url,
    };
    let authority = after_scheme.trim_start_matches(['/', '\\']).split(['/', '\\', '?', '#']).next();
    authority.unwrap_or_default().contains('@')
}

/// Garage's key id format: `GK` and 24 hex digits.
pub fn validate_access_key_id(id: &str) -> Result<(), String> {
    let Some(hex) = id.strip_prefix("GK") else {
        return Err(format!("`{id}` must start with GK (Garage key ids are GK and 24 hex digits)"));
    };
    if hex.len() != 24 {
        return Err(format!("`{id}` has {} characters; a Garage key id is GK and 24 hex digits (26 in all)", id.len()));
    }
    if let Some(c) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("`{id}` contains `{c}`; after GK only hex digits 0-9, a-f are allowed"));
    }
    Ok(())
}

/// Garage's secret format: 64 hex digits. The value itself is never echoed.
pub fn validate_secret_key(secret: &str) -> Result<(), String> {
    if secret.len() != 64 {
        return Err(format!(
            "the secret has {} characters; Garage needs exactly 64 hex digits",
            secret.chars().count()
        ));
    }
    if !secret.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("the secret must be 64 hex digits (0-9, a-f); it contains other characters".into());
    }
    Ok(())
}

/// The token goes into `Authorization: Bearer <token>` exactly. Garage 2.1
/// aborts on some malformed bearer headers, so anything but visible ASCII is
/// refused here, before it can reach the server.
pub fn validate_admin_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the admin token is empty".into());
    }
    if token.chars().any(|c| c.is_whitespace()) {
        return Err("the admin token contains whitespace inside it; Garage tokens are one word".into());
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("the admin token must be printable ASCII".into());
    }
    Ok(())
}

/// Garage's bucket name rules (S3's, plus `-s3alias` and punycode).
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    let n = name.len();
    if !(3..=63).contains(&n) {
        return Err(format!("`{name}` has {n} characters; bucket names have 3 to 63"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-')) {
        return Err(format!("`{name}` contains `{c}`; only lowercase letters, digits, `.` and `-` are allowed"));
    }
    if name.starts_with(['.', '-']) || name.ends_with(['.', '-']) {
        return Err(format!("`{name}` must start and end with a letter or digit"));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("`{name}` looks like an IP address, which S3 forbids as a bucket name"));
    }
    if name.ends_with("-s3alias") {
        return Err(format!("`{name}` ends with -s3alias, which Garage reserves"));
    }
    if name.starts_with("xn--") || name.contains(".xn--") {
        return Err(format!("`{name}` is punycode (xn--), which Garage refuses by default"));
    }
    Ok(())
}

/// The longest deadline or wait accepted: a day. Longer is a mistake (or
/// "forever", which a one-shot initializer should not wait).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses `120`, `120s`, `2m`, `500ms`, `1h`; at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: use a number with s, m, h or ms, e.g. 120s"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => {
            return Err(format!("unknown unit `{other}` in `{text}`: use s, m, h or ms"));
        }
    };
    if d.is_zero() {
        return Err("a duration of 0 leaves no time to do anything".into());
    }
    if d > MAX_DURATION {
        return Err(format!("`{text}` is longer than 24h, the longest wait garage-init accepts"));
    }
    Ok(d)
}

/// Parses an age: `0s`, `90m`, `48h`, `7d` (a number alone is seconds), up
/// to [`MAX_LIFECYCLE_DAYS`] days. Unlike [`parse_duration`], 0 is allowed.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 =
        digits.parse().map_err(|_| format!("`{text}` is not a duration: use a number with s, m, h or d, e.g. 48h"))?;
    let seconds = match unit.trim() {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        other => return Err(format!("unknown unit `{other}` in `{text}`: use s, m, h or d")),
    };
    match seconds {
        Some(s) if s <= u64::from(MAX_LIFECYCLE_DAYS) * 86_400 => Ok(Duration::from_secs(s)),
        _ => Err(format!("`{text}` is longer than {MAX_LIFECYCLE_DAYS} days")),
    }
}

/// Parses a size in bytes: `1000000000`, `500MB`, `1G`, `10GiB`, `1TB`.
/// Garage refuses capacities under 1024 bytes, so they are refused here too.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("`{t}` is not a size: use bytes or a unit, e.g. 500GB or 1TiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!("unknown unit `{other}` in `{t}`: use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB"));
        }
    };
    let bytes = n.checked_mul(mult).ok_or_else(|| format!("`{t}` is too large"))?;
    if bytes < 1024 {
        return Err(format!("`{t}` is under 1024 bytes, the smallest capacity Garage accepts"));
    }
    Ok(bytes)
}

/// The longest lifecycle rule accepted, in days: a hundred years.
pub const MAX_LIFECYCLE_DAYS: u32 = 36_500;

/// A lifecycle rule's age in days; `None`: the rule is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(pub Option<u32>);

/// Requests in flight to one Garage endpoint at once, unless set otherwise.
/// Every admin request costs Garage an argon2 check of the token, which is
/// CPU-bound: more at once than a node has cores only makes each one wait.
pub const DEFAULT_REQUESTS_PER_NODE: usize = 4;
/// The most requests in flight to one endpoint that can be asked for: far
/// below any open-file limit a server runs with.
pub const MAX_REQUESTS_PER_NODE: usize = 64;

/// Parses a number of requests in flight at once: 1 to [`MAX_REQUESTS_PER_NODE`].
pub fn parse_requests_per_node(text: &str) -> Result<usize, String> {
    let t = text.trim();
    match t.parse::<u64>() {
        Ok(n) if (1..=MAX_REQUESTS_PER_NODE as u64).contains(&n) => Ok(n as usize),
        Ok(_) => Err(format!("`{t}` is not between 1 and {MAX_REQUESTS_PER_NODE}")),
        Err(_) => Err(format!("`{t}` is not a number of requests: use e.g. {DEFAULT_REQUESTS_PER_NODE}")),
    }
}

/// Parses `30`, `30d`, or `0` / `off` (the rule is off); at most [`MAX_LIFECYCLE_DAYS`].
pub fn parse_days(text: &str) -> Result<Days, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(Days(None));
    }
    let digits = t.strip_suffix('d').unwrap_or(t);
    let n: u64 = digits.parse().map_err(|_| format!("`{t}` is not a number of days: use e.g. 30, or 0 / off"))?;
    match n {
        0 => Ok(Days(None)),
        n if n > u64::from(MAX_LIFECYCLE_DAYS) => {
            Err(format!("`{t}` is more than {MAX_LIFECYCLE_DAYS} days, the longest rule garage-init accepts"))
        }
        n => Ok(Days(Some(n as u32))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_node_is_a_small_positive_number() {
        assert_eq!(parse_requests_per_node(" 8 "), Ok(8));
        assert_eq!(parse_requests_per_node("64"), Ok(64));
        assert!(parse_requests_per_node("0").unwrap_err().contains("between 1 and 64"));
        assert!(parse_requests_per_node("65").unwrap_err().contains("between 1 and 64"));
        assert!(parse_requests_per_node("-1").unwrap_err().contains("not a number"));
        assert!(parse_requests_per_node("four").unwrap_err().contains("not a number"));
        assert!(parse_requests_per_node("99999999999999999999999").is_err());
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_age("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_age("48h").unwrap(), Duration::from_secs(48 * 3600));
        assert_eq!(parse_age(" 7d ").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5400));
        assert!(parse_age("2w").unwrap_err().contains("unknown unit"));
        assert!(parse_age("-1h").is_err() && parse_age("").is_err() && parse_age("36501d").is_err());
        assert!(parse_age("99999999999999999999h").is_err());
    }

    #[test]
    fn lifecycle_days() {
        assert_eq!(parse_days("30").unwrap(), Days(Some(30)));
        assert_eq!(parse_days(" 7d ").unwrap(), Days(Some(7)));
        assert_eq!(parse_days("0").unwrap(), Days(None));
        assert_eq!(parse_days("OFF").unwrap(), Days(None));
        assert_eq!(parse_days("36500").unwrap(), Days(Some(MAX_LIFECYCLE_DAYS)));
        assert!(parse_days("36501").unwrap_err().contains("36500"));
        assert!(parse_days("-1").is_err() && parse_days("1.5").is_err() && parse_days("").is_err());
        assert!(parse_days("99999999999999999999999").is_err());
    }

    #[test]
    fn key_ids() {
        assert!(validate_access_key_id("GK6275696c646b69742d6b6579").is_ok());
        assert!(validate_access_key_id("GK0123456789ABCDEF01234567").is_ok());
        assert!(validate_access_key_id("XK0123456789abcdef01234567").unwrap_err().contains("start with GK"));
        assert!(validate_access_key_id("GK0123").unwrap_err().contains("26 in all"));
        assert!(validate_access_key_id("GK0123456789abcdef0123456z").unwrap_err().contains("`z`"));
    }

    #[test]
    fn secrets_are_checked_without_being_echoed() {
        assert!(validate_secret_key(&"0123456789abcdef".repeat(4)).is_ok());
        let bad = "zz".repeat(32);
        let err = validate_secret_key(&bad).unwrap_err();
        assert!(!err.contains(&bad));
        let short = validate_secret_key("abc123").unwrap_err();
        assert!(short.contains("6 characters") && !short.contains("abc123"));
    }

    #[test]
    fn bucket_names() {
        for ok in ["buildkit-cache", "a.b-c", "abc", "0ab"] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ab", "3 to 63"),
            ("Buildkit", "`B`"),
            ("-abc", "start and end"),
            ("abc.", "start and end"),
            ("192.168.1.1", "IP address"),
            ("cache-s3alias", "-s3alias"),
            ("xn--abc", "punycode"),
            ("a_b_c", "`_`"),
        ] {
            let err = validate_bucket_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(validate_bucket_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn admin_tokens() {
        assert!(validate_admin_token("s3cr3t-token_with.dots").is_ok());
        assert!(validate_admin_token("two words").is_err());
        assert!(validate_admin_token("tab\there").is_err());
        assert!(validate_admin_token("caf\u{e9}").is_err());
        assert!(validate_admin_token("").is_err());
    }

    #[test]
    fn urls() {
        let s = "--admin-url (X)";
        assert_eq!(parse_http_url("http://garage:3903", s).unwrap().as_str(), "http://garage:3903/");
        assert_eq!(parse_http_url("localhost:3903", s).unwrap().as_str(), "http://localhost:3903/");
        assert!(parse_http_url("https://garage:3903", s).unwrap_err().problem.contains("https"));
        assert!(parse_http_url("ftp://garage", s).is_err());
        assert!(parse_http_url("http://garage:3903/a@b", s).is_ok(), "an @ in the path is no user part");
        assert!(parse_http_url("http://garage:3903/?x=1", s).is_err());
        assert!(parse_http_url("http://", s).is_err());
    }

    #[test]
    fn a_url_with_a_password_is_refused_without_repeating_it_whatever_else_is_wrong() {
        for url in [
            "http://admin:hunter2@garage:3903",
            "admin:hunter2@garage:3903",
            "https://admin:hunter2@garage:3903",
            "ftp://admin:hunter2@garage",
            "http://admin:hunter2@gar age:3903",
            "http://admin:hunter2@garage:99999",
            "http://admin:hunter2@",
            "http://admin:hunter2@garage:3903/?x=1#f",
            "http:\\\\admin:hunter2@garage:3903",
            "http:admin:hunter2@garage:3903",
            "http://hunter2@garage:3903",
        ] {
            let e = parse_http_url(url, "--admin-url (X)").unwrap_err();
            assert!(e.problem.contains("user name or password"), "{url}: {e}");
            assert!(!e.to_string().contains("hunter2"), "{url}: {e}");
        }
    }

    #[test]
    fn secret_files_are_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("token");
        std::fs::write(&good, "  tok3n\n").unwrap();
        assert_eq!(read_secret_file(&good, "--x").unwrap().expose(), "tok3n");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n \n").unwrap();
        assert!(read_secret_file(&empty, "--x").unwrap_err().problem.contains("is empty"));

        let missing = dir.path().join("missing");
        assert!(read_secret_file(&missing, "--x").unwrap_err().problem.contains("cannot read"));

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 70_000]).unwrap();
        assert!(read_secret_file(&big, "--x").unwrap_err().problem.contains("one line"));

        let not_regular = read_secret_file(Path::new("/dev/zero"), "--x").unwrap_err().problem;
        assert!(not_regular.contains("is a device, not a regular file"), "{not_regular}");
        let dir_err = read_secret_file(dir.path(), "--x").unwrap_err().problem;
        assert!(dir_err.contains("a directory"), "{dir_err}");
    }

    #[test]
    fn durations_with_and_without_units() {
        assert_eq!(parse_duration("120").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration(" 1h ").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").unwrap_err().contains("parsecs"));
        assert_eq!(parse_duration("24h").unwrap(), MAX_DURATION);
        assert!(parse_duration("25h").unwrap_err().contains("longer than 24h"));
        assert!(parse_duration("18446744073709551615h").unwrap_err().contains("longer than 24h"));
        assert!(parse_duration("99999999999999999999999").is_err());
    }

    #[test]
    fn sizes_decimal_and_binary() {
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2048").unwrap(), 2048);
        assert_eq!(parse_size("500mb").unwrap(), 500_000_000);
        assert!(parse_size("100").unwrap_err().contains("1024"));
        assert!(parse_size("99999999999TB").unwrap_err().contains("too large"));
        assert!(parse_size("1XB").is_err());
    }
}
