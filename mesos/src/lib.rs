//! A client for the Apache Mesos v1 scheduler HTTP API, in JSON.
//!
//! - [`proto`]: the calls and events, typed (serde), tolerant of fields it does not know.
//! - [`recordio`]: the event stream's framing, decoded by byte count.
//! - [`client`]: SUBSCRIBE (its own connection, redirects to the leader, a
//!   heartbeat watchdog) and calls on a second connection with the stream id;
//!   [`Backoff`] for retrying.
//!
//! It knows Mesos and nothing about what the framework runs.

pub mod client;
pub mod proto;
pub mod recordio;

pub use client::{Backoff, Caller, Client, Error, Subscription};
pub use proto::{Call, Event, FrameworkInfo, Id, Offer, TaskInfo, TaskState, TaskStatus};
