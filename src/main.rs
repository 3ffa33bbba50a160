//! The `shoal` command line: argument parsing and wiring of the library's parts.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(role) = shoal::drivers::dind::node_init::node_role(&raw) {
        // Inside a dind node: the node's init, its modprobe stub, or a probe (no CLI, no runtime).
        let code = shoal::drivers::dind::node_init::run_node_role(role);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let args = cli::Cli::parse();
    let timings = args.timings.then(shoal::timings::Timings::default);
    cli::init_logging(args.log_format, args.default_log_filter(), timings.as_ref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(cli::run(args));
    if let Some(timings) = timings {
        eprint!(
            "{}",
            shoal::render::timings::render_timings(&timings.finished())
        );
    }
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            match e.downcast_ref::<shoal::diag::Invalid>() {
                // Each of its diagnostics starts with `error:` or `warning:` already.
                Some(invalid) => eprintln!("{invalid}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(1)
        }
    }
}
