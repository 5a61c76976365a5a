//! The operator trait: what every transform and sink writes.
//!
//! Only [`Operator::process_batch`] is required; the other hooks have safe
//! defaults, so a new operator is small and a reader sees only what differs.
//! A sink is an operator with no output.

use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;

use crate::checkpoint::{RestorePlan, Restored};
use crate::error::BoxError;
use crate::key_groups::KeyGroupRange;
use crate::metrics::OperatorMetrics;
use crate::state::{JobState, KeyedStateStore, StateError};
use crate::time::EventTime;

/// Where one subtask stands in its operator.
#[derive(Debug, Clone)]
pub struct SubtaskInfo {
    /// The operator's name, unique in the job.
    pub operator: String,
    pub index: usize,
    pub parallelism: usize,
    pub max_parallelism: u32,
    /// The key groups this subtask owns on a keyed input.
    pub key_groups: KeyGroupRange,
}

impl SubtaskInfo {
    /// Subtask `index` of `parallelism`, owning its share of the key groups.
    pub fn new(operator: &str, index: usize, parallelism: usize, max_parallelism: u32) -> Self {
        SubtaskInfo {
            operator: operator.to_string(),
            index,
            parallelism,
            max_parallelism,
            key_groups: KeyGroupRange::for_subtask(
                max_parallelism,
                parallelism as u32,
                index as u32,
            ),
        }
    }
}

/// What an operator may know while it runs.
#[derive(Debug)]
pub struct OperatorContext {
    pub subtask: SubtaskInfo,
    /// The input (0, 1, ...) the current batch came from, for operators with several.
    pub current_input: usize,
    /// The watermark this operator has seen last.
    pub current_watermark: Option<EventTime>,
    pub metrics: Arc<OperatorMetrics>,
    /// Set when the job takes checkpoints: results must then be committed
    /// only for complete checkpoints.
    pub checkpointing: bool,
    /// Different in every run of the job (each start and restart).
    pub run_id: u64,
    // The store is dropped (closed) before the job state it lives in.
    pub(crate) store: Option<KeyedStateStore>,
    pub(crate) job_state: Arc<JobState>,
    pub(crate) restore: Option<Arc<RestorePlan>>,
}

impl OperatorContext {
    /// A context outside any job, for a source or an operator driven by hand
    /// (tests, tools): no checkpoints, keyed state in a temporary directory.
    pub fn standalone(subtask: SubtaskInfo) -> Self {
        OperatorContext {
            subtask,
            current_input: 0,
            current_watermark: None,
            metrics: Arc::new(OperatorMetrics::default()),
            checkpointing: false,
            run_id: 0,
            store: None,
            job_state: Arc::new(JobState::new(None, 64 << 20)),
            restore: None,
        }
    }

    /// The checkpoint this run of the job restored, if any.
    pub fn restored_checkpoint(&self) -> Option<u64> {
        self.restore.as_ref().map(|r| r.id())
    }

    /// This subtask's keyed state, opened on first use: a RocksDB instance
    /// holding the key groups the subtask owns.
    pub fn keyed_state(&mut self) -> Result<&mut KeyedStateStore, StateError> {
        if self.store.is_none() {
            let s = &self.subtask;
            // With checkpoints, a store starts from the restored checkpoint
            // (or empty), never from what a crashed run left in the directory.
            self.store = Some(if self.checkpointing {
                self.job_state.restore_store(
                    &s.operator,
                    s.index,
                    s.key_groups,
                    self.restore.as_deref(),
                )?
            } else {
                self.job_state
                    .open_store(&s.operator, s.index, s.key_groups)?
            });
        }
        Ok(self.store.as_mut().expect("opened above"))
    }
}

/// Where an operator sends what it produces.
#[async_trait]
pub trait Collector: Send {
    /// Sends a batch to the main output. It may wait while downstream is full.
    async fn collect(&mut self, batch: RecordBatch) -> Result<(), BoxError>;

    /// Sends a batch to a named side output (dead letters, late rows).
    async fn collect_side(&mut self, output: &str, batch: RecordBatch) -> Result<(), BoxError>;
}

/// A dataflow operator. One instance runs per subtask.
#[async_trait]
pub trait Operator: Send + 'static {
    /// Called once before the first batch.
    async fn open(&mut self, _ctx: &mut OperatorContext) -> Result<(), BoxError> {
        Ok(())
    }

    /// The one method every operator writes: handle one batch of input.
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError>;

    /// Event time has reached `watermark`. Returns the watermark to pass on
    /// (default: the same, unchanged).
    async fn on_watermark(
        &mut self,
        watermark: EventTime,
        _ctx: &mut OperatorContext,
        _out: &mut dyn Collector,
    ) -> Result<Option<EventTime>, BoxError> {
        Ok(Some(watermark))
    }

    /// The wall-clock time (ms since the Unix epoch) at which this operator
    /// next wants [`Operator::on_processing_time`]: its earliest
    /// processing-time timer. Asked again after every call into the operator.
    fn next_processing_time(&self) -> Option<i64> {
        None
    }

    /// The wall clock has reached `now` (ms since the Unix epoch), at or after
    /// the time [`Operator::next_processing_time`] asked for.
    async fn on_processing_time(
        &mut self,
        _now: i64,
        _ctx: &mut OperatorContext,
        _out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    /// A checkpoint barrier has reached this operator: return what it must
    /// keep that is not in keyed state (positions, buffers, files to commit),
    /// and pre-commit output. Keyed state is snapshotted by the runtime after.
    async fn snapshot_state(
        &mut self,
        _checkpoint: u64,
        _ctx: &mut OperatorContext,
    ) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(None)
    }

    /// Called after `open` when the job restores a checkpoint, with the
    /// states [`Operator::snapshot_state`] returned: this subtask's, or, when
    /// the parallelism changed (`restored.rescaled`), every old subtask's with
    /// the key groups each owned. `ctx.current_watermark` is already restored.
    async fn restore_state(
        &mut self,
        _restored: Restored,
        _ctx: &mut OperatorContext,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    /// Checkpoint `checkpoint` is complete: commit what was pre-committed for it.
    async fn notify_checkpoint_complete(
        &mut self,
        _checkpoint: u64,
        _ctx: &mut OperatorContext,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    /// Every input has ended: emit what is still held, flush what is buffered.
    async fn on_end_of_input(
        &mut self,
        _ctx: &mut OperatorContext,
        _out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        Ok(())
    }
}
