//! The command line. Every flag can also be set by a `VERITRAIL_*` environment variable;
//! the `///` comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "veritrail",
    version,
    about = "Compliance register and verifiable decision ledger for production AI systems"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (creates the data dir, signing key and an admin token on first start).
    Serve(ServeOpts),
    /// Check a stopped server's data dir offline: every entry, link, tile and checkpoint.
    Verify(VerifyOpts),
    /// Check an audit bundle offline with nothing but the log's verifier key.
    VerifyBundle(VerifyBundleOpts),
    /// An auditor's monitor of a live log: signature, consistency with the last checkpoint seen, every entry's chain.
    Audit(AuditOpts),
    /// Rebuild every projection (register, indexes, tokens) from the log alone (stop
    /// every node first).
    Reindex(ReindexOpts),
    /// Copy a log between backends (a data dir and PostgreSQL, either way) entry by
    /// entry, and prove the copy's root equals the original's.
    Migrate(MigrateOpts),
    /// Print the OpenAPI description of the HTTP API.
    Openapi,
    /// Run a C2SP tlog-witness server for one or more logs (its key created on first
    /// start, its verifier key in DIR/witness.vkey).
    Witness(WitnessOpts),
}

#[derive(Debug, Clone, Args)]
pub struct DataDirOpt {
    /// Where the log, the signing key and the admin token live.
    #[arg(long, env = "VERITRAIL_DATA_DIR", default_value = "./veritrail-data")]
    pub data_dir: PathBuf,
}

/// Where the log lives: the data dir (embedded sled, the default) or PostgreSQL.
#[derive(Debug, Clone, Args)]
pub struct StoreOpt {
    /// Keep the log in PostgreSQL instead of the data dir, `postgres://user:password@host:port/db`;
    /// several nodes may share one database (and must then share the signing key).
    #[arg(long, env = "VERITRAIL_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Reader connections to PostgreSQL (the writer has its own).
    #[arg(long, env = "VERITRAIL_DATABASE_CONNECTIONS", default_value_t = 4)]
    pub database_connections: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ReindexOpts {
    #[command(flatten)]
    pub data: DataDirOpt,
    #[command(flatten)]
    pub store: StoreOpt,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateOpts {
    /// The log to copy: a data dir, or a `postgres://` URL.
    #[arg(long)]
    pub from: String,
    /// Where to copy it (must hold no log yet): a data dir, or a `postgres://` URL.
    #[arg(long)]
    pub to: String,
    /// The log's verifier key (`name+keyid+base64`, as `GET /v1/log/key` serves it):
    /// every copied checkpoint must verify. Default: derived from the signing key file
    /// of whichever side is a data dir.
    #[arg(long, env = "VERITRAIL_KEY")]
    pub key: Option<String>,
}

/// Is this store location a PostgreSQL URL (else a data dir)?
pub fn is_database_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

#[derive(Debug, Clone, Args)]
pub struct ServeOpts {
    #[command(flatten)]
    pub data: DataDirOpt,
    #[command(flatten)]
    pub store: StoreOpt,
    /// Address to listen on.
    #[arg(long, env = "VERITRAIL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// The log's origin (checkpoint first line and key name); fixed when the log is created.
    #[arg(long, env = "VERITRAIL_ORIGIN")]
    pub origin: Option<String>,
    /// The signing key as PKCS#8 PEM text instead of the key file (for several nodes sharing one key).
    #[arg(long, env = "VERITRAIL_SIGNING_KEY_PEM", hide_env_values = true)]
    pub signing_key_pem: Option<String>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "VERITRAIL_JSON_LOGS")]
    pub json_logs: bool,
    /// How far in the future a time a caller sends (`occurred_at`) may lie, seconds.
    #[arg(long, env = "VERITRAIL_MAX_CLOCK_SKEW_SECS", default_value_t = 300)]
    pub max_clock_skew_secs: u64,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "VERITRAIL_BODY_LIMIT", default_value_t = 16 * 1024 * 1024)]
    pub body_limit: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "VERITRAIL_WORKERS")]
    pub workers: Option<usize>,
    /// Page cache for the log, in MiB (the vault gets a quarter of it besides).
    #[arg(long, env = "VERITRAIL_CACHE_MB", default_value_t = 1024)]
    pub cache_mb: u64,
    /// Free space, in MiB, the embedded store keeps on each filesystem it writes to:
    /// below it, writes are refused with 507 `storage-full` (nothing half-written) and
    /// resume by themselves once space returns.
    #[arg(long, env = "VERITRAIL_STORAGE_RESERVE_MB", default_value_t = 64)]
    pub storage_reserve_mb: u64,
    /// Seconds between retention runs (shredding personal data past its retention period).
    #[arg(
        long,
        env = "VERITRAIL_RETENTION_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub retention_interval_secs: u64,
    /// Seconds between reconciliations of every system's findings (the findings time
    /// causes: a review falling due, a test going stale, a logging gap). Findings an
    /// entry causes are recorded within a second of it.
    #[arg(long, env = "VERITRAIL_FINDINGS_INTERVAL_SECS", default_value_t = 60)]
    pub findings_interval_secs: u64,
    /// Hosts webhook subscriptions may target, comma-separated (default: any host).
    #[arg(long, env = "VERITRAIL_WEBHOOK_ALLOWED_HOSTS", value_delimiter = ',')]
    pub webhook_allowed_hosts: Vec<String>,
    /// The first webhook retry's wait in milliseconds; each further failure doubles it
    /// (up to 10 minutes), with jitter.
    #[arg(long, env = "VERITRAIL_WEBHOOK_RETRY_BASE_MS", default_value_t = 1000)]
    pub webhook_retry_base_ms: u64,
    /// Seconds of failed deliveries (no success) after which a subscription is failing:
    /// the finding `subscription_failing` (default 24 hours).
    #[arg(
        long,
        env = "VERITRAIL_WEBHOOK_FAILING_AFTER_SECS",
        default_value_t = 86_400
    )]
    pub webhook_failing_after_secs: u64,
    /// Run the full offline check of the log before serving (the default checks the tail
    /// since the previous checkpoint and the tree against the last checkpoint).
    #[arg(long, env = "VERITRAIL_FULL_CHECK")]
    pub full_check: bool,
    /// The witness policy (C2SP tlog-policy lines: `witness NAME VKEY URL`, `group NAME
    /// K|any|all MEMBER…`, `quorum NAME`): the log sends its checkpoints to the witnesses
    /// with a URL, and serves the newest checkpoint that meets the quorum.
    #[arg(long, env = "VERITRAIL_WITNESS_POLICY")]
    pub witness_policy: Option<PathBuf>,
    /// At most one checkpoint per witness this often, milliseconds.
    #[arg(long, env = "VERITRAIL_WITNESS_INTERVAL_MS", default_value_t = 1000)]
    pub witness_interval_ms: u64,
    /// Seconds without a checkpoint meeting the quorum (while the log grows) after which
    /// each witness behind is the finding `witnessing_lag`.
    #[arg(long, env = "VERITRAIL_WITNESS_LAG_SECS", default_value_t = 300)]
    pub witness_lag_secs: u64,
    /// Serve the log's entry bundles (`/tile/entries/…`) without a token.
    #[arg(long, env = "VERITRAIL_PUBLIC_ENTRIES")]
    pub public_entries: bool,
}

/// `veritrail witness`: a C2SP tlog-witness server.
#[derive(Debug, Clone, Args)]
pub struct WitnessOpts {
    #[command(flatten)]
    pub data: DataDirOpt,
    /// Where to listen.
    #[arg(long, env = "VERITRAIL_BIND", default_value = "127.0.0.1:8090")]
    pub bind: String,
    /// The witness's name (its key name in cosignatures).
    #[arg(
        long,
        env = "VERITRAIL_WITNESS_NAME",
        default_value = "veritrail-witness"
    )]
    pub name: String,
    /// A log to witness: its verifier key (`origin+keyid+base64`); repeat for more.
    #[arg(long = "log", required = true)]
    pub logs: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyOpts {
    #[command(flatten)]
    pub data: DataDirOpt,
    #[command(flatten)]
    pub store: StoreOpt,
    /// Verifier key (`name+keyid+base64`); default: derived from the data dir's key file.
    #[arg(long, env = "VERITRAIL_KEY")]
    pub key: Option<String>,
    /// Check an export file (from `GET /v1/log/export`) instead of a data dir; needs --key.
    #[arg(long)]
    pub export: Option<PathBuf>,
}

/// Files inside the data dir.
pub fn key_path(data: &std::path::Path) -> PathBuf {
    data.join("signing-key.pem")
}

pub fn admin_token_path(data: &std::path::Path) -> PathBuf {
    data.join("admin-token")
}

pub fn ledger_path(data: &std::path::Path) -> PathBuf {
    data.join("ledger")
}

pub const DEFAULT_ORIGIN: &str = "localhost/veritrail";

#[derive(Debug, Clone, Args)]
pub struct VerifyBundleOpts {
    /// The bundle (JSON, as `GET …/decisions/{id}/audit` returns it).
    pub file: PathBuf,
    /// The log's verifier key (`name+keyid+base64`), obtained out of band.
    #[arg(long, env = "VERITRAIL_KEY")]
    pub key: String,
    /// A witness policy: refuse the bundle's checkpoint without a quorum of valid
    /// cosignatures.
    #[arg(long, env = "VERITRAIL_WITNESS_POLICY")]
    pub witness_policy: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct AuditOpts {
    /// The service's base URL.
    #[arg(long, env = "VERITRAIL_URL")]
    pub url: String,
    /// The log's verifier key (`name+keyid+base64`), obtained out of band.
    #[arg(long, env = "VERITRAIL_KEY")]
    pub key: String,
    /// An auditor token (entries and proofs need one).
    #[arg(long, env = "VERITRAIL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where to remember the last checkpoint seen (and the tree's right edge).
    #[arg(long, env = "VERITRAIL_AUDIT_STATE")]
    pub state: Option<PathBuf>,
    /// A witness policy: audit the checkpoint that meets its quorum and refuse one
    /// without enough valid cosignatures.
    #[arg(long, env = "VERITRAIL_WITNESS_POLICY")]
    pub witness_policy: Option<PathBuf>,
}
