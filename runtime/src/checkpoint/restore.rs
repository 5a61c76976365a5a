//! What a job restores from: a complete checkpoint or savepoint, and the
//! share of it each subtask takes (its own, or, after a change of
//! parallelism, the parts that overlap its key groups).

use std::path::Path;

use super::metadata::{CheckpointMetadata, StoreFiles};
use super::storage::CheckpointStorage;
use crate::error::{BoxError, RuntimeError};
use crate::key_groups::KeyGroupRange;
use crate::key_hash::KEY_HASH_VERSION;
use crate::time::EventTime;

/// What one subtask of an operator (or source) gets back from a checkpoint.
///
/// At the parallelism it was checkpointed at, a subtask gets its own old
/// state. After a change of parallelism ([`Restored::rescaled`]) every new
/// subtask gets every old subtask's state, with the key groups each owned, and
/// takes its share: the key groups it now owns, or every `parallelism`-th
/// position of a source.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The checkpoint restored.
    pub checkpoint: u64,
    /// The parallelism the operator had at the checkpoint.
    pub old_parallelism: usize,
    /// Whether the parallelism changed since.
    pub rescaled: bool,
    pub states: Vec<SubtaskState>,
}

/// One old subtask's part of a checkpoint.
#[derive(Debug, Clone)]
pub struct SubtaskState {
    pub index: usize,
    /// The key groups it owned.
    pub key_groups: KeyGroupRange,
    /// The event time it had reached (its watermark) at the barrier.
    pub watermark: Option<EventTime>,
    /// What its `snapshot_state` returned.
    pub bytes: Option<Vec<u8>>,
}

impl Restored {
    /// What a subtask of a job at `parallelism` restores from `states`, the
    /// states of old subtasks `0..states.len()` (all of them, a source or
    /// operator driven by hand: tests, tools). With the same parallelism, pass
    /// the subtask's own state alone.
    pub fn from_states(max_parallelism: u32, parallelism: usize, states: Vec<Vec<u8>>) -> Self {
        let old_parallelism = states.len();
        Restored {
            checkpoint: 0,
            old_parallelism,
            rescaled: old_parallelism != parallelism,
            states: states
                .into_iter()
                .enumerate()
                .map(|(index, bytes)| SubtaskState {
                    index,
                    key_groups: KeyGroupRange::for_subtask(
                        max_parallelism,
                        old_parallelism as u32,
                        index as u32,
                    ),
                    watermark: None,
                    bytes: Some(bytes),
                })
                .collect(),
        }
    }

    /// The stored bytes of every state given, in old subtask order.
    pub fn blobs(&self) -> impl Iterator<Item = &[u8]> {
        self.states.iter().filter_map(|s| s.bytes.as_deref())
    }

    /// The subtask's own stored state, for a source or operator that restores
    /// only at the parallelism it was checkpointed at (`what` names it in the
    /// error after a change); `None` if nothing was stored for it.
    pub fn own_state(&self, what: &str) -> Result<Option<&[u8]>, BoxError> {
        let states: Vec<&[u8]> = self.blobs().collect();
        match (&states[..], self.rescaled) {
            ([], false) => Ok(None),
            ([state], false) => Ok(Some(state)),
            _ => Err(format!(
                "{what} restores only at the parallelism it was checkpointed at: {}; \
                 start the job with --parallelism {}",
                self.old_parallelism, self.old_parallelism
            )
            .into()),
        }
    }

    /// Whether nothing was stored for this operator.
    pub fn is_empty(&self) -> bool {
        self.states.iter().all(|s| s.bytes.is_none())
    }

    /// The watermark to resume at: the subtask's own; after a change of
    /// parallelism the least of the old subtasks' (a new subtask may read
    /// what any of them read, so it may not be ahead of any). `None` if some
    /// old subtask had none.
    pub fn watermark(&self) -> Option<EventTime> {
        let mut min: Option<EventTime> = None;
        for s in &self.states {
            let w = s.watermark?;
            min = Some(min.map_or(w, |m| m.min(w)));
        }
        min
    }
}

/// A checkpoint to restore, checked complete.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub storage: CheckpointStorage,
    pub metadata: CheckpointMetadata,
}

impl RestorePlan {
    /// The checkpoint or savepoint in `dir`; an error says what is wrong with it.
    pub fn load(dir: &Path) -> Result<Self, RuntimeError> {
        let storage = CheckpointStorage::of_checkpoint(dir)?;
        let metadata = storage.load(dir)?;
        Ok(RestorePlan { storage, metadata })
    }

    /// Checks that the job can read this checkpoint's key groups.
    pub fn check(&self, max_parallelism: u32) -> Result<(), RuntimeError> {
        if self.metadata.key_hash_version != KEY_HASH_VERSION {
            return Err(RuntimeError::Checkpoint(format!(
                "checkpoint {} was written with key hash version {}; this version has {KEY_HASH_VERSION}",
                self.metadata.id, self.metadata.key_hash_version
            )));
        }
        if self.metadata.max_parallelism != max_parallelism {
            return Err(RuntimeError::Checkpoint(format!(
                "checkpoint {} has {} key groups (max parallelism); the job has {max_parallelism}",
                self.metadata.id, self.metadata.max_parallelism
            )));
        }
        Ok(())
    }

    /// Matches the checkpoint's operators to the job's by name (their stable
    /// ids). State of an operator the job no longer has is refused, naming it,
    /// unless `allow_dropped`; an operator with no state here starts empty.
    pub fn match_operators(
        &self,
        graph: &crate::JobGraph,
        allow_dropped: bool,
    ) -> Result<(), RuntimeError> {
        let has_state = |o: &super::metadata::OperatorMetadata| {
            o.subtasks
                .iter()
                .any(|s| s.operator_state.is_some() || s.keyed_state.is_some())
        };
        let dropped: Vec<&str> = self
            .metadata
            .operators
            .iter()
            .filter(|(name, o)| !graph.has_node(name) && has_state(o))
            .map(|(name, _)| name.as_str())
            .collect();
        if !dropped.is_empty() {
            let list = dropped
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            if !allow_dropped {
                return Err(RuntimeError::Checkpoint(format!(
                    "checkpoint {} holds state of {list}, which this job no longer has; \
                     an operator keeps its state under the same id (a SQL operator's id comes \
                     from its statement's target table or view and its place in the statement). \
                     Restore with --allow-non-restored-state to drop that state",
                    self.metadata.id
                )));
            }
            tracing::warn!(
                checkpoint = self.metadata.id,
                "dropping the state of {list}: the job no longer has them (--allow-non-restored-state)"
            );
        }
        for node in graph.nodes() {
            if !self.metadata.operators.contains_key(&node.name) {
                tracing::warn!(
                    checkpoint = self.metadata.id,
                    "`{}` has no state in checkpoint {}: it starts from its beginning",
                    node.name,
                    self.metadata.id
                );
            }
        }
        Ok(())
    }

    /// What `operator`'s subtask `subtask` of `parallelism` restores: its own
    /// old state at the same parallelism, every old subtask's after a change.
    pub fn restored(
        &self,
        operator: &str,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Restored, RuntimeError> {
        let Some(op) = self.metadata.operators.get(operator) else {
            return Ok(Restored {
                checkpoint: self.metadata.id,
                old_parallelism: parallelism,
                rescaled: false,
                states: Vec::new(),
            });
        };
        let rescaled = op.parallelism != parallelism;
        let states = op
            .subtasks
            .iter()
            .filter(|s| rescaled || s.index == subtask)
            .map(|s| {
                Ok(SubtaskState {
                    index: s.index,
                    key_groups: KeyGroupRange {
                        start: s.key_groups.0,
                        end: s.key_groups.1,
                    },
                    watermark: s.watermark.map(EventTime),
                    bytes: match &s.operator_state {
                        Some(f) => Some(self.storage.read(f)?),
                        None => None,
                    },
                })
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        Ok(Restored {
            checkpoint: self.metadata.id,
            old_parallelism: op.parallelism,
            rescaled,
            states,
        })
    }

    /// The old parts of the operator's keyed state that hold key groups of `range`.
    pub fn store_parts(
        &self,
        operator: &str,
        range: KeyGroupRange,
    ) -> Vec<(KeyGroupRange, &StoreFiles)> {
        let Some(op) = self.metadata.operators.get(operator) else {
            return Vec::new();
        };
        op.subtasks
            .iter()
            .filter_map(|s| {
                let old = KeyGroupRange {
                    start: s.key_groups.0,
                    end: s.key_groups.1,
                };
                let overlaps = old.start < range.end && range.start < old.end;
                Some((old, s.keyed_state.as_ref().filter(|_| overlaps)?))
            })
            .collect()
    }

    pub fn id(&self) -> u64 {
        self.metadata.id
    }
}
