//! `fundus`: the one binary. Each subcommand parses its configuration (flags
//! or environment) and calls into a library crate; no logic lives here.
//! `fundus serve` hands over to `fundus-serve` beside it (the same server
//! without libtorch) when it is there.

mod admin;
mod bench;
mod bench_preprocess;
mod bench_queue;
mod bench_review;
mod bench_score;
mod bench_soak;
mod cmdline;
mod influx;
mod score;
mod train;

use clap::{Parser, Subcommand};
use cmdline::{init_logs, shutdown_signal};

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
    /// Run the upload API and the review service (as `fundus-serve`, which
    /// does not load libtorch, when it is installed beside this binary).
    Serve(cmdline::ServeArgs),
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
    Mesos {
        #[command(flatten)]
        args: Box<cluster::Args>,
        #[command(flatten)]
        influx: influx::InfluxArgs,
    },
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
    let cli: Cli = cmdline::parse();
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
        Command::Mesos { args, influx } => mesos(*args, influx).await,
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

/// The framework, its metrics also pushed to InfluxDB when asked.
async fn mesos(a: cluster::Args, influx: influx::InfluxArgs) -> anyhow::Result<()> {
    let metrics = std::sync::Arc::new(cluster::metrics::Metrics::default());
    let (m, pushing) = (metrics.clone(), tokio_util::sync::CancellationToken::new());
    let pusher = influx::spawn(&influx, move || std::future::ready(m.encode()), pushing.clone())?;
    let r = cluster::main(a, metrics, stop_on_signal()).await;
    pushing.cancel();
    if let Some(p) = pusher {
        let _ = p.await;
    }
    r
}

/// Serving needs none of libtorch, which is most of this binary's memory:
/// `fundus-serve`, installed beside it, is the same server without it, so
/// `fundus serve` becomes that process (same arguments and environment).
async fn serve(cfg: cmdline::ServeArgs) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let lean = std::env::current_exe().ok().and_then(|p| Some(p.parent()?.join("fundus-serve"))).filter(|p| p.is_file());
    if let Some(lean) = lean {
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let at = args.iter().position(|a| a == "serve").unwrap_or(0);
        let rest = args.iter().enumerate().filter(|&(i, _)| i != at).map(|(_, a)| a);
        let err = std::process::Command::new(&lean).args(rest).exec();
        tracing::warn!(error = %err, "could not run {}; serving from this process", lean.display());
    }
    cmdline::serve(cfg).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn secrets_can_come_from_files() {
        use clap::{Arg, Command};
        let dir = std::env::temp_dir().join(format!("fundus-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("key");
        std::fs::write(&file, "from-file-secret\n").expect("write");
        const VAR: &str = "FUNDUS_TEST_ONLY_SECRET";
        let cmd = || Command::new("t").subcommand(Command::new("sub").arg(Arg::new("key").long("key").env(VAR)));
        let vars = |with_plain: bool| {
            let file = file.clone();
            move |v: &str| match v {
                "FUNDUS_TEST_ONLY_SECRET_FILE" => Some(file.clone().into_os_string()),
                VAR if with_plain => Some("plain".into()),
                _ => None,
            }
        };
        let value = |args: &[&str]| {
            let c = super::cmdline::values_from_files(cmd(), &vars(false)).expect("read");
            let m = c.try_get_matches_from(args).expect("parses");
            m.subcommand_matches("sub").and_then(|s| s.get_one::<String>("key").cloned())
        };
        assert_eq!(value(&["t", "sub"]).as_deref(), Some("from-file-secret"), "read from the file, newline trimmed");
        assert_eq!(value(&["t", "sub", "--key", "flag"]).as_deref(), Some("flag"), "the flag wins");
        let mut c = super::cmdline::values_from_files(cmd(), &vars(false)).expect("read");
        let help = c.find_subcommand_mut("sub").expect("sub").render_help().to_string();
        assert!(!help.contains("from-file-secret"), "the secret is not shown in --help: {help}");
        let both = super::cmdline::values_from_files(cmd(), &vars(true)).err().expect("refused");
        assert!(both.contains("both FUNDUS_TEST_ONLY_SECRET and FUNDUS_TEST_ONLY_SECRET_FILE"), "{both}");
        std::fs::remove_file(&file).expect("rm");
        let missing = super::cmdline::values_from_files(cmd(), &vars(false)).err().expect("refused");
        assert!(missing.contains("cannot read"), "{missing}");
        // The real command line survives the treatment.
        use clap::CommandFactory;
        super::cmdline::values_from_files(super::Cli::command(), &|_| None).expect("no files").debug_assert();
    }
}
