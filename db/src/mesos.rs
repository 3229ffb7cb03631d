//! The Mesos framework's state: its framework id, the tasks it launched with
//! the last state Mesos reported, leadership, and what the scaler reads from
//! the queue.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::{PgPool, Result};

pub async fn framework_id(pool: &PgPool, name: &str) -> Result<Option<String>> {
    Ok(sqlx::query_file_scalar!("queries/mesos_framework_get.sql", name).fetch_optional(pool).await?)
}

pub async fn set_framework_id(pool: &PgPool, name: &str, id: &str) -> Result<()> {
    sqlx::query_file!("queries/mesos_framework_set.sql", name, id).execute(pool).await?;
    Ok(())
}

/// Forgets the framework id and ends its tasks (the master removed it).
pub async fn forget_framework(pool: &PgPool, name: &str) -> Result<()> {
    sqlx::query_file!("queries/mesos_framework_forget.sql", name).execute(pool).await?;
    Ok(())
}

pub async fn insert_task(pool: &PgPool, framework: &str, task_id: &str, agent_id: &str, hostname: &str) -> Result<()> {
    sqlx::query_file!("queries/mesos_task_insert.sql", task_id, framework, agent_id, hostname).execute(pool).await?;
    Ok(())
}

pub struct TaskChange<'a> {
    pub state: &'a str,
    pub reason: Option<&'a str>,
    pub message: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub terminal: bool,
}

/// Records a status update. `None` when the task is not one of ours.
/// Otherwise (ended, kill requested) as stored after the update.
pub async fn update_task(pool: &PgPool, framework: &str, task_id: &str, c: &TaskChange<'_>) -> Result<Option<(bool, bool)>> {
    let row = sqlx::query_file!(
        "queries/mesos_task_update.sql",
        task_id,
        c.state,
        c.reason,
        c.message,
        c.agent_id,
        c.terminal,
        framework
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (r.ended, r.kill_requested)))
}

pub async fn request_kill(pool: &PgPool, framework: &str, task_id: &str) -> Result<()> {
    sqlx::query_file!("queries/mesos_task_kill_requested.sql", task_id, framework).execute(pool).await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct LiveTask {
    pub task_id: String,
    pub agent_id: Option<String>,
    pub state: String,
    pub launched_at: DateTime<Utc>,
    pub running_at: Option<DateTime<Utc>>,
    pub kill_requested_at: Option<DateTime<Utc>>,
}

/// Tasks not known to have ended, oldest first.
pub async fn live_tasks(pool: &PgPool, framework: &str) -> Result<Vec<LiveTask>> {
    let rows = sqlx::query_file!("queries/mesos_tasks_live.sql", framework).fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|r| LiveTask {
            task_id: r.task_id,
            agent_id: r.agent_id,
            state: r.state,
            launched_at: r.launched_at,
            running_at: r.running_at,
            kill_requested_at: r.kill_requested_at,
        })
        .collect())
}

/// The queue as the scaler sees it, over a window of `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Demand {
    pub urgent_queued: i64,
    pub batch_queued: i64,
    pub running: i64,
    pub urgent_oldest_secs: Option<f64>,
    pub urgent_arrived: i64,
    pub done: i64,
    /// Seconds our worker tasks were running within the window, summed.
    pub worker_secs: f64,
}

pub async fn demand(pool: &PgPool, framework: &str, window_secs: f64) -> Result<Demand> {
    let r = sqlx::query_file!("queries/mesos_demand.sql", window_secs, framework).fetch_one(pool).await?;
    Ok(Demand {
        urgent_queued: r.urgent_queued,
        batch_queued: r.batch_queued,
        running: r.running,
        urgent_oldest_secs: r.urgent_oldest_secs,
        urgent_arrived: r.urgent_arrived,
        done: r.done,
        worker_secs: r.worker_secs,
    })
}

/// Tries once to become leader on this dedicated connection.
pub async fn try_lead(conn: &mut PgConnection, name: &str) -> Result<bool> {
    Ok(sqlx::query_file_scalar!("queries/leader_try_lock.sql", name).fetch_one(conn).await?)
}
