//! A frozen copy of a store, to read while the store goes on changing: the
//! files of a RocksDB checkpoint (hard links, so cheap), opened read-only.
//! Materialized views publish one per completed checkpoint, and queries read
//! those, never the live store.

use std::path::{Path, PathBuf};

use rocksdb::{DB, Direction, IteratorMode, Options};

use super::error::StateError;
use super::sorted::SortedState;
use super::store::KeyedStateStore;
use crate::key_groups::KeyGroup;

/// A read-only copy of a store as of one moment. Its directory is removed
/// when it is dropped.
pub struct StoreSnapshot {
    db: DB,
    dir: PathBuf,
    /// The job's temporary state directory, which holds `dir`: kept until
    /// the last reader lets go, even after the job has ended.
    _directory: Option<std::sync::Arc<super::backend::TemporaryDir>>,
}

impl std::fmt::Debug for StoreSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSnapshot")
            .field("dir", &self.dir)
            .finish()
    }
}

impl StoreSnapshot {
    /// Copies `store` as it is now into `dir` (which must not exist) and opens the copy.
    pub fn take(store: &KeyedStateStore, dir: &Path) -> Result<Self, StateError> {
        let _ = std::fs::remove_dir_all(dir);
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StateError::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        store.snapshot_to(dir)?;
        let mut options = Options::default();
        options.set_max_open_files(64);
        let db =
            DB::open_for_read_only(&options, dir, false).map_err(|source| StateError::RocksDb {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(StoreSnapshot {
            db,
            dir: dir.to_path_buf(),
            _directory: store.directory(),
        })
    }

    fn failed(&self, source: rocksdb::Error) -> StateError {
        StateError::RocksDb {
            path: self.dir.clone(),
            source,
        }
    }

    /// The value of `sort_key` in a sorted state.
    pub fn get(
        &self,
        state: &SortedState,
        key_group: KeyGroup,
        sort_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        let mut key = Vec::new();
        state.stored(key_group, sort_key, &mut key);
        self.db.get(&key).map_err(|e| self.failed(e))
    }

    /// The first `max` entries of a sorted state in `key_group` whose sort
    /// key is in `from..to` (`to` open when `None`), in order, as (sort key,
    /// value). To read on after the last one, start from its sort key with a
    /// 0 byte appended: the smallest key above it.
    pub fn range(
        &self,
        state: &SortedState,
        key_group: KeyGroup,
        from: &[u8],
        to: Option<&[u8]>,
        max: usize,
    ) -> Result<Vec<(Box<[u8]>, Box<[u8]>)>, StateError> {
        let mut prefix = Vec::new();
        state.prefix(key_group, &mut prefix);
        let mut start = Vec::new();
        state.stored(key_group, from, &mut start);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
            .take(max)
        {
            let (key, value) = item.map_err(|e| self.failed(e))?;
            if !key.starts_with(&prefix) {
                break;
            }
            let sort_key = &key[prefix.len()..];
            if to.is_some_and(|to| sort_key >= to) {
                break;
            }
            out.push((sort_key.into(), value));
        }
        Ok(out)
    }
}

impl Drop for StoreSnapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
