//! The two run loops: a source task, and an operator task fed by channels.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::chain::{Chain, NodeError, PendingState};
use crate::channel::{InputGate, Message};
use crate::checkpoint::Barrier;
use crate::checkpoint::coordinator::TaskReport;
use crate::error::{BoxError, RuntimeError};
use crate::event_time::{EventTimeAssigner, arrival_times, now_ms};
use crate::graph::NodeId;
use crate::operator::OperatorContext;
use crate::source::{EventTimeSpec, Source, SourcePoll};
use crate::split_watermarks::SplitWatermarks;
use crate::time::{EventTime, Watermark, max_event_time, with_event_time};
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
            .snapshot_state_at(barrier.id)
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
            watermark: self.ctx.current_watermark,
        };
        self.chain.checkpoint(barrier, Some(head)).await
    }

    /// Tells the source, then the chain, that checkpoint `id` is complete.
    async fn notify_complete(&mut self, id: u64) -> Result<(), NodeError> {
        self.source
            .notify_checkpoint_complete(id)
            .await
            .map_err(|e| NodeError::new(self.node, e))?;
        self.chain.notify_checkpoint_complete(id).await
    }

    /// Sends the watermark `w` on if it is past the one sent.
    async fn advance_to(&mut self, w: Option<EventTime>) -> Result<(), NodeError> {
        if let Some(w) = w
            && self.ctx.current_watermark.is_none_or(|e| w > e)
        {
            self.ctx.current_watermark = Some(w);
            self.ctx.metrics.note_watermark(w.0);
            self.chain.watermark(Watermark::EventTime(w)).await?;
        }
        Ok(())
    }

    /// Adds event time to `batch` and pushes it down the chain; its largest
    /// event time.
    async fn push_rows(
        &mut self,
        assigner: &EventTimeAssigner,
        batch: arrow::array::RecordBatch,
    ) -> Result<Option<EventTime>, NodeError> {
        let at = |e: RuntimeError| NodeError::new(self.node, e.into());
        let batch = assigner.assign(batch).map_err(at)?;
        let max = max_event_time(&batch).map_err(at)?;
        self.chain.push(batch, 0, true).await?;
        Ok(max)
    }

    pub async fn run(mut self) -> Result<(), NodeError> {
        let node = self.node;
        let at = |e: BoxError| NodeError::new(node, e);
        self.source.open(&mut self.ctx).await.map_err(at)?;
        let bound = match &self.event_time {
            EventTimeSpec::Column {
                max_out_of_orderness,
                ..
            } => *max_out_of_orderness,
            EventTimeSpec::ArrivalTime => Duration::ZERO,
        };
        let mut watermarks = BoundedOutOfOrderness::new(bound);
        // For a source that reads splits with their own event time (it sends
        // `SplitBatch` or `Splits`): a watermark per split.
        let mut splits = SplitWatermarks::new(bound, self.idle_timeout);
        let mut by_split = false;
        if let Some(plan) = self.ctx.restore.clone() {
            let s = &self.ctx.subtask;
            let restored = plan
                .restored(&s.operator, s.index, s.parallelism)
                .map_err(|e| at(e.into()))?;
            if restored.is_empty() {
                // A source new to the job (or one that stored nothing) is
                // not given an empty position: it reads from its beginning.
                tracing::warn!(
                    source = %s.operator,
                    subtask = s.index,
                    checkpoint = plan.id(),
                    "the checkpoint holds no position for this source: it starts from its beginning"
                );
            } else {
                // Event time resumes where it was, before any row flows.
                if let Some(w) = restored.watermark() {
                    watermarks.resume_at(w);
                    splits.resume_at(w);
                }
                self.source.restore_state(restored).await.map_err(at)?;
            }
        }
        self.chain.open().await?;
        let assigner = EventTimeAssigner::new(&self.event_time);
        // The source's context holds the watermark it has sent.
        if let Some(w) = watermarks.current() {
            self.ctx.current_watermark = Some(w);
            self.chain.watermark(Watermark::EventTime(w)).await?;
        }
        let mut idle = false;
        let mut idle_deadline = Instant::now() + self.idle_timeout;
        let mut barriers = self.barriers.take();
        let mut completed = self.chain.checkpoint_handle().map(|h| h.completed.clone());
        let mut notified = completed.as_ref().map_or(0, |c| *c.borrow());

        let finished = loop {
            // When a split may turn idle, and let the watermark move.
            let split_idle_at = by_split
                .then(|| splits.next_idle_at(Instant::now()))
                .flatten();
            let poll = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break false,
                id = checkpoint_completed(&mut completed) => {
                    if id > notified {
                        notified = id;
                        self.notify_complete(id).await?;
                    }
                    continue;
                }
                barrier = next_barrier(&mut barriers) => {
                    self.checkpoint(barrier).await?;
                    if barrier.last {
                        // Stopped with a savepoint: nothing after it is read.
                        self.await_last_checkpoint(barrier.id, &mut barriers, &mut completed, notified).await?;
                        return self.chain.end_of_input().await;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(idle_deadline), if !idle => {
                    idle = true;
                    self.chain.watermark(Watermark::Idle).await?;
                    continue;
                }
                _ = sleep_until_some(split_idle_at), if split_idle_at.is_some() => {
                    self.advance_to(splits.current(Instant::now())).await?;
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
                    if let Some(max) = self.push_rows(&assigner, batch).await? {
                        watermarks.observe(max);
                    }
                    self.advance_to(watermarks.current()).await?;
                }
                SourcePoll::SplitBatch { split, batch } => {
                    by_split = true;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    idle = false;
                    idle_deadline = Instant::now() + self.idle_timeout;
                    let max = self.push_rows(&assigner, batch).await?;
                    let now = Instant::now();
                    splits.observe(split, max, now);
                    self.advance_to(splits.current(now)).await?;
                }
                SourcePoll::Splits(ids) => {
                    by_split = true;
                    let now = Instant::now();
                    splits.set_splits(&ids, now);
                    self.advance_to(splits.current(now)).await?;
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
            self.ctx.current_watermark = Some(EventTime::MAX);
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
                            self.notify_complete(id).await?;
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
                    self.await_last_checkpoint(barrier.id, &mut barriers, &mut completed, notified)
                        .await?;
                    break;
                }
            }
        }
        self.chain.end_of_input().await
    }

    /// Waits until the job's last checkpoint (`id`, or a retry of it) is
    /// complete and lets the chain commit: only then may a task end. A failed
    /// last checkpoint is taken again with a new barrier, which this source
    /// passes on; when it has failed for good, the task fails with the reason.
    async fn await_last_checkpoint(
        &mut self,
        mut id: u64,
        barriers: &mut Option<mpsc::Receiver<Barrier>>,
        completed: &mut Option<watch::Receiver<u64>>,
        notified: u64,
    ) -> Result<(), NodeError> {
        let Some(completed) = completed.as_mut() else {
            return Ok(());
        };
        let mut failed = self
            .chain
            .checkpoint_handle()
            .map(|h| h.last_failed.clone());
        while *completed.borrow() < id {
            tokio::select! {
                changed = completed.changed() => if changed.is_err() { break },
                reason = last_checkpoint_failed(&mut failed) => {
                    return Err(NodeError::new(self.node, reason.into()));
                }
                barrier = next_barrier(barriers) => {
                    self.checkpoint(barrier).await?;
                    if barrier.last {
                        id = barrier.id;
                    }
                }
            }
        }
        let done = *completed.borrow();
        if done >= id && done > notified {
            self.notify_complete(done).await?;
        }
        Ok(())
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
    let mut failed = chain.checkpoint_handle().map(|h| h.last_failed.clone());
    while *completed.borrow() < id {
        tokio::select! {
            changed = completed.changed() => if changed.is_err() { break },
            reason = last_checkpoint_failed(&mut failed) => {
                return Err(NodeError::new(chain.head(), reason.into()));
            }
        }
    }
    let done = *completed.borrow();
    if done >= id && done > notified {
        chain.notify_checkpoint_complete(done).await?;
    }
    Ok(())
}

/// Why the job's last checkpoint failed for good; never, if it has not.
async fn last_checkpoint_failed(failed: &mut Option<watch::Receiver<Option<String>>>) -> String {
    if let Some(rx) = failed {
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    }
    std::future::pending().await
}

/// Sleeps until `at`; never, if it is `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
        let restored_watermark = self.chain.open().await?;
        let mut watermarks = InputWatermarks::new(self.gate.channel_count());
        if let Some(w) = restored_watermark {
            watermarks.resume_at(w);
            // Restored downstream tasks wait for a watermark from each input
            // again, and this task's inputs may have nothing newer to send
            // (a source subtask that had read all its input resends the
            // watermark it had, which moves nothing here): say again where
            // event time was. Timers up to it fired before the checkpoint.
            self.chain.watermark(Watermark::EventTime(w)).await?;
        }
        let mut completed = self.chain.checkpoint_handle().map(|h| h.completed.clone());
        let mut notified = completed.as_ref().map_or(0, |c| *c.borrow());
        let mut alignment: Option<Alignment> = None;
        // The newest checkpoint a barrier has arrived for.
        let mut newest: u64 = 0;
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
                // After the job's last checkpoint no timer fires: what it sent
                // would be in no checkpoint.
                () = tokio::time::sleep(timer.unwrap_or_default()), if timer.is_some() && last_checkpoint.is_none() => {
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
                    match alignment_step(
                        alignment.as_ref().map(|a| a.barrier.id),
                        newest,
                        barrier.id,
                    ) {
                        BarrierStep::Ignore => {}
                        step => {
                            if step == BarrierStep::Supersede {
                                // A newer checkpoint started before this one
                                // was aligned: this one can no longer complete.
                                tracing::warn!(
                                    abandoned = newest,
                                    checkpoint = barrier.id,
                                    "a barrier overtook the one being aligned; aligning the newer"
                                );
                                self.gate.unblock_all();
                                alignment = None;
                            }
                            newest = barrier.id;
                            self.gate.block(channel);
                            alignment
                                .get_or_insert(Alignment {
                                    barrier,
                                    arrived: 0,
                                })
                                .arrived += 1;
                        }
                    }
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

/// What a task does with a barrier.
#[derive(Debug, PartialEq, Eq)]
enum BarrierStep {
    /// Of a checkpoint older than one already seen: abandoned, pass over it
    /// (its channel stays open).
    Ignore,
    /// Of the checkpoint being aligned, or a new one: block its channel.
    Align,
    /// Newer than the one being aligned: give that one up (release its
    /// blocked channels), then align this one.
    Supersede,
}

/// `aligning`: the checkpoint being aligned; `newest`: the newest one seen.
fn alignment_step(aligning: Option<u64>, newest: u64, id: u64) -> BarrierStep {
    match aligning {
        Some(a) if id == a => BarrierStep::Align,
        Some(a) if id > a => BarrierStep::Supersede,
        Some(_) => BarrierStep::Ignore,
        None if id > newest => BarrierStep::Align,
        None => BarrierStep::Ignore,
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

#[cfg(test)]
mod tests {
    use super::{BarrierStep, alignment_step};

    #[test]
    fn a_newer_barrier_supersedes_the_alignment_and_an_older_one_is_ignored() {
        // Nothing aligning: a new checkpoint starts; a stale one does not.
        assert_eq!(alignment_step(None, 4, 5), BarrierStep::Align);
        assert_eq!(alignment_step(None, 5, 5), BarrierStep::Ignore);
        assert_eq!(alignment_step(None, 5, 3), BarrierStep::Ignore);
        // Aligning 5: more of 5 aligns; 6 gives 5 up; 4 is stale and must not
        // replace 5 (nor block its channel).
        assert_eq!(alignment_step(Some(5), 5, 5), BarrierStep::Align);
        assert_eq!(alignment_step(Some(5), 5, 6), BarrierStep::Supersede);
        assert_eq!(alignment_step(Some(5), 5, 4), BarrierStep::Ignore);
    }
}
