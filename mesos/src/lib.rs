//! A client for the Apache Mesos v1 scheduler HTTP API, in JSON.
//!
//! - [`proto`]: the events and the types they share with calls, typed (serde),
//!   tolerant of fields it does not know; [`call`]: the calls and their constructors.
//! - [`recordio`]: the event stream's framing, decoded by byte count.
//! - [`client`]: SUBSCRIBE (its own connection, redirects to the leader, a
//!   heartbeat watchdog) and calls on a second connection with the stream id;
//!   [`Backoff`] for retrying.
//!
//! It knows Mesos and nothing about what the framework runs.

pub mod call;
pub mod client;
pub mod proto;
pub mod recordio;

pub use client::{Backoff, Caller, Client, Error, Subscription};
pub use proto::{Call, Event, FrameworkInfo, Id, Offer, TaskInfo, TaskState, TaskStatus};
