use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use clap::Parser;
use garage_init::cli::Cli;

fn main() -> ExitCode {
    // First of all, so that SIGINT and SIGTERM end every run with 130.
    let format = Arc::new(OnceLock::new());
    let listening = garage_init::exit_on_stop_signals(Arc::clone(&format));
    let cli = Cli::parse();
    garage_init::init_logging(cli.output_format(), cli.verbosity());
    let _ = format.set(cli.output_format());
    if let Err(e) = listening {
        tracing::warn!("SIGINT and SIGTERM keep their default action: cannot handle them: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            garage_init::errln!("Error: cannot start the async runtime: {e}");
            return garage_init::exit::Code::Failure.into();
        }
    };
    let code = runtime.block_on(garage_init::run(cli));
    // Exit now: name lookups run on blocking threads that cannot be
    // cancelled, and waiting for one (seconds, for a name that does not
    // resolve) would delay the exit past the deadline.
    runtime.shutdown_background();
    code.into()
}
