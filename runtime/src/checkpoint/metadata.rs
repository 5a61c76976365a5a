//! What a checkpoint's `_metadata` file says: every subtask's state, by file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version of this metadata format.
pub const METADATA_FORMAT: u32 = 1;

/// A completed checkpoint (or savepoint): written last, atomically.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub format: u32,
    pub id: u64,
    pub savepoint: bool,
    /// Wall-clock time it completed, ms since the epoch.
    pub completed_ms: i64,
    /// The key hash version the key groups were computed with.
    pub key_hash_version: u32,
    pub max_parallelism: u32,
    /// By operator name.
    pub operators: BTreeMap<String, OperatorMetadata>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorMetadata {
    pub parallelism: usize,
    pub subtasks: Vec<SubtaskMetadata>,
}

/// The state of one subtask of one operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubtaskMetadata {
    pub index: usize,
    /// The key groups it owned: `start..end`.
    pub key_groups: (u32, u32),
    /// The operator's own state (positions, buffers), a file in the checkpoint directory.
    pub operator_state: Option<StateFile>,
    /// Its keyed state, if it had any.
    pub keyed_state: Option<StoreFiles>,
    /// Its watermark at the barrier: where event time resumes after a restore.
    #[serde(default)]
    pub watermark: Option<i64>,
}

/// A file and its size, relative to the checkpoint root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    pub path: String,
    pub size: u64,
}

/// The files of one RocksDB snapshot: immutable SST files, shared between
/// checkpoints, and the rest (manifest, options), private to this one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreFiles {
    pub shared: Vec<StateFile>,
    pub private: Vec<StateFile>,
}

impl CheckpointMetadata {
    /// Every file the checkpoint needs.
    pub fn files(&self) -> impl Iterator<Item = &StateFile> {
        self.operators.values().flat_map(|o| {
            o.subtasks.iter().flat_map(|s| {
                s.operator_state.iter().chain(
                    s.keyed_state
                        .iter()
                        .flat_map(|k| k.shared.iter().chain(k.private.iter())),
                )
            })
        })
    }
}
