//! Building the service: the data dir, the key, the log (with recovery), the first
//! admin token, and the HTTP server.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::api::{AppState, State};
use crate::config::{self, ServeOpts};
use crate::log::keyfile;
use crate::log::note::NoteSigner;
use crate::log::{Ledger, WriterHandle};
use crate::storage::postgres::PgStore;
use crate::storage::sled::SledStore;
use crate::storage::Store;
use crate::telemetry::Metrics;
use crate::tokens::{self, Role};

/// A running service core, without HTTP.
pub struct Service {
    pub state: State,
    pub writer: WriterHandle,
    /// The admin token's secret when this start created it.
    pub admin_token: Option<String>,
}

/// Options of [`open`], shared by `serve` and the tests.
#[derive(Debug, Clone)]
pub struct OpenOpts {
    pub origin: Option<String>,
    pub signing_key_pem: Option<String>,
    pub body_limit: usize,
    /// How far in the future a caller's time may lie, seconds.
    pub max_clock_skew_secs: u64,
    pub full_check: bool,
    /// Page cache for the log, MiB.
    pub cache_mb: u64,
    /// Free space the local store keeps on each of its filesystems, MiB.
    pub storage_reserve_mb: u64,
    /// PostgreSQL instead of the data dir's sled store.
    pub database_url: Option<String>,
    pub database_connections: usize,
    /// Hosts webhook subscriptions may target (empty: any).
    pub webhook_hosts: Vec<String>,
    /// The witness policy: which checkpoint is served, and whom the log asks to cosign.
    pub witness_policy: Option<Arc<crate::witness::policy::Policy>>,
    /// Entry bundles without a token.
    pub public_entries: bool,
}

impl Default for OpenOpts {
    fn default() -> Self {
        Self {
            origin: None,
            signing_key_pem: None,
            body_limit: 16 * 1024 * 1024,
            max_clock_skew_secs: 300,
            full_check: false,
            cache_mb: 256,
            storage_reserve_mb: crate::storage::sled::space::DEFAULT_RESERVE >> 20,
            database_url: None,
            database_connections: 4,
            webhook_hosts: Vec::new(),
            witness_policy: None,
            public_entries: false,
        }
    }
}

/// The log's store: PostgreSQL when a database URL is given, else sled in the data dir.
pub fn open_store(
    data_dir: &Path,
    database_url: Option<&str>,
    connections: usize,
    cache_mb: u64,
) -> anyhow::Result<Arc<dyn Store>> {
    let reserve = crate::storage::sled::space::DEFAULT_RESERVE >> 20;
    open_store_keeping(data_dir, database_url, connections, cache_mb, reserve)
}

/// [`open_store`], a local store keeping `reserve_mb` free on its filesystems.
pub fn open_store_keeping(
    data_dir: &Path,
    database_url: Option<&str>,
    connections: usize,
    cache_mb: u64,
    reserve_mb: u64,
) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match database_url {
        Some(url) => {
            Arc::new(PgStore::open(url, connections).context("opening the PostgreSQL store")?)
        }
        None => {
            let store = SledStore::open_with_cache(
                &config::ledger_path(data_dir),
                cache_mb << 20,
                &crate::register::projections::keys::packing(),
            )
            .context("opening the ledger store (is a server still running on it?)")?;
            store.set_reserve(reserve_mb << 20);
            Arc::new(store)
        }
    })
}

/// Open (or create) the service's data dir and start the writer.
pub async fn open(data_dir: &Path, opts: &OpenOpts) -> anyhow::Result<Service> {
    crate::log::keyfile::private_dir(data_dir)?;
    let key = match &opts.signing_key_pem {
        Some(pem) => keyfile::from_pem(pem)?,
        None => {
            let (key, created) = keyfile::load_or_create(&config::key_path(data_dir))?;
            if created {
                tracing::info!(path = %config::key_path(data_dir).display(), "created the log's signing key");
            }
            key
        }
    };
    let store = open_store_keeping(
        data_dir,
        opts.database_url.as_deref(),
        opts.database_connections,
        opts.cache_mb,
        opts.storage_reserve_mb,
    )?;
    let stored_origin = store
        .meta("origin")?
        .map(|o| String::from_utf8_lossy(&o).into_owned());
    let origin = match (&opts.origin, stored_origin) {
        (Some(want), Some(have)) if *want != have => {
            bail!("this log's origin is {have:?}; --origin {want:?} cannot change it")
        }
        (_, Some(have)) => have,
        (Some(want), None) => want.clone(),
        (None, None) => config::DEFAULT_ORIGIN.to_owned(),
    };
    let signer = NoteSigner::new(&origin, key).context("the origin is not a valid key name")?;
    if opts.full_check && store.head()?.is_some() {
        let report = crate::log::verify::verify_store(&*store, &signer.verifier())?;
        tracing::info!(
            entries = report.entries,
            seconds = report.seconds,
            "full check of the log passed"
        );
    }
    let metrics = Arc::new(Metrics::new());
    let m = metrics.clone();
    let projections = Arc::new(crate::projection::table());
    let (ledger, writer) = Ledger::open(store, signer, projections, Arc::new(move |n| m.batch(n)))?;
    let state = actix_web::web::Data::new(AppState {
        ledger,
        metrics,
        body_limit: opts.body_limit,
        max_clock_skew_us: opts.max_clock_skew_secs.saturating_mul(1_000_000),
        sessions: Default::default(),
        stopping: Default::default(),
        webhook_targets: crate::events::targets::Targets::new(&opts.webhook_hosts),
        witness_policy: opts.witness_policy.clone(),
        public_entries: opts.public_entries,
        tiles: Default::default(),
    });
    let admin_token = bootstrap_admin(&state, data_dir).await?;
    Ok(Service {
        state,
        writer,
        admin_token,
    })
}

/// On a log without tokens, create the `admin` token. The secret is written (0600) before
/// its entry is appended, so a crash in between leaves a file that the next start reuses.
async fn bootstrap_admin(state: &State, data_dir: &Path) -> anyhow::Result<Option<String>> {
    if tokens::any_exist(&**state.ledger.store()).map_err(|e| anyhow::anyhow!("{e}"))? {
        return Ok(None);
    }
    let path = config::admin_token_path(data_dir);
    let (secret, written) = if path.exists() {
        keyfile::check_private(&path)?;
        (std::fs::read_to_string(&path)?.trim().to_owned(), false)
    } else {
        let s = tokens::new_secret();
        keyfile::write_secret_file(&path, format!("{s}\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        (s, true)
    };
    match state
        .ledger
        .append(
            tokens::SERVICE_ACTOR,
            tokens::create_command("admin".into(), Role::Admin, tokens::secret_hash(&secret)),
        )
        .await
    {
        Ok(_) => {}
        Err(crate::log::AppendError::Rejected(e))
            if e.code == crate::error::ErrorCode::AlreadyExists =>
        {
            // Another node sharing the database created it first: its data dir has the secret.
            if written {
                std::fs::remove_file(&path).ok();
            }
            tracing::info!("the admin token was created by another node");
            return Ok(None);
        }
        Err(e) => bail!(
            "creating the admin token: {}",
            crate::error::AppError::from(e)
        ),
    }
    tracing::info!(path = %path.display(), "created the admin token; its secret is in this file");
    eprintln!("admin token written to {}", path.display());
    Ok(Some(secret))
}

/// `veritrail serve`.
pub async fn serve(opts: ServeOpts) -> anyhow::Result<()> {
    let open_opts = open_opts(&opts)?;
    let svc = open(&opts.data.data_dir, &open_opts).await?;
    let state = svc.state.clone();
    // Signals are handled here rather than by actix, so that long-lived answers (event
    // feeds) are told to end before the server waits for in-flight requests.
    let mut server = actix_web::HttpServer::new(move || crate::api::app(state.clone()))
        .shutdown_timeout(30)
        .disable_signals();
    if let Some(w) = opts.workers {
        server = server.workers(w);
    }
    let server = server
        .bind(&opts.bind)
        .with_context(|| format!("binding {}", opts.bind))?;
    // Taken before the service says it listens: a SIGTERM at any moment after that
    // line is a graceful stop, never the default action's kill.
    let signals = StopSignals::install();
    for addr in server.addrs() {
        tracing::info!(%addr, origin = svc.state.ledger.origin(), size = svc.state.ledger.latest().size, "serving");
        eprintln!("veritrail listening on http://{addr}");
    }
    let background = start_background(&svc, &opts, open_opts.witness_policy.clone())?;
    run_until_stopped(server.run(), signals, &svc.state.stopping).await?;
    shut_down(svc, background).await;
    Ok(())
}

/// Read `serve`'s options into those of [`open`], the witness policy from its file.
fn open_opts(opts: &ServeOpts) -> anyhow::Result<OpenOpts> {
    Ok(OpenOpts {
        origin: opts.origin.clone(),
        signing_key_pem: opts.signing_key_pem.clone(),
        body_limit: opts.body_limit,
        max_clock_skew_secs: opts.max_clock_skew_secs,
        full_check: opts.full_check,
        cache_mb: opts.cache_mb,
        storage_reserve_mb: opts.storage_reserve_mb,
        database_url: opts.store.database_url.clone(),
        database_connections: opts.store.database_connections,
        webhook_hosts: opts.webhook_allowed_hosts.clone(),
        witness_policy: match &opts.witness_policy {
            Some(path) => Some(Arc::new(
                crate::witness::policy::Policy::read(path).map_err(anyhow::Error::msg)?,
            )),
            None => None,
        },
        public_entries: opts.public_entries,
    })
}

/// The service's tasks beside the HTTP server, ended once it has stopped.
struct Background {
    retention: actix_web::rt::task::JoinHandle<()>,
    follower: actix_web::rt::task::JoinHandle<()>,
    witness_tasks: Vec<actix_web::rt::task::JoinHandle<()>>,
    delivery: std::thread::JoinHandle<()>,
}

/// Start the work off the request path: retention, findings, witnessing and webhooks.
fn start_background(
    svc: &Service,
    opts: &ServeOpts,
    policy: Option<Arc<crate::witness::policy::Policy>>,
) -> anyhow::Result<Background> {
    // Retention: shred personal data past its retention period, on a timer.
    let retention = start_retention(
        svc.state.ledger.clone(),
        std::time::Duration::from_secs(opts.retention_interval_secs.max(1)),
    );
    // Findings as entries: reconciled at start, after the entries that cause them, and
    // on a timer for those time causes.
    let failing_after = std::time::Duration::from_secs(opts.webhook_failing_after_secs.max(1));
    let witnessing = policy.map(|policy| crate::witness::submit::WitnessingConfig {
        policy,
        interval: std::time::Duration::from_millis(opts.witness_interval_ms.max(1)),
        lag_after: std::time::Duration::from_secs(opts.witness_lag_secs.max(1)),
    });
    let service = service_findings(failing_after, witnessing.clone());
    // Witnessing: each witness of the policy gets the newest checkpoint, off the append path.
    let witness_tasks = match witnessing {
        Some(w) => {
            crate::witness::submit::start(svc.state.ledger.clone(), w, svc.state.stopping.clone())
        }
        None => Vec::new(),
    };
    let follower = actix_web::rt::spawn(crate::register::reports::findings::follow(
        svc.state.ledger.clone(),
        std::time::Duration::from_secs(opts.findings_interval_secs.max(1)),
        service,
    ));
    // Webhooks: each subscription's events, from its cursor, off the append path.
    crate::events::subscriptions::warn_refused(
        &**svc.state.ledger.store(),
        &svc.state.webhook_targets,
    )?;
    let delivery = crate::events::delivery::start(
        svc.state.ledger.clone(),
        crate::events::delivery::DeliveryConfig {
            retry_base: std::time::Duration::from_millis(opts.webhook_retry_base_ms.max(1)),
            failing_after,
            targets: svc.state.webhook_targets.clone(),
            ..Default::default()
        },
        svc.state.stopping.clone(),
    )?;
    Ok(Background {
        retention,
        follower,
        witness_tasks,
        delivery,
    })
}

/// Run the retention pass every `every`, logging a pass that fails.
fn start_retention(
    ledger: Ledger<crate::error::AppError>,
    every: std::time::Duration,
) -> actix_web::rt::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = crate::register::commands::erasure::run_retention(
                &ledger,
                crate::log::sequencer::now_micros(),
            )
            .await
            {
                tracing::error!(error = %e, "retention run failed");
            }
        }
    })
}

/// The findings about no system: failing webhooks, and (with witnessing) its lag.
fn service_findings(
    failing_after: std::time::Duration,
    witnessing: Option<crate::witness::submit::WitnessingConfig>,
) -> crate::register::reports::findings::ServiceFindings {
    Arc::new(move |store, now| {
        let mut all = crate::events::delivery::findings(store, now, failing_after)?;
        if let Some(w) = &witnessing {
            all.extend(crate::witness::submit::findings(
                store,
                &w.policy,
                now,
                w.lag_after,
            )?);
        }
        Ok(all)
    })
}

/// Serve until SIGINT/SIGTERM or the server's own end: feeds end, the server stops
/// accepting, lets in-flight requests finish (their appends are answered only once
/// durable), then returns; long-lived tasks are told to stop however it ended.
async fn run_until_stopped(
    server: actix_web::dev::Server,
    signals: StopSignals,
    stopping: &Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    let handle = server.handle();
    let signalled = stopping.clone();
    let signals = actix_web::rt::spawn(async move {
        signals.first().await;
        signalled.store(true, std::sync::atomic::Ordering::Relaxed);
        handle.stop(true).await;
    });
    let served = server.await;
    signals.abort();
    // However the server ended, long-lived tasks stop now.
    stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    served
}

/// End the background tasks, then the writer once nothing else holds the ledger.
async fn shut_down(svc: Service, background: Background) {
    let Background {
        retention,
        follower,
        witness_tasks,
        delivery,
    } = background;
    // The retention task holds a ledger handle: end it before waiting for the writer.
    retention.abort();
    let _ = retention.await;
    follower.abort();
    let _ = follower.await;
    for t in witness_tasks {
        t.abort();
        let _ = t.await;
    }
    // The delivery task ends its subscriptions' tasks once it sees the service stopping.
    let _ = actix_web::rt::task::spawn_blocking(move || delivery.join()).await;
    let Service { state, writer, .. } = svc;
    drop(state);
    writer.join();
    tracing::info!("stopped; every acknowledged entry is durable");
}

/// SIGTERM and SIGINT, taken from their default action (ending the process) as soon
/// as they are installed.
struct StopSignals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl StopSignals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Self(Some((term, int))),
            _ => Self(None),
        }
    }

    /// The first SIGINT or SIGTERM since they were installed.
    async fn first(self) {
        let Some((mut term, mut int)) = self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
