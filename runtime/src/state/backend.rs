//! The state backend: one memory budget for every RocksDB instance of a process.

use std::path::PathBuf;

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options, WriteBufferManager};

use super::codec::{is_expired, now_ms};
use super::error::StateError;
use super::store::KeyedStateStore;
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
        })
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
        let path = self
            .config
            .dir
            .join(sanitize(operator))
            .join(format!("subtask-{subtask}"));
        KeyedStateStore::open(path, &self.options(), key_groups)
    }

    fn options(&self) -> Options {
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
        options.set_compaction_filter("headwater-ttl", |_level, _key, value| {
            if is_expired(value, now_ms()) {
                rocksdb::CompactionDecision::Remove
            } else {
                rocksdb::CompactionDecision::Keep
            }
        });
        options
    }
}

/// A job's state backend, opened when the first operator asks for state, and
/// its temporary directory removed when the job ends.
#[derive(Debug)]
pub struct JobState {
    config: StateConfig,
    temporary: bool,
    backend: std::sync::OnceLock<StateBackend>,
}

impl JobState {
    /// `dir`: where state lives; `None` for a temporary directory.
    pub fn new(dir: Option<PathBuf>, memory_limit: usize) -> Self {
        let temporary = dir.is_none();
        let dir = dir.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            std::env::temp_dir().join(format!("headwater-state-{}-{nanos}", std::process::id()))
        });
        JobState {
            config: StateConfig { dir, memory_limit },
            temporary,
            backend: std::sync::OnceLock::new(),
        }
    }

    /// Opens the store of one subtask.
    pub fn open_store(
        &self,
        operator: &str,
        subtask: usize,
        key_groups: KeyGroupRange,
    ) -> Result<KeyedStateStore, StateError> {
        let backend = match self.backend.get() {
            Some(b) => b,
            None => {
                let b = StateBackend::new(self.config.clone())?;
                self.backend.get_or_init(|| b)
            }
        };
        backend.open_store(operator, subtask, key_groups)
    }
}

impl Drop for JobState {
    fn drop(&mut self) {
        if self.temporary && self.backend.get().is_some() {
            let _ = std::fs::remove_dir_all(&self.config.dir);
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
