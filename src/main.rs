use std::process::ExitCode;

use clap::Parser;
use garage_init::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    garage_init::init_logging(cli.log_format);
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
    // resolve) would delay the exit past the deadline or a SIGTERM.
    runtime.shutdown_background();
    code.into()
}
