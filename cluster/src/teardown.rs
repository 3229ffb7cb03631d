//! `fundus mesos --teardown`: ends the framework for good.

use std::time::Duration;

use db::PgPool;
use mesos::{Call, Client, Event, Id};
use tokio_util::sync::CancellationToken;

use crate::framework::{Config, Framework};
use crate::metrics::Metrics;

/// Ends the framework for good: TEARDOWN (Mesos kills every task it has) and
/// the stored id forgotten. Takes the leadership first, so it cannot race a
/// running instance.
pub async fn teardown(cfg: &Config, pool: &PgPool) -> anyhow::Result<()> {
    let Some(id) = db::mesos::framework_id(pool, &cfg.name).await? else {
        println!("no framework named {} is registered", cfg.name);
        return Ok(());
    };
    let stop = CancellationToken::new();
    let waiting = crate::leader::acquire(&cfg.database_url, &cfg.name, &stop);
    let Ok(Some(_leadership)) = tokio::time::timeout(Duration::from_secs(5), waiting).await else {
        anyhow::bail!("another `fundus mesos` instance leads framework {}; stop every instance first", cfg.name);
    };
    let metrics = Metrics::default();
    let mut fw = Framework::new(cfg, pool, &metrics);
    fw.framework_id = Some(Id::new(id.clone()));
    let mut client = Client::new(&cfg.master)?;
    let mut sub = client.subscribe(&Call::subscribe(fw.framework_info(), Some(vec![cfg.role.clone()]))).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
            Err(_) => anyhow::bail!("no SUBSCRIBED from the master within 30 s"),
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(Event::Subscribed(_))) => break,
            Ok(Ok(Event::Error(m))) => {
                // Already gone on the master's side: only our record is left.
                tracing::warn!("master: {m}");
                db::mesos::forget_framework(pool, &cfg.name).await?;
                println!("framework {} ({id}) was already removed by the master; forgotten", cfg.name);
                return Ok(());
            }
            Ok(Ok(_)) => {}
        }
    }
    sub.caller().call(&Call::teardown(&Id::new(id.clone()))).await?;
    db::mesos::forget_framework(pool, &cfg.name).await?;
    println!("framework {} ({id}) torn down: Mesos kills its tasks", cfg.name);
    Ok(())
}
