//! Checkpoints: consistent snapshots of a running job, for exactly-once results.
//!
//! The [`coordinator`] injects barrier `n` at every source on a timer. A source
//! records its position and passes the barrier on; a task with several input
//! channels waits for barrier `n` on all of them (alignment), snapshots its
//! operators (their own state, and their keyed state as an incremental RocksDB
//! snapshot), passes the barrier on, and acknowledges. When every subtask of
//! every operator has acknowledged, the coordinator writes the checkpoint's
//! metadata atomically ([`storage`]); only then is the checkpoint complete,
//! and sinks are told to commit what they pre-committed at the barrier.
//!
//! When all sources have finished (or the job is stopped), the coordinator
//! takes a final checkpoint, and the tasks end once it is complete, so every
//! result is committed exactly once, even by a job that is killed as it ends.

pub(crate) mod coordinator;
pub mod metadata;
pub mod restore;
pub mod storage;

use std::path::PathBuf;
use std::time::Duration;

pub use metadata::CheckpointMetadata;
pub use restore::{RestorePlan, Restored, SubtaskState};
pub use storage::CheckpointStorage;

/// How a job takes checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Where checkpoints go. A job started over a directory that holds a
    /// complete checkpoint resumes from the newest one.
    pub dir: PathBuf,
    /// Time between the start of one checkpoint and the next.
    pub interval: Duration,
    /// Complete checkpoints kept (at least 1).
    pub retained: usize,
    /// A checkpoint not complete after this long is abandoned.
    pub timeout: Duration,
}

impl CheckpointConfig {
    pub fn new(dir: impl Into<PathBuf>, interval: Duration) -> Self {
        CheckpointConfig {
            dir: dir.into(),
            interval,
            retained: 3,
            timeout: Duration::from_secs(600),
        }
    }
}

/// The marker that cuts the streams into before and after checkpoint `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    pub id: u64,
    pub savepoint: bool,
    /// The job's last checkpoint: sources end after it.
    pub last: bool,
}
