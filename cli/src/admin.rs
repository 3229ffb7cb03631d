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

pub async fn run(cmd: Admin) -> anyhow::Result<()> {
    match cmd {
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
        Admin::Sweep { db, store, min_age } => {
            let pool = pool(&db).await?;
            let store = ingest::Store::open(&store)?;
            let r = ingest::sweep::sweep(&pool, &store, Duration::from_secs(min_age)).await?;
            println!("examined {} objects, removed {} orphans", r.examined, r.removed);
        }
    }
    Ok(())
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
    let params: Vec<Params> = (0..a.n).map(|_| Params::sample(&mut rng, &sizes)).collect();
    params.par_iter().enumerate().try_for_each(|(i, p)| {
        let path = a.out.join(format!("synth-{i:06}.jpg"));
        std::fs::write(&path, to_jpeg(&render(p), 92)).with_context(|| format!("writing {}", path.display()))
    })?;
    let mut csv = String::from("path,eye,cdr,glaucoma,gradable,defect,notch,width,height,seed\n");
    for (i, p) in params.iter().enumerate() {
        csv.push_str(&format!(
            "synth-{i:06}.jpg,{},{:.3},{},{},{},{},{},{},{}\n",
            p.eye.as_str(),
            p.cdr,
            p.glaucoma as u8,
            p.gradable() as u8,
            p.defect.map_or("", |d| d.as_str()),
            p.notch.is_some() as u8,
            p.width,
            p.height,
            p.seed
        ));
    }
    std::fs::write(a.out.join("labels.csv"), csv)?;
    eprintln!("wrote {} photos and labels.csv to {}", a.n, a.out.display());
    Ok(())
}
