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

/// One value per key and namespace.
pub struct ValueState<V> {
    id: u32,
    descriptor: StateDescriptor<V>,
}

impl<V: Serialize + DeserializeOwned> ValueState<V> {
    pub fn new(
        store: &mut KeyedStateStore,
        descriptor: StateDescriptor<V>,
    ) -> Result<Self, StateError> {
        Ok(ValueState {
            id: store.register(&descriptor.name)?,
            descriptor,
        })
    }

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

    pub fn get(&self, store: &KeyedStateStore, key: StateKey<'_>) -> Result<Option<V>, StateError> {
        let mut stored = Vec::new();
        self.stored_key(store, &key, &mut stored)?;
        match store.get_raw(&stored)? {
            Some(bytes) => self.descriptor.decode(&bytes),
            None => Ok(None),
        }
    }

    /// The values of many keys, with one multi-get.
    pub fn multi_get(
        &self,
        store: &KeyedStateStore,
        keys: &[StateKey<'_>],
    ) -> Result<Vec<Option<V>>, StateError> {
        let mut stored = Vec::with_capacity(keys.len());
        for key in keys {
            let mut k = Vec::new();
            self.stored_key(store, key, &mut k)?;
            stored.push(k);
        }
        store.multi_get_raw(&stored, |value| {
            value.map_or(Ok(None), |bytes| self.descriptor.decode(bytes))
        })
    }

    pub fn put(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key: StateKey<'_>,
        value: &V,
    ) -> Result<(), StateError> {
        self.stored_key(store, &key, &mut batch.key)?;
        self.descriptor.encode(value, &mut batch.value)?;
        batch.batch.put(&batch.key, &batch.value);
        Ok(())
    }

    pub fn delete(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key: StateKey<'_>,
    ) -> Result<(), StateError> {
        self.stored_key(store, &key, &mut batch.key)?;
        batch.batch.delete(&batch.key);
        Ok(())
    }
}

/// A list of values per key and namespace. Adding is a blind write (no read),
/// so many rows can be added to one key within one write batch.
pub struct ListState<V> {
    id: u32,
    descriptor: StateDescriptor<V>,
}

impl<V: Serialize + DeserializeOwned> ListState<V> {
    pub fn new(
        store: &mut KeyedStateStore,
        descriptor: StateDescriptor<V>,
    ) -> Result<Self, StateError> {
        Ok(ListState {
            id: store.register(&descriptor.name)?,
            descriptor,
        })
    }

    fn prefix(&self, store: &KeyedStateStore, key: &StateKey<'_>) -> Result<Vec<u8>, StateError> {
        store.check_key_group(key.key_group)?;
        let mut prefix = Vec::new();
        key.encode(self.id, &mut prefix);
        Ok(prefix)
    }

    /// Appends `value`; it comes after every value added before.
    pub fn add(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key: StateKey<'_>,
        value: &V,
    ) -> Result<(), StateError> {
        let mut entry = self.prefix(store, &key)?;
        entry.extend_from_slice(&store.next_sequence().to_be_bytes());
        self.descriptor.encode(value, &mut batch.value)?;
        batch.batch.put(&entry, &batch.value);
        Ok(())
    }

    /// The values in the order they were added (expired ones left out).
    pub fn get(&self, store: &KeyedStateStore, key: StateKey<'_>) -> Result<Vec<V>, StateError> {
        let prefix = self.prefix(store, &key)?;
        let mut values = Vec::new();
        for item in store.scan_prefix(&prefix) {
            let (_, value) = item?;
            values.extend(self.descriptor.decode(&value)?);
        }
        Ok(values)
    }

    /// Removes every value of the key and namespace.
    pub fn clear(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key: StateKey<'_>,
    ) -> Result<(), StateError> {
        let prefix = self.prefix(store, &key)?;
        for item in store.scan_prefix(&prefix) {
            batch.batch.delete(&item?.0);
        }
        Ok(())
    }
}

/// A map per key and namespace, from user keys `K` to values `V`.
pub struct MapState<K, V> {
    id: u32,
    descriptor: StateDescriptor<V>,
    _keys: PhantomData<fn() -> K>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<K, V> {
    pub fn new(
        store: &mut KeyedStateStore,
        descriptor: StateDescriptor<V>,
    ) -> Result<Self, StateError> {
        Ok(MapState {
            id: store.register(&descriptor.name)?,
            descriptor,
            _keys: PhantomData,
        })
    }

    fn prefix(&self, store: &KeyedStateStore, key: &StateKey<'_>) -> Result<Vec<u8>, StateError> {
        store.check_key_group(key.key_group)?;
        let mut prefix = Vec::new();
        key.encode(self.id, &mut prefix);
        Ok(prefix)
    }

    fn entry(
        &self,
        store: &KeyedStateStore,
        key: &StateKey<'_>,
        user_key: &K,
    ) -> Result<Vec<u8>, StateError> {
        let prefix = self.prefix(store, key)?;
        postcard::to_extend(user_key, prefix).map_err(|e| self.error(e))
    }

    fn error(&self, e: postcard::Error) -> StateError {
        StateError::Codec {
            state: self.descriptor.name.clone(),
            message: format!("map key: {e}"),
        }
    }

    pub fn get(
        &self,
        store: &KeyedStateStore,
        key: StateKey<'_>,
        user_key: &K,
    ) -> Result<Option<V>, StateError> {
        let entry = self.entry(store, &key, user_key)?;
        match store.get_raw(&entry)? {
            Some(bytes) => self.descriptor.decode(&bytes),
            None => Ok(None),
        }
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
        self.descriptor.encode(value, &mut batch.value)?;
        batch.batch.put(&entry, &batch.value);
        Ok(())
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
        let prefix = self.prefix(store, &key)?;
        let mut entries = Vec::new();
        for item in store.scan_prefix(&prefix) {
            let (stored_key, value) = item?;
            let user_key: K =
                postcard::from_bytes(&stored_key[prefix.len()..]).map_err(|e| self.error(e))?;
            if let Some(value) = self.descriptor.decode(&value)? {
                entries.push((user_key, value));
            }
        }
        Ok(entries)
    }
}
