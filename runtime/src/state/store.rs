//! One subtask's RocksDB instance, and batched writes to it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{
    ColumnFamilyDescriptor, DB, DEFAULT_COLUMN_FAMILY_NAME, Direction, IteratorMode, Options,
    ReadOptions, WriteBatch, WriteOptions,
};

use super::backend::TemporaryDir;
use super::error::StateError;
use super::layout::{key_group_start, state_id};
use super::ttl::TtlStates;
use crate::key_groups::{KeyGroup, KeyGroupRange};

/// The keyed state of one subtask: the key groups it owns, in one RocksDB instance.
pub struct KeyedStateStore {
    db: DB,
    path: PathBuf,
    key_groups: KeyGroupRange,
    states: HashMap<u32, String>,
    write_options: WriteOptions,
    sequence: AtomicU64,
    instance: String,
    ttl_states: Arc<TtlStates>,
    /// The temporary directory the store lives in, kept while it is open.
    directory: Option<Arc<TemporaryDir>>,
}

impl std::fmt::Debug for KeyedStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStateStore")
            .field("path", &self.path)
            .field("key_groups", &self.key_groups)
            .finish()
    }
}

/// Writes gathered for one batch of rows, applied at once with [`KeyedStateStore::write`].
pub struct StateWriteBatch {
    pub(crate) batch: WriteBatch,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
    /// States written with a TTL in this batch, made known to the store's
    /// compaction filter when the batch is applied.
    pub(crate) ttl_states: Vec<u32>,
}

impl StateWriteBatch {
    /// The number of puts and deletes gathered.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

impl KeyedStateStore {
    /// Opens the store at `path`. `options` apply to the database and to its
    /// one column family; its compaction filter consults `ttl_states`.
    /// Keeps `directory` (the job's temporary state directory) while this
    /// store, or a snapshot of it, is open.
    pub(crate) fn keep_directory(mut self, directory: Option<Arc<TemporaryDir>>) -> Self {
        self.directory = directory;
        self
    }

    /// The temporary directory this store keeps, for its snapshots to keep.
    pub(crate) fn directory(&self) -> Option<Arc<TemporaryDir>> {
        self.directory.clone()
    }

    pub(crate) fn open(
        path: PathBuf,
        options: &Options,
        ttl_states: Arc<TtlStates>,
        key_groups: KeyGroupRange,
    ) -> Result<Self, StateError> {
        std::fs::create_dir_all(&path)
            .map_err(|e| StateError::Config(format!("cannot create {}: {e}", path.display())))?;
        // `open_cf` would give the column family, where all data lives,
        // RocksDB's default options: a private cache, no bloom filter and no
        // compaction filter.
        let family = ColumnFamilyDescriptor::new(DEFAULT_COLUMN_FAMILY_NAME, options.clone());
        let db = DB::open_cf_descriptors(options, &path, [family]).map_err(|source| {
            StateError::RocksDb {
                path: path.clone(),
                source,
            }
        })?;
        // Writes need no write-ahead log: state is made durable by checkpoints.
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        let sequence = AtomicU64::new(super::codec::now_ms().max(0) as u64 * 1_000_000);
        // Names this instance's SST files in checkpoint storage: file numbers
        // are unique only within one instance.
        let instance = format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(
                format!(
                    "{}-{}-{:?}",
                    path.display(),
                    std::process::id(),
                    std::time::SystemTime::now()
                )
                .as_bytes()
            )
        );
        Ok(KeyedStateStore {
            instance,
            db,
            path,
            key_groups,
            states: HashMap::new(),
            write_options,
            sequence,
            ttl_states,
            directory: None,
        })
    }

    /// The key groups this store holds.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    /// Registers a state by name and returns its id. Values of a state with
    /// `ttl` expire, and compaction removes them once they have.
    pub(crate) fn register(&mut self, name: &str, ttl: bool) -> Result<u32, StateError> {
        let id = state_id(name);
        if ttl {
            self.ttl_states.insert(id);
        }
        match self.states.get(&id) {
            Some(existing) if existing != name => Err(StateError::NameCollision {
                first: existing.clone(),
                second: name.to_string(),
            }),
            _ => {
                self.states.insert(id, name.to_string());
                Ok(id)
            }
        }
    }

    pub(crate) fn check_key_group(&self, key_group: KeyGroup) -> Result<(), StateError> {
        if self.key_groups.contains(key_group) {
            Ok(())
        } else {
            Err(StateError::ForeignKeyGroup {
                key_group,
                start: self.key_groups.start,
                end: self.key_groups.end,
            })
        }
    }

    fn rocks(&self, source: rocksdb::Error) -> StateError {
        StateError::RocksDb {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn get_raw(
        &self,
        key: &[u8],
    ) -> Result<Option<rocksdb::DBPinnableSlice<'_>>, StateError> {
        self.db.get_pinned(key).map_err(|e| self.rocks(e))
    }

    /// One batched RocksDB multi-get for many keys; `decode` sees each value in place.
    pub(crate) fn multi_get_raw<T>(
        &self,
        keys: &[Vec<u8>],
        mut decode: impl FnMut(Option<&[u8]>) -> Result<T, StateError>,
    ) -> Result<Vec<T>, StateError> {
        let cf = self
            .db
            .cf_handle(DEFAULT_COLUMN_FAMILY_NAME)
            .ok_or_else(|| {
                StateError::Config(format!(
                    "{}: the default column family is not open",
                    self.path.display()
                ))
            })?;
        self.db
            .batched_multi_get_cf(cf, keys, false)
            .into_iter()
            .map(|r| decode(r.map_err(|e| self.rocks(e))?.as_deref()))
            .collect()
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>), StateError>> + 'a {
        self.scan_range(prefix.to_vec(), prefix.len(), None)
    }

    /// Like [`Self::scan_prefix`], owning its prefix.
    pub(crate) fn scan_owned_prefix(
        &self,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>), StateError>> + '_ {
        let len = prefix.len();
        self.scan_range(prefix, len, None)
    }

    /// Every (key, value) from `start` on whose key shares the first
    /// `prefix_len` bytes of `start`, and is below `end` if given, in key
    /// order. RocksDB is told where the scan ends: without it, it would
    /// walk over every tombstone after the last entry (the deleted entries
    /// of the next key) to find the first live one past it.
    pub(crate) fn scan_range(
        &self,
        start: Vec<u8>,
        prefix_len: usize,
        end: Option<Vec<u8>>,
    ) -> impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>), StateError>> + '_ {
        let prefix = start[..prefix_len.min(start.len())].to_vec();
        let mut options = ReadOptions::default();
        if let Some(end) = end.or_else(|| prefix_end(&prefix)) {
            options.set_iterate_upper_bound(end);
        }
        self.db
            .iterator_opt(IteratorMode::From(&start, Direction::Forward), options)
            .map(|item| item.map_err(|e| self.rocks(e)))
            .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
    }

    /// The entries under each of `prefixes` (in ascending order), read
    /// with one iterator: `each` is called with the prefix's index, key and
    /// value, prefix by prefix, in key order. One seek per prefix on one
    /// iterator costs much less than an iterator per prefix.
    pub(crate) fn scan_prefixes(
        &self,
        prefixes: &[Vec<u8>],
        mut each: impl FnMut(usize, &[u8], &[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let Some(last) = prefixes.last() else {
            return Ok(());
        };
        let mut options = ReadOptions::default();
        if let Some(end) = prefix_end(last) {
            options.set_iterate_upper_bound(end);
        }
        let mut iterator = self.db.raw_iterator_opt(options);
        for (index, prefix) in prefixes.iter().enumerate() {
            iterator.seek(prefix);
            while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
                if !key.starts_with(prefix) {
                    break;
                }
                each(index, key, value)?;
                iterator.next();
            }
            iterator.status().map_err(|e| self.rocks(e))?;
        }
        Ok(())
    }

    /// The first entry at or after `key`.
    pub(crate) fn seek(&self, key: &[u8]) -> Result<Option<(Box<[u8]>, Box<[u8]>)>, StateError> {
        self.db
            .iterator(IteratorMode::From(key, Direction::Forward))
            .next()
            .transpose()
            .map_err(|e| self.rocks(e))
    }

    /// A number larger than any this store gave before, for appends: it
    /// tells apart entries of one key that are otherwise equal.
    pub fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed)
    }

    pub fn new_batch(&self) -> StateWriteBatch {
        StateWriteBatch {
            batch: WriteBatch::default(),
            key: Vec::new(),
            value: Vec::new(),
            ttl_states: Vec::new(),
        }
    }

    /// Applies a batch of writes atomically.
    pub fn write(&self, batch: StateWriteBatch) -> Result<(), StateError> {
        for &id in &batch.ttl_states {
            self.ttl_states.insert(id);
        }
        self.db
            .write_opt(batch.batch, &self.write_options)
            .map_err(|e| self.rocks(e))
    }

    /// Drops the state of every key group outside `keep`, and owns `keep` from
    /// now on: how a subtask trims state restored from a wider range on rescale.
    pub fn retain_key_groups(&mut self, keep: KeyGroupRange) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        batch.delete_range(&[0u8, 0][..], &key_group_start(keep.start)[..]);
        // Key groups fit in u16; everything at or after `end` goes.
        batch.delete_range(&key_group_start(keep.end)[..], &[0xffu8, 0xff, 0xff][..]);
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(|e| self.rocks(e))?;
        self.key_groups = keep;
        Ok(())
    }

    /// A name unique to this open instance of the store.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Writes a consistent snapshot of the store to `dir`: memtables are
    /// flushed, then SST files are hard-linked (they never change) and the
    /// manifest copied. Cheap enough to do at a barrier.
    pub fn snapshot_to(&self, dir: &std::path::Path) -> Result<(), StateError> {
        self.db.flush().map_err(|e| self.rocks(e))?;
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(|e| self.rocks(e))
    }

    /// Copies every entry of `key_groups` from the RocksDB files in `dir`
    /// (another store's snapshot) into this store.
    pub(crate) fn import(
        &self,
        dir: &std::path::Path,
        key_groups: KeyGroupRange,
    ) -> Result<u64, StateError> {
        let source = DB::open_for_read_only(&Options::default(), dir, false).map_err(|source| {
            StateError::RocksDb {
                path: dir.to_path_buf(),
                source,
            }
        })?;
        let end = key_group_start(key_groups.end);
        let mut batch = WriteBatch::default();
        let mut copied = 0;
        let start = key_group_start(key_groups.start);
        for item in source.iterator(IteratorMode::From(&start, Direction::Forward)) {
            let (key, value) = item.map_err(|e| StateError::RocksDb {
                path: dir.to_path_buf(),
                source: e,
            })?;
            if key[..2] >= end[..] {
                break;
            }
            batch.put(&key, &value);
            copied += 1;
            if batch.len() >= 100_000 {
                self.db
                    .write_opt(std::mem::take(&mut batch), &self.write_options)
                    .map_err(|e| self.rocks(e))?;
            }
        }
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(|e| self.rocks(e))?;
        Ok(copied)
    }

    /// Flushes memtables to SST files (before a snapshot, or in tests).
    pub fn flush(&self) -> Result<(), StateError> {
        self.db.flush().map_err(|e| self.rocks(e))
    }

    /// Compacts every key now, as RocksDB does in the background: expired
    /// values of states with a TTL are dropped. For tests and maintenance.
    pub fn compact(&self) -> Result<(), StateError> {
        self.flush()?;
        let mut options = rocksdb::CompactOptions::default();
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db
            .compact_range_opt(None::<&[u8]>, None::<&[u8]>, &options);
        Ok(())
    }

    /// Whether state `id` is known to hold values with a TTL.
    pub fn has_ttl(&self, id: u32) -> bool {
        self.ttl_states.contains(id)
    }

    /// A property of the RocksDB instance, such as `rocksdb.block-cache-capacity`.
    pub fn property(&self, name: &str) -> Option<String> {
        self.db.property_value(name).ok().flatten()
    }

    /// Approximate bytes of live state on disk and in memtables.
    pub fn approximate_size(&self) -> u64 {
        let prop = |name| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        prop("rocksdb.total-sst-files-size") + prop("rocksdb.cur-size-all-mem-tables")
    }
}

/// The least key above every key that starts with `prefix`; `None` when
/// there is none (the prefix is all 0xFF).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
