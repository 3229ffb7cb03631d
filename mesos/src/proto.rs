//! The v1 scheduler API's calls and events as JSON, the way the master's
//! protobuf-JSON mapping writes and checks them: snake_case field names, enums as
//! strings, `bytes` (uuids) base64, ids as `{"value": ...}`. Unknown fields are
//! ignored on input (the master adds defaults such as `refuse_seconds: 5`), and
//! unset optional fields are left out on output. Only what a command-task
//! framework needs is typed; the rest is kept as raw JSON so it round-trips.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// FrameworkID, AgentID, OfferID, TaskID and ExecutorID are all `{"value": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Id {
    pub value: String,
}

impl Id {
    pub fn new(v: impl Into<String>) -> Self {
        Id { value: v.into() }
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.value)
    }
}

// ---------------------------------------------------------------------------
// FrameworkInfo

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capability {
    #[serde(rename = "type")]
    pub kind: String,
}

impl Capability {
    pub const GPU_RESOURCES: &str = "GPU_RESOURCES";
    pub const MULTI_ROLE: &str = "MULTI_ROLE";
    pub const TASK_KILLING_STATE: &str = "TASK_KILLING_STATE";
    pub const PARTITION_AWARE: &str = "PARTITION_AWARE";

    pub fn new(kind: &str) -> Self {
        Capability { kind: kind.to_owned() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    pub user: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webui_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

impl FrameworkInfo {
    pub fn has_capability(&self, kind: &str) -> bool {
        self.capabilities.iter().any(|c| c.kind == kind)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    #[serde(default)]
    pub labels: Vec<Label>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

// ---------------------------------------------------------------------------
// Resources and offers

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scalar {
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub begin: u64,
    pub end: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ranges {
    #[serde(default)]
    pub range: Vec<Range>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AllocationInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    /// SCALAR, RANGES, SET or TEXT.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalar: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Ranges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Value>,
}

impl Resource {
    /// A scalar resource as a task asks for it. Left without `allocation_info`:
    /// the master fills in the role of the offer it is taken from.
    pub fn scalar(name: &str, value: f64) -> Self {
        Resource {
            name: name.to_owned(),
            kind: "SCALAR".into(),
            scalar: Some(Scalar { value }),
            ranges: None,
            set: None,
            role: None,
            allocation_info: None,
            reservations: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub id: Id,
    pub framework_id: Id,
    pub agent_id: Id,
    pub hostname: String,
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
}

impl Offer {
    /// The total of a scalar resource in this offer (0 when absent).
    pub fn scalar(&self, name: &str) -> f64 {
        self.resources.iter().filter(|r| r.name == name).filter_map(|r| r.scalar.as_ref()).map(|s| s.value).sum()
    }
}

// ---------------------------------------------------------------------------
// Tasks

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    #[serde(default)]
    pub variables: Vec<Variable>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Uri {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// Absent means true: `value` is run by `/bin/sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// With `shell: false`, argv (argv[0] included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<Uri>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// DurationInfo. The master writes int64 as a number and accepts a numeric string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationInfo {
    #[serde(deserialize_with = "int64")]
    pub nanoseconds: i64,
}

impl DurationInfo {
    pub fn from_secs_f64(s: f64) -> Self {
        DurationInfo { nanoseconds: (s * 1e9).round() as i64 }
    }
}

fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrText {
        Num(i64),
        Text(String),
    }
    match NumOrText::deserialize(d)? {
        NumOrText::Num(n) => Ok(n),
        NumOrText::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<DurationInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: String,
    pub task_id: Id,
    pub agent_id: Id,
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// TaskState. Anything this client does not know yet decodes as `Unrecognized`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    #[serde(rename = "TASK_STAGING")]
    Staging,
    #[serde(rename = "TASK_STARTING")]
    Starting,
    #[serde(rename = "TASK_RUNNING")]
    Running,
    #[serde(rename = "TASK_KILLING")]
    Killing,
    #[serde(rename = "TASK_FINISHED")]
    Finished,
    #[serde(rename = "TASK_FAILED")]
    Failed,
    #[serde(rename = "TASK_KILLED")]
    Killed,
    #[serde(rename = "TASK_ERROR")]
    Error,
    #[serde(rename = "TASK_LOST")]
    Lost,
    #[serde(rename = "TASK_DROPPED")]
    Dropped,
    #[serde(rename = "TASK_UNREACHABLE")]
    Unreachable,
    #[serde(rename = "TASK_GONE")]
    Gone,
    #[serde(rename = "TASK_GONE_BY_OPERATOR")]
    GoneByOperator,
    #[serde(rename = "TASK_UNKNOWN")]
    Unknown,
    #[serde(other, rename = "TASK_UNRECOGNIZED")]
    Unrecognized,
}

impl TaskState {
    pub const ALL: [TaskState; 15] = [
        TaskState::Staging,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Killing,
        TaskState::Finished,
        TaskState::Failed,
        TaskState::Killed,
        TaskState::Error,
        TaskState::Lost,
        TaskState::Dropped,
        TaskState::Unreachable,
        TaskState::Gone,
        TaskState::GoneByOperator,
        TaskState::Unknown,
        TaskState::Unrecognized,
    ];

    /// The wire name, e.g. `TASK_RUNNING`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Error => "TASK_ERROR",
            TaskState::Lost => "TASK_LOST",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Gone => "TASK_GONE",
            TaskState::GoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::Unknown => "TASK_UNKNOWN",
            TaskState::Unrecognized => "TASK_UNRECOGNIZED",
        }
    }

    pub fn parse(s: &str) -> TaskState {
        TaskState::ALL.into_iter().find(|t| t.as_str() == s).unwrap_or(TaskState::Unrecognized)
    }

    /// The task is over and will not run again (for a framework that is not
    /// partition-aware, a lost task is over too).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Error
                | TaskState::Lost
                | TaskState::Dropped
                | TaskState::Gone
                | TaskState::GoneByOperator
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_id: Id,
    pub state: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<f64>,
    /// Present on reliable updates (from an executor or agent): echo it in
    /// ACKNOWLEDGE. Master-generated updates have none and are not acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_status: Option<Value>,
}

// ---------------------------------------------------------------------------
// Events

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    pub framework_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_info: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Subscribed(Subscribed),
    /// Note the nesting on the wire: `{"offers": {"offers": [...]}}`.
    Offers(Vec<Offer>),
    Rescind { offer_id: Id },
    Update(TaskStatus),
    /// An executor or agent ended (`status` is its exit status, when known).
    Failure { agent_id: Option<Id>, executor_id: Option<Id>, status: Option<i32> },
    /// `{"error": {"message": ...}}`: the master dropped this framework.
    Error(String),
    Heartbeat,
    /// Any other event type (MESSAGE, INVERSE_OFFERS, UPDATE_OPERATION_STATUS…),
    /// kept whole.
    Other { kind: String, body: Value },
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    subscribed: Option<Subscribed>,
    offers: Option<RawOffers>,
    rescind: Option<RawRescind>,
    update: Option<RawUpdate>,
    failure: Option<RawFailure>,
    error: Option<RawError>,
}

#[derive(Deserialize)]
struct RawOffers {
    #[serde(default)]
    offers: Vec<Offer>,
}
#[derive(Deserialize)]
struct RawRescind {
    offer_id: Id,
}
#[derive(Deserialize)]
struct RawUpdate {
    status: TaskStatus,
}
#[derive(Deserialize)]
struct RawFailure {
    agent_id: Option<Id>,
    executor_id: Option<Id>,
    status: Option<i32>,
}
#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0} event without its `{1}` field")]
    Missing(String, &'static str),
}

impl Event {
    pub fn decode(record: &[u8]) -> Result<Event, DecodeError> {
        let raw: RawEvent = serde_json::from_slice(record)?;
        let missing = |field| DecodeError::Missing(raw.kind.clone(), field);
        Ok(match raw.kind.as_str() {
            "SUBSCRIBED" => Event::Subscribed(raw.subscribed.ok_or_else(|| missing("subscribed"))?),
            "OFFERS" => Event::Offers(raw.offers.ok_or_else(|| missing("offers"))?.offers),
            "RESCIND" => Event::Rescind { offer_id: raw.rescind.ok_or_else(|| missing("rescind"))?.offer_id },
            "UPDATE" => Event::Update(raw.update.ok_or_else(|| missing("update"))?.status),
            "FAILURE" => {
                let f = raw.failure.ok_or_else(|| missing("failure"))?;
                Event::Failure { agent_id: f.agent_id, executor_id: f.executor_id, status: f.status }
            }
            "ERROR" => Event::Error(raw.error.ok_or_else(|| missing("error"))?.message),
            "HEARTBEAT" => Event::Heartbeat,
            _ => Event::Other { kind: raw.kind.clone(), body: serde_json::from_slice(record)? },
        })
    }
}

// The calls live in their own module; their types are also reachable here.
pub use crate::call::*;
