//! `fundus`: the one binary. Each subcommand parses its configuration (flags
//! or environment) and calls into a library crate; no logic lives here.

mod admin;
mod bench;
mod bench_preprocess;
mod bench_review;
mod bench_score;
mod bench_soak;
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

/// Every flag that reads an environment variable `X` can also be read from
/// the file that `X_FILE` names (the container-secrets convention), so a
/// password or key need be neither on the command line, where `ps` shows it,
/// nor in the environment. The file's value stands in for the flag's default:
/// the flag itself still wins, and `X` with `X_FILE` together is an error.
fn values_from_files(cmd: clap::Command, env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Result<clap::Command, String> {
    let mut failed = None;
    let cmd = cmd.mut_args(|a| {
        let Some(var) = a.get_env().and_then(|v| v.to_str()).map(str::to_owned) else { return a };
        let Some(path) = env(&format!("{var}_FILE")) else { return a };
        if env(&var).is_some() {
            failed.get_or_insert(format!("both {var} and {var}_FILE are set: set one"));
            return a;
        }
        match std::fs::read_to_string(&path) {
            Ok(v) => {
                let v: &'static str = Box::leak(v.trim_end_matches(['\n', '\r']).to_owned().into_boxed_str());
                a.default_value(v).hide_default_value(true)
            }
            Err(e) => {
                failed.get_or_insert(format!("{var}_FILE: cannot read {}: {e}", std::path::Path::new(&path).display()));
                a
            }
        }
    });
    let mut inner = None;
    let cmd = cmd.mut_subcommands(|sub| match values_from_files(sub.clone(), env) {
        Ok(s) => s,
        Err(e) => {
            inner.get_or_insert(e);
            sub
        }
    });
    match failed.or(inner) {
        Some(e) => Err(e),
        None => Ok(cmd),
    }
}

fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = values_from_files(Cli::command(), &|v| std::env::var_os(v)).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = parse_cli();
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
            let c = super::values_from_files(cmd(), &vars(false)).expect("read");
            let m = c.try_get_matches_from(args).expect("parses");
            m.subcommand_matches("sub").and_then(|s| s.get_one::<String>("key").cloned())
        };
        assert_eq!(value(&["t", "sub"]).as_deref(), Some("from-file-secret"), "read from the file, newline trimmed");
        assert_eq!(value(&["t", "sub", "--key", "flag"]).as_deref(), Some("flag"), "the flag wins");
        let mut c = super::values_from_files(cmd(), &vars(false)).expect("read");
        let help = c.find_subcommand_mut("sub").expect("sub").render_help().to_string();
        assert!(!help.contains("from-file-secret"), "the secret is not shown in --help: {help}");
        let both = super::values_from_files(cmd(), &vars(true)).err().expect("refused");
        assert!(both.contains("both FUNDUS_TEST_ONLY_SECRET and FUNDUS_TEST_ONLY_SECRET_FILE"), "{both}");
        std::fs::remove_file(&file).expect("rm");
        let missing = super::values_from_files(cmd(), &vars(false)).err().expect("refused");
        assert!(missing.contains("cannot read"), "{missing}");
        // The real command line survives the treatment.
        use clap::CommandFactory;
        super::values_from_files(super::Cli::command(), &|_| None).expect("no files").debug_assert();
    }
}
