//! Command line and environment: every setting has a flag and a variable.
//!
//! These structs only parse; [`crate::config`] validates them into settings
//! the rest of the program can trust.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::validate::{
    DEFAULT_REQUESTS_PER_NODE, Days, parse_age, parse_days, parse_duration, parse_requests_per_node, parse_size,
};

use crate::exit::{For, help};

#[derive(Debug, Parser)]
#[command(
    name = "garage-init",
    version = env!("GARAGE_INIT_VERSION"),
    about = "Bootstrap a Garage 2.x object store: node layout, bucket, access key and grants, proven by a real S3 write.",
    long_about = "Bootstrap a Garage 2.x object store: node layout, bucket, access key and grants, proven by a real S3 write.\n\n\
        Without a subcommand, garage-init runs `apply`: it waits for Garage's admin API, converges the \
        cluster to the wanted state, checks that the key can write to the bucket, and exits 0. Running it \
        again changes nothing. It never deletes or overwrites a bucket, a key or a layout role.\n\n\
        Proxy variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY, upper or lower case) are ignored by \
        every command: requests go straight to the addresses given.",
    after_long_help = help(For::Apply),
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub apply: ApplyArgs,

    /// The former name of `--format` of `apply` and `plan`, accepted after any command.
    #[arg(long, value_name = "FORMAT", value_enum, global = true, hide = true)]
    pub log_format: Option<LogFormat>,

    /// Less output: no diagnostics but errors; `apply` and `plan` print only drift, warnings and
    /// their closing line. What a command is asked for (`env`, `status`, ...) is always printed.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More diagnostics on stderr: -v each request, -vv libraries too, -vvv everything.
    /// `RUST_LOG` directives apply on top of it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Cli {
    /// How `apply` and `plan` report, and how diagnostics are written.
    pub fn output_format(&self) -> LogFormat {
        let chosen = match &self.command {
            None => Some(self.apply.format),
            Some(Command::Apply(a) | Command::Plan(a)) => Some(a.format),
            Some(_) => None,
        };
        self.log_format.or(chosen).unwrap_or(LogFormat::Text)
    }

    /// How much the run says, from `-q` and `-v`.
    pub fn verbosity(&self) -> Verbosity {
        if self.quiet { Verbosity::Quiet } else { Verbosity::Level(self.verbose) }
    }
}

/// `-q`, or the number of `-v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Level(u8),
}

impl Verbosity {
    pub fn quiet(self) -> bool {
        self == Self::Quiet
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Converge Garage to the wanted state and prove the key can write (the default).
    #[command(after_long_help = help(For::Apply))]
    Apply(ApplyArgs),

    /// Show what `apply` would change, and change nothing.
    #[command(
        long_about = "Read everything `apply` reads, change nothing, and print the actions `apply` would take \
            (layout roles, keys, buckets, aliases, quotas, grants) and the drift it would leave alone. \
            Exits 0 when there is nothing to do, 10 when apply would change something, 11 when only drift \
            remains (like `terraform plan -detailed-exitcode`).",
        after_long_help = help(For::Plan)
    )]
    Plan(ApplyArgs),

    /// From the host: check that the registry and Garage answer and that the key can write to the bucket.
    #[command(
        long_about = "From the host: check that the registry answers GET /v2/, that Garage answers on its S3 port, \
            and that the access key can write, read back and delete an object in the bucket (a signed S3 \
            round trip). Garage's unauthenticated /health on the admin port explains a missing layout.\n\n\
            Each unreachable service gets its own `Error: ... not reachable at ...` block on stderr. With \
            --wait, the probes repeat until everything is ready or the time is up.",
        after_long_help = help(For::Check)
    )]
    Check(CheckArgs),

    /// Print the connection settings a consumer needs: registry, S3 endpoint, region, bucket, key and secret.
    #[command(
        long_about = "Print the connection settings a consumer needs: the registry address and Garage's S3 endpoint \
            as seen from the host, the region, the bucket, the access key id and its secret. They come from the \
            same settings and defaults as `apply`, so the consumer and the initialization cannot disagree.\n\n\
            This is the one command that prints the secret.",
        after_long_help = help(For::Env)
    )]
    Env(EnvArgs),

    /// Show the compose project's containers: state, health, exit code; why garage-init failed.
    #[command(
        long_about = "Show the compose project's containers through the Docker Engine API (DOCKER_HOST is honoured): \
            state, health and exit code of each service. For a garage-init container that exited non-zero: \
            its exit code, what it means, and its last log lines. When Docker does not answer, the network \
            probes of `check` are reported instead.",
        after_long_help = help(For::Status)
    )]
    Status(StatusArgs),

    /// From the host: inspect BuildKit's S3 cache in the bucket, verify that every manifest is whole,
    /// remove broken manifests, delete blobs no manifest lists.
    #[command(
        long_about = "From the host: inspect BuildKit's S3 cache in the bucket, with the access key. A manifest \
            (`manifests/<name>`) lists the blobs (`blobs/<digest>`) an import fetches; one blob missing fails \
            the whole build that imports it. `stats` counts, `verify` finds such manifests, `repair` removes \
            them (the next import is a cache miss, and the build exports again), `gc` deletes blobs no manifest \
            lists. Only objects under BuildKit's prefixes are read or deleted, and only with --yes.",
        after_long_help = help(For::Cache)
    )]
    Cache(CacheArgs),

    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    #[command(
        long_about = "Print the completion script for SHELL on stdout, generated from the same definitions as \
            --help. docs/host-commands.md says where each shell loads it from.",
        after_long_help = help(For::Env)
    )]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff) on stdout: `garage-init man | man -l -`.
    #[command(after_long_help = help(For::Env))]
    Man,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings of `apply`.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// URL of Garage's admin API.
    #[arg(
        long,
        env = "GARAGE_INIT_ADMIN_URL",
        value_name = "URL",
        default_value = "http://garage:3903",
        hide_env_values = true
    )]
    pub admin_url: String,

    /// URL of Garage's S3 API, used for the write check.
    #[arg(
        long,
        env = "GARAGE_INIT_S3_URL",
        value_name = "URL",
        default_value = "http://garage:3900",
        hide_env_values = true
    )]
    pub s3_url: String,

    /// `text`: one line per resource for people; `json`: one JSON object per line on stdout,
    /// diagnostics included (`--log-format` is the former name).
    #[arg(long, env = "GARAGE_INIT_LOG_FORMAT", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text, hide_env_values = true)]
    pub format: LogFormat,

    #[command(flatten)]
    pub token: AdminTokenArgs,

    #[command(flatten)]
    pub resources: ResourceArgs,

    #[command(flatten)]
    pub layout: LayoutArgs,

    /// Give up after this long, waiting included (e.g. 120s, 2m, 500ms; at most 24h).
    #[arg(long, env = "GARAGE_INIT_DEADLINE", value_name = "DURATION", default_value = "120s", value_parser = parse_duration, hide_env_values = true)]
    pub deadline: Duration,

    /// YAML spec of the cluster, buckets, keys and grants (see docs/cluster.md). Without it, the flags
    /// describe one bucket and one key with read, write and owner on it.
    #[arg(long, env = "GARAGE_INIT_SPEC", value_name = "PATH", hide_env_values = true)]
    pub spec: Option<PathBuf>,

    /// Let apply change or remove existing layout roles and zone redundancy as the spec says;
    /// without it, such differences are reported as drift and left alone.
    #[arg(long, env = "GARAGE_INIT_ALLOW_LAYOUT_CHANGES", hide_env_values = true)]
    pub allow_layout_changes: bool,

    /// At most this many requests in flight at once to each node's admin API, and to the S3 API
    /// (1 to 64): a spec of many buckets is worked through this many at a time, over as many
    /// connections.
    #[arg(long, env = "GARAGE_INIT_REQUESTS_PER_NODE", value_name = "N", default_value_t = DEFAULT_REQUESTS_PER_NODE, value_parser = parse_requests_per_node, hide_env_values = true)]
    pub requests_per_node: usize,
}

/// The admin token, inline or from a file.
#[derive(Debug, Clone, Args)]
pub struct AdminTokenArgs {
    /// Garage's admin token (`admin_token` in garage.toml). Prefer the file form.
    #[arg(long, env = "GARAGE_INIT_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// File holding the admin token; surrounding whitespace is trimmed.
    #[arg(long, env = "GARAGE_INIT_ADMIN_TOKEN_FILE", value_name = "PATH", hide_env_values = true)]
    pub admin_token_file: Option<PathBuf>,
}

/// The bucket and the access key that garage-init provides, and how BuildKit uses the bucket.
#[derive(Debug, Clone, Args)]
pub struct ResourceArgs {
    #[command(flatten)]
    pub access: AccessArgs,

    #[command(flatten)]
    pub lifecycle: LifecycleArgs,

    #[command(flatten)]
    pub cache_layout: CacheLayoutArgs,
}

/// The bucket, the access key and the region: what every command that talks to Garage needs.
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// The bucket, by its global alias (apply creates it when missing).
    #[arg(
        long,
        env = "GARAGE_INIT_BUCKET",
        value_name = "NAME",
        default_value = "buildkit-cache",
        hide_env_values = true
    )]
    pub bucket: String,

    /// Name given to the access key when apply imports it.
    #[arg(
        long,
        env = "GARAGE_INIT_KEY_NAME",
        value_name = "NAME",
        default_value = "buildkit-key",
        hide_env_values = true
    )]
    pub key_name: String,

    /// Access key id: "GK" and 24 hex digits [default: the built-in development key]
    #[arg(long, env = "GARAGE_INIT_ACCESS_KEY_ID", value_name = "ID", hide_env_values = true)]
    pub access_key_id: Option<String>,

    /// Secret access key: 64 hex digits [default: the built-in development secret]
    #[arg(long, env = "GARAGE_INIT_SECRET_ACCESS_KEY", value_name = "SECRET", hide_env_values = true)]
    pub secret_access_key: Option<String>,

    /// File holding the secret access key; surrounding whitespace is trimmed.
    #[arg(long, env = "GARAGE_INIT_SECRET_ACCESS_KEY_FILE", value_name = "PATH", hide_env_values = true)]
    pub secret_access_key_file: Option<PathBuf>,

    /// S3 region, as `s3_api.s3_region` in garage.toml.
    #[arg(
        long,
        env = "GARAGE_INIT_S3_REGION",
        value_name = "REGION",
        default_value = "garage",
        hide_env_values = true
    )]
    pub s3_region: String,
}

/// The bucket's lifecycle rules.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct LifecycleArgs {
    /// Lifecycle rules of BuildKit's cache: delete blobs this many days after their last write, and
    /// manifests 2 days sooner, so that no manifest outlives a blob it lists (at least 3; 0 or off:
    /// no such rules). With neither lifecycle setting, the bucket's rules are left as they are.
    #[arg(long, env = "GARAGE_INIT_EXPIRE_AFTER_DAYS", value_name = "DAYS", value_parser = parse_days, hide_env_values = true)]
    pub expire_after_days: Option<Days>,

    /// Lifecycle rule: abort multipart uploads not completed this many days after they started
    /// (0 or off: no such rule).
    #[arg(long, env = "GARAGE_INIT_ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS", value_name = "DAYS", value_parser = parse_days, hide_env_values = true)]
    pub abort_incomplete_uploads_after_days: Option<Days>,
}

/// Where BuildKit's S3 cache keeps its objects in the bucket: BuildKit's
/// options of the same names, which `env --format buildkit` prints and the
/// lifecycle rules and `cache` use.
#[derive(Debug, Clone, Args)]
pub struct CacheLayoutArgs {
    /// BuildKit's `prefix`: put before every key of the cache [default: none]
    #[arg(long, env = "GARAGE_INIT_CACHE_PREFIX", value_name = "PREFIX", hide_env_values = true)]
    pub cache_prefix: Option<String>,

    /// BuildKit's `manifests_prefix`: where the cache manifests are, after the prefix.
    #[arg(
        long,
        env = "GARAGE_INIT_CACHE_MANIFESTS_PREFIX",
        value_name = "PREFIX",
        default_value = "manifests/",
        hide_env_values = true
    )]
    pub cache_manifests_prefix: String,

    /// BuildKit's `blobs_prefix`: where the layer blobs are, after the prefix.
    #[arg(
        long,
        env = "GARAGE_INIT_CACHE_BLOBS_PREFIX",
        value_name = "PREFIX",
        default_value = "blobs/",
        hide_env_values = true
    )]
    pub cache_blobs_prefix: String,
}

/// BuildKit's defaults, as the flags give them.
impl Default for CacheLayoutArgs {
    fn default() -> Self {
        Self { cache_prefix: None, cache_manifests_prefix: "manifests/".into(), cache_blobs_prefix: "blobs/".into() }
    }
}

/// The role given to nodes that have none.
#[derive(Debug, Clone, Args)]
pub struct LayoutArgs {
    /// Zone of new layout roles.
    #[arg(long, env = "GARAGE_INIT_ZONE", value_name = "ZONE", default_value = "dc1", hide_env_values = true)]
    pub zone: String,

    /// Capacity of new layout roles, in bytes or with a unit (500GB, 1TiB)
    /// [default: the node's data partition size as Garage reports it, else 1GB]
    #[arg(long, env = "GARAGE_INIT_CAPACITY", value_name = "SIZE", value_parser = parse_size, hide_env_values = true)]
    pub capacity: Option<u64>,

    /// Tags of new layout roles; repeat the flag, or separate with commas in the variable.
    #[arg(long = "tag", env = "GARAGE_INIT_TAGS", value_name = "TAG", value_delimiter = ',', hide_env_values = true)]
    pub tags: Vec<String>,
}

/// Where the services are as seen from the host. The flags have the names of
/// `apply`'s, but other variables and defaults: `apply` runs inside the compose
/// network (`http://garage:3900`), the host commands on the host.
#[derive(Debug, Clone, Args)]
pub struct HostEndpointArgs {
    /// The registry's address on the host: host:port (or an http:// URL).
    #[arg(
        long,
        env = "GARAGE_INIT_REGISTRY",
        value_name = "ADDR",
        default_value = "localhost:5050",
        hide_env_values = true
    )]
    pub registry: String,

    #[command(flatten)]
    pub s3: HostS3Args,
}

/// Garage's S3 API as seen from the host: `check`, `env`, `status` and `cache`.
#[derive(Debug, Clone, Args)]
pub struct HostS3Args {
    /// Garage's S3 API as seen from the host (`--s3-endpoint` is the former name).
    #[arg(
        long,
        alias = "s3-endpoint",
        env = "GARAGE_INIT_S3_ENDPOINT",
        value_name = "URL",
        default_value = "http://localhost:3900",
        hide_env_values = true
    )]
    pub s3_url: String,
}

/// What `check` probes, and `status` when Docker does not answer.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub endpoints: HostEndpointArgs,

    /// Garage's admin API as seen from the host: its unauthenticated /health, and with a token the
    /// bucket's size (`--admin-endpoint` is the former name).
    #[arg(
        long,
        alias = "admin-endpoint",
        env = "GARAGE_INIT_ADMIN_ENDPOINT",
        value_name = "URL",
        default_value = "http://localhost:3903",
        hide_env_values = true
    )]
    pub admin_url: String,

    #[command(flatten)]
    pub access: AccessArgs,

    /// Optional here: with it, the bucket's size and object count, and other keys named like the
    /// key, are read from the admin API.
    #[command(flatten)]
    pub token: AdminTokenArgs,
}

/// Settings of `check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub probes: ProbeArgs,

    /// Repeat the probes until everything is ready or this much time has passed (seconds, or 2m,
    /// 500ms; at most 24h).
    #[arg(long, env = "GARAGE_INIT_WAIT", value_name = "SECONDS", value_parser = parse_duration, hide_env_values = true)]
    pub wait: Option<Duration>,

    /// `text` for people; `json`: one object on stdout with every probe and the exit code.
    #[arg(long, env = "GARAGE_INIT_CHECK_FORMAT", value_name = "FORMAT", value_enum, default_value_t = OutputFormat::Text, hide_env_values = true)]
    pub format: OutputFormat,
}

/// Settings of `env`.
#[derive(Debug, Clone, Args)]
pub struct EnvArgs {
    #[command(flatten)]
    pub endpoints: HostEndpointArgs,

    #[command(flatten)]
    pub resources: ResourceArgs,

    /// `shell`: export lines; `dotenv`: KEY=value lines; `json`: one object; `buildkit`: the
    /// --export-cache and --import-cache options of BuildKit's S3 cache; `github` (in a GitHub
    /// Actions step): masks the secret and appends KEY=value lines to the file named by $GITHUB_ENV.
    #[arg(long, env = "GARAGE_INIT_ENV_FORMAT", value_name = "FORMAT", value_enum, default_value_t = EnvFormat::Shell, hide_env_values = true)]
    pub format: EnvFormat,

    /// Name of the cache in the bucket (BuildKit's `name=`), for the `buildkit` and `json` formats.
    #[arg(
        long,
        env = "GARAGE_INIT_CACHE_NAME",
        value_name = "NAME",
        default_value = "buildkit",
        hide_env_values = true
    )]
    pub cache_name: String,

    /// Whose point of view the addresses are for. `host`: the published ports on this machine
    /// (a program on the host, a standalone buildkitd, or a `docker-container` builder on the host
    /// network). `compose-network`: the compose services' own names and ports (`http://garage:3900`,
    /// `registry:5000`), for a builder container attached to the stack's network.
    #[arg(long, env = "GARAGE_INIT_SEEN_FROM", value_name = "WHERE", value_enum, default_value_t = SeenFrom::Host, hide_env_values = true)]
    pub seen_from: SeenFrom,

    /// With `--format buildkit`: the flag names of `buildctl build` (`--export-cache`,
    /// `--import-cache`) or of `docker buildx build` (`--cache-to`, `--cache-from`).
    #[arg(long, env = "GARAGE_INIT_BUILDKIT_CLIENT", value_name = "CLIENT", value_enum, default_value_t = BuildkitClient::Buildctl, hide_env_values = true)]
    pub buildkit_client: BuildkitClient,
}

/// Where the addresses `env` prints are seen from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeenFrom {
    Host,
    ComposeNetwork,
}

/// The BuildKit client whose cache flags `env --format buildkit` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuildkitClient {
    Buildctl,
    Buildx,
}

/// Settings of `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Compose project name [default: the current directory's name, normalised as Compose does]
    #[arg(short = 'p', long, env = "COMPOSE_PROJECT_NAME", value_name = "NAME", hide_env_values = true)]
    pub project: Option<String>,

    /// Probes used when Docker does not answer.
    #[command(flatten)]
    pub probes: ProbeArgs,

    /// `text`: a table for people; `json`: one object on stdout.
    #[arg(long, env = "GARAGE_INIT_STATUS_FORMAT", value_name = "FORMAT", value_enum, default_value_t = OutputFormat::Text, hide_env_values = true)]
    pub format: OutputFormat,
}

/// `garage-init cache`.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CacheCommand {
    /// Objects and bytes under BuildKit's prefixes, each manifest, shared blobs, blobs no manifest lists.
    #[command(after_long_help = help(For::Cache))]
    Stats(CacheSettings),

    /// List every manifest that lists a blob the bucket lacks, and which blobs (exit 12 if any).
    #[command(after_long_help = help(For::Cache))]
    Verify(CacheSettings),

    /// Remove the manifests that list a missing blob (a dry run without --yes).
    #[command(
        long_about = "Remove the manifests that list a blob the bucket lacks (or that BuildKit cannot read), so \
            that the next import is a cache miss and the build exports again, instead of failing. Blobs are \
            never removed here. Without --yes, prints what would go and changes nothing.",
        after_long_help = help(For::Cache)
    )]
    Repair {
        #[command(flatten)]
        settings: CacheSettings,

        /// Delete what the dry run lists.
        #[arg(long)]
        yes: bool,
    },

    /// Delete blobs no manifest lists that are older than the grace period (a dry run without --yes).
    #[command(
        long_about = "Delete blobs that no manifest lists and that were last written longer ago than \
            --older-than. An export uploads its blobs before its manifest, and re-uses blobs younger than \
            touch_refresh (24h) without touching them: the grace period keeps the blobs of an export in \
            progress. Manifests written while gc runs are read before each batch, and each batch is listed \
            again just before it is deleted, so a blob touched meanwhile is kept. Without --yes, prints what \
            would go and changes nothing.",
        after_long_help = help(For::Cache)
    )]
    Gc {
        #[command(flatten)]
        settings: CacheSettings,

        /// Only blobs last written longer ago than this (e.g. 48h, 7d, 90m; 0s: every unlisted blob).
        #[arg(long, env = "GARAGE_INIT_GC_OLDER_THAN", value_name = "DURATION", default_value = "48h", value_parser = parse_age, hide_env_values = true)]
        older_than: Duration,

        /// Delete what the dry run lists.
        #[arg(long)]
        yes: bool,
    },
}

/// Settings of every `cache` subcommand.
#[derive(Debug, Clone, Args)]
pub struct CacheSettings {
    #[command(flatten)]
    pub s3: HostS3Args,

    #[command(flatten)]
    pub access: AccessArgs,

    #[command(flatten)]
    pub cache_layout: CacheLayoutArgs,

    /// `text` for people; `json`: one object on stdout (`gc`: one object per line).
    #[arg(long, env = "GARAGE_INIT_CACHE_FORMAT", value_name = "FORMAT", value_enum, default_value_t = OutputFormat::Text, hide_env_values = true)]
    pub format: OutputFormat,
}

/// Output of `check` and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Output of `env`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvFormat {
    Shell,
    Dotenv,
    Json,
    Buildkit,
    Github,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
