//! The `segscope` binary: parse arguments, run, turn the outcome into an exit status.
//! Exit statuses are documented in `segscope::cli` and the README.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = segscope::cli::Cli::parse();
    match segscope::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
