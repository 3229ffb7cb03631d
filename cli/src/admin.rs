//! `fundus admin …`, `fundus migrate` and `fundus synth`: the operator's commands.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use rand::SeedableRng;
use rayon::prelude::*;

#[derive(Subcommand)]
pub enum Admin {
    /// Inspect the scoring queue and put dead-lettered jobs back.
    #[command(subcommand)]
    Jobs(Jobs),
    /// Create a site (a clinic or screening camp); its devices upload to it.
    SiteCreate {
        #[command(flatten)]
        db: ingest::DbArgs,
        /// Lower-case letters, digits, '-' and '_'.
        name: String,
    },
    /// Create a device of a site and print its token (shown this once only).
    DeviceCreate {
        #[command(flatten)]
        db: ingest::DbArgs,
        #[arg(long)]
        site: String,
        #[arg(long)]
        name: String,
    },
    /// Revoke a device's token: its next request gets 401.
    DeviceRevoke {
        #[command(flatten)]
        db: ingest::DbArgs,
        #[arg(long)]
        site: String,
        #[arg(long)]
        name: String,
    },
    /// List devices and whether they are revoked.
    DeviceList {
        #[command(flatten)]
        db: ingest::DbArgs,
    },
    /// Create a clinician account for the review UI; prints a generated
    /// password once unless one is given on stdin (`--password-stdin`).
    UserCreate {
        #[command(flatten)]
        db: ingest::DbArgs,
        /// Lower-case letters, digits, '.', '_' and '-'.
        #[arg(long)]
        name: String,
        /// grader, senior or admin.
        #[arg(long)]
        role: String,
        /// A site whose photos the user reads (repeat for several; admins see all).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// Read the password from the first line of stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account and end its sessions.
    UserDisable {
        #[command(flatten)]
        db: ingest::DbArgs,
        #[arg(long)]
        name: String,
    },
    /// List accounts, their roles and sites.
    UserList {
        #[command(flatten)]
        db: ingest::DbArgs,
    },
    /// Set a new password (generated and printed once, or from stdin) and end the user's sessions.
    UserPassword {
        #[command(flatten)]
        db: ingest::DbArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print the audit trail, oldest first.
    Audit {
        #[command(flatten)]
        db: ingest::DbArgs,
        /// Only entries at or after this time (RFC 3339, or a date).
        #[arg(long, value_parser = parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this actor's entries.
        #[arg(long)]
        actor: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        limit: i64,
    },
    /// Erase a person: their studies, photos, results, review items,
    /// derived files and the audit entries about them, from Postgres and the
    /// store (a photo object another study shares stays). Audited.
    Erase {
        #[command(flatten)]
        db: ingest::DbArgs,
        #[command(flatten)]
        store: ingest::StoreArgs,
        #[command(flatten)]
        keys: ingest::pseudonym::PseudonymArgs,
        /// The person's reference, as the site's devices send it.
        #[arg(long)]
        patient: String,
        #[arg(long)]
        site: String,
        /// Who asks (recorded in the audit trail).
        #[arg(long, default_value = "admin")]
        by: String,
    },
    /// Print the stored form of a site's patient reference (its keyed
    /// pseudonym when FUNDUS_PSEUDONYM_KEY is set), to find the person's studies.
    Pseudonym {
        #[command(flatten)]
        keys: ingest::pseudonym::PseudonymArgs,
        #[arg(long)]
        site: String,
        /// The reference as the site's devices send it.
        patient: String,
    },
    /// Work on a whole object store: copy it to another.
    #[command(subcommand)]
    Store(StoreCmd),
    /// Remove stored objects that no image row points at.
    Sweep {
        #[command(flatten)]
        db: ingest::DbArgs,
        #[command(flatten)]
        store: ingest::StoreArgs,
        /// Only objects older than this many seconds.
        #[arg(long, default_value_t = 3600)]
        min_age: u64,
    },
}

async fn pool(db: &ingest::DbArgs) -> anyhow::Result<db::PgPool> {
    let pool = db::connect(db.database_url.expose(), 2, Duration::from_secs(db.acquire_timeout_secs))?;
    db::migrate(&pool).await.context("database")?;
    Ok(pool)
}

pub async fn migrate(db: &ingest::DbArgs) -> anyhow::Result<()> {
    pool(db).await?;
    eprintln!("migrations applied");
    Ok(())
}

#[derive(Subcommand)]
pub enum Jobs {
    /// Jobs by state; with --dead, every dead-lettered job and its last error.
    List {
        #[command(flatten)]
        db: ingest::DbArgs,
        #[arg(long)]
        dead: bool,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Put dead-lettered jobs back in the queue with fresh attempts (after the
    /// cause is fixed); each is audited. Their `scoring_failed` review items
    /// go when the photo is scored, unless someone has read them.
    Retry {
        #[command(flatten)]
        db: ingest::DbArgs,
        /// Job ids (from `jobs list --dead`).
        #[arg(long = "id", required_unless_present = "all_dead")]
        ids: Vec<i64>,
        /// Every dead-lettered job.
        #[arg(long, conflicts_with = "ids")]
        all_dead: bool,
    },
}

async fn jobs(cmd: Jobs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        Jobs::List { db, dead: false, .. } => {
            let pool = pool(&db).await?;
            let d = db::queue::depth(&pool).await?;
            writeln!(out, "queued\trunning\tdead")?;
            writeln!(out, "{}\t{}\t{}", d.queued, d.running, d.dead)?;
        }
        Jobs::List { db, dead: true, limit } => {
            anyhow::ensure!((1..=1_000_000).contains(&limit), "--limit must be 1 to 1000000");
            let pool = pool(&db).await?;
            writeln!(out, "job\timage\tsite\tattempts\tdead_since\tlast_error")?;
            for j in db::queue::dead(&pool, limit).await? {
                let err = j.last_error.as_deref().unwrap_or("-").replace(['\t', '\n'], " ");
                writeln!(out, "{}\t{}\t{}\t{}\t{}\t{err}", j.id, j.image_id, j.site, j.attempts, j.updated_at.to_rfc3339())?;
            }
        }
        Jobs::Retry { db, ids, all_dead } => {
            let pool = pool(&db).await?;
            let retried = db::queue::retry_dead(&pool, &ids, all_dead, "admin").await?;
            for (id, image) in &retried {
                writeln!(out, "{id}\t{image}")?;
            }
            let missing: Vec<String> = ids.iter().filter(|i| !retried.iter().any(|(r, _)| r == *i)).map(i64::to_string).collect();
            eprintln!("{} job(s) re-queued", retried.len());
            anyhow::ensure!(missing.is_empty(), "not dead-lettered (or no such job): {}", missing.join(", "));
        }
    }
    Ok(())
}

pub async fn run(cmd: Admin) -> anyhow::Result<()> {
    match cmd {
        Admin::Jobs(j) => jobs(j).await?,
        Admin::Store(c) => store_cmd(c).await?,
        Admin::SiteCreate { db, name } => {
            let pool = pool(&db).await?;
            let id = db::access::site_create(&pool, &name)
                .await
                .map_err(|e| match e {
                    db::Error::Conflict(m) if m.contains("unique") => anyhow::anyhow!("site {name:?} already exists"),
                    db::Error::Conflict(_) => anyhow::anyhow!("invalid site name {name:?}: use lower-case letters, digits, '-' and '_'"),
                    e => e.into(),
                })?;
            db::audit(&pool, "admin", "site.create", Some(&id.to_string()), serde_json::json!({ "name": name })).await?;
            println!("{id}");
        }
        Admin::DeviceCreate { db, site, name } => {
            let pool = pool(&db).await?;
            let s = db::access::site_by_name(&pool, &site).await?;
            let token = ingest::auth::new_token();
            let id = db::access::device_create(&pool, s.id, &name, &ingest::auth::hash_token(&token))
                .await
                .map_err(|e| match e {
                    db::Error::Conflict(_) => anyhow::anyhow!("site {site:?} already has a device {name:?} (or the name is empty)"),
                    e => e.into(),
                })?;
            db::audit(&pool, "admin", "device.create", Some(&id.to_string()), serde_json::json!({ "site": site, "name": name })).await?;
            eprintln!("device {id} created; its token is printed once, below");
            println!("{token}");
        }
        Admin::DeviceRevoke { db, site, name } => {
            let pool = pool(&db).await?;
            let id = db::access::device_revoke(&pool, &site, &name).await?;
            db::audit(&pool, "admin", "device.revoke", Some(&id.to_string()), serde_json::json!({ "site": site, "name": name })).await?;
            eprintln!("device {id} revoked");
        }
        Admin::DeviceList { db } => {
            let pool = pool(&db).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "site\tdevice\tcreated\trevoked")?;
            for d in db::access::device_list(&pool).await? {
                let revoked = d.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
                writeln!(out, "{}\t{}\t{}\t{}", d.site, d.name, d.created_at.to_rfc3339(), revoked)?;
            }
        }
        Admin::UserCreate { db, name, role, sites, password_stdin } => {
            anyhow::ensure!(review::auth::Role::parse(&role).is_some(), "--role must be grader, senior or admin, not {role:?}");
            anyhow::ensure!(role == "admin" || !sites.is_empty(), "a {role} needs at least one --site whose photos they read");
            let (password, generated) = password(password_stdin)?;
            let pool = pool(&db).await?;
            let hash = review::auth::hash_password(&password)?;
            let id = db::users::user_create(&pool, &name, &role, &hash, &sites).await.map_err(|e| match e {
                db::Error::Conflict(m) if m.contains("unique") => anyhow::anyhow!("user {name:?} already exists"),
                db::Error::Conflict(_) => anyhow::anyhow!("invalid user name {name:?}: use lower-case letters, digits, '.', '_' and '-'"),
                db::Error::NotFound(what) => anyhow::anyhow!("no such site: {what}"),
                e => e.into(),
            })?;
            eprintln!("user {name} ({role}) created: {id}");
            if generated {
                eprintln!("its password is printed once, below");
                println!("{password}");
            }
        }
        Admin::UserDisable { db, name } => {
            let pool = pool(&db).await?;
            let id = db::users::user_disable(&pool, &name).await?;
            eprintln!("user {name} ({id}) disabled; their sessions are ended");
        }
        Admin::UserList { db } => {
            let pool = pool(&db).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "name\trole\tsites\tcreated\tdisabled")?;
            for u in db::users::user_list(&pool).await? {
                let disabled = u.disabled_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
                let sites = if u.role == "admin" { "*".to_owned() } else { u.sites.join(",") };
                writeln!(out, "{}\t{}\t{}\t{}\t{}", u.name, u.role, sites, u.created_at.to_rfc3339(), disabled)?;
            }
        }
        Admin::UserPassword { db, name, password_stdin } => {
            let (password, generated) = password(password_stdin)?;
            let pool = pool(&db).await?;
            let id = db::users::user_set_password(&pool, &name, &review::auth::hash_password(&password)?).await?;
            eprintln!("password of {name} ({id}) changed; their sessions are ended");
            if generated {
                println!("{password}");
            }
        }
        Admin::Audit { db, since, actor, limit } => {
            let pool = pool(&db).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "at\tactor\taction\tsubject\tdetail")?;
            for a in db::audit_list(&pool, since, actor.as_deref(), limit).await? {
                writeln!(out, "{}\t{}\t{}\t{}\t{}", a.at.to_rfc3339(), a.actor, a.action, a.subject.as_deref().unwrap_or("-"), a.detail)?;
            }
        }
        Admin::Erase { db, store, keys, patient, site, by } => {
            keys.validate().map_err(anyhow::Error::msg)?;
            let pool = pool(&db).await?;
            let store = ingest::Store::open(&store)?;
            let r = ingest::erase::patient(&pool, &store, &keys, &site, &patient, &by).await?;
            println!(
                "erased {} studies, {} photos, {} results, {} review items and {} objects{}",
                r.rows.studies,
                r.rows.images,
                r.rows.results,
                r.rows.review_items,
                r.objects_removed,
                if r.rows.studies == 0 { " (no study of this person at this site)" } else { "" }
            );
        }
        Admin::Pseudonym { keys, site, patient } => {
            keys.validate().map_err(anyhow::Error::msg)?;
            anyhow::ensure!(keys.key.is_some(), "FUNDUS_PSEUDONYM_KEY is not set: references are stored as sent");
            println!("{}", keys.stored(&site, &patient));
        }
        Admin::Sweep { db, store, min_age } => {
            let pool = pool(&db).await?;
            let store = ingest::Store::open(&store)?;
            let r = ingest::sweep::sweep(&pool, &store, Duration::from_secs(min_age)).await?;
            println!("examined {} objects, removed {} orphans", r.examined, r.removed);
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Copy every object (raw photos and derived files) from one store to
    /// another, each read back and compared by SHA-256; run it again after an
    /// interruption and it copies only what is missing. Credentials come from
    /// the same settings as the store's (FUNDUS_S3_*, FUNDUS_AZURE_*,
    /// FUNDUS_GCS_*), so the two stores may be of different kinds. Each run
    /// is recorded in the audit trail before it reads a photo, and its outcome
    /// when it ends.
    Copy {
        #[command(flatten)]
        db: ingest::DbArgs,
        #[command(flatten)]
        store: ingest::StoreArgs,
        /// The store to copy from, as FUNDUS_STORE_URL.
        #[arg(long)]
        from: String,
        /// The store to copy to.
        #[arg(long)]
        to: String,
        /// Write nothing: compare every object's SHA-256 on both sides, and
        /// fail if any is missing at the destination or differs.
        #[arg(long)]
        verify: bool,
        /// Objects in flight at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
    },
}

async fn store_cmd(cmd: StoreCmd) -> anyhow::Result<()> {
    let StoreCmd::Copy { db, store, from, to, verify, jobs } = cmd;
    let (f, t) = (from.trim().trim_end_matches('/'), to.trim().trim_end_matches('/'));
    let open = |url: &str| ingest::Store::open(&ingest::StoreArgs { store_url: url.to_owned(), ..store.clone() });
    let (src, dst) = (open(f).context("--from")?, open(t).context("--to")?);
    // Every photo passes through this command: no audit entry, no copy.
    let pool = pool(&db).await?;
    let action = if verify { "store.verify" } else { "store.copy" };
    let stores = serde_json::json!({ "from": src.describe, "to": dst.describe });
    db::audit(&pool, "admin", action, None, stores.clone()).await.context("store_copy_unaudited: the audit trail")?;
    let started = std::time::Instant::now();
    let what = if verify { "verified" } else { "copied" };
    eprintln!("{} {} to {}", if verify { "verifying" } else { "copying" }, src.describe, dst.describe);
    let result = store::copy::copy(&src, &dst, verify, jobs.into(), Duration::from_secs(2), |done, total, bytes| {
        eprintln!("  {done}/{total} objects, {:.1} MB written", bytes as f64 / 1e6);
    })
    .await;
    let outcome = match &result {
        Ok(r) => serde_json::json!({
            "objects": r.objects, "copied": r.copied, "bytes_copied": r.bytes_copied, "present": r.present,
            "mismatched": r.mismatched.len(), "corrupt_source": r.corrupt_source.len(), "extra": r.extra,
        }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    let mut detail = stores;
    detail["outcome"] = outcome;
    db::audit(&pool, "admin", &format!("{action}.end"), None, detail).await.context("the audit trail")?;
    let r = result?;
    println!(
        "{} objects in the source: {} {what}{}, {} already there; {:.1} MB written in {:.1} s; {} at the destination only (left alone)",
        r.objects,
        if verify { r.present } else { r.copied },
        if verify { String::new() } else { format!(" ({:.1} MB)", r.bytes_copied as f64 / 1e6) },
        if verify { 0 } else { r.present },
        r.bytes_copied as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        r.extra,
    );
    for k in &r.corrupt_source {
        eprintln!("  corrupt in the source (not copied): {k}");
    }
    for k in &r.mismatched {
        eprintln!("  missing or different at the destination: {k}");
    }
    if !r.corrupt_source.is_empty() {
        anyhow::bail!("store_copy_corrupt_source: {} raw photos in the source do not match the hash they are stored under", r.corrupt_source.len());
    }
    if !r.mismatched.is_empty() {
        anyhow::bail!(
            "store_copy_mismatch: {} objects are missing at the destination or differ from the source; delete those there and copy again",
            r.mismatched.len()
        );
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum Labels {
    /// Write the final human outcomes as a manifest `fundus train --data` reads
    /// (labels.csv), with the photos beside it.
    Export {
        #[command(flatten)]
        db: ingest::DbArgs,
        #[command(flatten)]
        store: ingest::StoreArgs,
        #[arg(long)]
        out: PathBuf,
        /// Only outcomes decided at or after this time (RFC 3339, or a date).
        #[arg(long, value_parser = parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
    },
}

pub async fn labels(cmd: Labels) -> anyhow::Result<()> {
    match cmd {
        Labels::Export { db, store, out, since } => {
            let pool = pool(&db).await?;
            let store = ingest::Store::open(&store)?;
            let s = review::export::export_labels(&pool, &store, &out, since, "admin").await?;
            eprintln!(
                "wrote {} photos ({} referable, {} not referable, {} ungradable) and labels.csv to {}",
                s.photos, s.referable, s.not_referable, s.ungradable, out.display()
            );
        }
    }
    Ok(())
}

/// A password from stdin's first line (checked against the rules), or a
/// generated one; true when generated.
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((review::auth::generate_password(), true));
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_owned();
    review::auth::check_password_rules(&pw).map_err(anyhow::Error::msg)?;
    Ok((pw, false))
}

/// RFC 3339, or a plain date (midnight UTC).
pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| format!("expected RFC 3339 (2026-12-01T08:00:00Z) or a date (2026-12-01), not {s:?}"))
}

#[derive(clap::Args)]
pub struct SynthArgs {
    /// How many photos.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Render every photo at this size (WxH) instead of phone-like sizes of 1.2 to 12 MP.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    /// v2: the task with a known ceiling (labels drawn from `oracle_p`,
    /// overlapping anatomy, phone capture); v1: the first, easy task, as it was.
    #[arg(long, value_enum, default_value_t = SynthTask::V2)]
    pub task: SynthTask,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SynthTask {
    V1,
    V2,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or("expected WxH, e.g. 1600x1200")?;
    let w: u32 = w.parse().map_err(|_| "width is not a number")?;
    let h: u32 = h.parse().map_err(|_| "height is not a number")?;
    if !(64..=16384).contains(&w) || !(64..=16384).contains(&h) {
        return Err("each side must be 64 to 16384 pixels".into());
    }
    Ok((w, h))
}

pub fn synth(a: SynthArgs) -> anyhow::Result<()> {
    use imaging::synth::{PHONE_SIZES, Params, render, to_jpeg};
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let sizes: Vec<(u32, u32)> = a.size.map(|s| vec![s]).unwrap_or_else(|| PHONE_SIZES.to_vec());
    // Parameters are drawn in order from one seeded generator, so the set is
    // the same whatever the thread count; rendering then runs in parallel.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let params: Vec<Params> = (0..a.n)
        .map(|_| match a.task {
            SynthTask::V1 => Params::sample(&mut rng, &sizes),
            SynthTask::V2 => Params::sample_v2(&mut rng, &sizes),
        })
        .collect();
    params.par_iter().enumerate().try_for_each(|(i, p)| {
        let path = a.out.join(format!("synth-{i:06}.jpg"));
        std::fs::write(&path, to_jpeg(&render(p), p.look.jpeg_quality)).with_context(|| format!("writing {}", path.display()))
    })?;
    let v2 = a.task == SynthTask::V2;
    let mut csv = String::from("path,eye,cdr,glaucoma,gradable,defect,notch,width,height,seed,disc_x,disc_y,disc_rx,disc_ry");
    if v2 {
        csv.push_str(",oracle_p,gradable_p,disc_scale,fixation_x,fixation_y,tilt,atrophy,haemorrhage,vignette,glare,lashes,blur,exposure,pigment,fov_scale,jpeg_quality,disc_size");
    }
    csv.push('\n');
    for (i, p) in params.iter().enumerate() {
        let disc = imaging::synth::disc_truth(p);
        csv.push_str(&format!(
            "synth-{i:06}.jpg,{},{:.3},{},{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1}",
            p.eye.as_str(),
            p.cdr,
            p.glaucoma as u8,
            p.gradable() as u8,
            p.defect.map_or("", |d| d.as_str()),
            p.notch.is_some() as u8,
            p.width,
            p.height,
            p.seed,
            disc.cx,
            disc.cy,
            disc.rx,
            disc.ry
        ));
        if v2 {
            let l = &p.look;
            csv.push_str(&format!(
                ",{:.5},{:.5},{:.3},{:.3},{:.3},{:.3},{:.3},{},{:.3},{:.3},{:.3},{:.4},{:.3},{:.3},{:.3},{},{:.4}",
                l.oracle_p.unwrap_or(f32::NAN),
                l.gradable_p.unwrap_or(f32::NAN),
                l.disc_scale,
                l.fixation[0],
                l.fixation[1],
                l.tilt,
                l.atrophy,
                l.haemorrhage.is_some() as u8,
                l.vignette,
                l.glare,
                l.lashes,
                l.blur,
                p.exposure,
                p.pigment,
                p.fov_scale,
                l.jpeg_quality,
                disc.ry / disc.field_r
            ));
        }
        csv.push('\n');
    }
    std::fs::write(a.out.join("labels.csv"), csv)?;
    eprintln!("wrote {} photos and labels.csv to {}", a.n, a.out.display());
    Ok(())
}
