//! `fundus-serve`: the upload API and the review service, and nothing else.
//! The same server as `fundus serve`, in a binary that does not link
//! libtorch: it starts without torch's libraries on the loader path and idles
//! at a fraction of the memory. `fundus serve` becomes this process when it
//! is installed beside `fundus`.

#[path = "../cmdline.rs"]
mod cmdline;
#[path = "../influx.rs"]
mod influx;

use clap::Parser;

#[derive(Parser)]
#[command(name = "fundus-serve", version, about = "The Fundus upload API and review service (no libtorch)")]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, env = "FUNDUS_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    serve: cmdline::ServeArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli: Cli = cmdline::parse();
    cmdline::init_logs(cli.log_json);
    match cmdline::serve(cli.serve).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
