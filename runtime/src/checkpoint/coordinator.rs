//! The checkpoint coordinator: triggers barriers, gathers acknowledgements,
//! completes checkpoints, and takes the final one when the sources are done.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::metadata::{CheckpointMetadata, METADATA_FORMAT, OperatorMetadata, SubtaskMetadata};
use super::storage::CheckpointStorage;
use super::{Barrier, CheckpointConfig};
use crate::key_hash::KEY_HASH_VERSION;

/// How often the job's last checkpoint is tried before the job fails.
const LAST_CHECKPOINT_ATTEMPTS: u32 = 3;

/// Where the answer to a savepoint request goes.
type Reply = oneshot::Sender<Result<PathBuf, String>>;

/// The last checkpoint to take again after it failed.
struct LastRetry {
    savepoint: bool,
    reply: Option<Reply>,
}

/// What a task tells the coordinator.
#[derive(Debug)]
pub(crate) enum TaskReport {
    /// One subtask of one operator has stored its state for a checkpoint.
    Ack {
        checkpoint: u64,
        operator: String,
        state: SubtaskMetadata,
    },
    /// A subtask could not store its state: the checkpoint is abandoned.
    Declined { checkpoint: u64, reason: String },
    /// A source subtask has read all its input (or was stopped).
    SourceFinished,
}

/// What every task holds to take part in checkpoints.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointHandle {
    pub reports: mpsc::UnboundedSender<TaskReport>,
    pub storage: Arc<CheckpointStorage>,
    /// The id of the newest complete checkpoint.
    pub completed: watch::Receiver<u64>,
    /// Set when the job's last checkpoint has failed for good: why.
    pub last_failed: watch::Receiver<Option<String>>,
}

/// A request for a savepoint, answered with its directory.
pub(crate) struct SavepointRequest {
    pub reply: Reply,
    /// Stop the job with it: it is the job's last checkpoint.
    pub stop: bool,
}

struct InFlight {
    barrier: Barrier,
    started: Instant,
    acks: BTreeMap<String, Vec<SubtaskMetadata>>,
    received: usize,
    reply: Option<Reply>,
}

pub(crate) struct Coordinator {
    pub config: CheckpointConfig,
    pub storage: Arc<CheckpointStorage>,
    /// One per source subtask.
    pub triggers: Vec<mpsc::Sender<Barrier>>,
    pub reports: mpsc::UnboundedReceiver<TaskReport>,
    /// Operator name → parallelism, for every operator (sources included).
    pub operators: BTreeMap<String, usize>,
    pub max_parallelism: u32,
    pub completed: watch::Sender<u64>,
    /// Tells the tasks that the job's last checkpoint failed for good.
    pub last_failed: watch::Sender<Option<String>>,
    /// Shared by the attempts of a job; the running coordinator holds it.
    pub savepoints: Arc<tokio::sync::Mutex<mpsc::Receiver<SavepointRequest>>>,
    pub next_id: u64,
    /// Checkpoint counters go to the job's `job` operator metrics.
    pub metrics: Arc<crate::metrics::OperatorMetrics>,
}

impl Coordinator {
    fn expected(&self) -> usize {
        self.operators.values().sum()
    }

    fn trigger(&mut self, savepoint: bool, last: bool) -> Option<InFlight> {
        let barrier = Barrier {
            id: self.next_id,
            savepoint,
            last,
        };
        self.next_id += 1;
        for trigger in &self.triggers {
            if trigger.try_send(barrier).is_err() {
                tracing::debug!(checkpoint = barrier.id, "a source cannot take the barrier");
                return None;
            }
        }
        tracing::debug!(
            checkpoint = barrier.id,
            savepoint,
            last,
            "checkpoint triggered"
        );
        Some(InFlight {
            barrier,
            started: Instant::now(),
            acks: BTreeMap::new(),
            received: 0,
            reply: None,
        })
    }

    /// Writes the checkpoint's metadata; on failure, gives back the reason
    /// and the reply still to send.
    fn complete(&mut self, mut flight: InFlight) -> Result<PathBuf, (String, Option<Reply>)> {
        let id = flight.barrier.id;
        let mut operators = BTreeMap::new();
        for (name, mut subtasks) in std::mem::take(&mut flight.acks) {
            subtasks.sort_by_key(|s| s.index);
            let parallelism = self.operators.get(&name).copied().unwrap_or(subtasks.len());
            operators.insert(
                name,
                OperatorMetadata {
                    parallelism,
                    subtasks,
                },
            );
        }
        let metadata = CheckpointMetadata {
            format: METADATA_FORMAT,
            id,
            savepoint: flight.barrier.savepoint,
            completed_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            key_hash_version: KEY_HASH_VERSION,
            max_parallelism: self.max_parallelism,
            operators,
        };
        let result = self.storage.complete(&metadata);
        match &result {
            Ok(dir) => {
                let bytes: u64 = metadata.files().map(|f| f.size).sum();
                tracing::info!(
                    checkpoint = id,
                    savepoint = flight.barrier.savepoint,
                    "checkpoint complete in {:.0?}: {} ({} MiB of files)",
                    flight.started.elapsed(),
                    dir.display(),
                    bytes >> 20
                );
                let _ = self.completed.send(id);
                self.metrics.counter("checkpoints_completed").add(1);
                self.metrics.counter("last_checkpoint_id").raise_to(id);
                self.metrics
                    .counter("checkpoint_duration_ms_total")
                    .add(flight.started.elapsed().as_millis() as u64);
                self.metrics.counter("checkpoint_bytes_total").add(bytes);
                if let Err(e) = self.storage.retain(self.config.retained) {
                    tracing::warn!("removing old checkpoints: {e}");
                }
            }
            Err(e) => {
                self.metrics.counter("checkpoints_failed").add(1);
                tracing::warn!(checkpoint = id, "checkpoint failed: {e}")
            }
        }
        match result {
            Ok(dir) => {
                if let Some(reply) = flight.reply {
                    let _ = reply.send(Ok(dir.clone()));
                }
                Ok(dir)
            }
            Err(e) => Err((format!("checkpoint {id}: {e}"), flight.reply)),
        }
    }

    /// Checkpoint `barrier` failed: a savepoint request gets the reason; the
    /// job's last checkpoint is taken again (see [`Coordinator::last_failed`]).
    fn failed(
        &mut self,
        barrier: Barrier,
        reply: Option<Reply>,
        reason: String,
        attempts: u32,
    ) -> Option<LastRetry> {
        if barrier.last {
            return self.last_failed(barrier.savepoint, reply, reason, attempts);
        }
        if let Some(reply) = reply {
            let _ = reply.send(Err(reason));
        }
        None
    }

    /// The job's last checkpoint failed: it is taken again while attempts
    /// remain; after that the tasks are told, so the job fails with the
    /// reason, and a stop with a savepoint gets it.
    fn last_failed(
        &mut self,
        savepoint: bool,
        reply: Option<Reply>,
        reason: String,
        attempts: u32,
    ) -> Option<LastRetry> {
        if attempts < LAST_CHECKPOINT_ATTEMPTS {
            tracing::warn!(
                "the job's last checkpoint failed ({reason}); taking it again (attempt {} of {LAST_CHECKPOINT_ATTEMPTS})",
                attempts + 1
            );
            return Some(LastRetry { savepoint, reply });
        }
        let reason =
            format!("the job's last checkpoint failed {attempts} times; the last time: {reason}");
        if let Some(reply) = reply {
            let _ = reply.send(Err(reason.clone()));
        }
        let _ = self.last_failed.send(Some(reason));
        None
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut savepoints = tokio::select! {
            _ = shutdown.cancelled() => return,
            guard = self.savepoints.clone().lock_owned() => guard,
        };
        let mut timer = tokio::time::interval(self.config.interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer.tick().await; // the first tick is immediate: skip it
        let sources = self.triggers.len();
        let mut finished_sources = 0;
        let mut in_flight: Option<InFlight> = None;
        let mut waiting_savepoints: Vec<SavepointRequest> = Vec::new();
        // Set once the last checkpoint has been triggered; `retry_last` holds
        // it while it is to be taken again.
        let mut last_done = false;
        let mut savepoints_open = true;
        let mut last_completed: Option<PathBuf> = None;
        let mut last_attempts = 0u32;
        let mut retry_last: Option<LastRetry> = None;
        loop {
            let all_finished = finished_sources >= sources;
            // A stop with a savepoint after the last checkpoint has begun: that
            // checkpoint (complete, and the job's last) answers it.
            if last_done
                && retry_last.is_none()
                && let Some(i) = waiting_savepoints.iter().position(|r| r.stop)
            {
                let request = waiting_savepoints.remove(i);
                match (&mut in_flight, &last_completed) {
                    (Some(f), _) if f.barrier.last && f.reply.is_none() => {
                        f.reply = Some(request.reply)
                    }
                    (_, Some(dir)) => {
                        let _ = request.reply.send(Ok(dir.clone()));
                    }
                    _ => {
                        let _ = request
                            .reply
                            .send(Err("the job's last checkpoint failed".into()));
                    }
                }
            }
            // The last checkpoint: once the sources are done, or to stop with
            // a savepoint; again after it failed, until the attempts are used up.
            let stop_request = waiting_savepoints.iter().position(|r| r.stop);
            if in_flight.is_none()
                && (retry_last.is_some() || !last_done && (all_finished || stop_request.is_some()))
            {
                let (savepoint, reply) = match retry_last.take() {
                    Some(retry) => {
                        // A pause that grows with each try: a task still busy
                        // with the failed one could not take a barrier at once.
                        let pause = self
                            .config
                            .interval
                            .min(self.config.timeout)
                            .min(std::time::Duration::from_secs(10));
                        tokio::time::sleep(pause * last_attempts).await;
                        (retry.savepoint, retry.reply)
                    }
                    None => {
                        let request = stop_request
                            .map(|i| waiting_savepoints.remove(i))
                            .or_else(|| waiting_savepoints.pop());
                        (request.is_some(), request.map(|r| r.reply))
                    }
                };
                last_attempts += 1;
                last_done = true;
                match self.trigger(savepoint, true) {
                    Some(mut f) => {
                        f.reply = reply;
                        in_flight = Some(f);
                    }
                    None => {
                        let reason = "a source could not take the barrier".to_string();
                        retry_last = self.last_failed(savepoint, reply, reason, last_attempts);
                    }
                }
            }
            if !all_finished && !last_done && in_flight.is_none() && !waiting_savepoints.is_empty()
            {
                let request = waiting_savepoints.pop().expect("not empty");
                in_flight = self.trigger(true, false);
                if let Some(f) = &mut in_flight {
                    f.reply = Some(request.reply);
                }
            }
            let deadline = in_flight
                .as_ref()
                .map(|f| tokio::time::Instant::from_std(f.started + self.config.timeout));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = timer.tick(), if in_flight.is_none() && !all_finished && !last_done => {
                    in_flight = self.trigger(false, false);
                }
                request = savepoints.recv(), if savepoints_open => match request {
                    Some(r) => waiting_savepoints.push(r),
                    None => savepoints_open = false,
                },
                () = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    let f = in_flight.take().expect("in flight");
                    tracing::warn!(checkpoint = f.barrier.id, "checkpoint timed out after {:?}", self.config.timeout);
                    self.metrics.counter("checkpoints_failed").add(1);
                    let reason = format!("checkpoint {} timed out after {:?}", f.barrier.id, self.config.timeout);
                    retry_last = self.failed(f.barrier, f.reply, reason, last_attempts);
                }
                report = self.reports.recv() => {
                    let Some(report) = report else { break };
                    match report {
                        TaskReport::SourceFinished => finished_sources += 1,
                        TaskReport::Declined { checkpoint, reason } => {
                            if in_flight.as_ref().is_some_and(|f| f.barrier.id == checkpoint) {
                                let f = in_flight.take().expect("checked");
                                tracing::warn!(checkpoint, "checkpoint declined: {reason}");
                                self.metrics.counter("checkpoints_failed").add(1);
                                retry_last = self.failed(f.barrier, f.reply, reason, last_attempts);
                            }
                        }
                        TaskReport::Ack { checkpoint, operator, state } => {
                            let expected = self.expected();
                            if let Some(f) = in_flight.as_mut().filter(|f| f.barrier.id == checkpoint) {
                                f.acks.entry(operator).or_default().push(state);
                                f.received += 1;
                                if f.received == expected {
                                    let f = in_flight.take().expect("in flight");
                                    let barrier = f.barrier;
                                    match self.complete(f) {
                                        Ok(dir) if barrier.last => last_completed = Some(dir),
                                        Ok(_) => {}
                                        Err((reason, reply)) => {
                                            retry_last = self.failed(barrier, reply, reason, last_attempts);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        for request in waiting_savepoints {
            let _ = request
                .reply
                .send(Err("the job ended before the savepoint".into()));
        }
    }
}
