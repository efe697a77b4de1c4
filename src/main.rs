use std::process::ExitCode;

use clap::Parser;
use garage_init::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    garage_init::init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return garage_init::exit::Code::Failure.into();
        }
    };
    runtime.block_on(garage_init::run(cli)).into()
}
