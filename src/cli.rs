//! The offline commands and the dispatch of every command.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::{self, Cli, Command, VerifyOpts};
use crate::ledger::note::{NoteSigner, NoteVerifier};
use crate::ledger::store::{SledStore, Store};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(opts) => {
            // actix-web runs one runtime per worker thread; this one drives startup and shutdown.
            actix_web::rt::System::new().block_on(crate::startup::serve(opts))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(opts) => verify(opts),
        Command::Reindex(d) => {
            let store = SledStore::open(&config::ledger_path(&d.data_dir))
                .context("opening the ledger store")?;
            let n = crate::reindex::reindex(&store)?;
            println!("rebuilt every projection from {n} entries");
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            println!("{}", crate::api::openapi().to_pretty_json()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify(opts: VerifyOpts) -> anyhow::Result<ExitCode> {
    let dir = &opts.data.data_dir;
    let store = SledStore::open(&config::ledger_path(dir))
        .context("opening the ledger store (is a server still running on it?)")?;
    let verifier = match opts.key {
        Some(k) => NoteVerifier::parse(&k).context("--key")?,
        None => {
            let pem = std::fs::read_to_string(config::key_path(dir))
                .context("reading the key file (or pass --key)")?;
            let key = crate::ledger::keyfile::from_pem(&pem)?;
            let origin = store
                .meta("origin")?
                .map(|o| String::from_utf8_lossy(&o).into_owned())
                .context("no origin recorded: not a log")?;
            NoteSigner::new(&origin, key)?.verifier()
        }
    };
    match crate::ledger::verify::verify_store(&store, &verifier) {
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
