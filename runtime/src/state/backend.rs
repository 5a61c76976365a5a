//! The state backend: one memory budget for every RocksDB instance of a process.

use std::path::PathBuf;
use std::sync::Arc;

use crate::checkpoint::RestorePlan;
use crate::checkpoint::storage::sanitize;

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options, WriteBufferManager};

use super::error::StateError;
use super::store::KeyedStateStore;
use super::ttl::TtlStates;
use crate::key_groups::KeyGroupRange;

/// Where state lives and how much memory it may use.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// The directory that holds one RocksDB instance per stateful subtask.
    pub dir: PathBuf,
    /// Block cache and memtables of all instances together, in bytes.
    pub memory_limit: usize,
}

impl StateConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateConfig {
            dir: dir.into(),
            memory_limit: 256 << 20,
        }
    }

    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }
}

/// Opens the RocksDB instances of a job's stateful subtasks. They share one
/// LRU block cache, and their memtables are charged to that same cache, so
/// together they stay within [`StateConfig::memory_limit`].
#[derive(Clone)]
pub struct StateBackend {
    config: StateConfig,
    cache: Cache,
    write_buffers: WriteBufferManager,
    /// Set when the directory is temporary: removed once the backend and every
    /// store and snapshot opened from it are gone.
    temporary: Option<Arc<TemporaryDir>>,
}

/// A directory removed when dropped. Stores and view snapshots hold it, so a
/// view of a finished job stays readable for as long as it is served.
#[derive(Debug)]
pub struct TemporaryDir(PathBuf);

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::fmt::Debug for StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateBackend")
            .field("config", &self.config)
            .finish()
    }
}

impl StateBackend {
    pub fn new(config: StateConfig) -> Result<Self, StateError> {
        if config.memory_limit < 8 << 20 {
            return Err(StateError::Config(format!(
                "a memory limit of {} bytes is too small for RocksDB; give at least 8 MiB",
                config.memory_limit
            )));
        }
        std::fs::create_dir_all(&config.dir).map_err(|e| {
            StateError::Config(format!("cannot create {}: {e}", config.dir.display()))
        })?;
        let cache = Cache::new_lru_cache(config.memory_limit);
        // Memtables count against the cache: one limit for both.
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            config.memory_limit / 2,
            true,
            cache.clone(),
        );
        Ok(StateBackend {
            config,
            cache,
            write_buffers,
            temporary: None,
        })
    }

    /// Removes the directory once this backend, and every store and snapshot
    /// opened from it, are dropped.
    pub fn removed_when_dropped(self) -> Self {
        let directory = Arc::new(TemporaryDir(self.config.dir.clone()));
        self.kept_in(directory)
    }

    /// Keeps `directory` while this backend, or a store or snapshot opened
    /// from it, is open.
    fn kept_in(mut self, directory: Arc<TemporaryDir>) -> Self {
        self.temporary = Some(directory);
        self
    }

    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// Opens (or reopens) the store of one subtask of an operator.
    pub fn open_store(
        &self,
        operator: &str,
        subtask: usize,
        key_groups: KeyGroupRange,
    ) -> Result<KeyedStateStore, StateError> {
        self.open_at(self.store_path(operator, subtask), key_groups)
    }

    fn store_path(&self, operator: &str, subtask: usize) -> PathBuf {
        self.config
            .dir
            .join(sanitize(operator))
            .join(format!("subtask-{subtask}"))
    }

    /// Opens the store of one subtask with the state a checkpoint holds for
    /// its key groups (none if `plan` is `None`), replacing whatever the
    /// directory held. The one old part that covers the key groups is used
    /// as it is (trimmed if it covers more); several parts are merged.
    pub fn restore_store(
        &self,
        operator: &str,
        subtask: usize,
        key_groups: KeyGroupRange,
        plan: Option<&RestorePlan>,
    ) -> Result<KeyedStateStore, StateError> {
        let path = self.store_path(operator, subtask);
        let failed = |e: crate::error::RuntimeError| StateError::Config(e.to_string());
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| StateError::Config(format!("cannot clear {}: {e}", path.display())))?;
        }
        let parts = plan
            .map(|p| p.store_parts(operator, key_groups))
            .unwrap_or_default();
        if let ([(old, files)], Some(plan)) = (&parts[..], plan)
            && old.start <= key_groups.start
            && key_groups.end <= old.end
        {
            plan.storage.materialize(files, &path).map_err(failed)?;
            let mut store = self.open_at(path, *old)?;
            if *old != key_groups {
                store.retain_key_groups(key_groups)?;
            }
            return Ok(store);
        }
        let store = self.open_at(path.clone(), key_groups)?;
        for (i, (_, files)) in parts.iter().enumerate() {
            let plan = plan.expect("parts come from a plan");
            let tmp = path.with_extension(format!("restore-{i}"));
            let _ = std::fs::remove_dir_all(&tmp);
            plan.storage.materialize(files, &tmp).map_err(failed)?;
            store.import(&tmp, key_groups)?;
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Ok(store)
    }

    fn open_at(
        &self,
        path: PathBuf,
        key_groups: KeyGroupRange,
    ) -> Result<KeyedStateStore, StateError> {
        let ttl_states = Arc::new(TtlStates::default());
        Ok(
            KeyedStateStore::open(path, &self.options(&ttl_states), ttl_states, key_groups)?
                .keep_directory(self.temporary.clone()),
        )
    }

    /// The options of every store: the shared block cache (index and filter
    /// blocks included) and write-buffer budget, bloom filters, LZ4, and a
    /// compaction filter that drops expired values of the store's TTL states.
    fn options(&self, ttl_states: &Arc<TtlStates>) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_bloom_filter(10.0, false);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_block_based_table_factory(&table);
        options.set_write_buffer_manager(&self.write_buffers);
        options.set_write_buffer_size((self.config.memory_limit / 8).clamp(1 << 20, 64 << 20));
        options.set_compression_type(DBCompressionType::Lz4);
        options.set_max_open_files(256);
        let ttl_states = ttl_states.clone();
        options.set_compaction_filter("headwater-ttl", move |_level, key, value| {
            ttl_states.filter(key, value)
        });
        options
    }
}

/// A job's state backend, opened when the first operator asks for state. A
/// temporary directory is removed when the job and the last reader of its
/// views are done with it.
#[derive(Debug)]
pub struct JobState {
    config: StateConfig,
    /// The temporary directory, if it is one: one guard for every backend
    /// opened over it (two tasks may open one at once; the loser's copy is
    /// dropped, and must not remove the directory).
    temporary: Option<Arc<TemporaryDir>>,
    backend: std::sync::OnceLock<StateBackend>,
}

impl JobState {
    /// `dir`: where state lives; `None` for a temporary directory.
    pub fn new(dir: Option<PathBuf>, memory_limit: usize) -> Self {
        let temporary = dir.is_none();
        if temporary {
            remove_abandoned_temporary_dirs();
        }
        let dir = dir.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            std::env::temp_dir().join(format!("headwater-state-{}-{nanos}", std::process::id()))
        });
        JobState {
            temporary: temporary.then(|| Arc::new(TemporaryDir(dir.clone()))),
            config: StateConfig { dir, memory_limit },
            backend: std::sync::OnceLock::new(),
        }
    }

    fn backend(&self) -> Result<&StateBackend, StateError> {
        Ok(match self.backend.get() {
            Some(b) => b,
            None => {
                let mut b = StateBackend::new(self.config.clone())?;
                if let Some(directory) = &self.temporary {
                    b = b.kept_in(directory.clone());
                }
                self.backend.get_or_init(|| b)
            }
        })
    }

    /// Opens the store of one subtask.
    pub fn open_store(
        &self,
        operator: &str,
        subtask: usize,
        key_groups: KeyGroupRange,
    ) -> Result<KeyedStateStore, StateError> {
        self.backend()?.open_store(operator, subtask, key_groups)
    }

    /// Opens the store of one subtask from a checkpoint (or empty), see
    /// [`StateBackend::restore_store`].
    pub fn restore_store(
        &self,
        operator: &str,
        subtask: usize,
        key_groups: KeyGroupRange,
        plan: Option<&RestorePlan>,
    ) -> Result<KeyedStateStore, StateError> {
        self.backend()?
            .restore_store(operator, subtask, key_groups, plan)
    }
}

/// Removes the temporary state directories of processes that are gone (a
/// killed process cannot remove its own).
fn remove_abandoned_temporary_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("headwater-state-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::path::Path::new("/proc/self").exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks open their stores at once: whichever opens the backend, the
    /// temporary directory stays until the job state and its stores are gone.
    #[test]
    fn stores_opened_at_once_keep_the_temporary_directory() {
        for _ in 0..20 {
            let state = Arc::new(JobState::new(None, 64 << 20));
            let start = Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|subtask| {
                    let (state, start) = (state.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        state.open_store("op", subtask, KeyGroupRange { start: 0, end: 128 })
                    })
                })
                .collect();
            let stores: Vec<KeyedStateStore> = threads
                .into_iter()
                .map(|t| t.join().unwrap().expect("a store opens"))
                .collect();
            let dir = state.config.dir.clone();
            assert!(dir.exists());
            drop(state);
            assert!(dir.exists(), "removed while stores are open");
            drop(stores);
            assert!(!dir.exists(), "left behind");
        }
    }
}
