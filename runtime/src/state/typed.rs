//! Typed handles on keyed state: value, list and map state.
//!
//! A handle is made once, when an operator opens, and then reads and writes
//! through the store. Reads take one key or many (one RocksDB multi-get);
//! writes go into a [`StateWriteBatch`] that the operator applies once per
//! batch of rows.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::StateDescriptor;
use super::error::StateError;
use super::layout::StateKey;
use super::store::{KeyedStateStore, StateWriteBatch};

/// What every kind of state shares: its id, its codec, and how its stored keys
/// and values are read and written.
struct Handle<V> {
    id: u32,
    descriptor: StateDescriptor<V>,
}

impl<V: Serialize + DeserializeOwned> Handle<V> {
    fn new(
        store: &mut KeyedStateStore,
        descriptor: StateDescriptor<V>,
    ) -> Result<Self, StateError> {
        Ok(Handle {
            id: store.register(&descriptor.name, descriptor.ttl.is_some())?,
            descriptor,
        })
    }

    fn unregistered(descriptor: StateDescriptor<V>) -> Self {
        Handle {
            id: super::layout::state_id(&descriptor.name),
            descriptor,
        }
    }

    /// The stored key of `key` (for value state), or the prefix of its entries
    /// (for list and map state), in `out`.
    fn stored_key(
        &self,
        store: &KeyedStateStore,
        key: &StateKey<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        store.check_key_group(key.key_group)?;
        out.clear();
        key.encode(self.id, out);
        Ok(())
    }

    /// The prefix of the entries of `key` (list and map state).
    fn prefix(&self, store: &KeyedStateStore, key: &StateKey<'_>) -> Result<Vec<u8>, StateError> {
        let mut prefix = Vec::new();
        self.stored_key(store, key, &mut prefix)?;
        Ok(prefix)
    }

    fn read(&self, store: &KeyedStateStore, stored_key: &[u8]) -> Result<Option<V>, StateError> {
        match store.get_raw(stored_key)? {
            Some(bytes) => self.descriptor.decode(&bytes),
            None => Ok(None),
        }
    }

    fn write(
        &self,
        batch: &mut StateWriteBatch,
        stored_key: &[u8],
        value: &V,
    ) -> Result<(), StateError> {
        self.descriptor.encode(value, &mut batch.value)?;
        batch.batch.put(stored_key, &batch.value);
        if self.descriptor.ttl.is_some() && !batch.ttl_states.contains(&self.id) {
            batch.ttl_states.push(self.id);
        }
        Ok(())
    }

    /// Every stored (key, value) under `prefix`, expired values left out.
    fn scan(
        &self,
        store: &KeyedStateStore,
        prefix: &[u8],
    ) -> Result<Vec<(Box<[u8]>, V)>, StateError> {
        let mut entries = Vec::new();
        for item in store.scan_prefix(prefix) {
            let (stored_key, value) = item?;
            if let Some(value) = self.descriptor.decode(&value)? {
                entries.push((stored_key, value));
            }
        }
        Ok(entries)
    }
}

/// One value per key and namespace.
pub struct ValueState<V> {
    handle: Handle<V>,
}

impl<V: Serialize + DeserializeOwned> ValueState<V> {
    /// A handle without the name-collision check of `new`, for handles made
    /// before the store is open (a process function's fields).
    pub fn unregistered(descriptor: StateDescriptor<V>) -> Self {
        ValueState {
            handle: Handle::unregistered(descriptor),
        }
    }

    pub fn new(
        store: &mut KeyedStateStore,
        descriptor: StateDescriptor<V>,
    ) -> Result<Self, StateError> {
        Ok(ValueState {
            handle: Handle::new(store, descriptor)?,
        })
    }

    pub fn get(&self, store: &KeyedStateStore, key: StateKey<'_>) -> Result<Option<V>, StateError> {
        let mut stored = Vec::new();
        self.handle.stored_key(store, &key, &mut stored)?;
        self.handle.read(store, &stored)
    }

    /// The values of many keys, with one batched multi-get.
    pub fn multi_get(
        &self,
        store: &KeyedStateStore,
        keys: &[StateKey<'_>],
    ) -> Result<Vec<Option<V>>, StateError> {
        let mut stored = Vec::with_capacity(keys.len());
        for key in keys {
            let mut k = Vec::new();
            self.handle.stored_key(store, key, &mut k)?;
            stored.push(k);
        }
        store.multi_get_raw(&stored, |value| {
            value.map_or(Ok(None), |bytes| self.handle.descriptor.decode(bytes))
        })
    }

    pub fn put(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key: StateKey<'_>,
        value: &V,
    ) -> Result<(), StateError> {
        let mut stored = std::mem::take(&mut batch.key);
        self.handle.stored_key(store, &key, &mut stored)?;
        let result = self.handle.write(batch, &stored, value);
        batch.key = stored;
        result
    }

    pub fn delete(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key: StateKey<'_>,
    ) -> Result<(), StateError> {
        self.handle.stored_key(store, &key, &mut batch.key)?;
        batch.batch.delete(&batch.key);
        Ok(())
    }
}

/// A list of values per key and namespace. Adding is a blind write (no read),
/// so many rows can be added to one key within one write batch.
pub struct ListState<V> {
    handle: Handle<V>,
}

impl<V: Serialize + DeserializeOwned> ListState<V> {
    /// A handle without the name-collision check of `new`, for handles made
    /// before the store is open (a process function's fields).
    pub fn unregistered(descriptor: StateDescriptor<V>) -> Self {
        ListState {
            handle: Handle::unregistered(descriptor),
        }
    }

    pub fn new(
        store: &mut KeyedStateStore,
        descriptor: StateDescriptor<V>,
    ) -> Result<Self, StateError> {
        Ok(ListState {
            handle: Handle::new(store, descriptor)?,
        })
    }

    /// Appends `value`; it comes after every value added before.
    pub fn add(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key: StateKey<'_>,
        value: &V,
    ) -> Result<(), StateError> {
        let mut entry = self.handle.prefix(store, &key)?;
        entry.extend_from_slice(&store.next_sequence().to_be_bytes());
        self.handle.write(batch, &entry, value)
    }

    /// The values in the order they were added (expired ones left out).
    pub fn get(&self, store: &KeyedStateStore, key: StateKey<'_>) -> Result<Vec<V>, StateError> {
        let prefix = self.handle.prefix(store, &key)?;
        Ok(self
            .handle
            .scan(store, &prefix)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Removes every value of the key and namespace.
    pub fn clear(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key: StateKey<'_>,
    ) -> Result<(), StateError> {
        let prefix = self.handle.prefix(store, &key)?;
        for item in store.scan_prefix(&prefix) {
            batch.batch.delete(&item?.0);
        }
        Ok(())
    }
}

/// A map per key and namespace, from user keys `K` to values `V`.
pub struct MapState<K, V> {
    handle: Handle<V>,
    _keys: PhantomData<fn() -> K>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<K, V> {
    /// A handle without the name-collision check of `new`, for handles made
    /// before the store is open (a process function's fields).
    pub fn unregistered(descriptor: StateDescriptor<V>) -> Self {
        MapState {
            handle: Handle::unregistered(descriptor),
            _keys: PhantomData,
        }
    }

    pub fn new(
        store: &mut KeyedStateStore,
        descriptor: StateDescriptor<V>,
    ) -> Result<Self, StateError> {
        Ok(MapState {
            handle: Handle::new(store, descriptor)?,
            _keys: PhantomData,
        })
    }

    fn entry(
        &self,
        store: &KeyedStateStore,
        key: &StateKey<'_>,
        user_key: &K,
    ) -> Result<Vec<u8>, StateError> {
        let prefix = self.handle.prefix(store, key)?;
        postcard::to_extend(user_key, prefix).map_err(|e| self.key_error(e))
    }

    fn key_error(&self, e: postcard::Error) -> StateError {
        StateError::Codec {
            state: self.handle.descriptor.name.clone(),
            message: format!("map key: {e}"),
        }
    }

    pub fn get(
        &self,
        store: &KeyedStateStore,
        key: StateKey<'_>,
        user_key: &K,
    ) -> Result<Option<V>, StateError> {
        self.handle.read(store, &self.entry(store, &key, user_key)?)
    }

    pub fn put(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key: StateKey<'_>,
        user_key: &K,
        value: &V,
    ) -> Result<(), StateError> {
        let entry = self.entry(store, &key, user_key)?;
        self.handle.write(batch, &entry, value)
    }

    pub fn remove(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key: StateKey<'_>,
        user_key: &K,
    ) -> Result<(), StateError> {
        let entry = self.entry(store, &key, user_key)?;
        batch.batch.delete(&entry);
        Ok(())
    }

    /// Every live entry of the key and namespace.
    pub fn entries(
        &self,
        store: &KeyedStateStore,
        key: StateKey<'_>,
    ) -> Result<Vec<(K, V)>, StateError> {
        let prefix = self.handle.prefix(store, &key)?;
        self.handle
            .scan(store, &prefix)?
            .into_iter()
            .map(|(stored_key, value)| {
                let user_key = postcard::from_bytes(&stored_key[prefix.len()..])
                    .map_err(|e| self.key_error(e))?;
                Ok((user_key, value))
            })
            .collect()
    }
}
