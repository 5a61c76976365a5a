//! What a job restores from: a complete checkpoint or savepoint, and the
//! share of it each subtask takes (its own, or, after a change of
//! parallelism, the parts that overlap its key groups).

use std::path::Path;

use super::metadata::{CheckpointMetadata, StoreFiles};
use super::storage::CheckpointStorage;
use crate::error::RuntimeError;
use crate::key_groups::KeyGroupRange;
use crate::key_hash::KEY_HASH_VERSION;

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

    /// The operator's own state for `subtask`: its old state at the same
    /// parallelism, or the states of every old subtask after a change.
    pub fn operator_states(
        &self,
        operator: &str,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Vec<Vec<u8>>, RuntimeError> {
        let Some(op) = self.metadata.operators.get(operator) else {
            return Ok(Vec::new());
        };
        op.subtasks
            .iter()
            .filter(|s| op.parallelism != parallelism || s.index == subtask)
            .filter_map(|s| s.operator_state.as_ref())
            .map(|f| self.storage.read(f))
            .collect()
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
