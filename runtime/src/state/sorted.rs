//! Sorted state: raw byte entries of one key group, kept in the order of a
//! caller-defined sort key.
//!
//! Value, list and map state address one key at a time. Some operators need
//! their entries in another order: timers by time, window partials by window.
//! A sorted state stores `key group | state id | sort key` → value bytes, so a
//! prefix or range of sort keys is one RocksDB range scan within a key group,
//! and a rescale still cuts state by key group.

use super::error::StateError;
use super::layout::state_id;
use super::store::{KeyedStateStore, StateWriteBatch};
use crate::key_groups::KeyGroup;

/// A handle on one sorted state of a store.
#[derive(Debug, Clone)]
pub struct SortedState {
    id: u32,
    /// Its values are envelopes with an expiry ([`super::StateDescriptor`]
    /// with a TTL), which compaction may drop once they expire.
    ttl: bool,
}

impl SortedState {
    /// Registers the state `name` in `store`.
    pub fn new(store: &mut KeyedStateStore, name: &str) -> Result<Self, StateError> {
        Ok(SortedState {
            id: store.register(name, false)?,
            ttl: false,
        })
    }

    /// A handle on state `name` without the name-collision check of [`SortedState::new`].
    pub fn unregistered(name: &str) -> Self {
        SortedState {
            id: state_id(name),
            ttl: false,
        }
    }

    /// The same state, its values written as envelopes with an expiry (see
    /// [`super::StateDescriptor::with_ttl`]): compaction drops expired ones.
    pub fn with_ttl(mut self) -> Self {
        self.ttl = true;
        self
    }

    /// The value stored under `sort_key` in `key_group`, if any.
    pub fn get(
        &self,
        store: &KeyedStateStore,
        key_group: KeyGroup,
        sort_key: &[u8],
    ) -> Result<Option<Box<[u8]>>, StateError> {
        store.check_key_group(key_group)?;
        let mut key = Vec::new();
        self.stored(key_group, sort_key, &mut key);
        Ok(store.get_raw(&key)?.map(|v| v.as_ref().into()))
    }

    pub(crate) fn prefix(&self, key_group: KeyGroup, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&(key_group as u16).to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
    }

    /// The stored key of `sort_key` in `key_group`.
    pub(crate) fn stored(&self, key_group: KeyGroup, sort_key: &[u8], out: &mut Vec<u8>) {
        self.prefix(key_group, out);
        out.extend_from_slice(sort_key);
    }

    pub fn put(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key_group: KeyGroup,
        sort_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        store.check_key_group(key_group)?;
        self.stored(key_group, sort_key, &mut batch.key);
        batch.batch.put(&batch.key, value);
        if self.ttl && !batch.ttl_states.contains(&self.id) {
            batch.ttl_states.push(self.id);
        }
        Ok(())
    }

    pub fn delete(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key_group: KeyGroup,
        sort_key: &[u8],
    ) -> Result<(), StateError> {
        store.check_key_group(key_group)?;
        self.stored(key_group, sort_key, &mut batch.key);
        batch.batch.delete(&batch.key);
        Ok(())
    }

    /// Deletes every entry of `key_group` whose sort key is in `from..to`.
    pub fn delete_range(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key_group: KeyGroup,
        from: &[u8],
        to: &[u8],
    ) -> Result<(), StateError> {
        store.check_key_group(key_group)?;
        let mut start = Vec::new();
        let mut end = Vec::new();
        self.stored(key_group, from, &mut start);
        self.stored(key_group, to, &mut end);
        batch.batch.delete_range(&start, &end);
        Ok(())
    }

    /// The entries of `key_group` whose sort key starts with `prefix`, in
    /// order, as (sort key, value).
    pub fn scan<'a>(
        &self,
        store: &'a KeyedStateStore,
        key_group: KeyGroup,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>), StateError>> + 'a {
        let mut full = Vec::new();
        self.stored(key_group, prefix, &mut full);
        let skip = 6;
        store
            .scan_owned_prefix(full)
            .map(move |item| item.map(|(k, v)| (k[skip..].into(), v)))
    }

    /// The entries of `key_group` whose sort key starts with `prefix`, from
    /// `prefix ++ from` on, and below `prefix ++ until` if given, in order,
    /// as (sort key, value): a range of one key's entries, such as its rows
    /// in a span of time.
    pub fn scan_from<'a>(
        &self,
        store: &'a KeyedStateStore,
        key_group: KeyGroup,
        prefix: &[u8],
        from: &[u8],
        until: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>), StateError>> + 'a {
        let mut start = Vec::new();
        self.stored(key_group, prefix, &mut start);
        let prefix_len = start.len();
        let end = until.map(|until| {
            let mut end = start.clone();
            end.extend_from_slice(until);
            end
        });
        start.extend_from_slice(from);
        let skip = 6;
        store
            .scan_range(start, prefix_len, end)
            .map(move |item| item.map(|(k, v)| (k[skip..].into(), v)))
    }

    /// The entries under each of `prefixes` (key group and sort-key
    /// prefix, in ascending order of both), with one RocksDB iterator:
    /// `each` gets the prefix's index, the sort key and the value, prefix by
    /// prefix, in order.
    pub fn scan_prefixes(
        &self,
        store: &KeyedStateStore,
        prefixes: &[(KeyGroup, &[u8])],
        mut each: impl FnMut(usize, &[u8], &[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let mut stored = Vec::with_capacity(prefixes.len());
        for (key_group, prefix) in prefixes {
            store.check_key_group(*key_group)?;
            let mut key = Vec::new();
            self.stored(*key_group, prefix, &mut key);
            stored.push(key);
        }
        debug_assert!(stored.is_sorted(), "prefixes out of order");
        let skip = 6;
        store.scan_prefixes(&stored, |index, key, value| {
            each(index, &key[skip..], value)
        })
    }

    /// The first entry of `key_group` at or after `from`, if any.
    pub fn first_from(
        &self,
        store: &KeyedStateStore,
        key_group: KeyGroup,
        from: &[u8],
    ) -> Result<Option<(Box<[u8]>, Box<[u8]>)>, StateError> {
        let mut start = Vec::new();
        self.stored(key_group, from, &mut start);
        let mut prefix = Vec::new();
        self.prefix(key_group, &mut prefix);
        Ok(store
            .seek(&start)?
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k[prefix.len()..].into(), v)))
    }
}
