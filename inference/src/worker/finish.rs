//! The worker's finisher: scored jobs are finished in groups, one
//! transaction for as many as are ready together (group commit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use db::queue::{self, Claimed};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Ctx, JobError};

/// A scored job on its way to the finisher, and where its fate goes.
pub(super) struct Finish {
    pub(super) job: Claimed,
    pub(super) outcome: queue::Outcome,
    pub(super) reply: oneshot::Sender<Result<bool, JobError>>,
}

/// How long the finisher waits, after a first scored job, for the rest of
/// its batch (whose heatmaps may still be on their way to the store).
const FINISH_GATHER: Duration = Duration::from_millis(5);

/// Finishes scored jobs: those ready within [`FINISH_GATHER`] of the first,
/// and any that arrive while a transaction runs, up to a claim's worth, go
/// into one transaction.
pub(super) async fn finisher(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Finish>, stop: CancellationToken) {
    let most = ctx.cfg.claim_batch.max(1) as usize;
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            f = rx.recv() => match f { Some(f) => f, None => return },
        };
        let mut group = vec![first];
        let until = tokio::time::Instant::now() + FINISH_GATHER;
        while group.len() < most {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(f)) => group.push(f),
                _ => break,
            }
        }
        finish_group(&ctx, group).await;
    }
}

/// One transaction for the group; retried through a database outage. A
/// group the database refuses is split so that one bad result fails only
/// its own job.
async fn finish_group(ctx: &Ctx, group: Vec<Finish>) {
    let mut tries = 0;
    let (jobs, replies): (Vec<(Claimed, queue::Outcome)>, Vec<_>) = group.into_iter().map(|f| ((f.job, f.outcome), f.reply)).unzip();
    let r = loop {
        match queue::finish_many(&ctx.pool, &ctx.cfg.id, &jobs).await {
            Err(e) if e.is_unavailable() => {
                // The work is done: keep trying until the worker stops (a
                // lease that runs out meanwhile does not forbid completion).
                tracing::warn!(jobs = jobs.len(), error = %e, "database unavailable; retrying completion");
                if !ctx.pause(tries, Instant::now()).await {
                    break Err(None);
                }
                tries += 1;
            }
            Err(e) => break Err(Some(e)),
            Ok(held) => break Ok(held),
        }
    };
    match r {
        Ok(held) => {
            ctx.note(|s| s.finish_transactions += 1);
            for ((job, _), reply) in jobs.iter().zip(replies) {
                let _ = reply.send(Ok(held.contains(&job.id)));
            }
        }
        Err(Some(e)) if jobs.len() > 1 => {
            tracing::warn!(jobs = jobs.len(), error = %e, "the database refused a group of results; finishing them one by one");
            for ((job, outcome), reply) in jobs.into_iter().zip(replies) {
                Box::pin(finish_group(ctx, vec![Finish { job, outcome, reply }])).await;
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(match &e {
                    Some(e) => JobError::Failed(format!("result_rejected: recording the result: {e}")),
                    None => JobError::Release,
                }));
            }
        }
    }
}
