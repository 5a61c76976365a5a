//! Watching the tasks of one run of a job: the first real failure aborts the rest.

use std::collections::HashMap;

use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::chain::NodeError;
use crate::error::JobError;
use crate::graph::JobGraph;

/// The running tasks of one attempt, and which subtask each one is.
pub(super) struct RunningTasks {
    pub(super) set: JoinSet<Result<(), NodeError>>,
    pub(super) who: HashMap<tokio::task::Id, (usize, usize)>,
}

/// Waits until every task has ended. On the first failure the others are
/// aborted, and the failure that is not an echo of another is returned.
pub(super) async fn supervise(
    tasks: RunningTasks,
    graph: &JobGraph,
    cancel: &CancellationToken,
) -> Result<(), JobError> {
    let RunningTasks { mut set, who } = tasks;
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
        return Err(error);
    }
    Ok(())
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
