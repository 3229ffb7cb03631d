//! The calls a scheduler makes, as JSON. Build them with [`Call`]'s
//! constructors: every call but SUBSCRIBE names the framework, and each
//! constructor fills in the body the master expects (`{"roles": [...]}` for
//! REVIVE and SUPPRESS, the status's own uuid for ACKNOWLEDGE, ...).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::proto::{DurationInfo, FrameworkInfo, Id, KillPolicy, TaskInfo, TaskStatus};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    pub framework_info: FrameworkInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_roles: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub task_infos: Vec<TaskInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// LAUNCH, LAUNCH_GROUP, RESERVE, …
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_group: Option<Value>,
}

impl Operation {
    pub fn launch(task_infos: Vec<TaskInfo>) -> Self {
        Operation { kind: "LAUNCH".into(), launch: Some(Launch { task_infos }), launch_group: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accept {
    pub offer_ids: Vec<Id>,
    #[serde(default)]
    pub operations: Vec<Operation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decline {
    pub offer_ids: Vec<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledge {
    pub agent_id: Id,
    pub task_id: Id,
    pub uuid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileTask {
    pub task_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<ReconcileTask>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    pub task_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Roles {
    #[serde(default)]
    pub roles: Vec<String>,
}

/// One call. Build it with the constructors; every call but SUBSCRIBE names
/// the framework.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<Id>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Subscribe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<Accept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline: Option<Decline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<Acknowledge>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<Reconcile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<Kill>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revive: Option<Roles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress: Option<Roles>,
}

impl Call {
    fn new(framework_id: Option<&Id>, kind: &str) -> Self {
        Call {
            framework_id: framework_id.cloned(),
            kind: kind.to_owned(),
            subscribe: None,
            accept: None,
            decline: None,
            acknowledge: None,
            reconcile: None,
            kill: None,
            revive: None,
            suppress: None,
        }
    }

    /// SUBSCRIBE. On failover the framework's id goes both at the top level
    /// and in `framework_info.id` (the master requires the two to match).
    pub fn subscribe(info: FrameworkInfo, suppressed_roles: Option<Vec<String>>) -> Self {
        let mut c = Call::new(info.id.as_ref(), "SUBSCRIBE");
        c.subscribe = Some(Subscribe { framework_info: info, suppressed_roles });
        c
    }

    pub fn accept(fw: &Id, offer_ids: Vec<Id>, operations: Vec<Operation>, refuse_seconds: Option<f64>) -> Self {
        let mut c = Call::new(Some(fw), "ACCEPT");
        c.accept = Some(Accept { offer_ids, operations, filters: refuse_seconds.map(|s| Filters { refuse_seconds: Some(s) }) });
        c
    }

    pub fn decline(fw: &Id, offer_ids: Vec<Id>, refuse_seconds: f64) -> Self {
        let mut c = Call::new(Some(fw), "DECLINE");
        c.decline = Some(Decline { offer_ids, filters: Some(Filters { refuse_seconds: Some(refuse_seconds) }) });
        c
    }

    /// ACKNOWLEDGE of a reliable update; `None` for an update without a uuid,
    /// which must not be acknowledged.
    pub fn acknowledge(fw: &Id, status: &TaskStatus) -> Option<Self> {
        let uuid = status.uuid.clone()?;
        let agent_id = status.agent_id.clone()?;
        let mut c = Call::new(Some(fw), "ACKNOWLEDGE");
        c.acknowledge = Some(Acknowledge { agent_id, task_id: status.task_id.clone(), uuid });
        Some(c)
    }

    /// RECONCILE: explicit for `tasks`, implicit (every task) when empty.
    pub fn reconcile(fw: &Id, tasks: Vec<ReconcileTask>) -> Self {
        let mut c = Call::new(Some(fw), "RECONCILE");
        c.reconcile = Some(Reconcile { tasks });
        c
    }

    pub fn kill(fw: &Id, task_id: Id, agent_id: Option<Id>, grace_secs: Option<f64>) -> Self {
        let mut c = Call::new(Some(fw), "KILL");
        let kill_policy = grace_secs.map(|s| KillPolicy { grace_period: Some(DurationInfo::from_secs_f64(s)) });
        c.kill = Some(Kill { task_id, agent_id, kill_policy });
        c
    }

    /// REVIVE the given roles (the body is `{"roles": [...]}`; an empty list would revive every role).
    pub fn revive(fw: &Id, roles: Vec<String>) -> Self {
        let mut c = Call::new(Some(fw), "REVIVE");
        c.revive = Some(Roles { roles });
        c
    }

    pub fn suppress(fw: &Id, roles: Vec<String>) -> Self {
        let mut c = Call::new(Some(fw), "SUPPRESS");
        c.suppress = Some(Roles { roles });
        c
    }

    /// TEARDOWN: ends the framework and kills all its tasks.
    pub fn teardown(fw: &Id) -> Self {
        Call::new(Some(fw), "TEARDOWN")
    }
}
