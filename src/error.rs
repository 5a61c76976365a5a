//! Errors of the facade: building a job in Rust, and running it.

use headwater_operators::OperatorError;
use headwater_runtime::{JobError, RuntimeError};

/// Errors of the `headwater` crate.
#[derive(Debug, thiserror::Error)]
pub enum HeadwaterError {
    /// The pipeline was put together wrongly; the message says how.
    #[error("{0}")]
    Pipeline(String),
    /// A Rust type cannot be converted to or from Arrow rows.
    #[error("converting rows of `{type_name}`: {source}")]
    Rows {
        type_name: &'static str,
        #[source]
        source: serde_arrow::Error,
    },
    #[error(transparent)]
    Operator(#[from] OperatorError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Job(#[from] JobError),
}

pub type Result<T, E = HeadwaterError> = std::result::Result<T, E>;
