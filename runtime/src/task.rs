//! The two run loops: a source task, and an operator task fed by channels.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::chain::{Chain, NodeError, PendingState};
use crate::channel::{InputGate, Message};
use crate::checkpoint::Barrier;
use crate::checkpoint::coordinator::TaskReport;
use crate::error::{BoxError, RuntimeError};
use crate::graph::NodeId;
use crate::operator::OperatorContext;
use crate::source::{EventTimeSpec, Source, SourcePoll};
use crate::time::{EVENT_TIME_TYPE, EventTime, Watermark, max_event_time, with_event_time};
use crate::watermarks::{BoundedOutOfOrderness, InputWatermarks};
use tokio::sync::{mpsc, watch};

/// A source subtask and the chain of operators after it.
pub(crate) struct SourceTask {
    pub node: NodeId,
    pub source: Box<dyn Source>,
    pub ctx: OperatorContext,
    pub event_time: EventTimeSpec,
    pub idle_timeout: Duration,
    pub chain: Chain,
    pub stop: CancellationToken,
    /// Checkpoint barriers from the coordinator, if the job takes checkpoints.
    pub barriers: Option<mpsc::Receiver<Barrier>>,
    /// Set once the missing position has been warned about.
    pub warned_no_position: bool,
}

impl SourceTask {
    /// Snapshots the source's position and the chain after it.
    async fn checkpoint(&mut self, barrier: Barrier) -> Result<(), NodeError> {
        let blob = self
            .source
            .snapshot_state()
            .await
            .map_err(|e| NodeError::new(self.node, e))?;
        let s = &self.ctx.subtask;
        if blob.is_none() && !self.warned_no_position {
            self.warned_no_position = true;
            tracing::warn!(
                source = %s.operator,
                subtask = s.index,
                "the source records no position in checkpoints (its Source does not \
                 implement snapshot_state): a restore reads it again from its beginning, \
                 so its rows may be counted twice"
            );
        }
        let head = PendingState {
            operator: s.operator.clone(),
            index: s.index,
            key_groups: s.key_groups,
            blob,
            local: None,
        };
        self.chain.checkpoint(barrier, Some(head)).await
    }

    pub async fn run(mut self) -> Result<(), NodeError> {
        let node = self.node;
        let at = |e: BoxError| NodeError::new(node, e);
        self.source.open(&mut self.ctx).await.map_err(at)?;
        if let Some(plan) = self.ctx.restore.clone() {
            let s = &self.ctx.subtask;
            let states = plan
                .operator_states(&s.operator, s.index, s.parallelism)
                .map_err(|e| at(e.into()))?;
            if states.is_empty() {
                tracing::warn!(
                    source = %s.operator,
                    subtask = s.index,
                    checkpoint = plan.id(),
                    "the checkpoint holds no position for this source: it starts from its beginning"
                );
            }
            self.source.restore_state(states).await.map_err(at)?;
        }
        self.chain.open().await?;
        let assigner = EventTimeAssigner::new(&self.event_time);
        let mut watermarks = match &self.event_time {
            EventTimeSpec::Column {
                max_out_of_orderness,
                ..
            } => BoundedOutOfOrderness::new(*max_out_of_orderness),
            EventTimeSpec::ArrivalTime => BoundedOutOfOrderness::new(Duration::ZERO),
        };
        let mut emitted: Option<EventTime> = None;
        let mut idle = false;
        let mut idle_deadline = Instant::now() + self.idle_timeout;
        let mut barriers = self.barriers.take();
        let mut completed = self.chain.checkpoint_handle().map(|h| h.completed.clone());
        let mut notified = completed.as_ref().map_or(0, |c| *c.borrow());

        let finished = loop {
            let poll = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break false,
                id = checkpoint_completed(&mut completed) => {
                    if id > notified {
                        notified = id;
                        self.chain.notify_checkpoint_complete(id).await?;
                    }
                    continue;
                }
                barrier = next_barrier(&mut barriers) => {
                    self.checkpoint(barrier).await?;
                    if barrier.last {
                        // Stopped with a savepoint: nothing after it is read.
                        await_last_checkpoint(&mut self.chain, barrier.id, &mut completed, notified).await?;
                        return self.chain.end_of_input().await;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(idle_deadline), if !idle => {
                    idle = true;
                    self.chain.watermark(Watermark::Idle).await?;
                    continue;
                }
                poll = self.source.next(&mut self.ctx) => poll.map_err(at)?,
            };
            match poll {
                SourcePoll::Batch(batch) => {
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    idle = false;
                    idle_deadline = Instant::now() + self.idle_timeout;
                    let batch = assigner.assign(batch).map_err(|e| at(e.into()))?;
                    let max = max_event_time(&batch).map_err(|e| at(e.into()))?;
                    self.chain.push(batch, 0, true).await?;
                    if let Some(max) = max {
                        watermarks.observe(max);
                    }
                    if let Some(w) = watermarks.current()
                        && emitted.is_none_or(|e| w > e)
                    {
                        emitted = Some(w);
                        self.ctx.metrics.note_watermark(w.0);
                        self.chain.watermark(Watermark::EventTime(w)).await?;
                    }
                }
                SourcePoll::Side { output, batch } => {
                    let batch = with_event_time(&batch, arrival_times(batch.num_rows()))
                        .map_err(|e| at(e.into()))?;
                    self.chain.push_side(&output, batch).await?;
                }
                SourcePoll::Finished => break true,
            }
        };
        if finished {
            // A bounded input has ended: event time is complete.
            self.ctx.metrics.note_watermark(i64::MAX);
            self.chain
                .watermark(Watermark::EventTime(EventTime::MAX))
                .await?;
        }
        if let Some(handle) = self.chain.checkpoint_handle() {
            // The job's last checkpoint covers everything this source read:
            // take part in checkpoints until it comes.
            let _ = handle.reports.send(TaskReport::SourceFinished);
            loop {
                let Some(rx) = barriers.as_mut() else { break };
                let barrier = tokio::select! {
                    id = checkpoint_completed(&mut completed) => {
                        if id > notified {
                            notified = id;
                            self.chain.notify_checkpoint_complete(id).await?;
                        }
                        continue;
                    }
                    barrier = rx.recv() => match barrier {
                        Some(b) => b,
                        None => break,
                    },
                };
                self.checkpoint(barrier).await?;
                if barrier.last {
                    await_last_checkpoint(&mut self.chain, barrier.id, &mut completed, notified)
                        .await?;
                    break;
                }
            }
        }
        self.chain.end_of_input().await
    }
}

/// Waits until checkpoint `id` (the job's last) is complete and lets the
/// chain commit: only then may a task end.
async fn await_last_checkpoint(
    chain: &mut Chain,
    id: u64,
    completed: &mut Option<watch::Receiver<u64>>,
    notified: u64,
) -> Result<(), NodeError> {
    let Some(completed) = completed.as_mut() else {
        return Ok(());
    };
    while *completed.borrow() < id {
        if completed.changed().await.is_err() {
            break;
        }
    }
    let done = *completed.borrow();
    if done >= id && done > notified {
        chain.notify_checkpoint_complete(done).await?;
    }
    Ok(())
}

/// The next barrier from the coordinator; never, if the job takes no checkpoints.
async fn next_barrier(barriers: &mut Option<mpsc::Receiver<Barrier>>) -> Barrier {
    match barriers {
        Some(rx) => match rx.recv().await {
            Some(b) => b,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// An operator subtask (and the operators chained after it), fed by channels.
pub(crate) struct OperatorTask {
    pub gate: InputGate,
    pub chain: Chain,
}

/// A barrier being aligned: the channels that have delivered it are blocked.
struct Alignment {
    barrier: Barrier,
    arrived: usize,
}

impl OperatorTask {
    pub async fn run(mut self, head: NodeId) -> Result<(), NodeError> {
        self.chain.open().await?;
        let mut watermarks = InputWatermarks::new(self.gate.channel_count());
        let mut completed = self.chain.checkpoint_handle().map(|h| h.completed.clone());
        let mut notified = completed.as_ref().map_or(0, |c| *c.borrow());
        let mut alignment: Option<Alignment> = None;
        let mut last_checkpoint: Option<u64> = None;
        loop {
            let timer = self
                .chain
                .next_processing_time()
                .map(|at| std::time::Duration::from_millis((at - now_ms()).max(0) as u64));
            let next = tokio::select! {
                biased;
                // Commits first: a busy input must not hold them back.
                id = checkpoint_completed(&mut completed) => {
                    if id > notified {
                        notified = id;
                        self.chain.notify_checkpoint_complete(id).await?;
                    }
                    continue;
                }
                next = self.gate.next() => next,
                () = tokio::time::sleep(timer.unwrap_or_default()), if timer.is_some() => {
                    self.chain.processing_time(now_ms()).await?;
                    continue;
                }
            }
            .map_err(|e| NodeError::new(head, e.into()))?;
            let Some((channel, message)) = next else {
                break;
            };
            let forward = match message {
                Message::Data(batch) => {
                    watermarks.on_data(channel);
                    let input = self.gate.input_of(channel);
                    self.chain.push(batch, input, false).await?;
                    None
                }
                Message::Watermark(w) => watermarks.on_watermark(channel, w),
                Message::Barrier(barrier) => {
                    self.gate.block(channel);
                    let a = alignment.get_or_insert(Alignment {
                        barrier,
                        arrived: 0,
                    });
                    if a.barrier.id != barrier.id {
                        // An abandoned checkpoint's barrier is superseded.
                        *a = Alignment {
                            barrier,
                            arrived: 0,
                        };
                    }
                    a.arrived += 1;
                    None
                }
                Message::EndOfStream => watermarks.on_end_of_input(channel),
            };
            // After the job's last checkpoint nothing may change the results
            // it committed: an input's end is no reason to fire windows.
            if let Some(w) = forward.filter(|_| last_checkpoint.is_none()) {
                self.chain.watermark(w).await?;
            }
            // Aligned once every channel still open has delivered the barrier.
            if let Some(a) = &alignment
                && a.arrived >= self.gate.open_channels()
            {
                let barrier = a.barrier;
                alignment = None;
                self.chain.checkpoint(barrier, None).await?;
                self.gate.unblock_all();
                if barrier.last {
                    last_checkpoint = Some(barrier.id);
                }
            }
        }
        // Results are committed by the last checkpoint: end once it is complete.
        if let Some(id) = last_checkpoint {
            await_last_checkpoint(&mut self.chain, id, &mut completed, notified).await?;
        }
        self.chain.end_of_input().await
    }
}

/// The id of a newly complete checkpoint; never, without checkpoints.
async fn checkpoint_completed(completed: &mut Option<watch::Receiver<u64>>) -> u64 {
    match completed {
        Some(rx) => match rx.changed().await {
            Ok(()) => *rx.borrow_and_update(),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Adds the event-time column to a source's batch.
struct EventTimeAssigner {
    column: Option<String>,
}

impl EventTimeAssigner {
    fn new(spec: &EventTimeSpec) -> Self {
        match spec {
            EventTimeSpec::Column { name, .. } => EventTimeAssigner {
                column: Some(name.clone()),
            },
            EventTimeSpec::ArrivalTime => EventTimeAssigner { column: None },
        }
    }

    fn assign(&self, batch: RecordBatch) -> Result<RecordBatch, RuntimeError> {
        let Some(name) = &self.column else {
            return with_event_time(&batch, arrival_times(batch.num_rows()));
        };
        let column = batch.column_by_name(name).ok_or_else(|| {
            RuntimeError::Schema(format!(
                "event-time column `{name}` is not in the source's rows"
            ))
        })?;
        let times = to_event_time(column)
            .map_err(|e| RuntimeError::Schema(format!("event-time column `{name}`: {e}")))?;
        if times.null_count() > 0 {
            return Err(RuntimeError::Schema(format!(
                "event-time column `{name}` is NULL in {} of {} rows",
                times.null_count(),
                times.len()
            )));
        }
        with_event_time(&batch, times)
    }
}

/// Converts a timestamp, date or integer (epoch milliseconds) column to event time.
fn to_event_time(column: &ArrayRef) -> Result<ArrayRef, RuntimeError> {
    Ok(match column.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, None) => column.clone(),
        DataType::Timestamp(_, tz) => {
            // The values are UTC instants whatever the zone: only the unit changes.
            let ms = cast(
                column,
                &DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
            )?;
            Arc::new(
                ms.as_primitive::<TimestampMillisecondType>()
                    .clone()
                    .with_timezone_opt(None::<String>),
            )
        }
        DataType::Int64 => {
            let ints = column.as_primitive::<arrow::datatypes::Int64Type>();
            Arc::new(TimestampMillisecondArray::new(
                ints.values().clone(),
                ints.nulls().cloned(),
            ))
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => {
            let ints = cast(column, &DataType::Int64)?;
            return to_event_time(&ints);
        }
        DataType::Date32
        | DataType::Date64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View => cast(column, &EVENT_TIME_TYPE)?,
        other => {
            return Err(RuntimeError::Schema(format!(
                "has type {other}; event time needs a timestamp, a date or epoch milliseconds"
            )));
        }
    })
}

/// The wall clock in ms since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn arrival_times(rows: usize) -> ArrayRef {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Arc::new(TimestampMillisecondArray::from_value(now, rows))
}
