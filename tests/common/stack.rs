//! End-to-end harness: the repository's compose.yaml on the real Docker
//! engine, one uniquely named compose project per test, always taken down
//! (with its volumes) when the test ends, passed or failed.
//!
//! The images must exist locally (`scripts/test` builds them offline): the
//! Garage image named by `GARAGE_IMAGE` (compose.yaml's default
//! `dxflrs/garage:v2.1.0` when unset), compose.yaml's `registry:2.x.y`, and
//! `GARAGE_INIT_IMAGE` (default `garage-init:local`). The registry UI
//! image cannot be had on machines without a registry, so these tests run a
//! stand-in in its place (BusyBox's httpd from the registry image, named as
//! such), with the UI's dependencies as compose.yaml declares them.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

pub const KEY_ID: &str = "GK6275696c646b69742d6b6579";
pub const SECRET: &str = "8924bf9b411d72127bb0de5166f7b972ddf07209fd327b11a9160efa5b8000b3";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Garage image asked for through `GARAGE_IMAGE` (compose.yaml reads the
/// same variable); `None` means compose.yaml's default.
pub fn garage_image() -> Option<String> {
    std::env::var("GARAGE_IMAGE").ok().filter(|i| !i.is_empty())
}

/// A development secret compose.yaml mounts, trimmed: `admin-token` or `rpc-secret`.
pub fn dev_secret(name: &str) -> String {
    let path = repo_root().join("infrastructure/dev-secrets").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

pub struct Stack {
    pub project: String,
    /// Extra compose files (overrides), after compose.yaml.
    overrides: Vec<PathBuf>,
    /// Variables for compose's interpolation, on top of the test's environment.
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

pub struct Done {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

fn done(out: Output) -> Done {
    Done {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A compose override that runs a stand-in for the registry UI, whose image
/// no registry here serves: BusyBox's httpd on port 80, from the registry
/// image (compose.yaml's tag). Its place in the start order is the real UI's.
pub fn registry_ui_stand_in() -> PathBuf {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let compose = std::fs::read_to_string(repo_root().join("compose.yaml")).unwrap();
        let image = compose
            .lines()
            .find_map(|l| l.trim().strip_prefix("image: registry:"))
            .map(|tag| format!("registry:{}", tag.split_whitespace().next().unwrap()))
            .expect("compose.yaml names a registry image");
        let path = std::env::temp_dir().join(format!("garage-init-e2e-registry-ui-{}.yaml", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "# Stand-in for joxit/docker-registry-ui (not available offline).\n\
                 services:\n  registry-ui:\n    image: {image}\n    \
                 command: [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/etc\"]\n"
            ),
        )
        .unwrap();
        path
    })
    .clone()
}

/// Whether the Docker engine predates healthcheck `start_interval` (Engine 25,
/// API 1.44), which compose.yaml uses: Compose refuses the file there.
pub fn engine_before_25() -> bool {
    static OLD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OLD.get_or_init(|| {
        let out =
            Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output().expect("run docker");
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or_else(|| {
            panic!("docker version: no server version in {version:?}: {}", String::from_utf8_lossy(&out.stderr))
        });
        major < 25
    })
}

/// The Garage image compose will run: `GARAGE_IMAGE`, else compose.yaml's default.
fn effective_garage_image() -> String {
    garage_image().unwrap_or_else(|| {
        let compose = std::fs::read_to_string(repo_root().join("compose.yaml")).unwrap();
        let line = compose.lines().find(|l| l.contains("${GARAGE_IMAGE:-")).expect("compose.yaml names a Garage image");
        let rest = &line[line.find(":-").unwrap() + 2..];
        rest[..rest.find('}').unwrap()].to_string()
    })
}

/// Checks, once per test process, that the Garage image the stacks will use
/// exists locally and runs the Garage of this round (`GARAGE_VERSION`): a tag
/// left behind by an earlier run, or one holding another version's binary,
/// fails here with what to run, not later as a confusing test failure.
fn check_garage_image() {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    CHECKED.get_or_init(|| {
        let image = effective_garage_image();
        let version = super::garage_version();
        let out = Command::new("docker").args(["run", "--rm", "--pull", "never", &image, "/garage", "--version"]).output();
        let out = out.expect("run docker");
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success()
                && ["v", "cargo:"].iter().any(|form| {
                    let want = format!("garage {form}{version}");
                    said == want || said.starts_with(&format!("{want} "))
                }),
            "the Garage image {image} does not run Garage v{version} (GARAGE_VERSION): `/garage --version` said {said:?}, \
             stderr {:?}. Build it with: GARAGE_VERSION={version} scripts/build-images garage",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    });
}

impl Stack {
    pub fn new(name: &str) -> Self {
        check_garage_image();
        let project = format!("gi-e2e-{name}-{}", super::random_hex(3)).replace('_', "-");
        let stack = Self { project, overrides: Vec::new(), env: Vec::new(), _dir: tempfile::tempdir().unwrap() };
        // A previous crashed run of the same test cannot hold the ports: tests run one at a time
        // and every stack is removed on drop.
        eprintln!(
            "e2e: compose project {} with {} (registry-ui is a stand-in: its image is not available offline)",
            stack.project,
            garage_image().unwrap_or_else(|| "compose.yaml's default Garage image".into())
        );
        stack
    }

    /// Points `GARAGE_ADMIN_TOKEN_FILE` at a new file holding `token`, owned by
    /// garage-init's uid 65532 with mode 0600, as the README says to.
    pub fn with_own_admin_token(mut self, token: &str) -> Self {
        let file = self._dir.path().join("own-admin-token");
        std::fs::write(&file, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&file, Some(65532), Some(65532)).expect("chown to 65532 (the tests run as root)");
        self.env.push(("GARAGE_ADMIN_TOKEN_FILE".into(), file.display().to_string()));
        self
    }

    /// Sets a variable for compose's interpolation (`GARAGE_ADMIN_TOKEN`, ...).
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Gives garage-init, as a file secret like the real one, a token Garage does not have.
    pub fn with_wrong_admin_token(self) -> Self {
        let file = self._dir.path().join("wrong-admin-token");
        std::fs::write(&file, "not-the-admin-token\n").unwrap();
        // Bind-mounted as is: garage-init (uid 65532) must be able to read it.
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        self.with_override(&format!(
            "services:\n  garage-init:\n    secrets: [wrong-admin-token]\n    environment:\n      \
             GARAGE_INIT_ADMIN_TOKEN_FILE: /run/secrets/wrong-admin-token\n\
             secrets:\n  wrong-admin-token:\n    file: {}\n",
            file.display()
        ))
    }

    /// Adds one of the repository's compose files, after compose.yaml.
    pub fn with_repo_file(mut self, name: &str) -> Self {
        self.overrides.push(repo_root().join(name));
        self
    }

    /// Adds a compose override file with the given YAML.
    pub fn with_override(mut self, yaml: &str) -> Self {
        let path = self._dir.path().join(format!("override-{}.yaml", self.overrides.len()));
        std::fs::write(&path, yaml).unwrap();
        self.overrides.push(path);
        self
    }

    pub fn compose(&self, args: &[&str]) -> Done {
        let mut cmd = Command::new("docker");
        cmd.current_dir(repo_root()).arg("compose").arg("-p").arg(&self.project);
        // Only what this test sets reaches compose's interpolation: no `.env`
        // file in the checkout, no GARAGE_*/COMPOSE_* variable of the caller's
        // shell, except the images the test command picks for the round.
        let empty_env = self._dir.path().join("empty.env");
        std::fs::write(&empty_env, "").unwrap();
        cmd.arg("--env-file").arg(&empty_env);
        for (name, _) in std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
            let steers = name.starts_with("GARAGE_") || name.starts_with("COMPOSE_");
            if steers && name != "GARAGE_IMAGE" && name != "GARAGE_INIT_IMAGE" {
                cmd.env_remove(&name);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("-f").arg(repo_root().join("compose.yaml"));
        for o in &self.overrides {
            cmd.arg("-f").arg(o);
        }
        cmd.arg("-f").arg(registry_ui_stand_in());
        // What the README says to add on an engine without healthcheck start_interval.
        if engine_before_25() {
            cmd.arg("-f").arg(repo_root().join("compose.engine-pre25.yaml"));
            if self.overrides.iter().any(|o| o.ends_with("compose.cluster.yaml")) {
                cmd.arg("-f").arg(repo_root().join("compose.cluster.engine-pre25.yaml"));
            }
        }
        done(cmd.args(args).output().expect("run docker compose"))
    }

    /// The documented up command.
    pub fn up(&self) -> Done {
        self.compose(&["up", "-d", "--wait", "--pull", "never"])
    }

    pub fn logs(&self, service: &str) -> String {
        let d = self.compose(&["logs", "--no-color", "--no-log-prefix", service]);
        d.stdout + &d.stderr
    }

    /// `docker inspect` of the service's (first) container.
    pub fn inspect(&self, service: &str) -> Value {
        let id = self.compose(&["ps", "-a", "-q", service]).stdout.trim().lines().next().unwrap_or("").to_string();
        assert!(!id.is_empty(), "no container for service {service}");
        let out = Command::new("docker").args(["inspect", &id]).output().unwrap();
        let all: Value = serde_json::from_slice(&out.stdout).unwrap();
        all[0].clone()
    }

    pub fn down(&self, volumes: bool) -> Done {
        let mut args = vec!["down", "--remove-orphans", "--timeout", "5"];
        if volumes {
            args.push("-v");
        }
        self.compose(&args)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let d = self.down(true);
        if d.code != 0 {
            eprintln!("e2e: cleanup of {} failed: {d:?}", self.project);
        }
    }
}

/// The independent S3 client (boto3, path-style, region `garage`) on the host.
pub fn boto3(op: &str, object: &str) -> (i32, Value) {
    super::boto3_script(
        "s3_roundtrip.py",
        &["http://127.0.0.1:3900", "buildkit-cache", KEY_ID, SECRET, "garage", op, object],
    )
}

/// The stack's bucket's lifecycle rules, as boto3 reads them.
pub fn lifecycle_rules() -> Vec<Value> {
    let got = super::boto3_lifecycle("http://127.0.0.1:3900", "buildkit-cache", (KEY_ID, SECRET), "get", None);
    got["rules"].as_array().cloned().unwrap_or_default()
}

/// The report lines of garage-init's last run: `resource -> outcome`.
pub fn outcomes(log: &str) -> Vec<(String, String)> {
    ["layout", "key", "bucket", "grant", "lifecycle", "s3 check"]
        .iter()
        .filter_map(|r| {
            let line = log.lines().rev().find(|l| l.starts_with(&format!("{r} ")))?;
            let outcome = line[r.len()..].split_whitespace().next()?.to_string();
            Some((r.to_string(), outcome))
        })
        .collect()
}

/// GET a JSON document from the host, outside any async test.
pub fn get_json(url: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let resp = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.json().await.unwrap()
    })
}
