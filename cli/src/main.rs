//! `fundus`: the one binary. Each subcommand parses its configuration (flags
//! or environment) and calls into a library crate; no logic lives here.

mod admin;
mod bench;
mod bench_preprocess;
mod bench_review;
mod bench_score;
mod score;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fundus", version, about = "Glaucoma screening from fundus photographs")]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "FUNDUS_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the upload API.
    Serve(ingest::Config),
    /// Apply the database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: ingest::DbArgs,
    },
    /// Manage sites, device tokens and stored objects.
    #[command(subcommand)]
    Admin(admin::Admin),
    /// Benchmarks that print their figures.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Write synthetic fundus photographs (JPEG) and a labels CSV.
    Synth(admin::SynthArgs),
    /// Train a glaucoma + gradability model; writes weights, model card, ROC.
    Train(train::TrainArgs),
    /// Evaluate a trained model on a data set.
    Evaluate(train::EvaluateArgs),
    /// Score queued photos: claim jobs, run the model, route to review.
    Worker(score::WorkerArgs),
    /// Run scoring workers as tasks on a Mesos cluster, as many as the queue wants.
    Mesos(Box<cluster::Args>),
    /// Screen a backlog (store prefix or CSV manifest) and write a report.
    Batch(score::BatchArgs),
    /// Score a folder of photos with no services; writes a CSV.
    Score(score::ScoreArgs),
    /// Export a trained model as TorchScript (for Python and other runtimes).
    Export(score::ExportArgs),
    /// Reviewed outcomes as training labels.
    #[command(subcommand)]
    Labels(admin::Labels),
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FUNDUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json { b.json().init() } else { b.init() }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// A token cancelled on SIGTERM or Ctrl-C.
fn stop_on_signal() -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        s.cancel();
    });
    stop
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_json);
    let result = match cli.command {
        Command::Serve(cfg) => serve(cfg).await,
        Command::Migrate { db } => admin::migrate(&db).await,
        Command::Admin(a) => admin::run(a).await,
        Command::Bench(b) => bench::run(b).await,
        Command::Synth(s) => admin::synth(s),
        Command::Train(a) => train::train(a).await,
        Command::Evaluate(a) => train::evaluate_cmd(a),
        Command::Worker(a) => score::worker(a, stop_on_signal()).await,
        Command::Mesos(a) => cluster::main(*a, stop_on_signal()).await,
        Command::Batch(a) => score::batch(a).await,
        Command::Score(a) => score::score(a).await,
        Command::Export(a) => score::export(a),
        Command::Labels(l) => admin::labels(l).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: ingest::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    let state = ingest::AppState::new(cfg)?;
    ingest::serve(listener, state, shutdown_signal()).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
