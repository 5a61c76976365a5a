//! Headwater's runtime: a parallel dataflow of Arrow record batches.
//!
//! A [`graph::JobGraph`] names operators and the edges between them. [`job::start`]
//! turns it into tasks on tokio: operators joined by forward edges share a task
//! ([`plan`]), and tasks talk over bounded channels ([`channel`]), so a slow
//! consumer slows its producers instead of filling memory. Keyed edges send each
//! key to the subtask that owns its key group ([`key_groups`], [`key_hash`]).
//! Event time travels as a column of every batch, and watermarks follow it
//! ([`time`], [`watermarks`]).
//!
//! The runtime knows nothing of SQL, formats or connectors: those live in
//! `headwater-operators` and `headwater-sql`.

mod chain;
pub mod channel;
pub mod checkpoint;
pub mod config;
pub mod error;
mod event_time;
pub mod graph;
pub mod job;
pub mod key_groups;
pub mod key_hash;
pub mod metrics;
pub mod operator;
mod output;
pub mod partition;
pub mod plan;
pub mod source;
pub mod split_watermarks;
pub mod state;
mod task;
pub mod time;
pub mod watermarks;

pub use config::{JobConfig, RestartStrategy};
pub use error::{BoxError, JobError, RuntimeError};
pub use graph::{JobGraph, NodeId, Partitioning};
pub use job::{JobHandle, JobResult, start};
pub use operator::{Collector, Operator, OperatorContext, SubtaskInfo};
pub use source::{EventTimeSpec, Source, SourcePoll};
pub use time::{EVENT_TIME_FIELD, EventTime, Watermark};
