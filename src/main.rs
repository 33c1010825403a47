//! `nightdesk`: parse the command line, install logging, hand over to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use nightdesk::cli::{self, Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs JSON lines by default; interactive commands log human text.
    let json = cli.json_logs || matches!(cli.command, Command::Run { once: false, .. });
    nightdesk::telemetry::init_logging(json);
    match cli::execute(cli).await.map_err(anyhow::Error::from) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("nightdesk: {error:#}");
            ExitCode::FAILURE
        }
    }
}
