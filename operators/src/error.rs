//! Errors of the operators crate: configuration, I/O, decoding and expressions.

use std::path::PathBuf;

use arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// Errors of sources, sinks, formats and transforms.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A connector or operator was configured wrongly; the message names the option.
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A row could not be decoded, under the `fail` policy.
    #[error("{location}: {message}")]
    Decode { location: String, message: String },
    /// An expression could not be planned or evaluated.
    #[error("expression `{expr}`: {source}")]
    Expr {
        expr: String,
        #[source]
        source: DataFusionError,
    },
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    State(#[from] headwater_runtime::state::StateError),
    #[error(transparent)]
    Runtime(#[from] headwater_runtime::RuntimeError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl OperatorError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OperatorError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = OperatorError> = std::result::Result<T, E>;
