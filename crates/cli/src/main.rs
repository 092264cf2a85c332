//! `jobforge`: the service (`jobforge serve`) and the command-line client for it.
//!
//! This binary only parses arguments, picks what to run and maps outcomes to exit codes (in
//! [`exit`]); the service lives in `jobforge-server`, the client calls in `jobforge-client`.

mod args;
mod exit;
mod jobfile;
mod live;
mod output;
mod run;
mod serve;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = args::Cli::parse_from(args::original_spellings(std::env::args_os()));
    // The shim is this same binary; it must not start a runtime or logging of its own.
    if let args::Command::Shim { run_dir } = &args.command {
        let code = jobforge_local::shim::main(std::slice::from_ref(run_dir));
        return std::process::ExitCode::from(code.clamp(0, 255) as u8);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return exit::Exit::Internal.into();
        }
    };
    let outcome = runtime.block_on(run::run(args));
    exit::report(outcome)
}
