//! A chain: operators joined by forward edges, run in one task with no channel
//! between them. A batch passes down the chain as a plain function call.

use std::fmt;

use arrow::array::RecordBatch;
use async_trait::async_trait;

use crate::channel::Message;
use crate::checkpoint::Barrier;
use crate::checkpoint::coordinator::{CheckpointHandle, TaskReport};
use crate::checkpoint::metadata::SubtaskMetadata;
use crate::error::{BoxError, RuntimeError};
use crate::graph::NodeId;
use crate::key_groups::KeyGroupRange;
use crate::metrics::Counter;
use crate::operator::{Collector, Operator, OperatorContext};
use crate::output::OutputRouter;
use crate::time::{EventTime, Watermark};
use std::path::PathBuf;

/// An error with the node it came from, so a failure deep in a chain is
/// reported against the operator that failed, not the head of the chain.
#[derive(Debug)]
pub(crate) struct NodeError {
    pub node: NodeId,
    pub error: BoxError,
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for NodeError {}

impl NodeError {
    pub fn new(node: NodeId, error: BoxError) -> Self {
        // An error that already names its node passes through unchanged.
        match error.downcast::<NodeError>() {
            Ok(inner) => *inner,
            Err(error) => NodeError { node, error },
        }
    }

    /// Whether this failure is only the echo of another (a closed channel).
    pub fn is_secondary(&self) -> bool {
        matches!(
            self.error.downcast_ref::<RuntimeError>(),
            Some(RuntimeError::ChannelClosed)
        )
    }
}

/// One operator in a chain.
pub(crate) struct ChainedOperator {
    pub node: NodeId,
    pub operator: Box<dyn Operator>,
    pub ctx: OperatorContext,
}

/// Operators run in one task, and where their output goes.
pub(crate) struct Chain {
    /// The node whose output feeds the first operator: the source, or the first operator itself.
    head: NodeId,
    head_rows_out: Counter,
    ops: Vec<ChainedOperator>,
    router: OutputRouter,
    checkpoint: Option<CheckpointHandle>,
}

/// One subtask's state at a barrier, still to be written to checkpoint storage.
pub(crate) struct PendingState {
    pub operator: String,
    pub index: usize,
    pub key_groups: KeyGroupRange,
    pub blob: Option<Vec<u8>>,
    /// A local RocksDB snapshot (hard links) and the store's instance name.
    pub local: Option<(PathBuf, String)>,
    /// The watermark at the barrier.
    pub watermark: Option<EventTime>,
}

impl Chain {
    /// `head` is the source node of a source task (and `ops` the operators after
    /// it); for an operator task, `ops[0]` is the head.
    pub fn new(
        head: NodeId,
        head_rows_out: Counter,
        ops: Vec<ChainedOperator>,
        router: OutputRouter,
        checkpoint: Option<CheckpointHandle>,
    ) -> Self {
        Chain {
            head,
            head_rows_out,
            ops,
            router,
            checkpoint,
        }
    }

    /// Opens every operator, and gives it its state and its watermark when
    /// the job restores a checkpoint. Returns the restored watermark of the
    /// chain's first operator.
    pub async fn open(&mut self) -> Result<Option<EventTime>, NodeError> {
        let mut first_watermark = None;
        for (k, op) in self.ops.iter_mut().enumerate() {
            let failed = |e| NodeError::new(op.node, e);
            let restored = match op.ctx.restore.clone() {
                Some(plan) => {
                    let s = &op.ctx.subtask;
                    let restored = plan
                        .restored(&s.operator, s.index, s.parallelism)
                        .map_err(|e| failed(e.into()))?;
                    let holds_store = !plan.store_parts(&s.operator, s.key_groups).is_empty();
                    // Event time resumes where it was: rows behind it are late,
                    // as they were before the restore.
                    op.ctx.current_watermark = restored.watermark();
                    if k == 0 {
                        first_watermark = op.ctx.current_watermark;
                    }
                    // Keyed state the checkpoint holds for this subtask is
                    // restored now, not on first use: a subtask given no row
                    // before the next barrier would otherwise snapshot no
                    // store, and that checkpoint would lose the state.
                    if holds_store {
                        op.ctx.keyed_state().map_err(|e| failed(e.into()))?;
                    }
                    Some(restored)
                }
                None => None,
            };
            op.operator.open(&mut op.ctx).await.map_err(failed)?;
            if let Some(restored) = restored {
                op.operator
                    .restore_state(restored, &mut op.ctx)
                    .await
                    .map_err(failed)?;
            }
        }
        Ok(first_watermark)
    }

    /// Checkpoint barrier: snapshots every operator of the chain (with `head`,
    /// a source's position), passes the barrier downstream, then stores the
    /// snapshots in the background and acknowledges each.
    pub async fn checkpoint(
        &mut self,
        barrier: Barrier,
        head: Option<PendingState>,
    ) -> Result<(), NodeError> {
        let Some(handle) = self.checkpoint.clone() else {
            return Err(NodeError::new(
                self.head,
                "a checkpoint barrier in a job without checkpoints".into(),
            ));
        };
        let mut pending: Vec<PendingState> = head.into_iter().collect();
        for op in &mut self.ops {
            let failed = |e| NodeError::new(op.node, e);
            let blob = op
                .operator
                .snapshot_state(barrier.id, &mut op.ctx)
                .await
                .map_err(failed)?;
            let local = match &op.ctx.store {
                Some(store) => {
                    let dir = store
                        .path()
                        .with_extension(format!("snapshot-{}", barrier.id));
                    let _ = std::fs::remove_dir_all(&dir);
                    store.snapshot_to(&dir).map_err(|e| failed(e.into()))?;
                    Some((dir, store.instance().to_string()))
                }
                None => None,
            };
            let s = &op.ctx.subtask;
            pending.push(PendingState {
                operator: s.operator.clone(),
                index: s.index,
                key_groups: s.key_groups,
                blob,
                local,
                watermark: op.ctx.current_watermark,
            });
        }
        let tail = self.ops.last().map_or(self.head, |o| o.node);
        self.router
            .broadcast(Message::Barrier(barrier))
            .await
            .map_err(|e| NodeError::new(tail, e.into()))?;
        tokio::task::spawn_blocking(move || store_snapshots(&handle, barrier, pending));
        Ok(())
    }

    /// Checkpoint `id` is complete: every operator commits.
    pub async fn notify_checkpoint_complete(&mut self, id: u64) -> Result<(), NodeError> {
        for op in &mut self.ops {
            op.operator
                .notify_checkpoint_complete(id, &mut op.ctx)
                .await
                .map_err(|e| NodeError::new(op.node, e))?;
        }
        Ok(())
    }

    /// The node that feeds the chain: its source, or its first operator.
    pub fn head(&self) -> NodeId {
        self.head
    }

    /// The checkpoint handle, if the job takes checkpoints.
    pub fn checkpoint_handle(&self) -> Option<&CheckpointHandle> {
        self.checkpoint.as_ref()
    }

    /// Pushes a batch into the first operator (operator task) or from the head
    /// (source task: `from_head`).
    pub async fn push(
        &mut self,
        batch: RecordBatch,
        input: usize,
        from_head: bool,
    ) -> Result<(), NodeError> {
        if from_head {
            let mut out = ChainCollector {
                from: self.head,
                rows_out: self.head_rows_out.clone(),
                ops: &mut self.ops,
                router: &mut self.router,
            };
            return out
                .collect(batch)
                .await
                .map_err(|e| NodeError::new(self.head, e));
        }
        let (first, rest) = self
            .ops
            .split_first_mut()
            .expect("an operator task has an operator");
        first.ctx.current_input = input;
        process(first, rest, &mut self.router, batch).await
    }

    /// Sends a batch from the head's side output.
    pub async fn push_side(&mut self, output: &str, batch: RecordBatch) -> Result<(), NodeError> {
        self.router
            .send_data(self.head, Some(output), batch)
            .await
            .map_err(|e| NodeError::new(self.head, e.into()))
    }

    /// Passes a watermark down the chain and on to every downstream task.
    pub async fn watermark(&mut self, watermark: Watermark) -> Result<(), NodeError> {
        let mut time = match watermark {
            Watermark::EventTime(t) => t,
            Watermark::Idle => {
                return self
                    .router
                    .broadcast(Message::Watermark(Watermark::Idle))
                    .await
                    .map_err(|e| NodeError::new(self.head, e.into()));
            }
        };
        for k in 0..self.ops.len() {
            let (op, rest) = self.ops[k..].split_first_mut().expect("k < len");
            op.ctx.current_watermark = Some(time);
            op.ctx.metrics.note_watermark(time.0);
            let mut out = ChainCollector {
                from: op.node,
                rows_out: op.ctx.metrics.rows_out.clone(),
                ops: rest,
                router: &mut self.router,
            };
            match op.operator.on_watermark(time, &mut op.ctx, &mut out).await {
                Ok(Some(t)) => time = t,
                Ok(None) => return Ok(()),
                Err(e) => return Err(NodeError::new(op.node, e)),
            }
        }
        let tail = self.ops.last().map_or(self.head, |o| o.node);
        self.router
            .broadcast(Message::Watermark(Watermark::EventTime(time)))
            .await
            .map_err(|e| NodeError::new(tail, e.into()))
    }

    /// The earliest wall-clock time (ms) any operator of the chain wants to be called at.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.ops
            .iter()
            .filter_map(|op| op.operator.next_processing_time())
            .min()
    }

    /// Calls every operator whose processing-time timer is due at `now`.
    pub async fn processing_time(&mut self, now: i64) -> Result<(), NodeError> {
        for k in 0..self.ops.len() {
            let (op, rest) = self.ops[k..].split_first_mut().expect("k < len");
            if op.operator.next_processing_time().is_none_or(|t| t > now) {
                continue;
            }
            let mut out = ChainCollector {
                from: op.node,
                rows_out: op.ctx.metrics.rows_out.clone(),
                ops: rest,
                router: &mut self.router,
            };
            op.operator
                .on_processing_time(now, &mut op.ctx, &mut out)
                .await
                .map_err(|e| NodeError::new(op.node, e))?;
        }
        Ok(())
    }

    /// Every input has ended: each operator in turn flushes, then end of stream goes downstream.
    pub async fn end_of_input(&mut self) -> Result<(), NodeError> {
        for k in 0..self.ops.len() {
            let (op, rest) = self.ops[k..].split_first_mut().expect("k < len");
            let mut out = ChainCollector {
                from: op.node,
                rows_out: op.ctx.metrics.rows_out.clone(),
                ops: rest,
                router: &mut self.router,
            };
            op.operator
                .on_end_of_input(&mut op.ctx, &mut out)
                .await
                .map_err(|e| NodeError::new(op.node, e))?;
        }
        let tail = self.ops.last().map_or(self.head, |o| o.node);
        self.router
            .broadcast(Message::EndOfStream)
            .await
            .map_err(|e| NodeError::new(tail, e.into()))
    }
}

async fn process(
    op: &mut ChainedOperator,
    rest: &mut [ChainedOperator],
    router: &mut OutputRouter,
    batch: RecordBatch,
) -> Result<(), NodeError> {
    op.ctx.metrics.rows_in.add(batch.num_rows() as u64);
    op.ctx.metrics.batches_in.add(1);
    let mut out = ChainCollector {
        from: op.node,
        rows_out: op.ctx.metrics.rows_out.clone(),
        ops: rest,
        router,
    };
    op.operator
        .process_batch(batch, &mut op.ctx, &mut out)
        .await
        .map_err(|e| NodeError::new(op.node, e))
}

/// The collector of an operator in a chain: the next operator, or the router.
struct ChainCollector<'a> {
    from: NodeId,
    rows_out: Counter,
    ops: &'a mut [ChainedOperator],
    router: &'a mut OutputRouter,
}

#[async_trait]
impl Collector for ChainCollector<'_> {
    async fn collect(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        self.rows_out.add(batch.num_rows() as u64);
        match self.ops.split_first_mut() {
            Some((next, rest)) => {
                next.ctx.current_input = 0;
                Box::pin(process(next, rest, self.router, batch))
                    .await
                    .map_err(|e| Box::new(e) as BoxError)
            }
            None => self
                .router
                .send_data(self.from, None, batch)
                .await
                .map_err(|e| Box::new(NodeError::new(self.from, e.into())) as BoxError),
        }
    }

    async fn collect_side(&mut self, output: &str, batch: RecordBatch) -> Result<(), BoxError> {
        self.router
            .send_data(self.from, Some(output), batch)
            .await
            .map_err(|e| Box::new(NodeError::new(self.from, e.into())) as BoxError)
    }
}

/// Writes snapshots to checkpoint storage and acknowledges each (off the task).
fn store_snapshots(handle: &CheckpointHandle, barrier: Barrier, pending: Vec<PendingState>) {
    let storage = &handle.storage;
    for p in pending {
        let result = (|| -> Result<SubtaskMetadata, crate::error::RuntimeError> {
            let operator_state = match &p.blob {
                Some(bytes) => Some(storage.write_operator_state(
                    barrier.id,
                    barrier.savepoint,
                    &p.operator,
                    p.index,
                    bytes,
                )?),
                None => None,
            };
            let keyed_state = match &p.local {
                Some((dir, instance)) => {
                    let files = storage.upload_store(
                        barrier.id,
                        barrier.savepoint,
                        &p.operator,
                        p.index,
                        instance,
                        dir,
                    );
                    Some(files?)
                }
                None => None,
            };
            Ok(SubtaskMetadata {
                index: p.index,
                key_groups: (p.key_groups.start, p.key_groups.end),
                operator_state,
                keyed_state,
                watermark: p.watermark.map(|w| w.0),
            })
        })();
        // The local snapshot goes whether the upload worked or not: a
        // failing checkpoint must not leave one behind each time.
        if let Some((dir, _)) = &p.local {
            let _ = std::fs::remove_dir_all(dir);
        }
        let report = match result {
            Ok(state) => TaskReport::Ack {
                checkpoint: barrier.id,
                operator: p.operator,
                state,
            },
            Err(e) => TaskReport::Declined {
                checkpoint: barrier.id,
                reason: format!("{} subtask {}: {e}", p.operator, p.index),
            },
        };
        let _ = handle.reports.send(report);
    }
}
