//! What both binaries (`fundus` and `fundus-serve`) do with their command
//! line and their process: flags with `*_FILE` values, logs, signals, and
//! serving the upload API.

pub fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FUNDUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json { b.json().init() } else { b.init() }
}

pub async fn shutdown_signal() {
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

/// Every flag that reads an environment variable `X` can also be read from
/// the file that `X_FILE` names (the container-secrets convention), so a
/// password or key need be neither on the command line, where `ps` shows it,
/// nor in the environment. The file's value stands in for the flag's default:
/// the flag itself still wins, and `X` with `X_FILE` together is an error.
pub fn values_from_files(cmd: clap::Command, env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Result<clap::Command, String> {
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

/// The command line (and its `*_FILE` values) parsed, or the process exits
/// with clap's message.
pub fn parse<T: clap::Parser>() -> T {
    let cmd = values_from_files(T::command(), &|v| std::env::var_os(v)).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    T::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
}

/// What `fundus serve` and `fundus-serve` take.
#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub cfg: ingest::Config,
    #[command(flatten)]
    pub influx: crate::influx::InfluxArgs,
}

pub async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(a.cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", a.cfg.listen))?;
    let state = ingest::AppState::new(a.cfg)?;
    let s = state.clone();
    // What /metrics answers, the review gauges refreshed first.
    let render = move || {
        let s = s.clone();
        async move {
            if let Err(e) = s.metrics.review.refresh(&s.db).await {
                tracing::warn!(error = %e, "refreshing the review gauges");
            }
            s.metrics.render()
        }
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let pusher = crate::influx::spawn(&a.influx, render, stop.clone())?;
    let r = ingest::serve(listener, state, shutdown_signal()).await;
    stop.cancel();
    if let Some(p) = pusher {
        let _ = p.await;
    }
    r
}

