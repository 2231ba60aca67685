use std::process::ExitCode;

use clap::Parser;
use veritrail::config::{Cli, Command};

// The writer clones and frees many small buffers per entry (sled's copy-on-write leaf
// pages, staged rows); mimalloc measured faster than glibc's allocator under that load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    veritrail::log::keyfile::private_files();
    let cli = Cli::parse();
    let json = matches!(&cli.command, Command::Serve(o) if o.json_logs);
    veritrail::telemetry::init_tracing(json);
    match veritrail::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
