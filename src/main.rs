use std::process::ExitCode;

use clap::Parser;
use veritrail::config::{Cli, Command};

fn main() -> ExitCode {
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
