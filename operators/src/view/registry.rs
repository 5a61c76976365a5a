//! Where a job's materialized views are published for readers: per view and
//! subtask, the frozen copies of its rows as of the last completed checkpoints.
//! A reader asks for the newest checkpoint that every subtask of every view it
//! reads has published, so all its views are as of the same checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use headwater_runtime::key_groups::KeyGroupRange;
use headwater_runtime::state::StoreSnapshot;

/// How many published checkpoints each subtask keeps for readers.
const KEPT: usize = 3;

/// A view as readers see it: its columns and key, and its published copies.
#[derive(Debug)]
pub struct ViewInfo {
    pub name: String,
    /// The view's columns.
    pub schema: SchemaRef,
    /// The key columns (indices into `schema`).
    pub key: Vec<usize>,
    pub max_parallelism: u32,
    subtasks: Vec<Subtask>,
}

#[derive(Debug, Default)]
struct Subtask {
    key_groups: Option<KeyGroupRange>,
    published: BTreeMap<u64, Arc<StoreSnapshot>>,
}

/// One subtask's rows of a view as of one checkpoint.
#[derive(Debug, Clone)]
pub struct SnapshotPart {
    pub key_groups: KeyGroupRange,
    pub snapshot: Arc<StoreSnapshot>,
}

/// The views of a job (or of a server's jobs), shared by their sinks and readers.
#[derive(Debug, Clone, Default)]
pub struct ViewRegistry {
    views: Arc<Mutex<HashMap<String, ViewInfo>>>,
}

impl ViewRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ViewInfo>> {
        self.views.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declares a view (when its job is planned), with no rows yet.
    pub fn declare(
        &self,
        name: &str,
        schema: SchemaRef,
        key: Vec<usize>,
        parallelism: usize,
        max_parallelism: u32,
    ) {
        self.lock().insert(
            name.to_string(),
            ViewInfo {
                name: name.to_string(),
                schema,
                key,
                max_parallelism,
                subtasks: (0..parallelism).map(|_| Subtask::default()).collect(),
            },
        );
    }

    /// The names of the views, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort();
        names
    }

    /// A view's columns and key.
    pub fn describe(&self, name: &str) -> Option<(SchemaRef, Vec<usize>, u32)> {
        self.lock()
            .get(name)
            .map(|v| (v.schema.clone(), v.key.clone(), v.max_parallelism))
    }

    /// A subtask's copy of its rows as of `checkpoint`, now complete.
    pub fn publish(
        &self,
        name: &str,
        subtask: usize,
        key_groups: KeyGroupRange,
        checkpoint: u64,
        snapshot: StoreSnapshot,
    ) {
        let mut views = self.lock();
        let Some(view) = views.get_mut(name) else {
            return;
        };
        if subtask >= view.subtasks.len() {
            view.subtasks.resize_with(subtask + 1, Subtask::default);
        }
        let part = &mut view.subtasks[subtask];
        part.key_groups = Some(key_groups);
        part.published.insert(checkpoint, Arc::new(snapshot));
        while part.published.len() > KEPT {
            part.published.pop_first();
        }
    }

    /// The newest checkpoint that every subtask of every view in `names` has
    /// published; `None` before there is one (or for an unknown view).
    pub fn read_version(&self, names: &[String]) -> Option<u64> {
        let views = self.lock();
        let mut common: Option<std::collections::BTreeSet<u64>> = None;
        for name in names {
            let view = views.get(name)?;
            for subtask in &view.subtasks {
                let ids: std::collections::BTreeSet<u64> =
                    subtask.published.keys().copied().collect();
                common = Some(match common {
                    None => ids,
                    Some(c) => c.intersection(&ids).copied().collect(),
                });
            }
        }
        common.and_then(|c| c.last().copied())
    }

    /// The parts of view `name` as of `checkpoint`.
    pub fn parts(&self, name: &str, checkpoint: u64) -> Vec<SnapshotPart> {
        let views = self.lock();
        let Some(view) = views.get(name) else {
            return Vec::new();
        };
        view.subtasks
            .iter()
            .filter_map(|s| {
                Some(SnapshotPart {
                    key_groups: s.key_groups?,
                    snapshot: s.published.get(&checkpoint)?.clone(),
                })
            })
            .collect()
    }
}
