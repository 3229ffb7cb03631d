//! What a worker task is: its resources, its command (`fundus worker --id
//! <task id>` with the worker's flags), its environment and its kill policy.

use std::time::Duration;

use mesos::proto::{CommandInfo, DurationInfo, Environment, KillPolicy, Label, Labels, Resource, Variable};
use mesos::{Id, Offer, TaskInfo};

use crate::framework::Config;

/// What each worker task is.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub cpus: f64,
    pub mem: f64,
    pub gpus: u32,
    /// The program run on the agent (`fundus`), or the file name of `uri` once fetched.
    pub command: String,
    pub uri: Option<String>,
    /// Arguments after `fundus worker --id <task id> --grace-secs <s>`.
    pub worker_args: Vec<String>,
    /// The task's environment (settings the worker reads; may hold secrets: never logged).
    pub env: Vec<(String, String)>,
    /// The worker's `--grace-secs`; the kill policy allows it plus a margin.
    pub grace: Duration,
}

/// The KILL grace period: the worker's own grace plus a margin to exit in.
pub fn kill_grace(spec: &TaskSpec) -> f64 {
    spec.grace.as_secs_f64() + 10.0
}

/// The TaskInfo of one worker on `offer`'s agent.
pub fn task_info(cfg: &Config, task_id: &str, offer: &Offer) -> TaskInfo {
    let spec = &cfg.task;
    let mut resources = vec![Resource::scalar("cpus", spec.cpus), Resource::scalar("mem", spec.mem)];
    if spec.gpus > 0 {
        resources.push(Resource::scalar("gpus", f64::from(spec.gpus)));
    }
    let mut arguments = vec![spec.command.clone(), "worker".into(), "--id".into(), task_id.to_owned()];
    arguments.extend(["--grace-secs".into(), format!("{}", spec.grace.as_secs_f64())]);
    arguments.extend(spec.worker_args.iter().cloned());
    let variables = spec.env.iter().map(|(k, v)| Variable { name: k.clone(), value: Some(v.clone()) }).collect();
    let uris = spec
        .uri
        .iter()
        .map(|u| mesos::proto::Uri { value: u.clone(), executable: Some(true), extract: Some(false), cache: None })
        .collect();
    TaskInfo {
        name: format!("{} worker", cfg.name),
        task_id: Id::new(task_id),
        agent_id: offer.agent_id.clone(),
        resources,
        command: Some(CommandInfo {
            shell: Some(false),
            value: Some(spec.command.clone()),
            arguments,
            environment: Some(Environment { variables }),
            uris,
            user: None,
        }),
        executor: None,
        container: None,
        kill_policy: Some(KillPolicy { grace_period: Some(DurationInfo::from_secs_f64(kill_grace(spec))) }),
        labels: Some(Labels { labels: vec![Label { key: "fundus".into(), value: Some("worker".into()) }] }),
    }
}
