//! Errors of the runtime: building a job graph, and a job that fails while it runs.

use arrow::error::ArrowError;

/// Any error an operator or a source returns. The runtime wraps it with the
/// operator's name and subtask, so the operator itself need not say who it is.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the runtime crate.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The job graph is not valid: the message says which node or edge is wrong.
    #[error("invalid job graph: {0}")]
    InvalidGraph(String),
    /// A setting of the job cannot be used: the message names it.
    #[error("invalid job configuration: {0}")]
    InvalidConfig(String),
    /// A column cannot be used as a key, or a batch lacks a column the runtime needs.
    #[error("{0}")]
    Schema(String),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// A downstream task has gone away. This is a consequence of another failure,
    /// never the cause the job reports.
    #[error("a downstream task stopped receiving")]
    ChannelClosed,
    /// Writing, reading or restoring a checkpoint failed; the message names the file.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// An invariant broke: this is a Headwater bug.
    #[error("internal error (a Headwater bug): {0}")]
    Internal(String),
}

/// Why a job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// An operator, source or sink returned an error.
    #[error("operator `{operator}` (subtask {subtask} of {parallelism}) failed: {source}")]
    OperatorFailed {
        operator: String,
        subtask: usize,
        parallelism: usize,
        #[source]
        source: BoxError,
    },
    /// An operator panicked. That is a bug in the operator, reported like a failure.
    #[error("operator `{operator}` (subtask {subtask} of {parallelism}) panicked: {message}")]
    OperatorPanicked {
        operator: String,
        subtask: usize,
        parallelism: usize,
        message: String,
    },
    /// The job was cancelled before it finished.
    #[error("the job was cancelled")]
    Cancelled,
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl JobError {
    /// The name of the operator that failed, if an operator did.
    pub fn operator(&self) -> Option<&str> {
        match self {
            JobError::OperatorFailed { operator, .. }
            | JobError::OperatorPanicked { operator, .. } => Some(operator),
            _ => None,
        }
    }
}
