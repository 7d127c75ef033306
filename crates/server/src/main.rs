//! The `portcullis` command: set-up, user and token administration, verification, OTP tools.

mod cli;
mod commands;
mod gateway;
mod qr;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
