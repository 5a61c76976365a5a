//! Keyed state in RocksDB.
//!
//! Each stateful subtask owns one RocksDB instance ([`KeyedStateStore`]); all
//! instances of a process share one block cache and one write-buffer budget
//! ([`StateBackend`]), so state can be far larger than memory while memory
//! stays under one configured limit.
//!
//! A stored key is laid out as key group, state, key, namespace (and, for map
//! state, the user key): see [`layout`]. Key groups come first, so the state of
//! a range of key groups is one contiguous range of RocksDB keys, which is what
//! a rescale cuts out.
//!
//! Values are serde types encoded with postcard inside a small envelope that
//! carries a format version, the state's schema version and an optional expiry
//! time (TTL): see [`codec`].

mod backend;
pub mod codec;
mod error;
pub mod layout;
mod snapshot;
mod sorted;
mod store;
mod timers;
mod ttl;
mod typed;

pub use backend::{JobState, StateBackend, StateConfig};
pub use codec::StateDescriptor;
pub use error::StateError;
pub use layout::StateKey;
pub use snapshot::StoreSnapshot;
pub use sorted::SortedState;
pub use store::{KeyedStateStore, StateWriteBatch};
pub use timers::{Timer, TimerService, i64_from_order_preserving, order_preserving};
pub use ttl::TtlStates;
pub use typed::{ListState, MapState, ValueState};

#[cfg(test)]
mod tests;
