//! The source trait: where batches enter a job.
//!
//! The runtime pulls a source with [`Source::next`]. Between two calls it adds
//! the event-time column, generates watermarks, marks the source idle after a
//! timeout, and stops the source on request. So that a stop can interrupt a
//! source that is waiting, `next` must be cancel-safe: if its future is dropped
//! before it completes, no row may be lost or read twice.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;

use crate::checkpoint::Restored;
use crate::error::BoxError;
use crate::operator::OperatorContext;

/// What one call to [`Source::next`] gives.
#[derive(Debug)]
pub enum SourcePoll {
    /// Rows of the source's schema, without the event-time column.
    Batch(RecordBatch),
    /// Rows of one split (a Kafka partition) that keeps its own event time:
    /// the subtask's watermark is then the least over its splits that are
    /// not idle (see [`SourcePoll::Splits`]).
    SplitBatch { split: u64, batch: RecordBatch },
    /// The splits the subtask reads from now on. A new one holds the
    /// watermark back until it sends rows or turns idle; one left out
    /// (finished) no longer counts.
    Splits(Vec<u64>),
    /// Rows for a named side output, such as dead letters.
    Side { output: String, batch: RecordBatch },
    /// The input has ended; `next` will not be called again.
    Finished,
}

/// A source of rows. One instance runs per subtask, and reads its share.
#[async_trait]
pub trait Source: Send + 'static {
    /// The schema of the batches this source produces.
    fn schema(&self) -> SchemaRef;

    /// Called once before the first `next`.
    async fn open(&mut self, _ctx: &mut OperatorContext) -> Result<(), BoxError> {
        Ok(())
    }

    /// The next batch. Waits if there is none yet. Must be cancel-safe.
    async fn next(&mut self, ctx: &mut OperatorContext) -> Result<SourcePoll, BoxError>;

    /// The source's position, at a checkpoint barrier: everything returned by
    /// `next` so far is before it. `None` if the source cannot resume.
    async fn snapshot_state(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(None)
    }

    /// The position at the barrier of checkpoint `checkpoint`; by default
    /// [`Source::snapshot_state`]. A source that acts when a checkpoint
    /// completes remembers what it took for which.
    async fn snapshot_state_at(&mut self, _checkpoint: u64) -> Result<Option<Vec<u8>>, BoxError> {
        self.snapshot_state().await
    }

    /// Checkpoint `checkpoint` is complete (every task has stored its part):
    /// a source may tell its input what is read for good (Kafka commits its
    /// offsets to the consumer group then). Failing here fails the job.
    async fn notify_checkpoint_complete(&mut self, _checkpoint: u64) -> Result<(), BoxError> {
        Ok(())
    }

    /// Resumes from positions [`Source::snapshot_state`] returned: this
    /// subtask's, or, when the parallelism changed (`restored.rescaled`),
    /// every old subtask's, of which it takes its share. Called after `open`,
    /// before `next`.
    async fn restore_state(&mut self, _restored: Restored) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Where a source's event time comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum EventTimeSpec {
    /// From a column of the source's rows (a timestamp, or epoch milliseconds),
    /// with watermarks that allow rows to be this late.
    Column {
        name: String,
        max_out_of_orderness: Duration,
    },
    /// The wall-clock time at which the batch was read. Watermarks follow it.
    ArrivalTime,
}

impl EventTimeSpec {
    pub fn column(name: impl Into<String>, max_out_of_orderness: Duration) -> Self {
        EventTimeSpec::Column {
            name: name.into(),
            max_out_of_orderness,
        }
    }
}
