//! The offline commands and the dispatch of every command.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::{
    self, AuditOpts, Cli, Command, MigrateOpts, ReindexOpts, VerifyBundleOpts, VerifyOpts,
    WitnessOpts,
};
use crate::log::note::{NoteSigner, NoteVerifier};
use crate::storage::Store;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(opts) => {
            // actix-web runs one runtime per worker thread; this one drives startup and shutdown.
            actix_web::rt::System::new().block_on(crate::startup::serve(opts))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(opts) => verify(opts),
        Command::VerifyBundle(o) => verify_bundle(o),
        Command::Audit(o) => audit(o),
        Command::Reindex(o) => reindex(o),
        Command::Migrate(o) => migrate(o),
        Command::Openapi => {
            println!("{}", crate::api::openapi().to_pretty_json()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Witness(o) => witness(o),
    }
}

/// `verify-bundle`: check an audit bundle offline and print each check.
fn verify_bundle(o: VerifyBundleOpts) -> anyhow::Result<ExitCode> {
    let key = NoteVerifier::parse(&o.key).context("--key")?;
    let text = std::fs::read_to_string(&o.file)
        .with_context(|| format!("reading {}", o.file.display()))?;
    let bundle: crate::audit::Bundle =
        serde_json::from_str(&text).context("the file is not an audit bundle")?;
    let report = match &o.witness_policy {
        Some(path) => crate::audit::verify_witnessed(
            &bundle,
            &key,
            &crate::witness::policy::Policy::read(path).map_err(anyhow::Error::msg)?,
        ),
        None => crate::audit::verify(&bundle, &key),
    };
    for (name, r) in &report.checks {
        match r {
            Ok(()) => println!("ok    {name}"),
            Err(e) => println!("FAIL  {name}: {e}"),
        }
    }
    if report.ok() {
        let s = &bundle.summary;
        println!(
            "VERIFIED: decision {:?} of {:?} (entry {}) was made by model version {} (approved by {} in entry {}, deployed in entry {}) under register revision {}",
            s.decision_id, s.system_id, s.decision_index, s.model_version, s.approved_by, s.approval_index, s.deployment_index, s.register_revision
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("NOT VERIFIED: {} check(s) failed", report.failures().len());
        Ok(ExitCode::from(2))
    }
}

/// `audit`: one run of the monitor against a live log.
fn audit(o: AuditOpts) -> anyhow::Result<ExitCode> {
    let key = NoteVerifier::parse(&o.key).context("--key")?;
    let policy = match &o.witness_policy {
        Some(path) => Some(crate::witness::policy::Policy::read(path).map_err(anyhow::Error::msg)?),
        None => None,
    };
    match crate::audit::monitor::run(
        &o.url,
        &key,
        o.token.as_deref(),
        o.state.as_deref(),
        policy.as_ref(),
    ) {
        Ok(r) => {
            println!(
                "OK: {} entries ({} new since {}), root {}, consistent and chained{}",
                r.size,
                r.new_entries,
                r.previous_size,
                hex::encode(r.root),
                if r.cosigned_by.is_empty() {
                    String::new()
                } else {
                    format!("; cosigned by {}", r.cosigned_by.join(", "))
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ crate::audit::monitor::Alert::Unreachable(_)) => {
            eprintln!("{e}");
            Ok(ExitCode::from(3))
        }
        Err(alert) => {
            eprintln!("{alert}");
            Ok(ExitCode::from(2))
        }
    }
}

/// `reindex`: rebuild every projection from the log.
fn reindex(o: ReindexOpts) -> anyhow::Result<ExitCode> {
    let store = crate::startup::open_store(
        &o.data.data_dir,
        o.store.database_url.as_deref(),
        o.store.database_connections,
        256,
    )?;
    let n = crate::reindex::reindex(&*store)?;
    println!("rebuilt every projection from {n} entries");
    Ok(ExitCode::SUCCESS)
}

/// `migrate`: copy a log between backends and prove the copy.
fn migrate(o: MigrateOpts) -> anyhow::Result<ExitCode> {
    let open = |spec: &str| {
        if config::is_database_url(spec) {
            crate::startup::open_store(std::path::Path::new("."), Some(spec), 2, 256)
        } else {
            crate::startup::open_store(std::path::Path::new(spec), None, 2, 256)
        }
    };
    let (from, to) = (open(&o.from)?, open(&o.to)?);
    let key = match &o.key {
        Some(k) => NoteVerifier::parse(k).context("--key")?,
        None => migrate_key(&o, &*from)?,
    };
    let r = crate::migrate::copy(&*from, &*to, &key)?;
    println!(
        "OK: copied {} entries, {} checkpoints, {} vault rows; projections rebuilt from the copy; root {} on both sides, and the copy verifies",
        r.entries,
        r.checkpoints,
        r.vault_rows,
        hex::encode(r.root)
    );
    Ok(ExitCode::SUCCESS)
}

/// Without `--key`: the verifier key from the key file of whichever side is a data
/// dir, under the origin the source records.
fn migrate_key(o: &MigrateOpts, from: &dyn Store) -> anyhow::Result<NoteVerifier> {
    let file = [&o.from, &o.to]
        .into_iter()
        .filter(|s| !config::is_database_url(s))
        .map(|s| config::key_path(std::path::Path::new(s)))
        .find(|p| p.exists())
        .context("no --key, and neither side is a data dir with a key file")?;
    let signing = crate::log::keyfile::from_pem(
        &std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?,
    )?;
    let origin = from
        .meta("origin")?
        .map(|o| String::from_utf8_lossy(&o).into_owned())
        .context("the source records no origin")?;
    Ok(NoteSigner::new(&origin, signing)?.verifier())
}

/// `witness`: run a tlog-witness server for the given logs.
fn witness(o: WitnessOpts) -> anyhow::Result<ExitCode> {
    let logs = o
        .logs
        .iter()
        .map(|k| NoteVerifier::parse(k).with_context(|| format!("--log {k}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let witness = crate::witness::server::Witness::open(&o.data.data_dir, &o.name, &logs)?;
    actix_web::rt::System::new().block_on(crate::witness::server::serve(&o.bind, witness))?;
    Ok(ExitCode::SUCCESS)
}

fn verify(opts: VerifyOpts) -> anyhow::Result<ExitCode> {
    if let Some(path) = &opts.export {
        let key = NoteVerifier::parse(opts.key.as_deref().context("--export needs --key")?)
            .context("--key")?;
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        return Ok(
            match crate::log::export::verify(std::io::BufReader::new(file), &key) {
                Ok(r) => {
                    println!(
                        "OK: entries {}..{} chain and produce the signed root {}",
                        r.start,
                        r.end,
                        hex::encode(r.root)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("FAILED: {e}");
                    ExitCode::from(2)
                }
            },
        );
    }
    let dir = &opts.data.data_dir;
    let store = crate::startup::open_store(
        dir,
        opts.store.database_url.as_deref(),
        opts.store.database_connections,
        256,
    )?;
    let verifier = match opts.key {
        Some(k) => NoteVerifier::parse(&k).context("--key")?,
        None => {
            let pem = std::fs::read_to_string(config::key_path(dir))
                .context("reading the key file (or pass --key)")?;
            let key = crate::log::keyfile::from_pem(&pem)?;
            let origin = store
                .meta("origin")?
                .map(|o| String::from_utf8_lossy(&o).into_owned())
                .context("no origin recorded: not a log")?;
            NoteSigner::new(&origin, key)?.verifier()
        }
    };
    match crate::log::verify::verify_store(&*store, &verifier) {
        Ok(r) => {
            println!(
                "OK: {} entries, {} checkpoints, root {} ({:.2} s, {:.0} entries/s)",
                r.entries,
                r.checkpoints,
                hex::encode(r.root),
                r.seconds,
                r.entries as f64 / r.seconds.max(1e-9)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAILED: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
