//! Building the tasks of one run of a job: channels for every edge between
//! chains, and one task per subtask of every chain.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chain::{Chain, ChainedOperator};
use crate::channel::{InputChannel, InputGate, channel};
use crate::checkpoint::coordinator::CheckpointHandle;
use crate::checkpoint::{Barrier, RestorePlan};
use crate::config::JobConfig;
use crate::error::{JobError, RuntimeError};
use crate::graph::{JobGraph, NodeKind, Partitioning};
use crate::metrics::JobMetrics;
use crate::operator::{OperatorContext, SubtaskInfo};
use crate::output::{OutputRouter, Route};
use crate::partition::Partitioner;
use crate::plan::PhysicalPlan;
use crate::state::JobState;
use crate::task::{OperatorTask, SourceTask};

pub(super) enum TaskKind {
    Source(SourceTask),
    Operator(OperatorTask),
}

pub(super) struct Task {
    pub(super) node: usize,
    pub(super) subtask: usize,
    pub(super) kind: TaskKind,
}

/// What every task of one run of the job shares about checkpoints.
pub(super) struct TaskContext {
    pub(super) checkpoints: Option<CheckpointHandle>,
    pub(super) restore: Option<Arc<RestorePlan>>,
    pub(super) run_id: u64,
}

pub(super) type Triggers = Vec<mpsc::Sender<Barrier>>;

pub(super) fn build_tasks(
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
                    idle_timeout,
                } => TaskKind::Source(SourceTask {
                    node: head.id,
                    source: factory(&info(head.id)).map_err(|e| failed(head.id, e))?,
                    ctx: context(head.id),
                    event_time: event_time.clone(),
                    idle_timeout: idle_timeout.unwrap_or(config.idle_timeout),
                    chain,
                    stop: stop.clone(),
                    barriers: shared.checkpoints.as_ref().map(|_| {
                        let (tx, rx) = mpsc::channel(4);
                        triggers.push(tx);
                        rx
                    }),
                    warned_no_position: false,
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
