//! Running a job: tasks are spawned on tokio, supervised, and stopped together.
//!
//! When any task fails, every other task is aborted at once. A job with
//! checkpoints then restarts every task from the latest complete checkpoint,
//! under its [`RestartStrategy`]; otherwise (or when the restarts are used up)
//! the job fails with the name of the operator that failed first and its
//! error. A failure that is only the echo of another (a channel closed under a
//! task) is never the one reported.

mod build;
mod supervise;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::coordinator::{CheckpointHandle, Coordinator, SavepointRequest};
use crate::checkpoint::{CheckpointStorage, RestorePlan};
use crate::config::{JobConfig, RestartStrategy};
use crate::error::{JobError, RuntimeError};
use crate::graph::JobGraph;
use crate::metrics::{JobMetrics, MetricsSnapshot};
use crate::plan::PhysicalPlan;
use crate::state::JobState;
use build::{TaskContext, TaskKind, build_tasks};
use supervise::{RunningTasks, supervise};

/// How a job ended well.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// `true` if [`JobHandle::stop`] ended it; `false` if its input ended.
    pub stopped: bool,
    pub duration: Duration,
    pub metrics: MetricsSnapshot,
    /// Times the job was restarted from a checkpoint after a failure.
    pub restarts: u32,
}

/// A running job: stop it, cancel it, read its metrics, or wait for its end.
#[derive(Debug)]
pub struct JobHandle {
    name: String,
    stop: CancellationToken,
    cancel: CancellationToken,
    metrics: JobMetrics,
    supervisor: tokio::task::JoinHandle<Result<JobResult, JobError>>,
    savepoints: Option<mpsc::Sender<SavepointRequest>>,
}

impl JobHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops gracefully: sources stop reading, everything in flight is processed,
    /// sinks flush. [`JobHandle::wait`] then returns with `stopped` set.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// A token that stops the job when cancelled, for use from another task.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Aborts every task now. [`JobHandle::wait`] returns [`JobError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Takes a savepoint: a checkpoint kept until you remove it. Returns its directory.
    pub async fn trigger_savepoint(&self) -> Result<PathBuf, JobError> {
        self.savepoint(false).await
    }

    /// Stops the job with a savepoint: the sources stop at its barrier, it is
    /// the job's last checkpoint, and the sinks commit up to it. Start a new
    /// job from the returned directory to go on, at any parallelism.
    pub async fn stop_with_savepoint(&self) -> Result<PathBuf, JobError> {
        self.savepoint(true).await
    }

    async fn savepoint(&self, stop: bool) -> Result<PathBuf, JobError> {
        let Some(savepoints) = &self.savepoints else {
            return Err(RuntimeError::Checkpoint(
                "savepoints need checkpoints: set JobConfig::checkpoint".into(),
            )
            .into());
        };
        let ended = || RuntimeError::Checkpoint("the job has ended".into());
        let (reply, answer) = oneshot::channel();
        savepoints
            .send(SavepointRequest { reply, stop })
            .await
            .map_err(|_| ended())?;
        answer
            .await
            .map_err(|_| ended())?
            .map_err(|e| RuntimeError::Checkpoint(e).into())
    }

    /// Counters of every operator, now.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// The job's live metrics, readable after [`JobHandle::wait`] took the handle.
    pub fn live_metrics(&self) -> JobMetrics {
        self.metrics.clone()
    }

    /// Waits until the job has finished, been stopped, or failed.
    pub async fn wait(self) -> Result<JobResult, JobError> {
        match self.supervisor.await {
            Ok(result) => result,
            Err(e) => Err(JobError::Runtime(RuntimeError::Internal(format!(
                "job supervisor died: {e}"
            )))),
        }
    }
}

/// Builds every task of `graph` and starts them. Must be called within a tokio runtime.
///
/// A graph or a checkpoint that cannot be used fails here, before any task runs.
pub fn start(graph: JobGraph, config: JobConfig) -> Result<JobHandle, JobError> {
    config.validate()?;
    graph.validate(config.max_parallelism)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(RuntimeError::InvalidGraph(
            "a job must be started inside a tokio runtime".into(),
        )
        .into());
    }
    let plan = PhysicalPlan::new(&graph);
    tracing::debug!(job = %graph.name, "physical plan:\n{plan}");
    let (savepoint_tx, savepoint_rx) = mpsc::channel(4);
    let job = Arc::new(Job {
        metrics: JobMetrics::default(),
        stop: CancellationToken::new(),
        cancel: CancellationToken::new(),
        job_state: Arc::new(JobState::new(
            config.state_dir.clone(),
            config.state_memory_limit,
        )),
        savepoints: Arc::new(Mutex::new(savepoint_rx)),
        graph,
        plan,
        config,
    });
    let initial = restore_plan(&job.config)?;
    if let Some(plan) = &initial {
        plan.match_operators(&job.graph, job.config.allow_non_restored_state)?;
    }
    let first = job.launch(initial.clone())?;
    let handle = JobHandle {
        name: job.graph.name.clone(),
        stop: job.stop.clone(),
        cancel: job.cancel.clone(),
        metrics: job.metrics.clone(),
        savepoints: job.config.checkpoint.as_ref().map(|_| savepoint_tx),
        supervisor: tokio::spawn(job.run(first, initial)),
    };
    Ok(handle)
}

/// What every attempt of a job shares.
struct Job {
    graph: JobGraph,
    plan: PhysicalPlan,
    config: JobConfig,
    metrics: JobMetrics,
    stop: CancellationToken,
    cancel: CancellationToken,
    job_state: Arc<JobState>,
    /// Taken by the coordinator of the running attempt.
    savepoints: Arc<Mutex<mpsc::Receiver<SavepointRequest>>>,
}

/// One run of every task of the job, from one checkpoint (or from the start).
struct Attempt {
    tasks: RunningTasks,
    /// Stops this attempt's checkpoint coordinator.
    coordinator_stop: CancellationToken,
    /// The latest checkpoint complete in this attempt, if it has checkpoints.
    completed: Option<watch::Receiver<u64>>,
    restored: u64,
}

impl Job {
    /// Supervises attempts until the job ends, restarting failed ones from
    /// the latest checkpoint as the restart strategy allows.
    async fn run(
        self: Arc<Self>,
        first: Attempt,
        initial: Option<RestorePlan>,
    ) -> Result<JobResult, JobError> {
        let started = Instant::now();
        let strategy = match self.config.checkpoint {
            Some(_) => self.config.restart,
            None => RestartStrategy::None,
        };
        let (mut attempt, mut restarts, mut in_a_row) = (first, 0u32, 0u32);
        loop {
            let outcome = supervise(attempt.tasks, &self.graph, &self.cancel).await;
            attempt.coordinator_stop.cancel();
            let error = match outcome {
                Ok(()) => {
                    return Ok(JobResult {
                        stopped: self.stop.is_cancelled(),
                        duration: started.elapsed(),
                        metrics: self.metrics.snapshot(),
                        restarts,
                    });
                }
                Err(JobError::Cancelled) => return Err(JobError::Cancelled),
                Err(e) => e,
            };
            let progressed = attempt
                .completed
                .as_ref()
                .is_some_and(|c| *c.borrow() > attempt.restored);
            in_a_row = if progressed { 1 } else { in_a_row + 1 };
            if in_a_row > strategy.attempts() {
                tracing::error!(job = %self.graph.name, "{error}");
                return Err(error);
            }
            tracing::warn!(
                job = %self.graph.name,
                "{error}; restarting from the latest checkpoint in {:?} (restart {in_a_row} of {} in a row)",
                strategy.delay(),
                strategy.attempts(),
            );
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(JobError::Cancelled),
                _ = tokio::time::sleep(strategy.delay()) => {}
            }
            restarts += 1;
            self.metrics.operator("job").counter("restarts").add(1);
            let restore = self.latest_restore(initial.as_ref())?;
            attempt = match self.launch(restore) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(job = %self.graph.name, "cannot restart: {e}");
                    return Err(e);
                }
            };
        }
    }

    /// The checkpoint a restart starts from: the newest complete one, or the
    /// one the job started from if none has completed since.
    fn latest_restore(
        &self,
        initial: Option<&RestorePlan>,
    ) -> Result<Option<RestorePlan>, JobError> {
        let latest = restore_plan(&JobConfig {
            restore_from: None,
            ..self.config.clone()
        })?;
        Ok(match (latest, initial) {
            (Some(l), Some(i)) if i.id() > l.id() => Some(i.clone()),
            (None, i) => i.cloned(),
            (l, _) => l,
        })
    }

    /// Builds and spawns every task, and the checkpoint coordinator.
    fn launch(&self, restore: Option<RestorePlan>) -> Result<Attempt, JobError> {
        let config = &self.config;
        let restored = restore.as_ref().map_or(0, |p| p.id());
        let mut checkpoints = None;
        let mut coordinator = None;
        let mut completed = None;
        if let Some(cp) = &config.checkpoint {
            let storage = Arc::new(CheckpointStorage::new(&cp.dir)?);
            let (reports_tx, reports) = mpsc::unbounded_channel();
            let (completed_tx, completed_rx) = watch::channel(restored);
            let (failed_tx, failed_rx) = watch::channel(None);
            completed = Some(completed_rx.clone());
            checkpoints = Some(CheckpointHandle {
                reports: reports_tx,
                storage: storage.clone(),
                completed: completed_rx,
                last_failed: failed_rx,
            });
            coordinator = Some(Coordinator {
                config: cp.clone(),
                next_id: storage.last_id().max(restored) + 1,
                storage,
                triggers: Vec::new(),
                reports,
                operators: self
                    .graph
                    .nodes()
                    .iter()
                    .map(|n| (n.name.clone(), n.parallelism))
                    .collect(),
                max_parallelism: config.max_parallelism,
                completed: completed_tx,
                last_failed: failed_tx,
                savepoints: self.savepoints.clone(),
                metrics: self.metrics.operator("job"),
            });
        }
        let context = TaskContext {
            checkpoints,
            restore: restore.map(Arc::new),
            run_id: run_id(),
        };
        let (tasks, triggers) = build_tasks(
            &self.graph,
            &self.plan,
            config,
            &self.metrics,
            &self.stop,
            &self.job_state,
            &context,
        )?;
        let coordinator_stop = CancellationToken::new();
        if let Some(mut c) = coordinator {
            c.triggers = triggers;
            // Its own thread: busy tasks on the job's workers must not delay the
            // checkpoint timer.
            let shutdown = coordinator_stop.clone();
            std::thread::Builder::new()
                .name("headwater-checkpoints".into())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(c.run(shutdown)),
                        Err(e) => tracing::error!("cannot start the checkpoint coordinator: {e}"),
                    }
                })
                .map_err(|e| {
                    RuntimeError::Checkpoint(format!("cannot start the coordinator: {e}"))
                })?;
        }
        let mut set = JoinSet::new();
        let mut who = HashMap::new();
        for task in tasks {
            let (node, subtask) = (task.node, task.subtask);
            let handle = match task.kind {
                TaskKind::Source(t) => set.spawn(t.run()),
                TaskKind::Operator(t) => set.spawn(t.run(node)),
            };
            who.insert(handle.id(), (node, subtask));
        }
        Ok(Attempt {
            tasks: RunningTasks { set, who },
            coordinator_stop,
            completed,
            restored,
        })
    }
}

/// The checkpoint to start from: the one named, or the newest complete one
/// in the checkpoint directory (older ones are tried when it is damaged).
///
/// A job started again with the same `--from-savepoint` resumes from its own
/// newer checkpoint, when its checkpoint directory holds one completed after
/// the savepoint: replaying from the savepoint would write again what those
/// checkpoints committed.
fn restore_plan(config: &JobConfig) -> Result<Option<RestorePlan>, JobError> {
    let latest = match &config.checkpoint {
        Some(cp) => CheckpointStorage::new(&cp.dir)?
            .latest()
            .map(|(dir, metadata)| RestorePlan {
                storage: CheckpointStorage::of_checkpoint(&dir).expect("a checkpoint has a parent"),
                metadata,
            }),
        None => None,
    };
    let plan = match (&config.restore_from, latest) {
        (Some(dir), latest) => {
            let savepoint = RestorePlan::load(dir)?;
            match latest {
                Some(newer) if newer.metadata.completed_ms > savepoint.metadata.completed_ms => {
                    tracing::warn!(
                        checkpoint = newer.id(),
                        "the checkpoint directory holds checkpoint {} ({}), completed after \
                         the savepoint {}: resuming from it, not from the savepoint",
                        newer.id(),
                        newer
                            .storage
                            .checkpoint_dir(newer.id(), newer.metadata.savepoint)
                            .display(),
                        dir.display()
                    );
                    Some(newer)
                }
                _ => Some(savepoint),
            }
        }
        (None, latest) => latest,
    };
    if let Some(plan) = &plan {
        plan.check(config.max_parallelism)?;
        tracing::info!(
            checkpoint = plan.id(),
            "restoring from {}",
            plan.storage
                .checkpoint_dir(plan.id(), plan.metadata.savepoint)
                .display()
        );
    }
    Ok(plan)
}

fn run_id() -> u64 {
    xxhash_rust::xxh3::xxh3_64(
        format!("{}-{:?}", std::process::id(), std::time::SystemTime::now()).as_bytes(),
    )
}
