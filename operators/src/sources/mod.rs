//! Sources: datagen, the order-lifecycle generator, files and Kafka.

pub mod datagen;
pub mod file_splits;
pub mod filesystem;
pub mod kafka;
pub mod orders;
mod rate_limit;
mod split_reader;

use arrow::datatypes::SchemaRef;
use headwater_runtime::EventTimeSpec;
use headwater_runtime::graph::SourceFactory;

use crate::decode_error::DecodeErrorPolicy;

/// A configured source, ready to be added to a job.
pub trait SourceSpec: Send + Sync {
    /// The operator name used when the job does not give one.
    fn default_name(&self) -> String;
    /// The schema of the source's rows (without the event-time column).
    fn schema(&self) -> SchemaRef;
    /// Where event time comes from.
    fn event_time(&self) -> EventTimeSpec;
    /// The policy for rows that fail to decode, for sources that decode bytes.
    fn decode_error_policy(&self) -> Option<DecodeErrorPolicy> {
        None
    }
    /// Its own idle timeout, in place of the job's (Kafka's
    /// `scan.watermark.idle-timeout`).
    fn idle_timeout(&self) -> Option<std::time::Duration> {
        None
    }
    /// Builds the source of each subtask.
    fn factory(&self) -> SourceFactory;
}
