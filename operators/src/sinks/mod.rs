//! Sinks: stdout, JSON-lines files, Kafka, blackhole, and `collect` for an embedding
//! program. A sink is an operator with no output; every sink drops the
//! runtime's event-time column and writes the user's columns.

mod blackhole;
mod collect;
mod filesystem;
pub mod kafka;
mod stdout;

pub use blackhole::BlackholeSink;
pub use collect::{CollectReceiver, CollectSink};
pub use filesystem::FileSink;
pub use stdout::{StdoutFormat, StdoutSink};

use arrow::datatypes::SchemaRef;
use headwater_runtime::graph::OperatorFactory;

use crate::error::OperatorError;

/// A configured sink, ready to be added to a job.
pub trait SinkSpec: Send + Sync {
    /// The operator name used when the job does not give one.
    fn default_name(&self) -> String;
    /// Builds the sink of each subtask, for input of `schema` (with event time).
    fn factory(&self, schema: &SchemaRef) -> Result<OperatorFactory, OperatorError>;
}
