//! Where a job's materialized views are published for readers: per view and
//! subtask, the frozen copies of its rows as of the last completed checkpoints.
//! A reader asks for the newest checkpoint that every subtask of every view of
//! a job has published, so all the views of a job are as of the same
//! checkpoint. (Views of different jobs have unrelated checkpoints: each job's
//! views are read as of that job's newest common one.)

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
    /// The job that keeps the view.
    pub job: String,
    /// The view's columns.
    pub schema: SchemaRef,
    /// The key columns (indices into `schema`).
    pub key: Vec<usize>,
    pub max_parallelism: u32,
    subtasks: Vec<Subtask>,
    /// Its job has ended: it will publish nothing more.
    ended: bool,
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
        job: &str,
        schema: SchemaRef,
        key: Vec<usize>,
        parallelism: usize,
        max_parallelism: u32,
    ) {
        self.lock().insert(
            name.to_string(),
            ViewInfo {
                name: name.to_string(),
                job: job.to_string(),
                schema,
                key,
                max_parallelism,
                subtasks: (0..parallelism).map(|_| Subtask::default()).collect(),
                ended: false,
            },
        );
    }

    /// The names of the views, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort();
        names
    }

    /// Forgets every view of `job` (dropped, or never started); readers that
    /// hold its copies keep them until they are done.
    pub fn remove_job(&self, job: &str) {
        self.lock().retain(|_, v| v.job != job);
    }

    /// Notes that `job` has ended: readers stop waiting for its views.
    pub fn job_ended(&self, job: &str) {
        for view in self.lock().values_mut().filter(|v| v.job == job) {
            view.ended = true;
        }
    }

    /// Whether a view of a running job has no published checkpoint yet (its
    /// job is starting, or restoring a checkpoint it will publish at once).
    pub fn pending(&self) -> bool {
        let versions = self.read_versions();
        self.lock()
            .values()
            .any(|v| !v.ended && !versions.contains_key(&v.name))
    }

    /// Waits, at most `timeout`, until no view is [`pending`](Self::pending):
    /// a reader never sees a view empty only because its job has just
    /// started over a checkpoint.
    pub async fn wait_published(&self, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.pending() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The views, each with the job that keeps it, sorted by name.
    pub fn list(&self) -> Vec<(String, String)> {
        let mut views: Vec<(String, String)> = self
            .lock()
            .values()
            .map(|v| (v.name.clone(), v.job.clone()))
            .collect();
        views.sort();
        views
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
        job: &str,
        subtask: usize,
        key_groups: KeyGroupRange,
        checkpoint: u64,
        snapshot: StoreSnapshot,
    ) {
        let mut views = self.lock();
        let Some(view) = views.get_mut(name).filter(|v| v.job == job) else {
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

    /// Per view, the checkpoint to read it at: the newest one that every
    /// subtask of every view of its job has published (absent before there is
    /// one).
    pub fn read_versions(&self) -> HashMap<String, u64> {
        let views = self.lock();
        let mut common: HashMap<&str, Option<std::collections::BTreeSet<u64>>> = HashMap::new();
        for view in views.values() {
            let job = common.entry(view.job.as_str()).or_default();
            for subtask in &view.subtasks {
                let ids: std::collections::BTreeSet<u64> =
                    subtask.published.keys().copied().collect();
                *job = Some(match job.take() {
                    None => ids,
                    Some(c) => c.intersection(&ids).copied().collect(),
                });
            }
        }
        views
            .values()
            .filter_map(|v| {
                let newest = common.get(v.job.as_str())?.as_ref()?.last()?;
                Some((v.name.clone(), *newest))
            })
            .collect()
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
