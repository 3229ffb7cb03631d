//! `fundus bench soak`: a batch screened by two `fundus worker` processes
//! while one of them is killed with SIGKILL and restarted every
//! `--kill-every` seconds, Postgres is restarted once and the object store
//! once. At the end every photo must have exactly one result, no job may be
//! dead and no object orphaned; the figures are printed and any broken
//! promise fails the command.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rayon::prelude::*;

use crate::bench_score::ScratchDb;

#[derive(clap::Args)]
pub struct SoakArgs {
    /// A superuser URL: the soak creates (and drops) its own database.
    #[arg(long, env = "FUNDUS_PG_SUPERUSER_URL")]
    superuser_url: String,
    #[command(flatten)]
    store: ingest::StoreArgs,
    /// Photos in the batch (800x600 synthetic JPEGs, written once, reused).
    #[arg(long, default_value_t = 10_000)]
    photos: usize,
    #[arg(long, default_value = ".stack/bench/soak")]
    dir: PathBuf,
    /// Seconds between SIGKILLs of a worker (each restarted at once).
    #[arg(long, default_value_t = 20)]
    kill_every: u64,
    /// The local stack folder, whose `scripts/stack stop NAME` and `up`
    /// restart Postgres and the store.
    #[arg(long, env = "FUNDUS_STACK_DIR", default_value = ".stack")]
    stack_dir: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
}

/// `n` distinct photos: 100 rendered fundus images (rendering is the slow
/// part), each written as `n / 100` variants that differ in a few pixels.
fn synth_photos(dir: &std::path::Path, n: usize) -> anyhow::Result<PathBuf> {
    use imaging::synth::{Eye, Params, render, to_jpeg};
    const BASES: usize = 100;
    let dir = dir.join(format!("photos-{n}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let missing: Vec<usize> = (0..n).filter(|i| !dir.join(format!("p{i:05}.jpg")).exists()).collect();
    if missing.is_empty() {
        return Ok(dir);
    }
    let bases: Vec<imaging::RgbImage> = (0..BASES)
        .into_par_iter()
        .map(|b| {
            render(&Params {
                eye: if b % 2 == 0 { Eye::Left } else { Eye::Right },
                cdr: 0.3 + 0.5 * b as f32 / BASES as f32,
                glaucoma: b % 3 == 0,
                ..Params::healthy(800, 600, b as u64)
            })
        })
        .collect();
    missing.into_par_iter().try_for_each(|i| -> anyhow::Result<()> {
        let mut img = bases[i % BASES].clone();
        let v = i / BASES;
        // A 4x4 block near the centre, coloured by the variant number.
        let w = img.width() as usize;
        let px: &mut [u8] = &mut img;
        for (dx, dy) in (0..16).map(|k| (k % 4, k / 4)) {
            let at = ((280 + dy) * w + 380 + dx + 4 * (v % 8)) * 3;
            px[at..at + 3].copy_from_slice(&[(v % 251) as u8, (v / 251) as u8, 77]);
        }
        std::fs::write(dir.join(format!("p{i:05}.jpg")), to_jpeg(&img, 90))?;
        Ok(())
    })?;
    Ok(dir)
}

struct Workers {
    cmd: Box<dyn Fn(usize) -> Command>,
    procs: Vec<Child>,
    kills: usize,
}

impl Workers {
    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let mut cmd = (self.cmd)(i);
        let child = cmd.spawn().with_context(|| format!("starting {:?}", cmd.get_program()))?;
        if i < self.procs.len() {
            self.procs[i] = child;
        } else {
            self.procs.push(child);
        }
        Ok(())
    }

    fn kill_and_restart(&mut self, i: usize) -> anyhow::Result<()> {
        let _ = self.procs[i].kill(); // SIGKILL
        let _ = self.procs[i].wait();
        self.kills += 1;
        self.start(i)
    }

    /// Restarts any worker that exited on its own (none should).
    fn revive(&mut self) -> anyhow::Result<usize> {
        let mut n = 0;
        for i in 0..self.procs.len() {
            if self.procs[i].try_wait()?.is_some() {
                self.start(i)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn stack(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let script = std::env::current_dir()?.join("scripts/stack");
    let out = Command::new(&script).args(args).env("FUNDUS_STACK_DIR", dir).output().with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(out.status.success(), "scripts/stack {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

pub async fn soak(a: SoakArgs) -> anyhow::Result<()> {
    let scratch = ScratchDb::create(&a.superuser_url, "soak").await?;
    let r = soak_in(&a, &scratch.url).await;
    scratch.drop_db().await?;
    r
}

async fn soak_in(a: &SoakArgs, url: &str) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t0 = Instant::now();
    let photos = synth_photos(&a.dir, a.photos)?;
    let model = a.dir.join("model");
    if !model.join(model::card::CARD_FILE).is_file() {
        model::score::write_untrained(&model, model::Arch::Small, 128, 0.5, 1)?;
    }
    eprintln!("{} photos ready in {:.0} s; {cores} cores", a.photos, t0.elapsed().as_secs_f64());
    let pool = db::connect(url, 8, Duration::from_secs(5))?;
    db::migrate(&pool).await?;
    let mut store_args = a.store.clone();
    store_args.store_url = format!("{}/soak-{}", a.store.store_url.trim_end_matches('/'), std::process::id());
    let store = ingest::Store::open(&store_args)?;
    let manifest = photos.join("manifest.csv");
    let mut csv = String::from("path\n");
    for i in 0..a.photos {
        csv += &format!("p{i:05}.jpg\n");
    }
    std::fs::write(&manifest, csv)?;
    let t = Instant::now();
    let limits = imaging::Limits { max_megapixels: 100, min_side: 512 };
    let reg = inference::screen::register(&pool, &store, &inference::screen::Source::Manifest { path: manifest, allow_outside: false }, limits, 30_000_000).await?;
    anyhow::ensure!(reg.rejected.is_empty(), "{} photos rejected, e.g. {:?}", reg.rejected.len(), reg.rejected.first());
    let total = db::batches::progress(&pool, reg.batch_id).await?.total;
    eprintln!("{total} photos registered in {:.0} s", t.elapsed().as_secs_f64());

    let exe = std::fs::canonicalize(std::env::current_exe()?)?;
    let logs = std::fs::canonicalize(&a.dir)?;
    let (url_s, st) = (url.to_owned(), store_args.clone());
    let model_s = model.display().to_string();
    let mut workers = Workers {
        cmd: Box::new(move |i| {
            let mut c = Command::new(&exe);
            c.args(["worker", "--model", &model_s, "--lease-secs", "15", "--poll-secs", "0.5", "--retry-secs", "1", "--patience-secs", "300"])
                .env("FUNDUS_DATABASE_URL", &url_s)
                .envs(st.env())
                .env("FUNDUS_WORKER_ID", format!("soak-{i}"))
                .env("FUNDUS_LOG", "warn")
                .stdout(Stdio::null());
            // Each worker's log, appended across its restarts.
            match std::fs::OpenOptions::new().create(true).append(true).open(logs.join(format!("worker-{i}.log"))) {
                Ok(f) => c.stderr(f),
                Err(_) => c.stderr(Stdio::null()),
            };
            c
        }),
        procs: Vec::new(),
        kills: 0,
    };
    workers.start(0)?;
    workers.start(1)?;
    let started = Instant::now();
    let (mut next_kill, mut victim) = (Duration::from_secs(a.kill_every), 0);
    let (mut pg_restarted, mut store_restarted, mut revived) = (false, false, 0);
    let done = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let elapsed = started.elapsed();
        anyhow::ensure!(elapsed < Duration::from_secs(a.timeout), "not finished after {} s", a.timeout);
        let p = match db::batches::progress(&pool, reg.batch_id).await {
            Ok(p) => p,
            Err(e) if e.is_unavailable() => continue, // the restart below
            Err(e) => return Err(e.into()),
        };
        if p.finished() {
            break p;
        }
        if elapsed >= next_kill {
            workers.kill_and_restart(victim)?;
            victim = 1 - victim;
            next_kill += Duration::from_secs(a.kill_every);
        }
        if !pg_restarted && p.done * 3 >= total {
            eprintln!("restarting Postgres at {} of {total}", p.done);
            stack(&a.stack_dir, &["stop", "postgres"])?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            stack(&a.stack_dir, &["up"])?;
            pg_restarted = true;
        } else if pg_restarted && !store_restarted && p.done * 3 >= 2 * total {
            eprintln!("restarting the object store at {} of {total}", p.done);
            stack(&a.stack_dir, &["stop", "garage"])?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            stack(&a.stack_dir, &["up"])?;
            store_restarted = true;
        }
        revived += workers.revive()?;
        if revived > 0 && revived % 10 == 0 {
            eprintln!("{revived} workers exited by themselves; see {}/worker-*.log", a.dir.display());
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let kills = workers.kills;
    drop(workers);

    // The promises.
    let scalar = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.with_context(|| sql) }
    };
    let without = scalar("SELECT count(*) FROM images i WHERE NOT EXISTS (SELECT 1 FROM results r WHERE r.image_id = i.id)").await?;
    let twice = scalar("SELECT count(*) FROM (SELECT image_id FROM results GROUP BY image_id HAVING count(*) > 1) t").await?;
    let dead = scalar("SELECT count(*) FROM jobs WHERE state = 'dead'").await?;
    let retries = scalar("SELECT coalesce(sum(attempts - 1), 0)::bigint FROM jobs").await?;
    let retried = scalar("SELECT count(*) FROM jobs WHERE attempts > 1").await?;
    let give_backs = scalar("SELECT coalesce(sum(give_backs), 0)::bigint FROM jobs").await?;
    let keys: std::collections::HashSet<String> = sqlx::query_scalar::<_, String>("SELECT object_key FROM images UNION SELECT heatmap_key FROM results WHERE heatmap_key IS NOT NULL")
        .fetch_all(&pool)
        .await?
        .into_iter()
        .collect();
    let objects = store.list("").await?;
    let orphans = objects.iter().filter(|k| !keys.contains(k.as_str())).count();
    let missing = keys.iter().filter(|k| !objects.contains(k)).count();

    println!("soak: {total} photos, 2 workers, {cores} cores, one SIGKILL every {} s", a.kill_every);
    println!("  screened in      {secs:.0} s ({:.1} photos/s, registration not included)", total as f64 / secs);
    println!("  worker kills     {} (each restarted at once); workers that exited by themselves: {revived}", kills);
    println!("  restarts         Postgres {}, object store {}", pg_restarted as u8, store_restarted as u8);
    println!("  retries          {retries} extra attempts on {retried} jobs; {give_backs} give-backs");
    println!("  results          {} photos without a result, {twice} with more than one", without);
    println!("  dead jobs        {dead}");
    println!("  objects          {} stored, {orphans} orphaned, {missing} missing", objects.len());
    // The soak's objects go; its database goes with the scratch database.
    use futures::StreamExt as _;
    futures::stream::iter(&objects).for_each_concurrent(16, |k| {
        let store = store.clone();
        async move {
            let _ = store.delete(k).await;
        }
    })
    .await;
    anyhow::ensure!(done.done == total && without == 0 && twice == 0 && dead == 0, "a photo was not screened exactly once");
    anyhow::ensure!(orphans == 0 && missing == 0, "objects orphaned or missing");
    anyhow::ensure!(pg_restarted && store_restarted, "the batch finished before both restarts: use more --photos");
    Ok(())
}
