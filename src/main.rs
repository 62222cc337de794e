//! The `gantry` binary: parse, set up output, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = gantry::cli::Cli::parse();
    ExitCode::from(gantry::app::main(cli))
}
