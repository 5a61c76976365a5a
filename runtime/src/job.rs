//! Running a job: tasks are spawned on tokio, supervised, and stopped together.
//!
//! When any task fails, every other task is aborted at once and the job fails
//! with the name of the operator that failed first and its error. A failure that
//! is only the echo of another (a channel closed under a task) is never the one
//! reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::chain::{Chain, ChainedOperator, NodeError};
use crate::channel::{InputChannel, InputGate, channel};
use crate::checkpoint::coordinator::{CheckpointHandle, Coordinator, SavepointRequest};
use crate::checkpoint::{Barrier, CheckpointStorage, RestorePlan};
use crate::config::JobConfig;
use crate::error::{JobError, RuntimeError};
use crate::graph::{JobGraph, NodeKind, Partitioning};
use crate::metrics::{JobMetrics, MetricsSnapshot};
use crate::operator::{OperatorContext, SubtaskInfo};
use crate::output::{OutputRouter, Route};
use crate::partition::Partitioner;
use crate::plan::PhysicalPlan;
use crate::state::JobState;
use crate::task::{OperatorTask, SourceTask};

/// How a job ended well.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// `true` if [`JobHandle::stop`] ended it; `false` if its input ended.
    pub stopped: bool,
    pub duration: Duration,
    pub metrics: MetricsSnapshot,
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
pub fn start(graph: JobGraph, config: JobConfig) -> Result<JobHandle, JobError> {
    graph.validate(config.max_parallelism)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(RuntimeError::InvalidGraph(
            "a job must be started inside a tokio runtime".into(),
        )
        .into());
    }
    let plan = PhysicalPlan::new(&graph);
    tracing::debug!(job = %graph.name, "physical plan:\n{plan}");
    let metrics = JobMetrics::default();
    let stop = CancellationToken::new();
    let cancel = CancellationToken::new();
    let job_state = Arc::new(JobState::new(
        config.state_dir.clone(),
        config.state_memory_limit,
    ));
    let restore = restore_plan(&config)?;
    let mut checkpoints = None;
    let mut coordinator = None;
    let mut savepoints = None;
    if let Some(cp) = &config.checkpoint {
        let storage = Arc::new(CheckpointStorage::new(&cp.dir)?);
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let restored = restore.as_ref().map_or(0, |p| p.id());
        let (completed_tx, completed) = watch::channel(restored);
        let (savepoint_tx, savepoint_rx) = mpsc::channel(4);
        savepoints = Some(savepoint_tx);
        checkpoints = Some(CheckpointHandle {
            reports: reports_tx,
            storage: storage.clone(),
            completed,
        });
        coordinator = Some(Coordinator {
            config: cp.clone(),
            next_id: storage.last_id().max(restored) + 1,
            storage,
            triggers: Vec::new(),
            reports,
            operators: graph
                .nodes()
                .iter()
                .map(|n| (n.name.clone(), n.parallelism))
                .collect(),
            max_parallelism: config.max_parallelism,
            completed: completed_tx,
            savepoints: savepoint_rx,
        });
    }
    let run_id = run_id();
    let context = TaskContext {
        checkpoints,
        restore: restore.map(Arc::new),
        run_id,
    };
    let (tasks, triggers) = build_tasks(
        &graph, &plan, &config, &metrics, &stop, &job_state, &context,
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
            .map_err(|e| RuntimeError::Checkpoint(format!("cannot start the coordinator: {e}")))?;
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
    let name = graph.name.clone();
    let supervisor = tokio::spawn({
        let run = supervise(
            set,
            who,
            graph,
            metrics.clone(),
            stop.clone(),
            cancel.clone(),
        );
        async move {
            let result = run.await;
            coordinator_stop.cancel();
            result
        }
    });
    Ok(JobHandle {
        name,
        stop,
        cancel,
        metrics,
        supervisor,
        savepoints,
    })
}

enum TaskKind {
    Source(SourceTask),
    Operator(OperatorTask),
}

struct Task {
    node: usize,
    subtask: usize,
    kind: TaskKind,
}

/// What every task of one run of the job shares about checkpoints.
struct TaskContext {
    checkpoints: Option<CheckpointHandle>,
    restore: Option<Arc<RestorePlan>>,
    run_id: u64,
}

/// The checkpoint to start from: the one named, or the newest complete one
/// in the checkpoint directory (older ones are tried when it is damaged).
fn restore_plan(config: &JobConfig) -> Result<Option<RestorePlan>, JobError> {
    let plan = if let Some(dir) = &config.restore_from {
        Some(RestorePlan::load(dir)?)
    } else if let Some(cp) = &config.checkpoint {
        let storage = CheckpointStorage::new(&cp.dir)?;
        storage.latest().map(|(dir, metadata)| RestorePlan {
            storage: CheckpointStorage::of_checkpoint(&dir).expect("a checkpoint has a parent"),
            metadata,
        })
    } else {
        None
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

type Triggers = Vec<mpsc::Sender<Barrier>>;

fn build_tasks(
    graph: &JobGraph,
    plan: &PhysicalPlan,
    config: &JobConfig,
    metrics: &JobMetrics,
    stop: &CancellationToken,
    job_state: &Arc<JobState>,
    shared: &TaskContext,
) -> Result<(Vec<Task>, Triggers), JobError> {
    let mut triggers = Vec::new();
    // Channels for every edge between chains: routes on the sending side,
    // input channels on the receiving side, keyed by (chain, subtask).
    let mut routes: HashMap<(usize, usize), Vec<Route>> = HashMap::new();
    let mut inputs: HashMap<(usize, usize), Vec<InputChannel>> = HashMap::new();
    for edge in graph.edges() {
        let (from_chain, to_chain) = (plan.chain_of[edge.from], plan.chain_of[edge.to]);
        if from_chain == to_chain {
            continue;
        }
        let (p_from, p_to) = (
            graph.node(edge.from).parallelism,
            graph.node(edge.to).parallelism,
        );
        let mut receivers: Vec<Vec<crate::channel::Receiver>> =
            (0..p_to).map(|_| Vec::new()).collect();
        for i in 0..p_from {
            let targets: Vec<usize> = if edge.partitioning == Partitioning::Forward {
                vec![i]
            } else {
                (0..p_to).collect()
            };
            let mut senders = Vec::with_capacity(targets.len());
            for j in targets {
                let (tx, rx) = channel(config.channel_capacity);
                senders.push(tx);
                receivers[j].push(rx);
            }
            let partitioner =
                Partitioner::new(&edge.partitioning, senders.len(), config.max_parallelism, i);
            routes.entry((from_chain, i)).or_default().push(Route {
                from: edge.from,
                side_output: edge.side_output.clone(),
                partitioner,
                senders,
            });
        }
        for (j, rxs) in receivers.into_iter().enumerate() {
            let gate = inputs.entry((to_chain, j)).or_default();
            gate.extend(rxs.into_iter().map(|receiver| InputChannel {
                receiver,
                input: edge.to_input,
            }));
        }
    }

    let mut tasks = Vec::with_capacity(plan.task_count());
    for (c, chain_plan) in plan.chains.iter().enumerate() {
        for subtask in 0..chain_plan.parallelism {
            let head = graph.node(chain_plan.nodes[0]);
            let failed = |node: usize, e| JobError::OperatorFailed {
                operator: graph.node(node).name.clone(),
                subtask,
                parallelism: chain_plan.parallelism,
                source: e,
            };
            let info = |node: usize| {
                let n = graph.node(node);
                SubtaskInfo::new(&n.name, subtask, n.parallelism, config.max_parallelism)
            };
            let context = |node: usize| OperatorContext {
                subtask: info(node),
                current_input: 0,
                current_watermark: None,
                metrics: metrics.operator(&graph.node(node).name),
                job_state: job_state.clone(),
                store: None,
                checkpointing: shared.checkpoints.is_some(),
                run_id: shared.run_id,
                restore: shared.restore.clone(),
            };
            let operator_nodes = if head.is_source() {
                &chain_plan.nodes[1..]
            } else {
                &chain_plan.nodes[..]
            };
            let mut ops = Vec::with_capacity(operator_nodes.len());
            for &node in operator_nodes {
                let NodeKind::Operator { factory } = &graph.node(node).kind else {
                    return Err(RuntimeError::Internal("a source inside a chain".into()).into());
                };
                let operator = factory(&info(node)).map_err(|e| failed(node, e))?;
                ops.push(ChainedOperator {
                    node,
                    operator,
                    ctx: context(node),
                });
            }
            let unrouted = metrics.operator(&head.name).counter("unrouted_side_rows");
            let router =
                OutputRouter::new(routes.remove(&(c, subtask)).unwrap_or_default(), unrouted);
            let head_rows_out = metrics.operator(&head.name).rows_out.clone();
            let chain = Chain::new(
                head.id,
                head_rows_out,
                ops,
                router,
                shared.checkpoints.clone(),
            );
            let kind = match &head.kind {
                NodeKind::Source {
                    factory,
                    event_time,
                } => TaskKind::Source(SourceTask {
                    node: head.id,
                    source: factory(&info(head.id)).map_err(|e| failed(head.id, e))?,
                    ctx: context(head.id),
                    event_time: event_time.clone(),
                    idle_timeout: config.idle_timeout,
                    chain,
                    stop: stop.clone(),
                    barriers: shared.checkpoints.as_ref().map(|_| {
                        let (tx, rx) = mpsc::channel(4);
                        triggers.push(tx);
                        rx
                    }),
                }),
                NodeKind::Operator { .. } => TaskKind::Operator(OperatorTask {
                    gate: InputGate::new(inputs.remove(&(c, subtask)).unwrap_or_default()),
                    chain,
                }),
            };
            tasks.push(Task {
                node: head.id,
                subtask,
                kind,
            });
        }
    }
    Ok((tasks, triggers))
}

async fn supervise(
    mut set: JoinSet<Result<(), NodeError>>,
    who: HashMap<tokio::task::Id, (usize, usize)>,
    graph: JobGraph,
    metrics: JobMetrics,
    stop: CancellationToken,
    cancel: CancellationToken,
) -> Result<JobResult, JobError> {
    let started = Instant::now();
    let mut failures: Vec<(JobError, bool)> = Vec::new();
    loop {
        let joined = tokio::select! {
            _ = cancel.cancelled(), if failures.is_empty() => {
                set.abort_all();
                while set.join_next().await.is_some() {}
                return Err(JobError::Cancelled);
            }
            joined = set.join_next_with_id() => joined,
        };
        let Some(joined) = joined else { break };
        let failure = match joined {
            Ok((_, Ok(()))) => continue,
            Ok((id, Err(e))) => {
                let subtask = who.get(&id).map_or(0, |w| w.1);
                let secondary = e.is_secondary();
                let node = graph.node(e.node);
                (
                    JobError::OperatorFailed {
                        operator: node.name.clone(),
                        subtask,
                        parallelism: node.parallelism,
                        source: e.error,
                    },
                    secondary,
                )
            }
            Err(e) if e.is_cancelled() => continue, // aborted by us after a failure
            Err(e) => {
                let (node, subtask) = who.get(&e.id()).copied().unwrap_or((0, 0));
                let node = graph.node(node);
                let failure = JobError::OperatorPanicked {
                    operator: node.name.clone(),
                    subtask,
                    parallelism: node.parallelism,
                    message: panic_message(e),
                };
                (failure, false)
            }
        };
        if failures.is_empty() {
            set.abort_all();
        }
        failures.push(failure);
    }
    if !failures.is_empty() {
        let root = failures
            .iter()
            .position(|(_, secondary)| !secondary)
            .unwrap_or(0);
        let (error, _) = failures.swap_remove(root);
        tracing::error!(job = %graph.name, "{error}");
        return Err(error);
    }
    Ok(JobResult {
        stopped: stop.is_cancelled(),
        duration: started.elapsed(),
        metrics: metrics.snapshot(),
    })
}

fn panic_message(e: JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".into()),
        Err(e) => e.to_string(),
    }
}
